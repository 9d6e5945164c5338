#!/usr/bin/perl

# A backlog for a destination that is down: deferred/ holds it in buckets
# of that destination; once its connection failed, the destination is
# dead: its messages are neither claimed nor tried again before its next
# attempt, and other destinations are served meanwhile; a flush through
# the queue API (of that destination, or of all) delivers the backlog at
# once; at its next attempt a destination that is back gets its backlog
# without a flush; a file right in deferred/ (an older layout) is still
# delivered when due. A small queue_active_limit makes the backlog drain
# through many scans, claims of one still in flight when the next runs.

use warnings;
use strict;

use Test::More;
use HTTP::Tiny;
use JSON::PP qw/ decode_json /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

plan(skip_all => 'no smtp-sink') unless -x $MailPlus::Test::SMTP_SINK;

my $t = MailPlus::Test->new();

$t->smtp_sink('live');

my $conf = <<'EOF';
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    auth_http  127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_retry_first RETRY;
    queue_retry_max RETRY;
    queue_scan_interval 1s;
    queue_connect_timeout 3s;
    queue_active_limit 16;
    queue_helo_name mx.test;

    queue_route live.example 127.0.0.1:%%PORT_live%%;
    queue_relay_host 127.0.0.1:%%PORT_dead%% starttls=off;

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
    access_log off;

    server {
        listen 127.0.0.1:%%PORT_http%%;

        location /queue/ {
            mail_plus_queue_api;
        }
    }
}
EOF

(my $long = $conf) =~ s/RETRY/30m/g;

$t->write_file_expand('nginx.conf', $long);
$t->run();

my $dead = '127.0.0.1:' . $t->port('dead');
my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 10);
my $base = 'http://127.0.0.1:' . $t->port('http') . '/queue';

###############################################################################

sub submit {
    my ($rcpt, $subject) = @_;

    my $r = $t->submit($t->port('smtp'), 'a@client.example', [ $rcpt ],
        "Subject: $subject\r\n\r\nbody\r\n");

    return $r =~ /queued as ([0-9A-F]{22})/ ? $1 : undef;
}

sub api {
    my ($method, $path) = @_;

    my $r = $http->request($method, "$base$path");
    my $j = eval { decode_json($r->{content}) };

    return [ $r->{status}, $j ];
}

sub sunk {
    my ($name) = @_;
    my @m = ($t->read_file("$name.log") || '') =~ /smtp-sink: \.$/mg;
    return scalar @m;
}

# what the debug log says from an offset on

sub log_since {
    my ($from, $re) = @_;
    my $log = $t->read_file('error.log');
    my @m = substr($log, $from) =~ /$re/g;
    return scalar @m;
}

sub deferred { scalar $t->spool('spool', 'deferred') }

sub queued {
    return scalar map { $t->spool('spool', $_) }
        qw/ incoming active deferred /;
}

# 60 messages for the relay host, which is down

my $n = 0;

for my $i (1 .. 60) {
    $n++ if submit("x$i\@remote.example", "backlog $i");
}

is($n, 60, '60 messages queued');

ok(wait_for(sub { deferred() == 60 }, 20), 'all 60 deferred');

my @buckets = map { (split m{/})[-2] } $t->spool_files('spool', 'deferred');
my %keys = map { (split /\./)[1] => 1 } @buckets;

ok(!grep({ !/^[0-9a-f]{8}\.[0-9a-f]{8}\.[0-9a-f]{8}$/ } @buckets),
    'each in a bucket of deferred/');
is(scalar keys %keys, 1, 'the buckets of one destination');
ok(!$keys{'00000000'}, 'keyed by the destination');

like($t->read_file('error.log'),
    qr/destination \Q$dead\E is not reachable \([^)]+\), next attempt in 1800 s/,
    'the destination is dead, with its next attempt');

my $tried = log_since(0, qr/delivery destination \Q$dead\E: client started/);
cmp_ok($tried, '<=', 20, "at most one round of connections ($tried)");

# dead: nothing claimed, nothing tried, while others are served

my $from = length $t->read_file('error.log');

my @live = map { submit("y$_\@live.example", "live $_") } 1 .. 5;

ok(wait_for(sub { sunk('live') == 5 }, 10),
    'another destination is served meanwhile');

sleep 3;

is(log_since($from, qr/delivery destination \Q$dead\E: client started/), 0,
    'no connection to the dead destination');
is(log_since($from, qr/delivery [0-9A-F]{22}: claim$/m), 5,
    'only the new messages claimed');
is(deferred(), 60, 'the backlog waits');

# the next hop is back: nothing happens before the next attempt...

my $sink = $t->smtp_sink('dead');

sleep 2;

is(sunk('dead'), 0, 'nothing sent before the next attempt');

# ...or a flush

my $r = api('POST', '/flush?destination=127.0.0.2:25');
is($r->[0], 200, 'flush of another destination: 200');
is($r->[1]{flushed}, 0, 'none of its messages');
is($r->[1]{destination}, '127.0.0.2:25', 'the destination named');

$r = api('POST', '/flush?destination=' . $dead);
is($r->[0], 200, 'flush of the dead destination: 200');
is($r->[1]{flushed}, 60, 'its 60 messages due now');

ok(wait_for(sub { sunk('dead') == 60 }, 20), 'the backlog delivered');
ok(wait_for(sub { queued() == 0 }, 5), 'the spool is empty');

like($t->read_file('error.log'),
    qr/destination \Q$dead\E is reachable again/, 'alive again');
like($t->read_file('error.log'),
    qr/queue api: flush of destination \Q$dead\E: 60 messages due now/,
    'the flush logged');

ok(!grep({ -d $t->path("spool/deferred/$_") } @buckets),
    'the empty buckets removed');

# the API refuses what is not a flush

is(api('GET', '/flush')->[0], 405, 'GET flush: 405');
is(api('POST', '/flush?destination=a%0Ab')->[0], 400,
    'a control byte in the destination: 400');
is(api('POST', '/flush?destination=' . ('x' x 200))->[0], 400,
    'a long destination: 400');
is(api('POST', '/flush?destination=a%22b')->[0], 400, 'a quote: 400');

$r = api('POST', '/flush');
is($r->[0], 200, 'flush of everything: 200');
is($r->[1]{flushed}, 0, 'nothing deferred');
ok(exists $r->[1]{destination} && !defined $r->[1]{destination},
    'no destination named');

# a file right in deferred/, as earlier versions kept them, due at its mtime

my $old = sprintf('%08X%05X%06X%03X', time() - 10, 1, 0xFFFFF2, 1);
my $f = $t->path("spool/deferred/$old");
my ($uid, $gid) = (stat($t->path('spool/deferred')))[4, 5];

$t->write_file("spool/deferred/$old", "MAILPLUS-QUEUE 1\r\nid $old\r\n"
    . "arrival " . time() . "\r\nsender a\@client.example\r\n"
    . "rcpt z\@remote.example\r\nend\r\nSubject: flat\r\n\r\nflat\r\n");
chown $uid, $gid, $f;
utime time() - 5, time() - 5, $f;

ok(wait_for(sub { sunk('dead') == 61 }, 10), 'a flat deferred/ file sent');

# short retries: the dead destination is tried again at its next attempt,
# once a round, and takes its backlog when it is back

(my $short = $conf) =~ s/RETRY/2s/g;

$t->write_file_expand('nginx.conf', $short);
ok($t->reload(), 'reloaded with 2s retries');

kill 'KILL', $sink;
waitpid($sink, 0);

my $before = sunk('dead');

$n = 0;

for my $i (1 .. 20) {
    $n++ if submit("w$i\@remote.example", "again $i");
}

is($n, 20, '20 more queued');

ok(wait_for(sub { deferred() == 20 }, 20), 'all 20 deferred');

$from = length $t->read_file('error.log');

sleep 7;

my $probes = log_since($from,
    qr/delivery destination \Q$dead\E: client started/);
my $claims = log_since($from, qr/delivery [0-9A-F]{22}: claim$/m);

cmp_ok($probes, '>=', 2, "tried again at its next attempts ($probes)");
cmp_ok($probes, '<=', 6, 'one connection a round');
cmp_ok($claims, '<=', 8, "one message claimed a round ($claims)");

$t->smtp_sink('dead');

ok(wait_for(sub { sunk('dead') == $before + 20 }, 15),
    'delivered at the next attempt, without a flush');
ok(wait_for(sub { queued() == 0 }, 5), 'the spool is empty');

$t->finish();

###############################################################################
