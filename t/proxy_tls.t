#!/usr/bin/perl

# Sessions handled by the module over STARTTLS (POP3 STLS, IMAP STARTTLS):
# the dialogue starts over in TLS, the login reaches Dovecot, and a large
# message crosses the relay's copying path (no splice with TLS) intact; the
# same message over plain text crosses the splice path.

use warnings;
use strict;

use Test::More;

use IO::Socket::SSL;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

my $d = $t->dovecot('a', users => { alice => 'secret' });

$t->write_file('users', "alice:{PLAIN}secret\n");

my $dir = $t->testdir();

system("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost "
    . "-days 2 -keyout $dir/key.pem -out $dir/cert.pem 2>/dev/null") == 0
    or plan(skip_all => 'openssl cannot make a certificate');

# about 1 MB, lines of 76 bytes

my $body = join('', map { sprintf("%-75s\n", "line $_") } 1 .. 14000);
$t->seed($d, 'alice', subject => 'big', body => $body);

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%TESTDIR%%/users;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    router_default_pool  a;

    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;

    router_proxy         on;
    router_proxy_buffer  4k;

    ssl_certificate      %%TESTDIR%%/cert.pem;
    ssl_certificate_key  %%TESTDIR%%/key.pem;
    starttls             on;

    server {
        listen    127.0.0.1:%%PORT_imap%%;
        protocol  imap;
    }

    server {
        listen    127.0.0.1:%%PORT_pop3%%;
        protocol  pop3;
    }
}
EOF

$t->run();

###############################################################################

# blocking line I/O over a plain or TLS socket, bounded by alarm

sub getline {
    my ($s) = @_;
    local $SIG{ALRM} = sub { die "timeout\n" };
    alarm(10);
    my $l = eval { scalar <$s> };
    alarm(0);
    return $l;
}

sub command {
    my ($s, $cmd, $re) = @_;
    print $s "$cmd\r\n";
    my $all = '';
    while (defined(my $l = getline($s))) {
        $all .= $l;
        last if $l =~ $re;
    }
    return $all;
}

(my $crlf = $body) =~ s/\n/\r\n/g;

# IMAP STARTTLS

my $s = IO::Socket::INET->new("127.0.0.1:" . $t->port('imap'));
$s->autoflush(1);
like(getline($s), qr/^\* OK/, 'imap greeting');
like(command($s, 'c1 CAPABILITY', qr/^c1 /), qr/STARTTLS/,
    'imap starttls offered');
like(command($s, 's1 STARTTLS', qr/^s1 /), qr/^s1 OK/m, 'imap starttls');

ok(IO::Socket::SSL->start_SSL($s, SSL_verify_mode => SSL_VERIFY_NONE),
    'imap tls handshake') or diag($SSL_ERROR);

like(command($s, 'a1 LOGIN alice secret', qr/^a1 /), qr/^a1 OK/m,
    'imap login over tls');
like(command($s, 'a2 SELECT INBOX', qr/^a2 /), qr/^\* 1 EXISTS/m,
    'imap select over tls');

my $r = command($s, 'a3 FETCH 1 BODY.PEEK[TEXT]', qr/^a3 /);
ok(index($r, $crlf) >= 0, 'imap 1 MB message intact over tls');
like(command($s, 'a4 LOGOUT', qr/^a4 /), qr/^a4 OK/m, 'imap logout');
close $s;

# POP3 STLS

$s = IO::Socket::INET->new("127.0.0.1:" . $t->port('pop3'));
$s->autoflush(1);
like(getline($s), qr/^\+OK/, 'pop3 greeting');
like(command($s, 'STLS', qr/^[+-]/), qr/^\+OK/, 'pop3 stls');

ok(IO::Socket::SSL->start_SSL($s, SSL_verify_mode => SSL_VERIFY_NONE),
    'pop3 tls handshake') or diag($SSL_ERROR);

like(command($s, 'CAPA', qr/^\.\r\n/), qr/^USER\r$/m, 'pop3 capa over tls');
like(command($s, 'USER alice', qr/^[+-]/), qr/^\+OK/, 'pop3 user');
like(command($s, 'PASS secret', qr/^[+-]/), qr/^\+OK/, 'pop3 pass over tls');

$r = command($s, 'RETR 1', qr/^\.\r\n$/);
ok(index($r, $crlf) >= 0, 'pop3 1 MB message intact over tls');
like(command($s, 'QUIT', qr/^[+-]/), qr/^\+OK/, 'pop3 quit');
close $s;

# the same over plain text: the splice path

$s = IO::Socket::INET->new("127.0.0.1:" . $t->port('imap'));
$s->autoflush(1);
getline($s);
like(command($s, 'a1 LOGIN alice secret', qr/^a1 /), qr/^a1 OK/m,
    'plain login');
command($s, 'a2 SELECT INBOX', qr/^a2 /);
$r = command($s, 'a3 FETCH 1 BODY.PEEK[TEXT]', qr/^a3 /);
ok(index($r, $crlf) >= 0, 'plain 1 MB message intact');
close $s;

$t->finish();

###############################################################################
