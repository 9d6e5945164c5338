#!/usr/bin/perl

# The router refuses a login or a password holding a control character,
# and counts the refusal as a failed login.  A password with a NUL is
# refused, never checked cut at the NUL: crypt() and SSHA read C strings,
# so "secret\0anything" used to log in a crypt or SSHA user.  Asked here
# the way stock nginx asks, over the auth_http endpoint (nginx %-escapes
# the login and the password), and through module-handled IMAP and POP3
# sessions with SASL PLAIN, whose password may hold any byte.

use warnings;
use strict;

use Test::More;

use Digest::SHA qw/ sha1 /;
use HTTP::Tiny;
use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

my $d = $t->dovecot('a', users => {
    cryptu => 'secret', sshau => 'secret', plainu => 'secret' });

my $crypt = crypt('secret', '$6$saltsaltsalt$');
my $ssha = encode_base64(sha1('secret' . 'salt4u') . 'salt4u', '');

$t->write_file('users', <<"EOF");
cryptu:{SHA512-CRYPT}$crypt
sshau:{SSHA}$ssha
plainu:{PLAIN}secret
EOF

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
    router_auth_delay    0;
    router_zone          router:1m;
    router_login_fails   100;

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    server {
        listen        127.0.0.1:%%PORT_imap%%;
        protocol      imap;
        imap_auth     plain;
        router_proxy  on;
    }

    server {
        listen        127.0.0.1:%%PORT_pop3%%;
        protocol      pop3;
        pop3_auth     plain;
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

        location = /status {
            mail_plus_status;
        }
    }
}
EOF

$t->run(log_level => 'info');

###############################################################################

my $http = HTTP::Tiny->new(timeout => 10);

# the endpoint, asked as stock nginx asks it: the values %-escaped

sub endpoint {
    my ($user, $pass) = @_;

    my $r = $http->get('http://127.0.0.1:' . $t->port('http') . '/auth', {
        headers => {
            'Auth-Method' => 'plain',
            'Auth-User' => $user,
            'Auth-Pass' => $pass,
            'Auth-Protocol' => 'imap',
            'Auth-Login-Attempt' => 1,
            'Client-IP' => '127.0.0.9',
        },
    });

    return $r->{headers}{'auth-status'} // '';
}

sub denied {
    my $r = $http->get('http://127.0.0.1:' . $t->port('http') . '/status');
    my ($n) = ($r->{content} // '') =~ /"denied":(\d+)/;
    return $n // -1;
}

for my $u (qw/ cryptu sshau plainu /) {
    is(endpoint($u, 'secret'), 'OK', "$u: the right password");
    isnt(endpoint($u, 'secret%00anything'), 'OK',
        "$u: the password with a NUL and more is refused");
    isnt(endpoint($u, 'secret%00'), 'OK',
        "$u: the password with a trailing NUL is refused");
}

my $before = denied();
isnt(endpoint('plainu%0D%0AAuth-Server: 6.6.6.6', 'secret'), 'OK',
    'a login with CR LF is refused');
isnt(endpoint('plainu', "secret%09"), 'OK', 'a password with a tab is refused');
isnt(endpoint("plain%7Fu", 'secret'), 'OK', 'a login with DEL is refused');
is(denied(), $before + 3, 'each refusal counts as a failed login');

# module-handled sessions: SASL PLAIN carries the password's bytes as they
# are; the router sees all of them

sub plain { encode_base64(join("\0", '', @_), '') }

for my $u (qw/ cryptu sshau /) {
    my $s = MailPlus::Test::Client->new($t->port('imap'));
    $s->getline();
    like($s->imap('a1', 'AUTHENTICATE PLAIN ' . plain($u, "secret\0x")),
        qr/^a1 NO/m, "imap $u: a NUL in the password is refused");
    like($s->imap('a2', 'AUTHENTICATE PLAIN ' . plain($u, 'secret')),
        qr/^a2 OK/m, "imap $u: the right password logs in");
    $s->imap('a3', 'LOGOUT');

    $s = MailPlus::Test::Client->new($t->port('pop3'));
    $s->getline();
    like($s->pop3('AUTH PLAIN ' . plain($u, "secret\0x")), qr/^-ERR/,
        "pop3 $u: a NUL in the password is refused");
    $s->pop3('QUIT');
}

my $log = $t->read_file('error.log');
like($log, qr/control character in the login or the password/,
    'the reason is logged');

$t->finish();

###############################################################################


