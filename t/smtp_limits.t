#!/usr/bin/perl

# SMTP store-and-forward: limits per client network.  Concurrent sessions
# per client network (smtp_client_sessions), counted with the prefix
# lengths of router_client_prefix (here /24 for IPv4: 127.0.0.1 and
# 127.0.0.2 are one client; IPv6 on ::1 counted apart), refused with 421
# 4.7.0 and closed, trusted networks not counted; failed logins are
# throttled per the same network; and memory stays flat through 100,000
# pipelined HELO/EHLO commands with long names.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;
use IO::Socket::IP;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

# under AddressSanitizer freed memory waits in a quarantine: none, so that
# the worker's RSS tells what the session keeps

$ENV{ASAN_OPTIONS} ||= 'detect_leaks=0:abort_on_error=1:quarantine_size_mb=0'
    if $ENV{MAIL_PLUS_PRELOAD};

my $ipv6 = IO::Socket::IP->new(Listen => 1, LocalHost => '::1',
    LocalPort => 0);
my $port6 = $t->port('smtp6', '127.0.0.1');
undef $ipv6 if $ipv6 && !IO::Socket::IP->new(Listen => 1,
    LocalHost => '::1', LocalPort => $port6, ReuseAddr => 1);

$t->write_file('users', <<'EOF');
alice:{PLAIN}secretA
EOF

my $listen6 = $ipv6 ? "listen [::1]:$port6;" : '';

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;
    router_zone   mail:1m;
    router_health_check off;
    router_address_fails 3;
    router_auth_max_delay 0;
    router_login_fails 100;
    router_client_prefix 24 64;

    router_pool a {
        server 127.0.0.1 imap=1;
    }

    auth_http 127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    server {
        listen 127.0.0.1:%%PORT_smtp%%; $listen6
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_auth_plaintext on;
        smtp_client_sessions 2;
        smtp_max_errors 1000;
    }

    server {
        listen 127.0.0.1:%%PORT_trusted%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_trusted_networks 127.0.0.0/8;
        smtp_client_sessions 1;
    }
}
EOF

$t->run();

###############################################################################

my $port = $t->port('smtp');

sub client {
    my (%o) = @_;
    return MailPlus::Test::Client->new($o{port} || $port, %o);
}

# two sessions from the network, the third refused

my $c1 = client();
like($c1->getline(), qr/^220 /, 'first session');
my $c2 = client(local => '127.0.0.2');
like($c2->getline(), qr/^220 /, 'second session, from 127.0.0.2');

my $c3 = client();
like($c3->getline(), qr/^421 4\.7\.0 .*too many connections/,
    'third session from 127.0.0.1 refused');
ok($c3->at_eof(), 'and closed');

my $c4 = client(local => '127.0.0.2');
like($c4->getline(), qr/^421 4\.7\.0 /,
    '127.0.0.2 is in the same /24: refused');

# a session that ends gives its place back

$c2->smtp('QUIT');
$c2->disconnect();

ok(wait_for(sub {
    my $c = client(quiet => 1) or return 0;
    my $ok = ($c->getline() || '') =~ /^220 /;
    $c->smtp('QUIT') if $ok;
    return $ok;
}, 5), 'place given back when a session ends');

# trusted networks are not counted

my @tr = map { client(port => $t->port('trusted')) } 1 .. 3;
is(scalar(grep { ($_->getline() || '') =~ /^220 / } @tr), 3,
    'trusted network: not counted');
$_->disconnect() for @tr;

# IPv6: counted apart from IPv4, one count for the /64

SKIP: {
    skip 'no IPv6 on ::1', 3 unless $ipv6;

    my @s = map {
        IO::Socket::IP->new(PeerHost => '::1', PeerPort => $port6,
            Timeout => 5)
    } 1 .. 3;

    my @g = map {
        my $s = $_;
        my $line = '';
        if ($s) {
            my $sel = IO::Select->new($s);
            if ($sel->can_read(5)) {
                sysread($s, $line, 512);
            }
        }
        $line;
    } @s;

    like($g[0], qr/^220 /, 'IPv6: first session');
    like($g[1], qr/^220 /, 'IPv6: second session (IPv4 has its own count)');
    like($g[2], qr/^421 4\.7\.0 /, 'IPv6: third session refused');

    close $_ for grep { $_ } @s;
}

$c1->smtp('QUIT');
$c1->disconnect();

# throttling counts failed logins by the same network

sub auth {
    my ($local, $login, $pass) = @_;

    my $c;
    wait_for(sub {
        $c = client(local => $local, quiet => 1) or return 0;
        return ($c->getline() || '') =~ /^220 /;
    }, 5) or return 'no session';

    $c->smtp('EHLO client.example');
    my $r = $c->smtp('AUTH PLAIN ' . encode_base64("\0$login\0$pass", ''));
    $c->smtp('QUIT');
    return $r;
}

like(auth('127.0.0.1', "u$_", 'wrong'), qr/^535 /, "failed login $_")
    for 1 .. 3;

like(auth('127.0.0.2', 'alice', 'secretA'), qr/^535 /,
    'locked out from 127.0.0.2: the same /24 failed 3 times');

###############################################################################

# memory: 100,000 HELO and EHLO with long names in one session, a MAIL
# transaction begun after every tenth

sub rss {
    my ($pid) = $t->workers();
    open my $fh, '<', "/proc/$pid/status" or return 0;
    my ($kb) = join('', <$fh>) =~ /^VmRSS:\s+(\d+) kB/m;
    return $kb;
}

my $c = client();
$c->getline();

my $name = 'h' . ('x' x 240) . '.example';
my $before;
my $replies = 0;

# under valgrind (make check-valgrind) a tenth of the rounds: it looks for
# memory errors, and RSS is valgrind's own

my $rounds = $MailPlus::Test::VALGRIND ? 10 : 100;

for my $round (1 .. $rounds) {
    my $cmds = '';
    for my $i (1 .. 1000) {
        $cmds .= ($i % 10 ? 'HELO ' : 'EHLO ') . "$name\r\n";

        # a transaction begun, then reset by the next HELO
        $cmds .= "MAIL FROM:<a\@remote.example>\r\n" if $i % 10 == 5;
    }
    $c->send($cmds, raw => 1);

    for my $i (1 .. 1100) {
        my $r = $c->smtp_reply();
        $replies++ if $r =~ /^250[ -]/;
    }

    $before = rss() if $round == 5;
}

my $after = rss();

is($replies, 1100 * $rounds, '100,000 HELO/EHLO and 10,000 MAIL answered');

SKIP: {
    skip "under valgrind the worker's RSS is valgrind's own", 1
        if $MailPlus::Test::VALGRIND;

    # the sanitizer's allocator keeps caches of its own: a little more room

    cmp_ok($after - $before, '<', $ENV{MAIL_PLUS_PRELOAD} ? 2048 : 512,
        "worker RSS flat: $before kB after 5,000, $after kB after 100,000");
}

# and through a transaction that RCPT, RSET and NOOP repeat

$c->smtp('MAIL FROM:<a@remote.example>');
$c->smtp('RCPT TO:<alice@example.com>') for 1 .. 200;
like($c->smtp('NOOP'), qr/^250 /, 'RCPT past the limit: the session goes on');
$c->smtp('QUIT');

$t->finish();

###############################################################################
