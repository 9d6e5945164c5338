#!/usr/bin/perl

# Sessions handled by the module ("router_proxy on"): failover to the next
# server of the ring, the temporary error when none answers, the client's
# address forwarded to Dovecot (IMAP ID, POP3 XCLIENT, PROXY protocol),
# session limits, IMAP ID before login, IDLE past the stock timeout, the
# idle timeout after login, and the log line of a session.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;
use POSIX ();
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

my @fo = map { "fo$_" } 1 .. 12;
my @sl = map { "sl$_" } 1 .. 2;
my @bd = map { "bd$_" } 1 .. 4;
my %users = map { $_ => 'secret' } @fo, @sl, @bd,
    qw/ dead1 nat1 pp1 pq1 lim1 idle1 /;

my $d = $t->dovecot('a', users => \%users, haproxy => 1);

# ports with nothing listening: two loopback addresses of their own

my $closed = $t->port('closed', '127.0.0.5');
my $closed2 = $t->port('closed2', '127.0.0.6');

# a server that accepts and never greets (the kernel's backlog), and one
# that greets wrongly; their weight puts nearly every user on them first

my $silent = $t->port('silent', '127.0.0.7');
my $silent_sock = IO::Socket::INET->new(LocalAddr => "127.0.0.7:$silent",
    Listen => 64, ReuseAddr => 1) or die "listen: $!\n";

my $bad = $t->port('bad', '127.0.0.8');
my $bad_sock = IO::Socket::INET->new(LocalAddr => "127.0.0.8:$bad",
    Listen => 64, ReuseAddr => 1) or die "listen: $!\n";

my $badpid = fork();
die "fork: $!\n" unless defined $badpid;

if ($badpid == 0) {
    while (my $c = $bad_sock->accept()) {
        print $c "-ERR go away\r\n";
        close $c;
    }
    POSIX::_exit(0);
}

push @{$t->{daemons}}, $badpid;
close $bad_sock;

$t->write_file('users', join('', map {
    my $pool = /^fo/ ? 'fo' : /^dead/ ? 'dead' : /^nat/ ? 'nat'
        : /^pp/ ? 'pp' : /^pq/ ? 'pq' : /^sl/ ? 'sl' : /^bd/ ? 'bd' : 'a';
    "$_:{PLAIN}secret:$pool\n"
} sort keys %users));

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%TESTDIR%%/users;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    router_pool fo {
        server 127.0.0.5 imap=$closed pop3=$closed;
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    router_pool dead {
        server 127.0.0.5 imap=$closed pop3=$closed;
        server 127.0.0.6 imap=$closed2 pop3=$closed2;
    }

    router_pool sl {
        server 127.0.0.7 imap=$silent pop3=$silent weight=100;
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    router_pool bd {
        server 127.0.0.8 imap=$bad pop3=$bad weight=100;
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    router_pool nat {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
        forward native;
    }

    router_pool pp {
        server 127.0.0.1 imap=$d->{imap_pp} pop3=$d->{pop3_pp};
        forward proxy_protocol;
    }

    router_pool pq {
        server 127.0.0.1 imap=$d->{imap_pp} pop3=$d->{pop3_pp};
        forward proxy_protocol_v2;
    }

    router_default_pool  a;
    router_auth_delay    0;

    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;

    router_proxy                  on;
    router_proxy_user_sessions    2;
    router_proxy_connect_timeout  1s;

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        imap_auth  login plain;
        timeout    2s;
    }

    server {
        listen     127.0.0.1:%%PORT_pop3%%;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:%%PORT_imap_lim%%;
        protocol   imap;
        router_proxy_client_sessions  2;
    }

    server {
        listen     127.0.0.1:%%PORT_imap_short%%;
        protocol   imap;
        router_proxy_timeout  2s;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen  unix:%%TESTDIR%%/auth.sock;

        location = /auth {
            mail_router_auth;
        }
    }
}
EOF

$t->run(log_level => 'info');

my $log;

sub imap {
    my ($user, %opts) = @_;

    my $s = MailPlus::Test::Client->new($t->port($opts{port} || 'imap'),
        %opts) or return;
    $s->getline() =~ /^\* OK/ or return;

    my $r = $s->imap('a1', "LOGIN $user secret");
    return wantarray ? ($s, $r) : ($r =~ /^a1 OK/m ? $s : undef);
}

sub pop3 {
    my ($user, %opts) = @_;

    my $s = MailPlus::Test::Client->new($t->port('pop3'), %opts) or return;
    $s->getline() =~ /^\+OK/ or return;
    $s->pop3("USER $user");

    my $r = $s->pop3('PASS secret');
    return wantarray ? ($s, $r) : ($r =~ /^\+OK/ ? $s : undef);
}

###############################################################################

# failover: the pool's first server has nothing listening; every user
# logs in, including those the ring puts on the dead server first

my @ok = grep { my $s = imap($_); $s && $s->imap('a2', 'LOGOUT') } @fo;
is(scalar @ok, scalar @fo, 'imap failover: every user logs in');

@ok = grep { my $s = pop3($_); $s && $s->pop3('QUIT') } @fo;
is(scalar @ok, scalar @fo, 'pop3 failover: every user logs in');

like($t->read_file('error.log'),
    qr/backend 127\.0\.0\.5:$closed (refused|closed or failed)/,
    'closed server was tried and skipped');

# a server that does not greet in time, one that greets wrongly: skipped

@ok = grep { my $s = imap($_); $s && $s->imap('a2', 'LOGOUT') } @sl, @bd;
is(scalar @ok, @sl + @bd, 'imap: silent and wrong servers skipped');

@ok = grep { my $s = pop3($_); $s && $s->pop3('QUIT') } @sl, @bd;
is(scalar @ok, @sl + @bd, 'pop3: silent and wrong servers skipped');

$log = $t->read_file('error.log');
like($log, qr/backend 127\.0\.0\.7:$silent timed out/,
    'silent server timed out');
like($log, qr/backend 127\.0\.0\.8:$bad sent unexpected "-ERR go away"/,
    'wrong greeting');

# all servers closed: the temporary error, the session goes on

my ($s, $r) = imap('dead1');
like($r, qr/^a1 NO \[UNAVAILABLE\]/m, 'imap all closed: temporary error');
like($s->imap('a2', 'NOOP'), qr/^a2 OK/m, 'imap session goes on');
like($s->imap('a3', 'LOGIN fo1 secret'), qr/^a3 OK/m,
    'imap login after failure');

($s, $r) = pop3('dead1');
like($r, qr/^-ERR \[SYS\/TEMP\]/, 'pop3 all closed: temporary error');
like($s->pop3('NOOP'), qr/^\+OK/, 'pop3 session goes on');

# client address forwarding: the client comes from 127.0.0.2, nginx
# reaches Dovecot from 127.0.0.1

$s = imap('nat1', local => '127.0.0.2');
ok($s, 'imap forward native: login');
like($s->imap('a2', 'SELECT INBOX'), qr/^a2 OK/m, 'imap forward: select');
$s->imap('a3', 'LOGOUT');

$s = pop3('nat1', local => '127.0.0.2');
ok($s, 'pop3 forward native: login');
like($s->pop3('STAT'), qr/^\+OK/, 'pop3 forward: stat');
$s->pop3('QUIT');

$s = imap('pp1', local => '127.0.0.2');
ok($s, 'imap proxy protocol: login');
$s->imap('a3', 'LOGOUT');

$s = pop3('pp1', local => '127.0.0.2');
ok($s, 'pop3 proxy protocol: login');
$s->pop3('QUIT');

$s = imap('pq1', local => '127.0.0.2');
ok($s, 'imap proxy protocol v2: login');
$s->imap('a3', 'LOGOUT');

$s = pop3('pq1', local => '127.0.0.2');
ok($s, 'pop3 proxy protocol v2: login');
$s->pop3('QUIT');

my $dlog = '';
MailPlus::Test::wait_for(sub {
    $dlog = $t->dovecot_log($d);
    my @n = $dlog =~ /Login: user=<(?:nat1|pp1|pq1)>.*rip=127\.0\.0\.2,/g;
    return @n >= 6;
}, 10);

like($dlog, qr/imap-login: Info: Login: user=<nat1>.*rip=127\.0\.0\.2,/,
    'dovecot sees the imap client (ID)');
like($dlog, qr/pop3-login: Info: Login: user=<nat1>.*rip=127\.0\.0\.2,/,
    'dovecot sees the pop3 client (XCLIENT)');
like($dlog, qr/imap-login: Info: Login: user=<pp1>.*rip=127\.0\.0\.2,/,
    'dovecot sees the imap client (PROXY protocol)');
like($dlog, qr/pop3-login: Info: Login: user=<pp1>.*rip=127\.0\.0\.2,/,
    'dovecot sees the pop3 client (PROXY protocol)');
like($dlog, qr/imap-login: Info: Login: user=<pq1>.*rip=127\.0\.0\.2,/,
    'dovecot sees the imap client (PROXY protocol v2)');
like($dlog, qr/pop3-login: Info: Login: user=<pq1>.*rip=127\.0\.0\.2,/,
    'dovecot sees the pop3 client (PROXY protocol v2)');
like($dlog, qr/Login: user=<fo1>.*rip=127\.0\.0\.1,/,
    'without forwarding dovecot sees nginx');

# session limits: two sessions per user

my $l1 = imap('lim1');
my $l2 = imap('lim1');
ok($l1 && $l2, 'two sessions of one user');

($s, $r) = imap('lim1');
like($r, qr/^a1 NO \[LIMIT\]/m, 'third session of the user refused');
like($s->imap('a2', 'LOGIN fo2 secret'), qr/^a2 OK/m,
    'another user in that session');

($s, $r) = pop3('lim1');
like($r, qr/^-ERR \[IN-USE\]/, 'pop3 counts the same user');

$l1->imap('a9', 'LOGOUT');
$l1->disconnect();

ok(MailPlus::Test::wait_for(sub { imap('lim1') }, 5),
    'a session again after one ended');

# two sessions per client address on one server

my @c = map { MailPlus::Test::Client->new($t->port('imap_lim')) } 1 .. 2;
like($_->getline(), qr/^\* OK/, 'client limit: greeting') for @c;

my $c3 = MailPlus::Test::Client->new($t->port('imap_lim'));
like($c3->getline(), qr/^\* BYE \[UNAVAILABLE\]/, 'third connection refused');
ok($c3->at_eof(), 'third connection closed');

$_->disconnect() for @c;

ok(MailPlus::Test::wait_for(sub {
    my $c = MailPlus::Test::Client->new($t->port('imap_lim')) or return 0;
    my $l = $c->getline();
    return defined $l && $l =~ /^\* OK/;
}, 5), 'client limit: connections again');

# IMAP ID before login, NOOP, AUTHENTICATE PLAIN with SASL-IR, LITERAL+

$s = MailPlus::Test::Client->new($t->port('imap'));
$s->getline();
$r = $s->imap('i1', 'ID ("name" "test")');
like($r, qr/^\* ID NIL\r\ni1 OK/m, 'id before login');
like($s->imap('i2', 'NOOP'), qr/^i2 OK/m, 'noop before login');
$s->send("i3 LOGIN {5+}\r\nidle1 {6+}\r\nsecret", raw => 0);
like(scalar $s->read_until(qr/^i3 /), qr/^i3 OK/m, 'login with literal+');
$s->imap('i4', 'LOGOUT');

$s = MailPlus::Test::Client->new($t->port('imap'));
$s->getline();
like($s->imap('i1', 'AUTHENTICATE PLAIN '
    . encode_base64("\0idle1\0secret", '')), qr/^i1 OK/m, 'sasl-ir');

# IDLE: quiet for longer than the server's pre-login "timeout 2s", then a
# notification arrives

like($s->imap('i2', 'SELECT INBOX'), qr/^i2 OK/m, 'idle: select');
$s->send('i3 IDLE');
like($s->getline(), qr/^\+ /, 'idle: continuation');

sleep(3.5);

my $other = imap('idle1');
$other->send("x1 APPEND INBOX {17+}\r\nSubject: idle\r\n\r\n\r\n", raw => 1);
like(scalar $other->read_until(qr/^x1 /), qr/^x1 OK/m, 'append while idle');
$other->imap('x2', 'LOGOUT');

like(scalar $s->read_until(qr/^\* \d+ EXISTS/, 10), qr/^\* 1 EXISTS/m,
    'idle: notification after a quiet period');
$s->send('DONE');
like(scalar $s->read_until(qr/^i3 /), qr/^i3 OK/m, 'idle: done');
$s->imap('i4', 'LOGOUT');

# router_proxy_timeout: an idle session after login ends

$s = imap('fo3', port => 'imap_short');
ok($s, 'short timeout: login');
my $start = time();
ok($s->at_eof(6), 'short timeout: closed when idle');
cmp_ok(time() - $start, '>=', 1.5, 'short timeout: not before its time');

# one log line per session (written as the connection goes)

$log = '';
MailPlus::Test::wait_for(sub {
    $log = $t->read_file('error.log');
    return $log =~ /user="fo3" .* end="timed out"/;
}, 5);

like($log, qr/mail\ session:\ imap\ client=127\.0\.0\.2\ user="nat1"
    \ backend=127\.0\.0\.1:$d->{imap}\ up=\d+\ down=\d+
    \ time=\d+\.\d{3}s\ end="(client|backend)\ closed"/x,
    'session log line');
like($log,
    qr/mail session: imap client=127\.0\.0\.1 user="fo3" .* end="timed out"/,
    'session log line: timed out');
my $anonymous = qr/mail session: imap client=127\.0\.0\.1 user="-"/;
like($log, qr/$anonymous backend=- .*end="session limit"/,
    'session log line: limit');

# configuration: in mail{} SMTP servers are left alone; in an SMTP
# server's own block, an error

for my $case ([ 'inherited', "router_proxy on;\n", '' ],
    [ 'explicit', '', "router_proxy on;\n" ])
{
    my ($name, $main, $srv) = @$case;

    $t->write_file('users-a', "x:{PLAIN}y\n");
    $t->write_file_expand("smtp-$name.conf", <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%TESTDIR%%/users-a;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    router_default_pool  a;

    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;
    $main
    server {
        listen    127.0.0.1:%%PORT_smtp_t%%;
        protocol  smtp;
        $srv
    }
}
EOF
}

my ($rc, $out) = $t->nginx_t('smtp-inherited.conf');
is($rc, 0, 'router_proxy in mail{} with an smtp server') or diag($out);

($rc, $out) = $t->nginx_t('smtp-explicit.conf');
isnt($rc, 0, 'router_proxy in an smtp server');
like($out, qr/"router_proxy" is for pop3 and imap servers/,
    'router_proxy in an smtp server: message');

$t->finish();

###############################################################################
