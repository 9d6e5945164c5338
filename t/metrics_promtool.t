#!/usr/bin/perl

# The metrics checked by Prometheus's own tools.  nginx runs with every
# part that moves a series: a router zone with health checks, a Dovecot
# directory, IMAP and POP3 sessions of the module's own proxy to a real
# Dovecot, a failed login, an SMTP session into the queue, a delivery to
# the mailbox backend over LMTP and one to a relay host (Postfix's
# smtp-sink), and a message deferred for a destination that is down.
# The mail_plus_metrics output is then fed to "promtool check metrics"
# (Debian's prometheus package), which must print nothing: names, types,
# HELP texts, units and labels as Prometheus's naming guide asks.  The
# sample alerting rules of the guide pass "promtool check rules", and the
# sample Grafana dashboard is JSON whose every metric name is one that
# the live output has.

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

my $PROMTOOL = '/usr/bin/promtool';
my $ROOT = "$FindBin::Bin/..";
my $RULES = "$ROOT/docs/examples/mail-plus-alerts.yml";
my $DASHBOARD = "$ROOT/docs/examples/grafana-dashboard.json";

plan(skip_all => "$PROMTOOL not found (apt-get install prometheus)")
    unless -x $PROMTOOL;

my $t = MailPlus::Test->new();
my $dir = $t->testdir();

# Dovecot: alice is in the users file too, carol only in Dovecot's own
# passdb, asked through its auth-client socket

my $da = $t->dovecot('a', users => { 'alice@example.com' => 'pwA',
    'carol@example.com' => 'pwC' }, login_processes => 1, extra => <<"EOF");
service auth {
  unix_listener $dir/auth-client {
    mode = 0666
  }
}
EOF

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA
EOF

$t->smtp_sink('sink');

my $closed = $t->port('closed');

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 2;

events {
}

mail {
    router_users         %%TESTDIR%%/users;
    router_auth_delay    0;
    router_zone          mailrouter:1m;
    router_health_check  interval=1s timeout=1s;

    router_directory dovecot {
        auth  unix:%%TESTDIR%%/auth-client;
    }

    router_pool main {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3} lmtp=$da->{lmtp};
    }

    router_pool gone {
        server 127.0.0.3 imap=$closed;
    }

    router_default_pool  main;

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    queue_spool          %%TESTDIR%%/spool;
    queue_delivery       on;
    queue_relay_host     127.0.0.1:%%PORT_sink%% starttls=off;
    queue_route          down.example 127.0.0.1:$closed starttls=off;
    queue_retry_first    1m;
    queue_scan_interval  300ms;
    queue_connect_timeout 2s;
    queue_helo_name      mx.test;

    server {
        listen       127.0.0.1:%%PORT_smtp%%;
        protocol     smtp;
        server_name  mx.test;

        smtp_store_and_forward  on;
        smtp_local_domains      example.com;
        smtp_auth_plaintext     on;
    }

    server {
        listen        127.0.0.1:%%PORT_imap%%;
        protocol      imap;
        router_proxy  on;
    }

    server {
        listen        127.0.0.1:%%PORT_pop3%%;
        protocol      pop3;
        router_proxy  on;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen  127.0.0.1:%%PORT_http%%;

        location = /auth {
            mail_router_auth;
        }

        location = /metrics {
            mail_plus_metrics;
        }
    }
}
EOF

$t->run(log_level => 'info');

###############################################################################

my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 10);
my $base = 'http://127.0.0.1:' . $t->port('http');

# metrics(): the text, and { name => value } of its samples without labels
# summed over the labels

sub metrics {
    my $r = $http->get("$base/metrics");
    return ('', {}) unless $r->{success};

    my %sum;

    for my $line (split /\n/, $r->{content}) {
        next if $line =~ /^#/;
        my ($name, $value) = $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)\S* (\S+)$/
            or next;
        $sum{$name} += $value;
    }

    return ($r->{content}, \%sum);
}

# traffic: an IMAP session through the router to Dovecot (a login the
# users file knows), a POP3 one (a login only the directory knows), a
# failed login

my $c = MailPlus::Test::Client->new($t->port('imap'));
like($c->getline(), qr/^\* OK/, 'imap greeting');
like($c->imap('a1', 'LOGIN alice@example.com pwA'), qr/^a1 OK/m,
    'imap login through the router');
like($c->imap('a2', 'SELECT INBOX'), qr/^a2 OK/m, 'the backend answers');
$c->imap('a3', 'LOGOUT');
$c->at_eof(5);

$c = MailPlus::Test::Client->new($t->port('pop3'));
like($c->getline(), qr/^\+OK/, 'pop3 greeting');
$c->pop3('USER carol@example.com');
like($c->pop3('PASS pwC'), qr/^\+OK/, 'pop3 login of a directory user');
$c->pop3('QUIT');
$c->at_eof(5);

$c = MailPlus::Test::Client->new($t->port('pop3'));
$c->getline();
$c->pop3('USER alice@example.com');
like($c->pop3('PASS wrong'), qr/^-ERR/, 'a failed login');
$c->pop3('QUIT');
$c->at_eof(5);

# SMTP into the queue: one local recipient (LMTP to Dovecot), one for the
# relay host (smtp-sink), one for a destination that is down (deferred)

like($t->submit($t->port('smtp'), 'alice@example.com',
    [ 'alice@example.com', 'dave@remote.example', 'erin@down.example' ],
    "From: alice\@example.com\r\nSubject: metrics\r\n\r\nHello.\r\n",
    auth => encode_base64("\0alice\@example.com\0pwA", '')),
    qr/^250 /, 'a message queued over SMTP');

ok(wait_for(sub {
    my (undef, $m) = metrics();
    return ($m->{mail_plus_deliveries_total} || 0) >= 3
        && $m->{mail_plus_sessions_total} >= 2
        && defined $m->{mail_plus_backend_up};
}, 20), 'deliveries, sessions and backend health counted');

is($t->maildir_count($da, 'alice@example.com'), 1,
    'delivered to the mailbox');
like($t->read_file('sink.log'), qr/RCPT TO:<dave\@remote\.example>/i,
    'relayed to smtp-sink');

my ($text, $m) = metrics();
$t->write_file('metrics.txt', $text);

ok($m->{mail_plus_logins_total} && $m->{mail_plus_login_attempts_total},
    'login counters have samples');

###############################################################################

# promtool check metrics reads the exposition on its standard input and
# prints the problems it finds (and exits 1 when there are any)

sub run_cmd {
    my (@cmd) = @_;

    my $pid = open my $fh, '-|';
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec(@cmd) or POSIX::_exit(127);
    }

    local $/;
    my $out = <$fh>;
    close $fh;

    return ($? >> 8, defined $out ? $out : '');
}

my ($rc, $out) = run_cmd('sh', '-c',
    "$PROMTOOL check metrics < " . $t->path('metrics.txt'));
is($out, '', 'promtool check metrics: no problems') or diag($text);
is($rc, 0, 'promtool check metrics: exit 0');

# and promtool does find what the naming guide forbids: a counter
# without _total, a time in milliseconds

$t->write_file('bad.txt', "# HELP mail_plus_bad_ms A time.\n"
    . "# TYPE mail_plus_bad_ms counter\nmail_plus_bad_ms 1\n");
($rc, $out) = run_cmd('sh', '-c',
    "$PROMTOOL check metrics < " . $t->path('bad.txt'));
like($out, qr/_total/, 'promtool check metrics finds a bad counter name');

($rc, $out) = run_cmd($PROMTOOL, 'check', 'rules', $RULES);
is($rc, 0, 'promtool check rules: exit 0') or diag($out);
like($out, qr/SUCCESS: \d+ rules found/, 'promtool check rules: SUCCESS');

# every series the alerting rules and the dashboard name is in the live
# output (their families, without _bucket/_sum/_count of histograms)

my %families = map { $_ => 1 } $text =~ /^# TYPE (\S+) /mg;

my $rules = $t->read_file($RULES);
my @in_rules = $rules =~ /\b(mail_plus_[a-z0-9_]+)/g;
ok(@in_rules, 'the rules use mail_plus series');
is_deeply([ grep { !$families{$_} } sort keys %{{ map { $_ => 1 }
    @in_rules }} ], [], 'every series of the rules exists');

my $json = $t->read_file($DASHBOARD);
my $dash = eval { JSON::PP->new->decode($json) };
ok($dash, 'the dashboard is JSON') or diag($@);
ok(@{$dash->{panels} || []}, 'the dashboard has panels');

my @exprs;

for my $p (@{$dash->{panels} || []}) {
    push @exprs, map { $_->{expr} } grep { $_->{expr} }
        @{$p->{targets} || []};
}

ok(@exprs, 'the panels have queries');

for my $v (@{($dash->{templating} || {})->{list} || []}) {
    my $q = ref $v->{query} ? $v->{query}{query} : $v->{query};
    push @exprs, grep { defined } $q, $v->{definition};
}

my @in_dash = map { /\b(mail_plus_[a-z0-9_]+)/g } @exprs;
is_deeply([ grep { !$families{$_} } sort keys %{{ map { $_ => 1 }
    @in_dash }} ], [], 'every series of the dashboard exists');

# and every family of the output is on the dashboard

is_deeply([ grep { my $f = $_; !grep { $_ eq $f } @in_dash }
    sort keys %families ], [], 'every family is on the dashboard');

$t->finish();

###############################################################################
