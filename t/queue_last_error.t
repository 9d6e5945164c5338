#!/usr/bin/perl

# A recipient's last error, kept in the state file (docs/spool.md) and
# shown by the queue API and nginx-mailq.  The next hop is a small SMTP
# server of the test's own: it answers RCPT for defer@ with a 451 line
# full of hostile bytes (escape sequences, quotes, backslashes, a bare CR
# starting a forged field and a forged state line, NUL, bytes that are not
# UTF-8, a long text) and RCPT for fail@ with such a 550 line; it accepts
# everything else (the bounce to the sender), and defer@ too once told to.
# Checked: the state file keeps the error escaped and bounded, one line
# each, and every line of it is printable ASCII; the API gives the reply
# as valid JSON; nginx-mailq shows it escaped; the log lines escape it;
# the bounce's Diagnostic-Code is a clean line; the message is delivered
# when the next hop accepts.  A state file written by hand in the old
# format (no error lines), and one with malformed error lines, read.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw/ WNOHANG _exit /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $MAILQ = "$FindBin::Bin/../tools/nginx-mailq";

my $t = MailPlus::Test->new();

my $hostile = "4.7.1 \e[31mred\e[0m \"quoted\" back\\slash \\x41"
    . " cr\rX-Injected: yes\rerror forged\@x 1 4.0.0 - forged"
    . " nul\x00 bin\xff\xfe\xc2\x9b utf8-\xc3\xa9 " . ('long ' x 80);

# the next hop: one process, a connection at a time

my $hop_port = $t->port('hop');
my $hop_dir = $t->path('hop');
mkdir $hop_dir or die "mkdir: $!\n";

my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
    LocalPort => $hop_port, Listen => 5, ReuseAddr => 1)
    or die "listen: $!\n";

my $hop = fork();
die "fork: $!\n" unless defined $hop;

if ($hop == 0) {
    $SIG{PIPE} = 'IGNORE';
    $SIG{CHLD} = 'IGNORE';

    while (my $c = $listen->accept()) {
        my $pid = fork();
        _exit(1) unless defined $pid;

        if ($pid == 0) {
            hop_session($c);
            _exit(0);
        }

        close $c;
    }

    _exit(0);
}

# one SMTP session of the next hop; each message kept in a file, its
# recipients on the first line

sub hop_session {
    my ($c) = @_;
    my $n = 0;

    $c->autoflush(1);
    print $c "220 hop.test ESMTP\r\n";

    my ($data, @rcpts);

    while (defined(my $l = <$c>)) {
        if (defined $data) {
            if ($l ne ".\r\n") {
                $data .= $l;
                next;
            }

            open my $fh, '>', "$hop_dir/msg$$-" . $n++ . '.eml';
            print $fh join(' ', @rcpts), "\n", $data;
            close $fh;
            undef $data;
            @rcpts = ();
            print $c "250 2.0.0 accepted\r\n";
            next;
        }

        if ($l =~ /^EHLO/i) {
            print $c "250-hop.test\r\n250 8BITMIME\r\n";
        } elsif ($l =~ /^RCPT TO:<(defer|fail)\@/i
                 && ($1 eq 'fail' || !-e "$hop_dir/accept"))
        {
            print $c ($1 eq 'fail' ? '550 5.1.1' : '451') . " $hostile\r\n";
        } elsif ($l =~ /^RCPT TO:<([^>]*)>/i) {
            push @rcpts, $1;
            print $c "250 2.1.5 ok\r\n";
        } elsif ($l =~ /^DATA/i) {
            $data = '';
            print $c "354 go on\r\n";
        } elsif ($l =~ /^QUIT/i) {
            print $c "221 bye\r\n";
            last;
        } else {
            print $c "250 2.0.0 ok\r\n";
        }
    }

    close $c;
}

close $listen;

$t->write_file_expand('nginx.conf', <<'EOF');
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    auth_http  127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_retry_first 60s;
    queue_retry_max 60s;
    queue_scan_interval 300ms;
    queue_connect_timeout 2s;
    queue_helo_name mx.test;

    queue_route hostile.example 127.0.0.1:%%PORT_hop%%;
    queue_route bounce.example 127.0.0.1:%%PORT_hop%%;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains local.invalid;
        smtp_trusted_networks 127.0.0.0/8;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen  127.0.0.1:%%PORT_http%%;

        location /queue/ {
            mail_plus_queue_api;
        }
    }
}
EOF

$t->run();

###############################################################################

my $url = 'http://127.0.0.1:' . $t->port('http') . '/queue/';
my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 10);

sub api {
    my ($method, $path) = @_;
    my $r = $http->request($method, "$url$path");
    return [ $r->{status}, eval { JSON::PP->new->utf8->decode($r->{content}) }
        || {}, $r->{content} ];
}

sub mailq {
    my (@args) = @_;

    my $out = $t->path('mailq.out');

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        delete @ENV{grep { /^NGINX_MAILQ_/ } keys %ENV};
        $ENV{NGINX_MAILQ_CONF} = '/dev/null';
        open STDOUT, '>', $out or _exit(127);
        open STDERR, '>&', \*STDOUT or _exit(127);
        exec($^X, $MAILQ, '--url', $url, @args) or _exit(127);
    }

    my $status = -1;

    if (wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 60)) {
        $status = $? >> 8;
    } else {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }

    return [ $status, $t->read_file($out) ];
}

# the bytes that must not reach a terminal raw: ESC, BEL, C1, non-UTF-8

sub clean_output {
    my ($s) = @_;
    return $s !~ /[\x00-\x09\x0b-\x1f\x7f]/ && $s !~ /\xff|\xfe/
        && $s !~ /\xc2[\x80-\x9f]/;
}

# the bytes of an escaped field of the state file (docs/spool.md)

sub unescape {
    my ($s) = @_;
    $s =~ s/\\(?:\\|x([0-9A-Fa-f]{2}))/defined $1 ? chr(hex $1) : '\\'/ge;
    return $s;
}

my $r = $t->submit($t->port('smtp'), 'sender@bounce.example',
    [ 'defer@hostile.example', 'fail@hostile.example' ],
    "Subject: hostile\r\n\r\nbody\r\n");
my ($id) = $r =~ /queued as ([0-9A-F]{22})/;
ok($id, 'queued');

my $state = $t->path("spool/state/$id");

ok(wait_for(sub { -s $state && scalar grep { /\Q$id\E$/ }
    $t->spool_files('spool', 'deferred') }, 20), 'deferred, with a state');

my $text = $t->read_file($state);

unlike($text, qr/[^\x20-\x7e\n]/, 'the state file: printable ASCII lines');
like($text, qr/^done fail\@hostile\.example$/m, 'the bounced one is done');
unlike($text, qr/^(?!attempts |done |error )/m, 'no other line');
unlike($text, qr/^error forged/m, 'no forged line');

my @err = $text =~ /^error (\S+) (\d+) (\S+) (\S+) (.*)$/mg;
is(scalar @err, 5, 'one error line');
is($err[0], 'defer@hostile.example', 'error: the recipient');
ok(abs($err[1] - time()) < 60, 'error: the time');
is($err[2], '4.7.1', 'error: the status code');
is($err[3], "127.0.0.1:$hop_port", 'error: the relay');

# the reply as the client keeps it: the first line, 256 bytes at most

my $reply = substr("451 $hostile", 0, 256);
my $escaped = $err[4];

is(unescape($escaped), $reply, 'error: the reply, escaped reversibly');
ok(length(unescape($escaped)) <= 512, 'error: bounded');
like($escaped, qr/\\x1b\[31mred/, 'error: ESC escaped');
like($escaped, qr/back\\\\slash \\\\x41/, 'error: backslashes doubled');

# the queue API

my $api = api('GET', "messages/$id");
is($api->[0], 200, 'api: shown');
unlike($api->[2], qr/[\x00-\x09\x0b-\x1f]/, 'api: no raw control byte');

my ($d) = grep { $_->{address} eq 'defer@hostile.example' }
    @{$api->[1]{envelope}{recipients} || []};
my ($f) = grep { $_->{address} eq 'fail@hostile.example' }
    @{$api->[1]{envelope}{recipients} || []};

is($d->{state}, 'pending', 'api: pending');
is($d->{error}{time}, $err[1], 'api: error time');
is($d->{error}{dsn}, '4.7.1', 'api: error dsn');
is($d->{error}{relay}, "127.0.0.1:$hop_port", 'api: error relay');

my $want = $reply;
$want =~ s/\xff\xfe\xc2\x9b/\x{fffd}\x{fffd}\x{9b}/;
$want =~ s/\xc3\xa9/\x{e9}/;
is($d->{error}{reply}, $want,
    'api: the reply, invalid UTF-8 as U+FFFD, the rest as it was');
is($f->{state}, 'done', 'api: the bounced one done');
ok(!exists $f->{error}, 'api: no error for a recipient done');

# nginx-mailq

my $q = mailq();
is($q->[0], 0, 'list: exit 0');
like($q->[1], qr/^\ +defer\@hostile\.example\n\ +\(127\.0\.0\.1:$hop_port\ said:
    \ 451\ 4\.7\.1\ \\x1B\[31mred\\x1B\[0m\ "quoted"\ back\\\\slash/mx,
    'list: the last error, escaped');
ok(clean_output($q->[1]), 'list: clean output');

$q = mailq('show', $id);
like($q->[1], qr/^\ +last\ error:\ 127\.0\.0\.1:$hop_port\ said:\ 451
    \ 4\.7\.1\ \\x1B\[31mred/mx, 'show: the last error');
like($q->[1], qr/^ +error time: \w{3} /m, 'show: its time');
ok(clean_output($q->[1]), 'show: clean output');

$q = mailq('--json', 'show', $id);
my $j = eval { JSON::PP->new->decode($q->[1]) } || {};
my ($jd) = grep { $_->{address} eq 'defer@hostile.example' }
    @{$j->{messages}[0]{envelope}{recipients} || []};
is($jd->{error}{relay}, "127.0.0.1:$hop_port", 'show --json: the error');

# the log lines

my $log = $t->read_file('error.log');
ok($log =~ qr/to=<defer\@hostile\.example>.*status=deferred,\ reply="451
    \ 4\.7\.1\ \\x1b\[31mred\\x1b\[0m\ \\x22quoted\\x22\ back\\x5cslash
    \ \\x5cx41\ cr\\x0dX-Injected/x, 'log: the reply escaped');
ok($log !~ /[\x00\x1b\x07]/, 'log: no raw ESC, BEL or NUL');

# the bounce

my ($dsn) = grep { /^sender\@bounce\.example\n/ }
    map { $t->read_file($_) } glob("$hop_dir/*.eml");
ok($dsn, 'the bounce received');
$dsn //= '';

my ($diag) = $dsn =~ /^(Diagnostic-Code:[^\n]*)\n/m;
like($diag // '', qr/^Diagnostic-Code: smtp; 550 5\.1\.1 4\.7\.1 \?\[31mred/,
    'bounce: the Diagnostic-Code');
unlike($diag // '', qr/[^\x20-\x7e\r]|\r./, 'bounce: a printable line');
unlike($dsn, qr/^X-Injected/m, 'bounce: no field injected');
unlike($dsn, qr/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]/,
    'bounce: no control or 8-bit byte');
unlike($dsn, qr/\r(?!\n)/, 'bounce: no bare CR');

# an old state file, and malformed error lines: read, nothing lost

my $old = sprintf('%08X%05X%06X%03X', time(), 1, 0xFFFFE0, 1);
my ($uid, $gid) = (stat($t->path('spool/hold')))[4, 5];

$t->write_file("spool/state/$old", "attempts 3\ndone a\@hostile.example\n"
    . "error b\@hostile.example x 4.0.0 - not a time\n"
    . "error c\@hostile.example 1700000000 4.0.0 - raw \xff byte\n"
    . "error c\@hostile.example 1700000000 4.0.0 - bad \\q escape\n"
    . "error d\@hostile.example 1700000001 4.4.1 host.test:25 by"
    . " \\x22hand\\x22 \\\\ \\xc3\\xa9\n");
chown $uid, $gid, $t->path("spool/state/$old");

$t->write_file("spool/tmp/$old", "MAILPLUS-QUEUE 1\r\nid $old\r\n"
    . "arrival " . time() . "\r\nclient 127.0.0.1\r\nhelo test\r\n"
    . "login \r\nbody 7BIT\r\nsmtputf8 no\r\nsender old\@bounce.example\r\n"
    . join('', map { "rcpt $_\@hostile.example\r\n" } qw/ a b c d /)
    . "end\r\nSubject: held\r\n\r\nbody\r\n");
chown $uid, $gid, $t->path("spool/tmp/$old");
rename($t->path("spool/tmp/$old"), $t->path("spool/hold/$old"))
    or diag("rename: $!");

$api = api('GET', "messages/$old");
is($api->[0], 200, 'old state: shown');
is($api->[1]{attempts}, 3, 'old state: attempts');

my %rc = map { $_->{address} => $_ } @{$api->[1]{envelope}{recipients}};
is($rc{'a@hostile.example'}{state}, 'done', 'old state: done');
is($rc{'b@hostile.example'}{state}, 'pending', 'bad time: pending');
ok(!exists $rc{'b@hostile.example'}{error}, 'bad time: no error');
ok(!exists $rc{'c@hostile.example'}{error},
    'raw byte, bad escape: no error');
is($rc{'d@hostile.example'}{error}{reply}, "by \"hand\" \\ \x{e9}",
    'an error line by hand');

$api = api('POST', "messages/$old/release");
is($api->[0], 200, 'released');

ok(wait_for(sub { !-e $t->path("spool/state/$old")
    && !grep { /\Q$old\E$/ } map { $t->spool_files('spool', $_) }
        qw/ incoming deferred active hold / }, 20),
    'old state: the message delivered');
ok(scalar(grep { /^b\@hostile\.example c\@hostile\.example d\@/ }
    map { $t->read_file($_) } glob("$hop_dir/*.eml")),
    'old state: to the recipients not done');

# the next hop accepts: the message is delivered, not lost

$t->write_file('hop/accept', '');
is(api('POST', 'flush')->[0], 200, 'flushed');

ok(wait_for(sub { !-e $state && !grep { /\Q$id\E/ }
    map { $t->spool_files('spool', $_) } qw/ incoming deferred active / },
    20), 'delivered at last');
ok(scalar(grep { /^defer\@hostile\.example\n/ }
    map { $t->read_file($_) } glob("$hop_dir/*.eml")),
    'the next hop got it');

kill 'TERM', $hop;
waitpid($hop, 0);

$t->finish();

###############################################################################
