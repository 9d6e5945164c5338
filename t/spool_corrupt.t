#!/usr/bin/perl

# corrupt/ in the spool: a queue file that cannot be parsed (a garbage
# header, a truncated envelope, an empty file, an "id" line of another
# file) found in incoming/ or deferred/ is moved to corrupt/ with one log
# line naming it and the reason; it is neither deleted nor bounced, and
# the good messages next to it are delivered to Dovecot.  A file that
# cannot be read (a permission error) is not set aside.  A second start
# leaves corrupt/ alone; a file fixed by hand and moved back to incoming/
# is delivered.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my %da_users = ('alice@example.com' => 'pwA');
my %db_users = ('bob@example.com' => 'pwB');

my $da = $t->dovecot('a', users => \%da_users);
my $db = $t->dovecot('b', addr => '127.0.0.2', users => \%db_users);

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
bob@example.com:{PLAIN}pwB:b
EOF

my $conf = <<"EOF";
%%LOAD_MODULES%%

worker_processes 2;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;

    router_pool a {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3} lmtp=$da->{lmtp};
    }

    router_pool b {
        server 127.0.0.2 imap=$db->{imap} pop3=$db->{pop3} lmtp=$db->{lmtp};
    }

    auth_http  127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery DELIVERY;
    queue_retry_first 1s;
    queue_retry_max 2s;
    queue_scan_interval 300ms;
    queue_helo_name mx.test;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_auth_plaintext on;
    }
}
EOF

sub conf {
    my ($delivery) = @_;
    (my $c = $conf) =~ s/DELIVERY/$delivery/;
    $t->write_file_expand('nginx.conf', $c);
}

# the first start without delivery makes the spool

conf('off');
$t->run();

my $spool = $t->path('spool');

ok(-d "$spool/corrupt", 'corrupt/ made at start');
is(sprintf('%04o', (stat("$spool/corrupt"))[2] & 07777), '0700',
    'mode 0700');
is((stat("$spool/corrupt"))[4], (stat("$spool/incoming"))[4],
    'owned like incoming/');

###############################################################################

sub maildir_count { $t->maildir_count(@_) }
sub maildir_text { $t->maildir_text(@_) }

# one message from alice to bob over SMTP; the reply to its end

sub send_one {
    my ($subject) = @_;

    return $t->submit($t->port('smtp'), 'alice@example.com',
        ['bob@example.com'], "Subject: $subject\r\n\r\nbody\r\n",
        auth => encode_base64("\0alice\@example.com\0pwA", ''));
}

# every name in a directory of the spool, empty files too

sub names {
    my ($sub) = @_;
    opendir my $dh, "$spool/$sub" or return ();
    my @n = sort grep { !/^\./ } readdir $dh;
    closedir $dh;
    return @n;
}

my $seq = 0;

sub new_id {
    return sprintf('%08X%05X%06X%03X', time(), 0x80000 + $seq, 0xFFFFF1,
        $seq++);
}

# a file put in place as the workers would find it: owned like the spool,
# mode 0600, written aside and renamed; in deferred/ with an mtime that
# has come

sub put {
    my ($sub, $id, $text) = @_;

    my ($uid, $gid) = (stat("$spool/incoming"))[4, 5];

    $t->write_file("spool/tmp/$id", $text);
    chown $uid, $gid, "$spool/tmp/$id";
    chmod 0600, "$spool/tmp/$id";
    utime time() - 10, time() - 10, "$spool/tmp/$id" if $sub eq 'deferred';
    rename("$spool/tmp/$id", "$spool/$sub/$id") or die "rename: $!\n";
}

sub envelope {
    my ($id, $rcpt) = @_;
    return "MAILPLUS-QUEUE 1\r\nid $id\r\narrival " . time() . "\r\n"
        . "client 127.0.0.1\r\nhelo test\r\nlogin \r\nbody 7BIT    \r\n"
        . "smtputf8 no\r\nsender alice\@example.com\r\n"
        . "rcpt $rcpt\r\nend\r\n";
}

my $content = "From: alice\@example.com\r\nSubject: %s\r\n\r\nbody\r\n";

# the bad files, with the reason each must be logged with

my %bad;

my $id = new_id();
$bad{$id} = {
    dir => 'incoming',
    reason => qr/bad header/,
    text => "GARBAGE 7\r\nid $id\r\nrcpt bob\@example.com\r\nend\r\n"
        . sprintf($content, 'garbage header'),
};

$id = new_id();
$bad{$id} = {
    dir => 'incoming',
    reason => qr/truncated envelope/,
    text => substr(envelope($id, 'bob@example.com'), 0, 150),
};

$id = new_id();
$bad{$id} = {
    dir => 'deferred',
    reason => qr/truncated envelope/,
    text => substr(envelope($id, 'bob@example.com'), 0, 120),
};

$id = new_id();
$bad{$id} = {
    dir => 'deferred',
    reason => qr/bad header/,
    text => "\0\x01\x02 binary garbage\r\nend\r\n",
};

$id = new_id();
$bad{$id} = {
    dir => 'incoming',
    reason => qr/empty file/,
    text => '',
};

$id = new_id();
$bad{$id} = {
    dir => 'incoming',
    reason => qr/the "id" line/,
    text => envelope('0' x 22, 'bob@example.com')
        . sprintf($content, 'another id'),
};

$id = new_id();
$bad{$id} = {
    dir => 'deferred',
    reason => qr/no recipients/,
    text => envelope($id, 'bob@example.com') =~ s/rcpt [^\r]*\r\n//r
        . sprintf($content, 'no recipients'),
};

put($bad{$_}{dir}, $_, $bad{$_}{text}) for sort keys %bad;

# good messages next to them, in incoming/ and deferred/

my $good1 = new_id();
put('incoming', $good1, envelope($good1, 'bob@example.com')
    . sprintf($content, 'good incoming'));

my $good2 = new_id();
put('deferred', $good2, envelope($good2, 'bob@example.com')
    . sprintf($content, 'good deferred'));

# without delivery nothing moves

is(scalar(names('incoming')) + scalar(names('deferred')), 9,
    'nine files queued by hand');

###############################################################################

# a reload with delivery on: the bad files go to corrupt/, the good ones
# to Dovecot

conf('on');
ok($t->reload(), 'reloaded with delivery on');

ok(wait_for(sub { names('corrupt') == keys %bad }, 10),
    'every bad file in corrupt/')
    or diag(join ' ', names('corrupt'));

is_deeply([ names('corrupt') ], [ sort keys %bad ], 'under its queue ID');

ok(wait_for(sub { maildir_count($db, 'bob@example.com') == 2 }, 10),
    'the good messages delivered');

my $text = maildir_text($db, 'bob@example.com');
like($text, qr/^Subject: good incoming\r?$/m, 'the one from incoming/');
like($text, qr/^Subject: good deferred\r?$/m, 'the one from deferred/');
unlike($text, qr/Subject: (garbage header|another id|no recipients)/,
    'nothing of a bad file delivered');

ok(wait_for(sub { !names('incoming') && !names('deferred')
    && !names('active') }, 5), 'incoming/, deferred/, active/ empty');

for my $i (sort keys %bad) {
    is($t->read_file("spool/corrupt/$i"), $bad{$i}{text},
        "$bad{$i}{dir} $i kept as it was");
}

# one more message through SMTP: every worker has scanned since

like(send_one('after'), qr/^250 /, 'submitted after');

ok(wait_for(sub { maildir_count($db, 'bob@example.com') == 3 }, 10),
    'and delivered');

my $log = $t->read_file('error.log');

for my $i (sort keys %bad) {
    my @lines = $log =~ /^.*\[error\].*queue: message $i is corrupt .*$/mg;
    my $reason = $bad{$i}{reason};

    is(scalar @lines, 1, "one log line for $i");
    like($lines[0] // '', qr/\($reason[^)]*\), moved to corrupt\/$i$/,
        "with the reason");
}

is(maildir_count($da, 'alice@example.com'), 0, 'no bounce to the sender');

###############################################################################

# a second start: corrupt/ left as it was, and counted

sub snapshot {
    return join "\n", map {
        my @s = stat("$spool/corrupt/$_");
        "$_ $s[1] $s[2] $s[7] $s[9]"
    } names('corrupt');
}

my $before = snapshot();

$t->stop();
$t->run();

like($t->read_file('error.log'),
    qr/queue spool "\Q$spool\E": \d+ messages incoming, \d+ active, (?#
    )\d+ stale temporary files removed, 7 files in corrupt\//,
    'counted at start');

like(send_one('restarted'), qr/^250 /, 'submitted after the restart');

ok(wait_for(sub { maildir_count($db, 'bob@example.com') == 4 }, 10),
    'delivered after the restart');

is(snapshot(), $before, 'corrupt/ untouched by a second start');

###############################################################################

# an operator fixes a file and moves it back: it is delivered; moved
# aside again, it does not replace the copy of the same ID in corrupt/

my ($fix) = grep { $bad{$_}{text} =~ /garbage header/ } sort keys %bad;

my ($uid, $gid) = (stat("$spool/incoming"))[4, 5];

$t->write_file("spool/corrupt/$fix", envelope($fix, 'bob@example.com')
    . sprintf($content, 'fixed by hand'));
rename("$spool/corrupt/$fix", "$spool/incoming/$fix") or die "rename: $!\n";

ok(wait_for(sub { maildir_count($db, 'bob@example.com') == 5 }, 10),
    'a fixed file moved back to incoming/ is delivered');
like(maildir_text($db, 'bob@example.com'), qr/^Subject: fixed by hand\r?$/m,
    'the fixed one');

my ($again) = grep { $bad{$_}{text} =~ /another id/ } sort keys %bad;

$t->write_file("spool/tmp/again", "still garbage\r\nend\r\n");
chown $uid, $gid, "$spool/tmp/again";
rename("$spool/tmp/again", "$spool/incoming/$again") or die "rename: $!\n";

ok(wait_for(sub { grep { /^$again\.\d+$/ } names('corrupt') }, 10),
    'set aside again under another name');
is($t->read_file("spool/corrupt/$again"), $bad{$again}{text},
    'the first copy kept');

###############################################################################

# a file that cannot be read is not the file's fault: not set aside

SKIP: {
    skip 'workers run as root, permissions do not stop them', 3
        if $> != 0 || !$uid;

    my $locked = new_id();
    put('incoming', $locked, envelope($locked, 'bob@example.com')
        . sprintf($content, 'was unreadable'));
    chmod 0000, "$spool/incoming/$locked";

    $t->{ignore_alerts}
        = qr/message $locked: open\(\) of a claimed queue file failed/;

    ok(wait_for(sub { $t->read_file('error.log')
        =~ /message $locked: open\(\) of a claimed queue file failed \(13: /
    }, 10), 'a permission error logged');

    ok(!grep({ /^$locked/ } names('corrupt')), 'and not set aside');

    chmod 0600, "$spool/incoming/$locked";

    ok(wait_for(sub { maildir_text($db, 'bob@example.com')
        =~ /^Subject: was unreadable\r?$/m }, 10),
        'delivered once readable');
}

$t->finish();

###############################################################################
