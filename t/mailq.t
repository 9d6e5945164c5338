#!/usr/bin/perl

# tools/nginx-mailq against a live nginx with a real queue, over the queue
# API's TCP location and over its UNIX-domain socket.  Messages to
# remote.example wait in deferred/ (the relay host's port is closed), one
# to soft.example too (its smtp-sink answers RCPT with 4xx); messages put
# into hold/ by hand have old arrival times (for the age filters and the
# summary's buckets) and a hostile envelope (escape sequences, a bell, a
# long address, bytes that are not UTF-8).  Checked: list (text and
# JSON), the filters, show, hold/release, delete with --dry-run first,
# summary, flush (delivered once the relay's smtp-sink runs), basic
# authentication, the exit statuses, and that nothing hostile reaches the
# terminal raw.  A fake API on a socket gives the answers nginx does not:
# bad JSON shapes, a chunked answer, an endless one, errors holding
# escape sequences.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use IO::Socket::INET;
use IO::Socket::UNIX;
use JSON::PP;
use POSIX qw/ WNOHANG _exit /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

plan(skip_all => 'no smtp-sink') unless -x $MailPlus::Test::SMTP_SINK;

my $MAILQ = "$FindBin::Bin/../tools/nginx-mailq";

my $t = MailPlus::Test->new();

$t->smtp_sink('soft', '-r', 'RCPT');

my $closed = $t->port('closed');

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

    queue_route soft.example 127.0.0.1:%%PORT_soft%%;
    queue_relay_host 127.0.0.1:%%PORT_relay%%;

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
        listen  unix:%%TESTDIR%%/queue.sock;

        location /queue/ {
            mail_plus_queue_api;
        }

        location /secure/ {
            auth_basic           "mail queue";
            auth_basic_user_file %%TESTDIR%%/htpasswd;

            mail_plus_queue_api;
        }

        location /html/ {
            return 200 "<html>not the API</html>";
        }
    }
}
EOF

$t->write_file('htpasswd', "mailq:{PLAIN}secret\n");
$t->run();

###############################################################################

my $url = 'http://127.0.0.1:' . $t->port('http') . '/queue/';
my $sock = $t->path('queue.sock');
my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 10);

# mailq([\%env, ]@args): [ exit status, stdout, stderr ] of the command,
# run with perl, within 60 seconds; the environment names no API but what
# %env says; every stderr is kept to look for Perl's warnings at the end

my $stderr_all = '';

sub mailq {
    my $env = ref $_[0] eq 'HASH' ? shift : {};
    my (@args) = @_;

    my ($out, $err) = ($t->path('mailq.out'), $t->path('mailq.err'));

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        delete @ENV{grep { /^NGINX_MAILQ_/ } keys %ENV};
        $ENV{NGINX_MAILQ_CONF} = '/dev/null';
        @ENV{keys %$env} = values %$env;
        open STDOUT, '>', $out or _exit(127);
        open STDERR, '>', $err or _exit(127);
        exec($^X, $MAILQ, @args) or _exit(127);
    }

    my $status;

    my $done = wait_for(sub {
        return 0 unless waitpid($pid, WNOHANG) == $pid;
        $status = $? >> 8;
        return 1;
    }, 60);

    if (!$done) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        $status = -1;
    }

    my $stderr = $t->read_file($err);
    $stderr_all .= $stderr;

    return [ $status, $t->read_file($out), $stderr ];
}

sub url { mailq('--url', $url, @_) }
sub unix { mailq('--socket', $sock, '--path', '/queue/', @_) }

sub json_of {
    my ($r) = @_;
    return eval { decode_json($r->[1]) } || {};
}

sub api {
    my ($path) = @_;
    my $r = $http->get("$url$path");
    return [ $r->{status}, eval { decode_json($r->{content}) } || {} ];
}

sub queue_of { api("messages/$_[0]")->[1]{queue} // 'gone' }

sub ids {
    my ($r) = @_;
    return join ' ', sort map { $_->{id} } @{json_of($r)->{messages} || []};
}

sub submit {
    my ($from, $rcpts, $subject) = @_;
    my $r = $t->submit($t->port('smtp'), $from, $rcpts,
        "Subject: $subject\r\n\r\nbody\r\n");
    return $r =~ /queued as ([0-9A-F]{22})/ ? $1 : undef;
}

# put_held($n, $arrival, $sender, @rcpts): a queue file made by hand in
# hold/, where no delivery takes it; its queue ID

sub put_held {
    my ($n, $arrival, $sender, @rcpts) = @_;

    my $id = sprintf('%08X%05X%06X%03X', time(), $n, 0xFFFFE0, $n);

    $t->write_file("spool/tmp/$id", "MAILPLUS-QUEUE 1\r\nid $id\r\n"
        . "arrival $arrival\r\nclient 127.0.0.1\r\nhelo test\r\n"
        . "login \r\nbody 7BIT\r\nsmtputf8 no\r\nsender $sender\r\n"
        . join('', map { "rcpt $_\r\n" } @rcpts)
        . "end\r\nSubject: held\r\n\r\nbody\r\n");

    my ($uid, $gid) = (stat($t->path('spool/hold')))[4, 5];
    chown $uid, $gid, $t->path("spool/tmp/$id");
    rename($t->path("spool/tmp/$id"), $t->path("spool/hold/$id"))
        or die "rename: $!\n";

    return $id;
}

# the bytes that must not reach a terminal raw: ESC, BEL, C1, non-UTF-8

sub clean_output {
    my ($s) = @_;
    return $s !~ /[\x00-\x09\x0b-\x1f\x7f]/ && $s !~ /\xff|\xfe/
        && $s !~ /\xc2[\x80-\x9f]/;
}

###############################################################################

my $m1 = submit('alice@client.example',
    [ 'x@remote.example', 'y@remote.example' ], 'one');
my $m2 = submit('bob@other.example', [ 'z@remote.example' ], 'two');
my $m3 = submit('alice@client.example', [ 'w@soft.example' ], 'three');
my $m4 = submit('', [ 'v@remote.example' ], 'bounce');

ok($m1 && $m2 && $m3 && $m4, 'four messages queued');

ok(wait_for(sub {
    my %d = map { (split m{/})[-1] => 1 } $t->spool_files('spool',
        'deferred');
    return 4 == grep { $d{$_} } $m1, $m2, $m3, $m4;
}, 20), 'all four deferred');

my $now = time();
my $h_old = put_held(1, $now - 3 * 86400, 'old@aged.example',
    'r@aged.example');
my $h_mid = put_held(2, $now - 30 * 60, 'mid@aged.example', 's@mid.example');

my $long = ('L' x 3000) . '@long.example';
my $h_evil = put_held(3, $now, "evil\e]0;owned\a\e[2J\@x.example",
    "a\e[31m\xc2\x9b1m\@evil.example", $long, "\xff\xfe\@bin.example");

my @all = sort $m1, $m2, $m3, $m4, $h_old, $h_mid, $h_evil;

# list, text, over HTTP

my $r = url();
is($r->[0], 0, 'list: exit 0');
like($r->[1], qr/^-Queue ID-+ --Size-- ----Arrival Time---- -Sender/,
    'list: the header');
like($r->[1], qr/-- \d+ Kbytes in 7 Requests\.\n\z/, 'list: the total line');

my $size = 0;
$size += $_->{size} for @{api('messages')->[1]{messages}};
my $kb = int(($size + 1023) / 1024);
like($r->[1], qr/-- $kb Kbytes in/, "list: $kb Kbytes");

like($r->[1], qr/^$m1\ +\d+\ \w\w\w\ \w\w\w\ [\ \d]\d\ \d\d:\d\d:\d\d
    \ \ alice\@client\.example\n
    \ +\(deferred\ for\ \d+s,\ \d+\ attempts?,
    \ next\ attempt\ in\ \d+s?m?\)\n
    \ +x\@remote\.example\n(?:\ +\(.*\)\n)?
    \ +y\@remote\.example\n/mx,
    'list: a deferred message, its state, its recipients');
like($r->[1], qr/^$m4  +\d+ .* MAILER-DAEMON$/m, 'list: the null sender');

# the last error of a pending recipient, as the state file keeps it: the
# smtp-sink's 4xx reply to RCPT, the relay host's closed port

my $soft = $t->port('soft');
like($r->[1], qr/^\ +w\@soft\.example\n
    \ +\(127\.0\.0\.1:$soft\ said:\ 4\d\d\ [^\n]+\)\n/mx,
    'list: the next hop\'s reply as the last error');
like($r->[1], qr/^\ +x\@remote\.example\n
    \ +\(4\.4\.1\ connect\ to\ the\ destination\ failed
    \ \(127\.0\.0\.1:\d+\)\)\n/mx,
    'list: our own reason as the last error');
like($r->[1], qr/^$h_old! /m, 'list: ! marks a held message');
like($r->[1], qr/^ +\(on hold for 3d0h\)\n +r\@aged\.example$/m,
    'list: how long held');
ok(clean_output($r->[1]), 'list: no control character reaches the output');
like($r->[1], qr/a\\x1B\[31m\\x9B1m\@evil\.example/,
    'list: escapes shown as \xNN');
like($r->[1], qr/\\xFF\\xFE\@bin\.example/, 'list: bytes not UTF-8 as \xNN');
like($r->[1], qr/^ +L{253}\.\.\.$/m, 'list: a long address cut');
ok(!grep({ length > 400 } split /\n/, $r->[1]), 'list: no line too long');

# list, JSON, over the socket

$r = unix('--json');
is($r->[0], 0, 'list --json over the socket: exit 0');
my $j = json_of($r);
is($j->{count}, 7, 'list --json: count');
is($j->{size}, $size, 'list --json: size');
is(ids($r), "@all", 'list --json: the IDs');
ok(!$j->{truncated}, 'list --json: not truncated');

my ($e1) = grep { $_->{id} eq $m1 } @{$j->{messages}};
is_deeply([ map { "$_->{address}=$_->{state}" } @{$e1->{recipients}} ],
    [ 'x@remote.example=pending', 'y@remote.example=pending' ],
    'list --json: recipients and states');
is($e1->{queue}, 'deferred', 'list --json: queue');
is($e1->{sender}, 'alice@client.example', 'list --json: sender');
cmp_ok($e1->{attempts}, '>=', 1, 'list --json: attempts');
ok(clean_output($r->[1]) && $r->[1] !~ /[^\x00-\x7f]/,
    'list --json: ASCII, control characters escaped');

my ($ev) = grep { $_->{id} eq $h_evil } @{$j->{messages}};
is($ev->{recipients}[0]{address}, "a\e[31m\x{9b}1m\@evil.example",
    'list --json: the hostile address as it is, escaped in JSON');
is($ev->{recipients}[1]{address}, $long, 'list --json: the long one whole');

# filters

my %filters = (
    'alice@client.example' => [ '--sender', 'ALICE@client.example' ],
    'other.example' => [ '--sender', '@other.example' ],
    'null sender' => [ '--sender', '<>' ],
    '@remote.example' => [ '--recipient', '@remote.example' ],
    'w@soft.example' => [ '--recipient', 'w@soft.example' ],
    'older than 1d' => [ '--older-than', '1d' ],
    'older than 20m' => [ '--older-than', '20m' ],
    'held' => [ '--held' ],
    'held, older than 1d' => [ '--held', '--older-than', '1d' ],
    'deferred, two senders' => [ '--queue', 'deferred', '--sender',
        '@other.example', '--sender', '<>' ],
);

my %expect = (
    'alice@client.example' => [ $m1, $m3 ],
    'other.example' => [ $m2 ],
    'null sender' => [ $m4 ],
    '@remote.example' => [ $m1, $m2, $m4 ],
    'w@soft.example' => [ $m3 ],
    'older than 1d' => [ $h_old ],
    'older than 20m' => [ $h_old, $h_mid ],
    'held' => [ $h_old, $h_mid, $h_evil ],
    'held, older than 1d' => [ $h_old ],
    'deferred, two senders' => [ $m2, $m4 ],
);

for my $name (sort keys %filters) {
    $r = url('list', '--json', @{$filters{$name}});
    is(ids($r), join(' ', sort @{$expect{$name}}), "list, $name");
}

$r = url('list', '--sender', 'nobody@nowhere.example');
is($r->[1], "No message matches.\n", 'list: nothing matches');

# show

$r = unix('show', $m1);
is($r->[0], 0, 'show: exit 0');
like($r->[1], qr/^Queue ID: +$m1$/m, 'show: the ID');
like($r->[1], qr/^Queue: +deferred$/m, 'show: the queue');
like($r->[1], qr/^Sender: +alice\@client\.example$/m, 'show: the sender');
like($r->[1], qr/^Attempts: +[1-9]/m, 'show: attempts');
like($r->[1], qr/^HELO: +client\.test$/m, 'show: HELO');
like($r->[1], qr/^Recipients:\n\ \ pending\ +x\@remote\.example\n
    (?:\ +(?:last\ error|error\ time):\ .*\n)*
    \ \ pending\ +y\@remote\.example\n/mx,
    'show: the recipients');

$r = url('show', $m3);
like($r->[1], qr/^\ \ pending\ +w\@soft\.example\n
    \ +last\ error:\ 127\.0\.0\.1:$soft\ said:\ 4\d\d\ .+\n
    \ +error\ time:\ \w{3}\ /mx, 'show: the last error and its time');

my $err = api("messages/$m3")->[1]{envelope}{recipients}[0]{error} || {};
like($err->{reply} // '', qr/^4\d\d /, 'api: the last reply');
like($err->{dsn} // '', qr/^4\.\d+\.\d+$/, 'api: its status code');
ok(abs(($err->{time} // 0) - time()) < 120, 'api: its time');

$r = url('show', $h_evil);
like($r->[1], qr/^Sender: +evil\\x1B\]0;owned\\x07\\x1B\[2J\@x\.example$/m,
    'show: a hostile sender escaped');
ok(clean_output($r->[1]), 'show: no control character reaches the output');

$r = url('show', '--json', $m3);
is(json_of($r)->{messages}[0]{envelope}{recipients}[0]{address},
    'w@soft.example', 'show --json');

$r = url('show', $m1, 'FFFFFFFFFFFFFFFFFFFFFF');
is($r->[0], 1, 'show: an unknown ID, exit 1');
like($r->[1], qr/^Queue ID: +$m1$/m, 'show: the known one shown');
like($r->[2], qr/FFFFFFFFFFFFFFFFFFFFFF: no such message/,
    'show: the unknown one said');

is(url('show', 'nonsense')->[0], 2, 'show: a bad ID, exit 2');

# summary, before anything is deleted

$r = url('summary');
is($r->[0], 0, 'summary: exit 0');
like($r->[1], qr/^ +T +5 +10 +20 +40 +80 +160 +320 +640 +1280 +1280\+$/m,
    'summary: the buckets of qshape');
like($r->[1], qr/^ +TOTAL +10 +8 +0 +0 +1 +0 +0 +0 +0 +0 +1$/m,
    'summary: the total row');
like($r->[1], qr/^ *remote\.example +4 +4 +0( +0){8}$/m,
    'summary: remote.example, four recipients');
like($r->[1], qr/^ +aged\.example +1 +0( +0){8} +1$/m,
    'summary: aged.example, 1280+');
like($r->[1], qr/^ +mid\.example +1 +0 +0 +0 +1( +0){6}$/m,
    'summary: mid.example, 20 to 40 minutes');
ok(clean_output($r->[1]), 'summary: no control character');

$j = json_of(unix('summary', '--json', '--by', 'sender'));
my %rows = map { $_->{domain} => $_ } @{$j->{domains} || []};
is($rows{'client.example'}{count}, 2, 'summary --by sender: messages');
is($rows{'MAILER-DAEMON'}{count}, 1, 'summary --by sender: the null sender');
is($j->{total}{count}, 7, 'summary --by sender: one a message');
is(scalar @{$j->{buckets}}, 10, 'summary --json: ten buckets');

# hold and release by filters, --dry-run first

$r = url('hold', '--sender', '@other.example', '--dry-run');
is($r->[0], 0, 'hold --dry-run: exit 0');
like($r->[1], qr/^$m2: would be placed on hold \(in deferred\/\)$/m,
    'hold --dry-run: what it would do');
is(queue_of($m2), 'deferred', 'hold --dry-run: nothing done');

$r = unix('hold', '--sender', '@other.example');
is($r->[0], 0, 'hold by sender: exit 0');
like($r->[1], qr/^Placed on hold: 1 message$/m, 'hold by sender: one');
is(queue_of($m2), 'hold', 'hold: the API shows it held');

$r = url('list');
like($r->[1], qr/^$m2! /m, 'list: now marked held');

$r = url('release', '--held', '--sender', '@other.example', '--json');
is($r->[0], 0, 'release by filters: exit 0');
is_deeply(json_of($r)->{done}, [ { id => $m2, from => 'hold' } ],
    'release --json: done');
isnt(queue_of($m2), 'hold', 'release: no longer held');
ok(wait_for(sub { queue_of($m2) eq 'deferred' }, 15),
    'released, tried, deferred again');

# hold and release by ID; an unknown ID is a partial failure

$r = url('hold', $m1, 'FFFFFFFFFFFFFFFFFFFFFF');
is($r->[0], 1, 'hold of a known and an unknown ID: exit 1');
like($r->[1], qr/^$m1: placed on hold \(was in deferred\/\)$/m,
    'hold: the known one held');
like($r->[2], qr/FFFFFFFFFFFFFFFFFFFFFF: no such message/,
    'hold: the unknown one said');
is(queue_of($m1), 'hold', 'hold by ID');

$r = url('hold', $m1);
is($r->[0], 1, 'hold of a held message: exit 1');
like($r->[2], qr/$m1: the message is in hold\//, 'hold: why');
$r = url('hold', '--dry-run', $m1);
is($r->[0], 1, 'hold --dry-run of a held message: exit 1');
like($r->[2], qr/$m1: the message is in hold\//, 'hold --dry-run: why');

is(unix('release', lc $m1)->[0], 0, 'release by ID (lower case)');
ok(wait_for(sub { queue_of($m1) eq 'deferred' }, 15),
    'released, deferred again');

# delete by filter, --dry-run first; by ID

$r = url('delete', '--recipient', 'w@soft.example', '--dry-run');
is($r->[0], 0, 'delete --dry-run: exit 0');
like($r->[1],
    qr/^$m3: would be deleted \(in deferred\/\)\nWould delete: 1 message$/m,
    'delete --dry-run: what it would do');
is(queue_of($m3), 'deferred', 'delete --dry-run: nothing deleted');

$r = url('delete', '--recipient', 'w@soft.example');
is($r->[0], 0, 'delete by recipient: exit 0');
like($r->[1], qr/^Deleted: 1 message$/m, 'delete by recipient: one');
is(queue_of($m3), 'gone', 'deleted: the API knows it no more');

$r = unix('delete', '--json', $h_mid);
is($r->[0], 0, 'delete by ID: exit 0');
is(json_of($r)->{done}[0]{from}, 'hold', 'delete --json: from hold/');

$r = url('delete', $h_mid);
is($r->[0], 1, 'delete twice: exit 1');
like($r->[2], qr/$h_mid: no such message/, 'delete twice: why');

is(url('delete')->[0], 2, 'delete without IDs or filters: exit 2');
is(url('delete', '--all', $h_old)->[0], 2, 'delete IDs and --all: exit 2');

$r = url('delete', '--all', '--held', '--dry-run', '--json');
is(join(' ', sort map { $_->{id} } @{json_of($r)->{done}}),
    join(' ', sort $h_old, $h_evil), 'delete --all --held --dry-run --json');
ok(json_of($r)->{dry_run}, 'delete --json: dry_run');

# flush: the relay comes up

$t->smtp_sink('relay');

$r = url('flush');
is($r->[0], 0, 'flush: exit 0');
like($r->[1], qr/^Flushed: 3 deferred messages due now$/m, 'flush: three');

ok(wait_for(sub {
    my $l = json_of(url('list', '--json'));
    return ids([ 0, encode_json($l) ]) eq join(' ', sort $h_old, $h_evil);
}, 20), 'flush: delivered, only the held ones are left');

my @data = $t->read_file('relay.log') =~ /smtp-sink: \.$/mg;
is(scalar @data, 3, 'the relay got three messages');

$r = unix('flush', '--json', '--destination', '127.0.0.1:'
    . $t->port('relay'));
is(json_of($r)->{flushed}, 0, 'flush --destination --json');

is(url('flush', $m1)->[0], 2, 'flush of an ID: exit 2');
is(url('flush', '--destination', 'a b')->[0], 2, 'a bad destination: 2');

# usage errors and an API that cannot be used

is(url('--frobnicate')->[0], 2, 'an unknown option: exit 2');
is(url('frobnicate')->[0], 2, 'an unknown command: exit 2');
is(url('list', '--older-than', '2x')->[0], 2, 'a bad age: exit 2');
is(mailq('--url', $url, '--socket', $sock)->[0], 2,
    '--url and --socket: exit 2');
is(mailq('--config', $t->path('none.conf'))->[0], 2,
    'a configuration file missing: exit 2');

$r = mailq('--url', "http://127.0.0.1:$closed/queue/");
is($r->[0], 3, 'the API down: exit 3');
like($r->[2], qr/cannot reach/, 'the API down: said');

$r = mailq('--socket', $t->path('none.sock'), '--json');
is($r->[0], 3, 'no socket: exit 3');
ok(json_of($r)->{error}, 'no socket: a JSON error');

$r = mailq('--url', 'http://127.0.0.1:' . $t->port('http') . '/html/');
is($r->[0], 3, 'not the API: exit 3');
like($r->[2], qr/not JSON/, 'not the API: said');

# basic authentication

my $secure = 'http://127.0.0.1:' . $t->port('http') . '/secure/';

$r = mailq('--url', $secure);
is($r->[0], 3, 'auth_basic, no user: exit 3');
like($r->[2], qr/access denied \(401\)/, 'auth_basic, no user: said');
is(mailq({ NGINX_MAILQ_PASSWORD => 'wrong' }, '--url', $secure, '--user',
    'mailq')->[0], 3, 'auth_basic, a wrong password: exit 3');
$r = mailq({ NGINX_MAILQ_PASSWORD => 'secret' }, '--url', $secure,
    '--user', 'mailq', '--json');
is(json_of($r)->{count}, 2, 'auth_basic, --user and NGINX_MAILQ_PASSWORD');

# an API that does not answer: bounded by --timeout

my $mute = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
    LocalPort => $t->port('mute'), ReuseAddr => 1) or die "listen: $!\n";
my $mute_unix = IO::Socket::UNIX->new(Listen => 1,
    Local => $t->path('mute.sock')) or die "listen: $!\n";

my $start = time();
$r = mailq('--url', 'http://127.0.0.1:' . $t->port('mute') . '/queue/',
    '--timeout', '1');
is($r->[0], 3, 'no answer over HTTP: exit 3');
$r = mailq('--socket', $t->path('mute.sock'), '--timeout', '1');
is($r->[0], 3, 'no answer over the socket: exit 3');
like($r->[2], qr/timed out/, 'no answer over the socket: timed out');
cmp_ok(time() - $start, '<', 20, 'both within their timeouts');

close $mute;
close $mute_unix;

# answers that are not right: a fake API on a socket, one answer a
# connection

my $n_fake = 0;

# fake(@answers): runs the command against a server that gives these
# answers (the raw bytes after the headers' Content-Type; "HUGE" for an
# endless JSON body); [ exit status, stdout, stderr ]

sub fake {
    my ($answers, @args) = @_;

    my $path = $t->path('fake' . $n_fake++ . '.sock');
    my $l = IO::Socket::UNIX->new(Listen => 5, Local => $path)
        or die "listen: $!\n";

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        $SIG{PIPE} = 'IGNORE';
        alarm(30);

        for my $a (@$answers) {
            my $c = $l->accept() or _exit(1);
            my $req = '';
            while ($req !~ /\r\n\r\n/) {
                sysread($c, $req, 4096, length $req) or last;
            }

            if ($a eq 'HUGE') {
                print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json"
                    . "\r\n\r\n[";
                my $chunk = '1,' x 32768;
                for (1 .. 1500) {
                    print $c $chunk or last;
                }
            } else {
                print $c "HTTP/1.1 $a";
            }

            close $c;
        }

        _exit(0);
    }

    close $l;

    my $r = mailq('--socket', $path, @args);

    if (!wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 10)) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }

    return $r;
}

my $json_head = "Content-Type: application/json\r\nConnection: close\r\n";

$r = fake([ "200 OK\r\n$json_head\r\n{\"messages\":\"nope\",\"total\":1}" ]);
is($r->[0], 3, 'a listing that is not a list: exit 3');
like($r->[2], qr/unexpected answer/, 'a listing that is not a list: said');

$r = fake([ "200 OK\r\n$json_head\r\n{\"messages\":[{\"id\":\"../x\","
    . "\"queue\":\"hold\",\"size\":1}],\"total\":1}" ]);
is($r->[0], 3, 'a listing with a bad ID: exit 3');

$r = fake([ "200 OK\r\n$json_head\r\n{\"messages\":[" ]);
is($r->[0], 3, 'JSON cut short: exit 3');

$r = fake([ "200 OK\r\nContent-Type: application/json\r\n"
    . "Transfer-Encoding: chunked\r\n\r\n"
    . "5\r\n{\"mes\r\n1e\r\nsages\":[],\"total\":0,\"count\":0}\r\n"
    . "0\r\n\r\n" ]);
is($r->[0], 0, 'a chunked answer: exit 0');
is($r->[1], "Mail queue is empty\n", 'a chunked answer: read');

$r = fake([ 'HUGE' ], '--timeout', '30');
is($r->[0], 3, 'an endless answer: exit 3');
like($r->[2], qr/larger than/, 'an endless answer: said');

$r = fake([ "404 Not Found\r\n$json_head\r\n"
    . "{\"error\":\"no\\u001b[2J such\\u0007 message\"}" ],
    'show', $m1);
is($r->[0], 1, 'an unknown ID: exit 1');
like($r->[2], qr/^nginx-mailq: $m1: no\\x1B\[2J such\\x07 message$/m,
    'an error of the API escaped');
ok(clean_output($r->[2]), 'no control character on stderr');

# a recipient's last error, when the API gives one

my $fid = '6B0D4B4E0E4AD004E3A008';
my $fake_list = encode_json({ messages => [ { id => $fid,
    queue => 'deferred', size => 900, sender => 'a@b.example',
    recipients => 1, arrival => time(), next_attempt => undef } ],
    total => 1, count => 1 });
my $fake_show = encode_json({ id => $fid, queue => 'deferred', size => 900,
    next_attempt => undef, attempts => 2, warned => JSON::PP::false,
    envelope => { sender => 'a@b.example', recipients => [ {
        address => 'c@d.example', state => 'pending',
        error => "451 4.3.0 \e[5mtry later" } ] } });

$r = fake([ "200 OK\r\n$json_head\r\n$fake_list",
    "200 OK\r\n$json_head\r\n$fake_show" ]);
is($r->[0], 0, 'a last error: exit 0');
like($r->[1], qr/^ +c\@d\.example\n +\(451 4\.3\.0 \\x1B\[5mtry later\)$/m,
    'a last error under its recipient, escaped');

$r = fake([ "502 Bad Gateway\r\n$json_head\r\n{\"error\":\"x\"}" ]);
is($r->[0], 3, 'a status of no API: exit 3');

# where the API is: the environment, the configuration file

$t->write_file('mailq.conf', "# test\nsocket = $sock\npath /queue/\n");
$r = mailq('--config', $t->path('mailq.conf'), '--json');
is(json_of($r)->{count}, 2, 'the configuration file names the socket');

$t->write_file('secure.conf', "url $secure\nuser mailq\npassword = secret\n");
$r = mailq('--config', $t->path('secure.conf'), '--json');
is(json_of($r)->{count}, 2, 'the configuration file: url, user, password');

$r = mailq({ NGINX_MAILQ_URL => "unix:$sock:/queue/" }, '--json');
is(json_of($r)->{count}, 2, 'NGINX_MAILQ_URL in nginx\'s unix: notation');

$t->write_file('bad.conf', "colour blue\n");
is(mailq('--config', $t->path('bad.conf'))->[0], 2,
    'a configuration file not understood: exit 2');

unlike($stderr_all, qr/ at \S+ line \d+/, 'no Perl warning or error');

$t->finish();

###############################################################################
