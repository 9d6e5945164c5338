#!/usr/bin/perl

# The "dovecot" directory: the router asks a real Dovecot's auth service
# (its auth-client socket for logins, its auth-userdb socket for
# recipients) for logins its users file does not know.  POP3 and IMAP
# through the module's proxy, SMTP AUTH of a store-and-forward server and
# HTTP submission's Basic auth all ask it: right and wrong passwords,
# unknown users, nologin with its reason, routing by the reply's host and
# port, a backend login other than the client's (destuser), a host that
# is not ours.  The cache spares Dovecot a second login; Dovecot stopped
# gives each protocol its temporary failure, or the stale answer where
# there is one; Dovecot started again answers again.  Recipients through
# the userdb socket.  nginx -t with a socket that does not exist warns.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $dir = $t->testdir();

# the backend holding the mailboxes, on 127.0.0.2, with a second IMAP port

my $imap2 = $t->port('b_imap2', '127.0.0.2');

my $db = $t->dovecot('b', addr => '127.0.0.2', users => {
    alice => 'pwA', ivan => 'pwI', gina => 'pwG', 'bob@example.com' => 'pwB',
}, extra => <<"EOF");
service imap-login {
  inet_listener imap2 {
    address = 127.0.0.2
    port = $imap2
  }
}
EOF

# the auth service: its users in a passwd-file of their own, with the
# extra fields that route them; its sockets for nginx

my $auth_tcp = $t->port('auth_tcp');

my $instance = "mailplus-dir-$$";

my %dovecot_a = (extra => <<"EOF");
instance_name = $instance
auth_verbose = yes
auth_failure_delay = 0
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd.auth
}
userdb {
  driver = passwd-file
  args = username_format=%u $dir/passwd.auth
  default_fields = uid=nobody gid=nogroup home=$dir/home/%u
}
service auth {
  unix_listener $dir/auth-client {
    mode = 0666
  }
  unix_listener $dir/auth-userdb {
    mode = 0666
  }
  inet_listener auth-client {
    address = 127.0.0.1
    port = $auth_tcp
  }
}
EOF

$t->write_file('passwd.auth', <<"EOF");
alice:{PLAIN}pwA::::::proxy host=127.0.0.2
ivan:{PLAIN}pwI::::::proxy host=127.0.0.2 port=$imap2
gina:{PLAIN}pwG::::::proxy host=127.0.0.2
frank:{PLAIN}pwA::::::proxy host=127.0.0.2 destuser=alice
dave:{PLAIN}pwD::::::nologin reason=Moved.to.the.new.server
erin:{PLAIN}pwE::::::proxy host=127.0.0.9
bob\@example.com::::::pool=back
EOF

my $da = $t->dovecot('a', %dovecot_a);

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_auth_delay 0;
    router_zone   z:1m;

    router_directory dovecot {
        auth     unix:$dir/auth-client;
        master   unix:$dir/auth-userdb;
        timeout  3s;
        connections 2;
    }

    router_directory_valid 2s;
    router_directory_invalid 2s;
    router_directory_stale 1h;

    router_pool back {
        server 127.0.0.2 imap=$db->{imap} pop3=$db->{pop3} lmtp=$db->{lmtp};
    }

    auth_http 127.0.0.1:%%PORT_http%%/auth;

    queue_spool %%TESTDIR%%/spool;
    queue_delivery on;
    queue_retry_first 1s;
    queue_scan_interval 300ms;
    queue_helo_name mx.test;

    server {
        listen     127.0.0.1:%%PORT_pop3%%;
        protocol   pop3;
        router_proxy on;
    }

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        router_proxy on;
    }

    server {
        listen     127.0.0.1:%%PORT_smtp%%;
        protocol   smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_auth_plaintext on;
        smtp_max_errors 50;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen       127.0.0.1:%%PORT_http%%;

        location = /auth {
            mail_router_auth;
        }

        location = /submit {
            mail_plus_submit;
        }
    }
}
EOF

$t->run();

###############################################################################

# *_login: the reply to the login, the connection closed; *_session: the
# reply and the connection

sub pop3_session {
    my ($user, $pass) = @_;

    my $c = MailPlus::Test::Client->new($t->port('pop3')) or return;
    $c->getline();
    $c->pop3("USER $user");
    return ($c->pop3("PASS $pass"), $c);
}

sub imap_session {
    my ($user, $pass) = @_;

    my $c = MailPlus::Test::Client->new($t->port('imap')) or return;
    $c->getline();
    return ($c->imap('a1', "LOGIN $user $pass"), $c);
}

sub pop3_login {
    my ($r, $c) = pop3_session(@_);
    $c->disconnect() if $c;
    return $r // '';
}

sub imap_login {
    my ($r, $c) = imap_session(@_);
    $c->disconnect() if $c;
    return $r // '';
}

sub smtp_client {
    my $c = MailPlus::Test::Client->new($t->port('smtp'))
        or die "no connection\n";
    $c->getline();
    $c->smtp('EHLO c.example');
    return $c;
}

sub smtp_auth {
    my ($user, $pass) = @_;
    my $c = smtp_client();
    return $c->smtp('AUTH PLAIN ' . encode_base64("\0$user\0$pass", ''));
}

my $http = HTTP::Tiny->new(timeout => 20);

sub submit {
    my ($user, $pass, $to) = @_;

    return $http->request('POST', 'http://127.0.0.1:' . $t->port('http')
        . "/submit?from=alice%40example.com&to=$to", {
            headers => {
                'Content-Type' => 'message/rfc822',
                Authorization => 'Basic '
                    . encode_base64("$user:$pass", ''),
            },
            content => "Subject: over http\r\n\r\nHello.\r\n",
        });
}

# Dovecot's auth process outlives its master while it has clients: it is
# stopped too, by its PID (the instance name is this test's own)

sub leftovers {
    my @pids;

    for my $p (glob '/proc/[0-9]*') {
        open my $fh, '<', "$p/cmdline" or next;
        my $cmd = <$fh> // '';
        push @pids, $p =~ s!/proc/!!r if $cmd =~ m!^dovecot-\Q$instance\E/!;
    }

    return @pids;
}

sub stop_leftovers {
    kill 'TERM', leftovers();
    return wait_for(sub { !leftovers() }, 10);
}

sub asked {
    my ($user) = @_;
    my @n = $t->read_file('error.log')
        =~ /asking directory "dovecot" for "\Q$user\E"/g;
    return scalar @n;
}

###############################################################################

# POP3 and IMAP: the reply's host and port, its backend login

my ($r, $c) = pop3_session('alice', 'pwA');
like($r, qr/^\+OK/, 'POP3: alice logged in through Dovecot\'s answer');
like($c->pop3('STAT'), qr/^\+OK 0 0/, 'POP3: on the backend');
$c->pop3('QUIT');
$c->disconnect();

($r, $c) = imap_session('alice', 'pwA');
like($r, qr/^a1 OK/m, 'IMAP: alice logged in');
like($c->imap('a2', 'SELECT INBOX'), qr/^a2 OK/m, 'IMAP: on the backend');
$c->disconnect();

like(imap_login('ivan', 'pwI'), qr/^a1 OK/m,
    'IMAP: ivan, to the port of the reply');
like($t->read_file('error.log'), qr/backend 127\.0\.0\.2:$imap2 /,
    'the port of the reply used');

like(imap_login('frank', 'pwA'), qr/^a1 OK/m,
    'IMAP: destuser, the backend login is alice');
like($t->dovecot_log($db), qr/imap-login: Info: Login: user=<alice>/,
    'the backend saw alice');

# refusals

like(pop3_login('alice', 'wrong'), qr/^-ERR (?!\[SYS)/,
    'POP3: wrong password');
like(imap_login('alice', 'wrong'), qr/^a1 NO (?!\[UNAVAILABLE)/m,
    'IMAP: wrong password');
like(pop3_login('nobody', 'x'), qr/^-ERR (?!\[SYS)/, 'POP3: unknown user');
like(imap_login('nobody', 'x'), qr/^a1 NO (?!\[UNAVAILABLE)/m,
    'IMAP: unknown user');

like(pop3_login('dave', 'pwD'), qr/^-ERR (?!\[SYS)/, 'POP3: nologin');
like(imap_login('dave', 'pwD'), qr/^a1 NO (?!\[UNAVAILABLE)/m, 'IMAP: nologin');
like($t->read_file('error.log'),
    qr/login "dave" denied: nologin: Moved\.to\.the\.new\.server/,
    'nologin, with its reason, logged');
like(imap_login('dave', 'wrong'), qr/^a1 NO /m, 'IMAP: nologin, wrong password');
like($t->read_file('error.log'), qr/login "dave" denied: wrong password/,
    'logged as a wrong password');

like(imap_login('erin', 'pwE'), qr/^a1 NO \[UNAVAILABLE\]/m,
    'IMAP: a host that is not a server of ours: a temporary failure');
like($t->read_file('error.log'),
    qr/host "127\.0\.0\.9" is not a server of a router pool/,
    'logged');

# SMTP AUTH and HTTP submission ask the same directory

like(smtp_auth('alice', 'pwA'), qr/^235 /, 'SMTP AUTH: alice');
like(smtp_auth('alice', 'bad'), qr/^535 5\.7\.8 /, 'SMTP AUTH: wrong password');
like(smtp_auth('nobody', 'x'), qr/^535 5\.7\.8 /, 'SMTP AUTH: unknown user');

$r = submit('alice', 'pwA', 'bob@example.com');
is($r->{status}, 202, 'HTTP submission: alice, to bob (a userdb recipient)')
    or diag($r->{content});

ok(wait_for(sub { $t->maildir_count($db, 'bob@example.com') == 1 }, 15),
    'delivered to bob\'s backend, the pool of Dovecot\'s userdb answer');

is(submit('alice', 'bad', 'bob@example.com')->{status}, 401,
    'HTTP submission: wrong password');

# recipients over SMTP

{

$c = smtp_client();
like($c->smtp('MAIL FROM:<x@remote.example>'), qr/^250 /, 'MAIL');
like($c->smtp('RCPT TO:<bob@example.com>'), qr/^250 /,
    'RCPT: bob, known to Dovecot\'s userdb');
like($c->smtp('RCPT TO:<nobody@example.com>'), qr/^550 5\.1\.1 /,
    'RCPT: unknown to Dovecot\'s userdb');
$c->smtp('QUIT');
}

# the cache: a second login with the same password does not reach Dovecot
# (gina's first login is now: her answer is fresh)

like(imap_login('gina', 'pwG'), qr/^a1 OK/m, 'IMAP: gina');
is(asked('gina'), 1, 'Dovecot was asked');
like(imap_login('gina', 'pwG'), qr/^a1 OK/m, 'IMAP: gina again');
is(asked('gina'), 1, 'answered from the cache');
like($t->read_file('error.log'),
    qr/directory "dovecot" answered 0 from the cache/, 'logged as such');

like(imap_login('gina', 'other'), qr/^a1 NO/m,
    'another password is asked: wrong');
is(asked('gina'), 2, 'Dovecot was asked');

like(imap_login('alice', 'pwA'), qr/^a1 OK/m,
    'IMAP: alice, the answer kept for when Dovecot is down');

###############################################################################

# Dovecot stopped: temporary failures; the stale answer for alice

ok($t->stop_dovecot($da), 'the auth service stopped');
ok(stop_leftovers(), 'its auth process too, which serves its clients on');

sleep 2.5;   # past router_directory_valid

like(pop3_login('nobody2', 'x'), qr/^-ERR \[SYS\/TEMP\]/,
    'POP3: -ERR [SYS/TEMP]');
like(imap_login('nobody2', 'x'), qr/^a1 NO \[UNAVAILABLE\]/m,
    'IMAP: NO [UNAVAILABLE]');
like(smtp_auth('nobody2', 'x'), qr/^454 4\.7\.0 /, 'SMTP AUTH: 454 4.7.0');
is(submit('nobody2', 'x', 'bob@example.com')->{status}, 503,
    'HTTP submission: 503');

like($t->read_file('error.log'),
    qr/directory "dovecot" is not reachable/, 'the directory is down, logged');

($r, $c) = imap_session('alice', 'pwA');
like($r, qr/^a1 OK/m, 'IMAP: alice from the stale answer');
like($c->imap('a2', 'LOGOUT'), qr/^a2 OK/m, 'on the backend');
$c->disconnect();
like($t->read_file('error.log'), qr/a stale answer is used for "alice"/,
    'logged');

{

$c = smtp_client();
$c->smtp('MAIL FROM:<x@remote.example>');
like($c->smtp('RCPT TO:<carol@example.com>'), qr/^4\d\d 4\./,
    'RCPT: a temporary failure');
$c->smtp('QUIT');
}

# Dovecot started again

$da = $t->dovecot('a', %dovecot_a);

ok(wait_for(sub { imap_login('alice', 'pwA2') =~ /^a1 NO (?!\[UNAVAILABLE)/m },
    15),
    'Dovecot answers again');
like(pop3_login('alice', 'pwA'), qr/^\+OK/, 'POP3: alice logs in again');
like($t->read_file('error.log'),
    qr/directory "dovecot" is reachable again/, 'logged');

###############################################################################

# nginx -t: a socket that does not exist warns; "auth" is needed

$t->write_file('t1.conf', $t->read_file('nginx.conf')
    =~ s!auth-client;!nowhere;!r);
my ($rc, $out) = $t->nginx_t('t1.conf');
is($rc, 0, 'nginx -t: a socket that does not exist');
like($out, qr/\[warn\].*nowhere does not exist/, 'is warned about');

$t->write_file('t2.conf', $t->read_file('nginx.conf')
    =~ s!auth     unix:\S+;!!r);
($rc, $out) = $t->nginx_t('t2.conf');
isnt($rc, 0, 'nginx -t: no "auth"');
like($out, qr/needs "auth"/, 'refused');

$t->write_file('t3.conf', $t->read_file('nginx.conf')
    =~ s!auth     unix:\S+;!auth 127.0.0.1:$auth_tcp; service imap;!r);
($rc, $out) = $t->nginx_t('t3.conf');
is($rc, 0, 'nginx -t: over TCP, a service') or diag($out);

# over TCP: a reload with it, frank asked again (his answer expired)

$t->write_file('nginx.conf', $t->read_file('t3.conf'));
$t->reload();

ok(wait_for(sub { imap_login('frank', 'pwA') =~ /^a1 OK/m }, 10),
    'IMAP: frank through Dovecot over TCP');
like($t->read_file('error.log'),
    qr/connection 0 to 127\.0\.0\.1:$auth_tcp opened/, 'over TCP');

$t->finish();

###############################################################################
