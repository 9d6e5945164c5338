#!/usr/bin/perl

# Delivery: one connection per destination carries many messages; with
# PIPELINING the next message's MAIL/RCPT/DATA (or MAIL/RCPT before its
# BDAT) follow the end of data of the one before, and no RSET goes between
# transactions that ended with the reply to their content.  Seen from a
# real smtp-sink, a peer written here (recipients, senders and contents
# refused, a connection closed after the end of data with a pipelined
# transaction in flight, CHUNKING) and Dovecot's LMTP: every message gets
# its own result, none is lost or delivered twice.

use warnings;
use strict;

use Test::More;

use IO::Socket::INET;
use POSIX qw/ _exit /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

plan(skip_all => 'no smtp-sink') unless -x $MailPlus::Test::SMTP_SINK;

my $t = MailPlus::Test->new();

my %users = ('bob@example.com' => 'pwB');
my $d = $t->dovecot('a', users => \%users);

$t->write_file('users', <<'EOF');
bob@example.com:{PLAIN}pwB:a
ghost@example.com:{PLAIN}pwG:a
EOF

$t->smtp_sink('sink');
$t->smtp_sink('relay');

peer('peer');
peer('chunk', chunking => 1);
peer('close', script => 1);

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} lmtp=$d->{lmtp};
    }

    auth_http  127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_retry_first 1s;
    queue_retry_max 1s;
    queue_scan_interval 300ms;
    queue_destination_concurrency 1;
    queue_idle_timeout 30s;
    queue_helo_name mx.test;

    queue_route sink.example 127.0.0.1:%%PORT_sink%%;
    queue_route peer.example 127.0.0.1:%%PORT_peer%%;
    queue_route chunk.example 127.0.0.1:%%PORT_chunk%%;
    queue_route close.example 127.0.0.1:%%PORT_close%%;
    queue_relay_host 127.0.0.1:%%PORT_relay%%;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_trusted_networks 127.0.0.0/8;
    }
}
EOF

$t->run();

###############################################################################

# peer($name, chunking => 1): an ESMTP server with PIPELINING on port
# port($name), strict about transactions (MAIL inside one: 503), logging
# to $name.log.  RCPT refuse*@ gets 550, soft*@ 450; MAIL from badsender@
# gets 550; content with REJECTME gets 554 at its end.  With script => 1,
# the first connection is closed at its third end of data without a reply,
# the second one right after the reply to its third end of data.

sub peer {
    my ($name, %opts) = @_;

    my $port = $t->port($name);
    my $dir = $t->testdir();

    my $server = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
        Listen => 16, ReuseAddr => 1) or die "listen: $!\n";

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        $SIG{CHLD} = 'IGNORE';
        $SIG{TERM} = sub { _exit(0) };
        my $n = 0;

        while (1) {
            my $c = $server->accept() or next;
            $n++;

            if (fork() == 0) {
                serve($c, $n, "$dir/$name.log", $dir, %opts);
                _exit(0);
            }

            close $c;
        }
    }

    close $server;
    push @{$t->{daemons}}, $pid;
}

sub serve {
    my ($c, $n, $log, $dir, %opts) = @_;

    open my $lf, '>>', $log or die;
    $lf->autoflush(1);
    $c->autoflush(1);

    my $say = sub { print $c "$_[0]\r\n"; print $lf "$n: S: $_[0]\n"; };
    my $close = sub {
        print $lf "$n: closed\n";
        shutdown($c, 1);
        my $buf;
        1 while sysread($c, $buf, 4096);
        close $c;
        _exit(0);
    };

    my ($trans, @rcpts) = (0);
    my $k = 0;

    $say->('220 peer ESMTP');

    while (defined(my $line = <$c>)) {
        $line =~ s/\r?\n\z//;
        print $lf "$n: C: $line\n";

        my $content;

        if ($line =~ /^EHLO/i) {
            print $c "250-peer\r\n250-PIPELINING\r\n"
                . ($opts{chunking} ? "250-CHUNKING\r\n" : '');
            $say->('250 8BITMIME');

        } elsif ($line =~ /^MAIL FROM:<([^>]*)>/i) {
            if ($trans) {
                $say->('503 5.5.1 nested MAIL command');
            } elsif ($1 =~ /^badsender/) {
                $say->('550 5.7.1 sender refused');
            } else {
                ($trans, @rcpts) = (1);
                $say->('250 2.1.0 ok');
            }

        } elsif ($line =~ /^RCPT TO:<([^>]*)>/i) {
            if (!$trans) {
                $say->('503 5.5.1 need MAIL');
            } elsif ($1 =~ /^refuse/) {
                $say->('550 5.1.1 no such user');
            } elsif ($1 =~ /^soft/) {
                $say->('450 4.2.0 try later');
            } else {
                push @rcpts, $1;
                $say->('250 2.1.5 ok');
            }

        } elsif ($line =~ /^DATA/i) {
            if (!$trans || !@rcpts) {
                $say->('554 5.5.1 no valid recipients');
                next;
            }

            $say->('354 go ahead');
            $content = '';

            while (defined(my $l = <$c>)) {
                last if $l eq ".\r\n";
                $content .= $l;
            }

        } elsif ($line =~ /^BDAT (\d+) LAST/i) {
            read($c, $content, $1);
            print $lf "$n: C: (BDAT content)\n";

            if (!$trans || !@rcpts) {
                $say->('554 5.5.1 no valid recipients');
                next;
            }

        } elsif ($line =~ /^RSET/i) {
            ($trans, @rcpts) = (0);
            $say->('250 2.0.0 ok');

        } elsif ($line =~ /^QUIT/i) {
            $say->('221 bye');
            last;

        } else {
            $say->('502 5.5.2 what');
        }

        next unless defined $content;

        $trans = 0;
        $k++;
        my ($subject) = $content =~ /^Subject: (\S+)/m;

        if ($opts{script} && $n == 1 && $k == 3) {
            print $lf "$n: dropped $subject\n";
            $close->();
        }

        if ($content =~ /REJECTME/) {
            $say->('554 5.6.0 content refused');
            next;
        }

        $say->('250 2.0.0 queued');
        print $lf "$n: accepted $subject for @rcpts\n";

        $close->() if $opts{script} && $n == 2 && $k == 3;
    }

    close $c;
}

sub inject {
    my ($sender, $rcpts, $subject, $body) = @_;

    $body = "body of $subject\r\n" unless defined $body;

    return $t->inject('spool', $sender, join('', map { "rcpt $_\r\n" } @$rcpts),
        "Subject: $subject\r\n\r\n$body");
}

# count($file, qr//): the lines of the file that match

sub count {
    my ($file, $re) = @_;
    return scalar grep { /$re/ } split /\n/, $t->read_file($file);
}

sub spool_all {
    return map { $t->spool('spool', $_) } qw/ incoming active deferred /;
}

sub status {
    my ($rcpt) = @_;
    my @s = $t->read_file('error.log')
        =~ /to=<\Q$rcpt\E>, relay=\S+, delay=\d+, dsn=\S+, status=(\w+)/g;
    return join ',', @s;
}

my $log = 'error.log';

###############################################################################

# 30 messages through one connection to smtp-sink

inject('alice@client.example', ["m$_\@sink.example"], "sink$_")
    for 1 .. 30;

ok(wait_for(sub { count('sink.log', qr/smtp-sink: \.$/) == 30 }, 30),
    '30 messages reached smtp-sink');
ok(wait_for(sub { !spool_all() }, 10), 'the spool is empty');

is(count('sink.log', qr/: EHLO /), 1, 'over one connection');
is(count('sink.log', qr/: RSET$/), 0, 'no RSET');
is(scalar(grep { status("m$_\@sink.example") eq 'sent' } 1 .. 30), 30,
    'each one sent once');

my $sink = $t->port('sink');
my $pipelined = count($log, qr/delivery client: MAIL for \w+ pipelined after the end of data of \w+ to 127\.0\.0\.1:$sink$/);
ok($pipelined >= 15, "$pipelined pipelined after the end of data");
ok(count($log, qr/transaction of \w+ to 127\.0\.0\.1:$sink done, the pipelined \w+ follows/) >= 15,
    'the pipelined transactions follow');

###############################################################################

# refusals, each with its own result, with transactions pipelined

my @plan = (
    ['alice@client.example', ['p1@peer.example'], 'p1'],
    ['alice@client.example', ['ok2@peer.example', 'refuse2@peer.example',
        'soft2@peer.example'], 'p2'],
    ['alice@client.example', ['p3@peer.example'], 'p3'],
    ['alice@client.example', ['refuse4@peer.example'], 'p4'],
    ['alice@client.example', ['p5@peer.example'], 'p5'],
    ['badsender@client.example', ['p6@peer.example'], 'p6'],
    ['alice@client.example', ['p7@peer.example'], 'p7'],
    ['alice@client.example', ['p8@peer.example'], 'p8', "REJECTME\r\n"],
    ['alice@client.example', ['p9@peer.example'], 'p9'],
    ['alice@client.example', ['p10@peer.example'], 'p10'],
);

inject(@$_) for @plan;

ok(wait_for(sub {
    status('p10@peer.example') && status('p8@peer.example')
        && status('refuse4@peer.example') && status('p6@peer.example')
}, 20), 'results');

sleep 1;

for my $r (qw/ p1 ok2 p3 p5 p7 p9 p10 /) {
    is(status("$r\@peer.example"), 'sent', "$r sent once");
    is(count('peer.log', qr/accepted \w+ for \Q$r\E\@peer\.example$/), 1,
        "$r accepted once");
}

is(status('refuse2@peer.example'), 'bounced', 'refused recipient bounced');
like(status('soft2@peer.example'), qr/^deferred/, 'soft recipient deferred');
is(status('refuse4@peer.example'), 'bounced', 'only recipient refused');
is(status('p6@peer.example'), 'bounced', 'sender refused');
is(status('p8@peer.example'), 'bounced', 'content refused');
is(count('peer.log', qr/S: 503 5\.5\.1 nested/), 0, 'no MAIL inside a transaction');
ok(count('peer.log', qr/C: RSET$/) >= 1, 'RSET after an abandoned transaction');
ok(count($log, qr/pipelined after the end of data of \w+ to 127\.0\.0\.1:${\ $t->port('peer')}$/) >= 3,
    'pipelined');

###############################################################################

# the peer closes after the end of data with a pipelined transaction in
# flight: before its reply (the message is deferred, the pipelined one
# waits again and takes a new connection), and after it (the pipelined one
# takes a new connection)

my @closing = map { "c$_" } 1 .. 10;

inject('alice@client.example', ["$_\@close.example"], $_) for @closing;

ok(wait_for(sub { !grep { status("$_\@close.example") !~ /sent$/ } @closing },
    20), 'all delivered');

my ($dropped) = $t->read_file('close.log') =~ /^1: dropped (\w+)$/m;
ok($dropped, "$dropped dropped at its end of data");

for my $m (@closing) {
    is(count('close.log', qr/accepted \Q$m\E for/), 1, "$m accepted once");
    is(status("$m\@close.example"),
        $m eq ($dropped // '') ? 'deferred,sent' : 'sent', "$m results");
}

like($t->read_file($log),
    qr/to=<\Q$dropped\E\@close\.example>.*status=deferred, reply="4\.4\.2/,
    'dropped at the end of data: deferred');

my $close = $t->port('close');
ok(count($log, qr/delivery destination 127\.0\.0\.1:$close: pipelined \w+ waits again/) >= 1,
    'the pipelined one waited again');
ok(count($log, qr/a reused connection to 127\.0\.0\.1:$close failed/) >= 1,
    'the pipelined one took a new connection');
ok(count('close.log', qr/^3: C: EHLO/) == 1, 'three connections');

###############################################################################

# CHUNKING: MAIL and RCPT pipelined after BDAT LAST's content

inject('alice@client.example', ["k$_\@chunk.example"], "k$_") for 1 .. 6;
inject('alice@client.example', ['ok7@chunk.example', 'refuse7@chunk.example'],
    'k7');
inject('alice@client.example', ['refuse8@chunk.example'], 'k8');
inject('alice@client.example', ["k$_\@chunk.example"], "k$_") for 9 .. 12;

ok(wait_for(sub { status('k12@chunk.example') && status('refuse8@chunk.example') }, 20),
    'chunked results');
sleep 1;

for my $r ((map { "k$_" } 1 .. 6, 9 .. 12), 'ok7') {
    is(status("$r\@chunk.example"), 'sent', "$r sent");
    is(count('chunk.log', qr/accepted \w+ for \Q$r\E\@chunk\.example$/), 1,
        "$r accepted once");
}

is(status('refuse7@chunk.example'), 'bounced', 'chunked: refused recipient');
is(status('refuse8@chunk.example'), 'bounced', 'chunked: only recipient');
is(count('chunk.log', qr/S: 503 5\.5\.1 nested/), 0,
    'chunked: no MAIL inside a transaction');
ok(count('chunk.log', qr/C: BDAT \d+ LAST/) >= 11, 'BDAT used');
ok(count($log, qr/pipelined after the end of data of \w+ to 127\.0\.0\.1:${\ $t->port('chunk')}$/) >= 3,
    'chunked: pipelined');

###############################################################################

# LMTP to Dovecot: several messages pipelined, per-recipient replies

inject('alice@client.example', ['bob@example.com'], "l$_") for 1 .. 8;
inject('alice@client.example', ['bob@example.com', 'ghost@example.com'], 'l9');
inject('alice@client.example', ['bob@example.com'], "l$_") for 10 .. 12;

ok(wait_for(sub { $t->maildir_count($d, 'bob@example.com') == 12 }, 20),
    '12 messages in the mailbox');
ok(wait_for(sub { status('ghost@example.com') }, 10), 'ghost has a result');
like(status('ghost@example.com'), qr/^(bounced|deferred)/, 'ghost refused');
is(count($log, qr/to=<bob\@example\.com>.*status=sent/), 12, 'bob: 12 sent');
ok(count($log, qr/pipelined after the end of data of \w+ to 127\.0\.0\.1:$d->{lmtp}$/) >= 3,
    'LMTP: pipelined');

sleep 1;
is($t->maildir_count($d, 'bob@example.com'), 12, 'none twice');

$t->finish();

###############################################################################
