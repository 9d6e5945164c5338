#!/usr/bin/perl

# Delivery to relays: per-domain routes and the relay host, seen from a
# real smtp-sink: several messages share a connection (no RSET between), the
# per-destination concurrency limit holds, a 5xx from the relay bounces to
# the sender with the null sender, a 4xx defers and retries, and the
# content arrives dot-stuffed.

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

plan(skip_all => 'no smtp-sink') unless -x $MailPlus::Test::SMTP_SINK;

my $t = MailPlus::Test->new();

$t->smtp_sink('slow', '-w', '1');
$t->smtp_sink('hard', '-f', 'RCPT');
$t->smtp_sink('soft', '-r', 'RCPT');
$t->smtp_sink('relay');
$t->smtp_sink('rset', '-q', 'RSET');

$t->write_file_expand('nginx.conf', <<'EOF');
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    auth_http  127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_retry_first 1s;
    queue_retry_max 1s;
    queue_delay_warning 1s;
    queue_lifetime 5s;
    queue_scan_interval 300ms;
    queue_destination_concurrency 2;
    queue_idle_timeout 5s;
    queue_helo_name mx.test;

    queue_route slow.example 127.0.0.1:%%PORT_slow%%;
    queue_route .hard.example 127.0.0.1:%%PORT_hard%%;
    queue_route soft.example 127.0.0.1:%%PORT_soft%%;
    queue_route rset.example 127.0.0.1:%%PORT_rset%%;
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
EOF

$t->run();

###############################################################################

sub submit {
    my ($from, $rcpts, $subject) = @_;

    return $t->submit($t->port('smtp'), $from, $rcpts,
        "Subject: $subject\r\n\r\nbody\r\n..dot\r\n");
}

# connections(name): how many, and the most at once, from the sink's log

sub connections {
    my ($name) = @_;

    my ($now, $max) = (0, 0);

    # the harness's probe of the port is a connection without EHLO

    for (split /\n/, $t->read_file("$name.log")) {
        if (/: connect \(/) {
            $now++;
            $max = $now if $now > $max;
        }
        $now-- if /: disconnect$/;
    }

    return (count($name, qr/: EHLO /), $max);
}

sub count {
    my ($name, $re) = @_;
    my @m = $t->read_file("$name.log") =~ /$re/mg;
    return scalar @m;
}

sub spool_all {
    return map { $t->spool('spool', $_) } qw/ incoming active deferred /;
}

# concurrency and reuse: 8 messages, the sink waits 1s before each DATA

for my $i (1 .. 8) {
    like(submit('alice@client.example', ['x@slow.example'], "slow $i"),
        qr/^250 /, "slow $i queued");
}

ok(wait_for(sub { count('slow', qr/smtp-sink: \.$/m) == 8 }, 20),
    '8 messages reached the sink');

my ($n, $max) = connections('slow');
ok($n <= 2, "over $n connections");
is($max, 2, 'at most 2 at once');
is(count('slow', qr/: RSET$/m), 0, 'no RSET between complete transactions');

# a reused connection that fails before any reply: a new connection

like(submit('alice@client.example', ['x@rset.example'], 'rset 1'), qr/^250 /,
    'queued');
ok(wait_for(sub { count('rset', qr/smtp-sink: \.$/m) == 1 }, 10),
    'delivered');
like(submit('alice@client.example', ['x@rset.example'], 'rset 2'), qr/^250 /,
    'queued again');
ok(wait_for(sub { count('rset', qr/smtp-sink: \.$/m) == 2 }, 10),
    'delivered over a new connection after the reused one failed');
unlike($t->read_file('error.log'), qr/to=<x\@rset\.example>.*deferred/,
    'not deferred');

# the relay host, with pipelining

like(submit('alice@client.example', ['y@other.example', 'z@other.example'],
    'relayed'), qr/^250 /, 'queued for the relay host');

ok(wait_for(sub { count('relay', qr/smtp-sink: \.$/m) == 1 }, 10),
    'one transaction at the relay host');
is(count('relay', qr/RCPT TO:<[yz]\@other\.example>/), 2, 'two recipients');
like($t->read_file('relay.log'), qr/MAIL FROM:<alice\@client\.example> BODY=7BIT/,
    'MAIL FROM with BODY');

# 5xx: a bounce to the sender, from the null sender, via the relay host

like(submit('bob@client.example', ['x@a.hard.example'], 'hard'), qr/^250 /,
    'queued for the refusing relay');

ok(wait_for(sub { count('relay', qr/MAIL FROM:<>/) == 1 }, 10),
    'a bounce from the null sender');
like($t->read_file('relay.log'), qr/RCPT TO:<bob\@client\.example>/,
    'to the sender');
ok(wait_for(sub { !spool_all() }, 10), 'the spool is empty');
like($t->read_file('error.log'),
    qr/to=<x\@a\.hard\.example>, relay=127\.0\.0\.1:\d+, delay=\d+, dsn=5\.\d\.\d+, status=bounced/,
    'the log line of the failure');

# 4xx: deferred and retried, until the queue lifetime (not reached here)

like(submit('bob@client.example', ['x@soft.example'], 'soft'), qr/^250 /,
    'queued for the deferring relay');

ok(wait_for(sub { count('soft', qr/RCPT TO:<x\@soft\.example>/) >= 2 }, 10),
    'retried');
# (the delay warning may be in the queue too)

ok($t->spool('spool', 'deferred') + $t->spool('spool', 'active') >= 1,
    'still queued');

# a delay warning once, then the queue lifetime ends: a bounce

ok(wait_for(sub { $t->read_file('error.log') =~ /sender delay notification/ },
    10), 'a delay warning');

ok(wait_for(sub { count('relay', qr/MAIL FROM:<>/) == 3 }, 15),
    'the warning and the final bounce reached the sender');

like($t->read_file('error.log'),
    qr/to=<x\@soft\.example>, relay=\S+, delay=\d+, dsn=5\.4\.7, status=bounced/,
    'expired');

my @warnings = $t->read_file('error.log') =~ /sender delay notification/g;
is(scalar @warnings, 1, 'one delay warning');

ok(wait_for(sub { !spool_all() }, 10), 'the spool is empty');

# RFC 3461 parameters in the envelope (docs/spool.md): passed on to a next
# hop that offers DSN; NOTIFY=NEVER: no bounce

$t->inject('spool', 'carol@client.example', "ret HDRS\r\nenvid ENV123\r\n"
    . "rcpt y\@other.example\r\n"
    . "dsn NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Y\@other.example\r\n");

ok(wait_for(sub { $t->read_file('relay.log') =~ /carol/ }, 10),
    'injected message relayed');
like($t->read_file('relay.log'),
    qr/MAIL FROM:<carol\@client\.example> BODY=7BIT RET=HDRS ENVID=ENV123/,
    'RET and ENVID passed on');
like($t->read_file('relay.log'),
    qr/RCPT TO:<y\@other\.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Y\@other\.example/,
    'NOTIFY and ORCPT passed on');

my $bounces = count('relay', qr/MAIL FROM:<>/);

$t->inject('spool', 'dave@client.example', "rcpt never\@a.hard.example\r\n"
    . "dsn NOTIFY=NEVER\r\n");

ok(wait_for(sub {
    $t->read_file('error.log') =~ /to=<never\@a\.hard\.example>.*status=bounced/
}, 10), 'failed');
ok(wait_for(sub { !spool_all() }, 10), 'the spool is empty');
sleep 1;
is(count('relay', qr/MAIL FROM:<>/), $bounces, 'no bounce for NOTIFY=NEVER');
unlike($t->read_file('relay.log'), qr/RCPT TO:<dave/, 'none to dave');

$t->finish();

###############################################################################
