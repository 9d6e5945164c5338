#!/usr/bin/perl

# Operations endpoints: mail_plus_status (JSON) and mail_plus_metrics
# (Prometheus text).  Two Dovecot backends checked every second; one is
# stopped and shows down.  A good and a bad login through the module's own
# POP3 sessions move the login and session counters; messages submitted
# over SMTP move the accepted counter, one is delivered (sent) and one
# waits in deferred/ for the stopped backend.  Pool names that need
# escaping come out escaped in both formats.  Only GET and HEAD are
# answered.  Without a router zone the zone's facts are absent.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $da = $t->dovecot('a', users => { 'alice@example.com' => 'pwA' },
    login_processes => 1);
my $db = $t->dovecot('b', addr => '127.0.0.2',
    users => { 'bob@example.com' => 'pwB' }, login_processes => 1);

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
bob@example.com:{PLAIN}pwB:b
EOF

my $closed = $t->port('closed');

my $conf = <<"EOF";
%%LOAD_MODULES%%

worker_processes 2;

events {
}

mail {
    router_users         %%TESTDIR%%/users;
    router_auth_delay    0;
    ZONE

    router_pool a {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3} lmtp=$da->{lmtp};
    }

    router_pool b {
        server 127.0.0.2 imap=$db->{imap} pop3=$db->{pop3} lmtp=$db->{lmtp};
    }

    router_pool "odd\\"name\\\\x" {
        server 127.0.0.3 imap=$closed;
    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    router_proxy  on;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_retry_first 1s;
    queue_retry_max 2s;
    queue_scan_interval 300ms;
    queue_connect_timeout 2s;
    queue_helo_name mx.test;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_auth_plaintext on;
    }

    server {
        listen    127.0.0.1:%%PORT_pop3%%;
        protocol  pop3;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen  127.0.0.1:%%PORT_http%%;

        location = /auth {
            mail_router_auth;
        }

        location = /status {
            mail_plus_status;
        }

        location = /metrics {
            mail_plus_metrics;
        }
    }
}
EOF

(my $zoned = $conf) =~ s{ZONE}{router_zone  mailrouter:1m;
    router_health_check  interval=1s timeout=1s;};
(my $unzoned = $conf) =~ s{ZONE}{};

$t->write_file_expand('nginx.conf', $zoned);
$t->write_file_expand('nozone.conf', $unzoned);

$t->run();

###############################################################################

my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 10);
my $base = 'http://127.0.0.1:' . $t->port('http');

# status(): the JSON document, decoded, or undef

sub status {
    my $r = $http->get("$base/status");
    return undef unless $r->{success};
    return eval { decode_json($r->{content}) };
}

# metrics(): { 'name{labels}' => value }, with labels in their order, and
# the list of lines that do not parse; HELP and TYPE lines in {help},
# {type}

my $NAME = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LABEL = qr/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"/;
my $SAMPLE = qr/^($NAME)(\{$LABEL(?:,$LABEL)*\})? (-?[0-9]+(?:\.[0-9]+)?)$/;

sub metrics {
    my $r = $http->get("$base/metrics");
    my (%m, @bad, %help, %type);

    return { bad => ["status $r->{status}"] } unless $r->{success};

    for my $line (split /\n/, $r->{content}) {
        if ($line =~ /^# HELP ($NAME) \S/) {
            $help{$1}++;

        } elsif ($line =~ /^# TYPE ($NAME) (counter|gauge)\z/) {
            $type{$1} = $2;

        } elsif ($line =~ $SAMPLE) {
            $m{$1 . ($2 || '')} = $3;
            push @bad, "no TYPE before $line" unless $type{$1};

        } else {
            push @bad, $line;
        }
    }

    return { values => \%m, bad => \@bad, help => \%help, type => \%type,
        headers => $r->{headers} };
}

sub health {
    my ($s, $pool, $proto) = @_;

    my ($p) = grep { $_->{name} eq $pool } @{$s->{pools}};
    return {} unless $p;
    return $p->{servers}[0]{protocols}{$proto} || {};
}

###############################################################################

my $r = $http->get("$base/status");
is($r->{status}, 200, 'status answers');
like($r->{headers}{'content-type'}, qr{^application/json$}, 'as JSON');

my $s = eval { decode_json($r->{content}) };
ok($s, 'the JSON parses') or diag($@, $r->{content});

is($s->{zone}, 'mailrouter', 'the zone');
ok($s->{health_checks}, 'health checks on');
like($s->{nginx_version}, qr/^\d+\.\d+\.\d+$/, 'nginx version');
is_deeply([ sort map { $_->{name} } @{$s->{pools}} ],
    [ 'a', 'b', "odd\"name\\x" ], 'pools, a name with " and \\');

my $ha = health($s, 'a', 'imap');
is($ha->{address}, "127.0.0.1:$da->{imap}", 'address of a imap');
is_deeply([ sort keys %{$s->{pools}[0]{servers}[0]{protocols}} ],
    [ qw/ imap lmtp pop3 / ], 'the protocols of a server');

ok(wait_for(sub {
    my $s = status() or return;
    my $odd = health($s, "odd\"name\\x", 'imap');
    return health($s, 'a', 'pop3')->{state} eq 'up'
        && health($s, 'b', 'imap')->{state} eq 'up'
        && ($odd->{state} || '') eq 'down'
        && defined health($s, 'a', 'imap')->{last_check};
}, 10), 'backends up, the closed one down, checked');

$s = status();
my $now = time() * 1000;
cmp_ok(abs(health($s, 'a', 'imap')->{last_check} - $now), '<', 10000,
    'last check is a recent Unix time in ms');
is(health($s, 'a', 'imap')->{fails}, 0, 'a: no fails');
cmp_ok(health($s, 'a', 'imap')->{passes}, '>=', 1, 'a: passes');

is_deeply($s->{logins}, { map { $_ => 0 } qw/ attempts allowed denied
    locked tempfail / }, 'login counters at 0');
is_deeply($s->{sessions}, { imap => { started => 0, active => 0 },
    pop3 => { started => 0, active => 0 } }, 'session counters at 0');
is_deeply($s->{smtp}, { accepted => 0 }, 'nothing accepted');
is_deeply($s->{queue}, { incoming => 0, active => 0, deferred => 0,
    hold => 0, corrupt => 0 }, 'the queue is empty');

# a good and a bad login through the module's own POP3 session

my $c = MailPlus::Test::Client->new($t->port('pop3'));
like($c->getline(), qr/^\+OK/, 'pop3 banner');
$c->pop3('USER alice@example.com');
like($c->pop3('PASS pwA'), qr/^\+OK/, 'good login');

ok(wait_for(sub { (status() || {})->{sessions}{pop3}{active} == 1 }, 5),
    'one pop3 session active');

$c->pop3('QUIT');
$c->at_eof(5);

$c = MailPlus::Test::Client->new($t->port('pop3'));
$c->getline();
$c->pop3('USER alice@example.com');
like($c->pop3('PASS wrong'), qr/^-ERR/, 'bad login');
$c->pop3('QUIT');
$c->at_eof(5);

ok(wait_for(sub { (status() || {})->{sessions}{pop3}{active} == 0 }, 5),
    'no pop3 session active after QUIT');

$s = status();
is_deeply($s->{logins}, { attempts => 2, allowed => 1, denied => 1,
    locked => 0, tempfail => 0 }, 'login counters moved');
is_deeply($s->{sessions}{pop3}, { started => 1, active => 0 },
    'one pop3 session started');
cmp_ok($s->{throttle}{entries}, '>=', 1, 'a throttle entry for the failure');

# stop backend b: it shows down for every protocol

ok($t->stop_dovecot($db), 'backend b stopped');

ok(wait_for(sub {
    my $s = status() or return;
    return !grep { health($s, 'b', $_)->{state} ne 'down' }
        qw/ imap pop3 lmtp /;
}, 15), 'b down for imap, pop3 and lmtp');

$s = status();
is(health($s, 'a', 'imap')->{state}, 'up', 'a still up');
cmp_ok(health($s, 'b', 'imap')->{fails}, '>=', 1, 'b: fails counted');
is(health($s, 'b', 'imap')->{passes}, 0, 'b: no passes');

# SMTP: one message delivered to a, one deferred for b

sub submit {
    my ($rcpt, $subject) = @_;

    return $t->submit($t->port('smtp'), 'alice@example.com', [ $rcpt ],
        "From: alice\@example.com\r\nTo: $rcpt\r\nSubject: $subject\r\n\r\n"
        . "Hello.\r\n",
        auth => encode_base64("\0alice\@example.com\0pwA", ''));
}

like(submit('alice@example.com', 'to a'), qr/^250 /, 'submitted to alice');
like(submit('bob@example.com', 'to b'), qr/^250 /, 'submitted to bob');

ok(wait_for(sub {
    my $s = status() or return;
    return $s->{queue}{deferred} == 1 && $s->{deliveries}{sent} >= 1;
}, 15), 'one message deferred, one sent') or diag(explain(status()));

$s = status();
is($s->{smtp}{accepted}, 2, 'two messages accepted');
cmp_ok($s->{deliveries}{deferred}, '>=', 1, 'deferred deliveries counted');
is($s->{deliveries}{bounced}, 0, 'nothing bounced');
is($s->{queue}{deferred}, scalar $t->spool('spool', 'deferred'),
    'deferred/ counted as the spool holds it');
is($s->{queue}{incoming} + $s->{queue}{active}, 0,
    'nothing else in the queue');

# the same facts as metrics

# a retry may come between two requests: the delivery counters of the
# metrics lie between those of a status before and one after

my $s0 = status();

my $m = metrics();
is_deeply($m->{bad}, [], 'every metrics line parses');
like($m->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4$},
    'metrics content type');

my $v = $m->{values};

$s = status();

is($v->{mail_plus_login_attempts_total}, $s->{logins}{attempts},
    'mail_plus_login_attempts_total');

for my $k (qw/ allowed denied locked tempfail /) {
    is($v->{"mail_plus_logins_total{result=\"$k\"}"}, $s->{logins}{$k},
        "mail_plus_logins_total{result=\"$k\"}");
}

for my $name (qw/ mail_plus_login_attempts_total mail_plus_logins_total /) {
    is($m->{type}{$name}, 'counter', "$name is a counter");
    ok($m->{help}{$name}, "$name has HELP");
}

my $bl = "pool=\"b\",server=\"127.0.0.2\"";
is($v->{"mail_plus_backend_up{$bl,protocol=\"imap\","
    . "address=\"127.0.0.2:$db->{imap}\"}"}, 0, 'b imap down: 0');
is($v->{"mail_plus_backend_up{$bl,protocol=\"lmtp\","
    . "address=\"127.0.0.2:$db->{lmtp}\"}"}, 0, 'b lmtp down: 0');
is($v->{"mail_plus_backend_up{pool=\"a\",server=\"127.0.0.1\","
    . "protocol=\"pop3\",address=\"127.0.0.1:$da->{pop3}\"}"}, 1,
    'a pop3 up: 1');
is($v->{"mail_plus_backend_up{pool=\"odd\\\"name\\\\x\","
    . "server=\"127.0.0.3\",protocol=\"imap\","
    . "address=\"127.0.0.3:$closed\"}"}, 0, 'escaped pool label');
is($m->{type}{mail_plus_backend_up}, 'gauge', 'backend_up is a gauge');
ok(defined $v->{"mail_plus_backend_fails{$bl,protocol=\"imap\","
    . "address=\"127.0.0.2:$db->{imap}\"}"}, 'backend_fails');

is($v->{'mail_plus_sessions_total{protocol="pop3"}'}, 1, 'pop3 sessions');
is($v->{'mail_plus_sessions_total{protocol="imap"}'}, 0, 'imap sessions');
is($v->{'mail_plus_sessions_active{protocol="pop3"}'}, 0, 'active gauge');
is($v->{mail_plus_queue_accepted_total}, 2, 'accepted counter');
for my $k (qw/ sent deferred /) {
    my $n = $v->{"mail_plus_deliveries_total{status=\"$k\"}"} // -1;
    ok($n >= $s0->{deliveries}{$k} && $n <= $s->{deliveries}{$k},
        "$k deliveries") or diag("$n not within $s0->{deliveries}{$k}"
        . "..$s->{deliveries}{$k}");
}
is($v->{'mail_plus_deliveries_total{status="bounced"}'}, 0,
    'bounced deliveries');
is($v->{'mail_plus_queue_messages{queue="deferred"}'}, 1, 'deferred gauge');
is($v->{'mail_plus_queue_messages{queue="incoming"}'}, 0, 'incoming gauge');
is($v->{'mail_plus_queue_messages{queue="corrupt"}'}, 0, 'corrupt gauge');
is($v->{'mail_plus_queue_messages{queue="hold"}'}, 0, 'hold gauge');
is($m->{type}{mail_plus_queue_messages}, 'gauge', 'queue is a gauge');
is($v->{mail_plus_throttle_entries}, $s->{throttle}{entries},
    'throttle entries');
ok(defined $v->{"mail_plus_info{nginx=\"$s->{nginx_version}\"}"},
    'info line');

# methods

for my $path (qw/ status metrics /) {
    $r = $http->request('POST', "$base/$path", { content => 'x' });
    is($r->{status}, 405, "POST /$path: 405");

    $r = $http->request('HEAD', "$base/$path");
    is($r->{status}, 200, "HEAD /$path: 200");
    is($r->{content} // '', '', "HEAD /$path: no body");
    cmp_ok($r->{headers}{'content-length'}, '>', 0,
        "HEAD /$path: the length of the body");
}

# without a zone: no health, no counters, the queue still counted

$t->stop();
$t->run(conf => 'nozone.conf');

$s = status();
ok($s, 'no zone: the JSON parses');
is($s->{zone}, undef, 'no zone: zone null');
ok(!$s->{health_checks}, 'no zone: no health checks');
is(health($s, 'a', 'imap')->{state}, 'unknown', 'no zone: state unknown');
is($s->{logins}, undef, 'no zone: no login counters');
is($s->{sessions}, undef, 'no zone: no session counters');
is($s->{smtp}, undef, 'no zone: no accepted counter');
is($s->{deliveries}, undef, 'no zone: no delivery counters');
ok(defined $s->{queue}{deferred}, 'no zone: the queue counted');

$m = metrics();
is_deeply($m->{bad}, [], 'no zone: every metrics line parses');
ok(!grep(/_total|backend|throttle|sessions/, keys %{$m->{values}}),
    'no zone: no counters, no backend gauges')
    or diag(explain($m->{values}));
ok(defined $m->{values}{'mail_plus_queue_messages{queue="deferred"}'},
    'no zone: queue gauges');

$t->finish();

###############################################################################
