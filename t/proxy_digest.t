#!/usr/bin/perl

# APOP and CRAM-MD5: checked by the router against a cleartext ({PLAIN})
# password of the users file, in module-handled POP3 and IMAP servers and
# through the auth_http endpoint for stock servers; the backend (Dovecot)
# gets the cleartext password.  Users with a hashed password, wrong
# digests, servers that do not list the method and pools whose backend
# checks passwords itself are refused.

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5 md5_hex /;
use MIME::Base64 qw/ encode_base64 decode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

my $d = $t->dovecot('a',
    users => { alice => 'secret', bob => 'hashed', carol => 'backend' });

$t->seed($d, 'alice', subject => 'digest', body => "hello\n");

# bob's password is hashed: no digest can be checked against it

my $crypt = crypt('hashed', '$6$saltsaltsalt$');

$t->write_file('users', <<"EOF");
alice:{PLAIN}secret
bob:{SHA512-CRYPT}$crypt
carol:{PLAIN}backend:be
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

    router_pool be {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
        auth backend;
    }

    router_default_pool  a;
    router_auth_delay    0;

    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;

    server {
        listen        127.0.0.1:%%PORT_pop3%%;
        protocol      pop3;
        pop3_auth     plain apop cram-md5;
        router_proxy  on;
    }

    server {
        listen        127.0.0.1:%%PORT_imap%%;
        protocol      imap;
        imap_auth     plain cram-md5;
        router_proxy  on;
    }

    server {
        listen        127.0.0.1:%%PORT_pop3_plain%%;
        protocol      pop3;
        router_proxy  on;
    }

    server {
        listen        127.0.0.1:%%PORT_pop3_stock%%;
        protocol      pop3;
        pop3_auth     plain apop cram-md5;
    }

    server {
        listen        127.0.0.1:%%PORT_imap_stock%%;
        protocol      imap;
        imap_auth     plain cram-md5;
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

###############################################################################

sub hmac_md5_hex {
    my ($key, $data) = @_;

    $key = md5($key) if length $key > 64;
    $key .= "\0" x (64 - length $key);

    return unpack('H*', md5(($key ^ ("\x5c" x 64))
        . md5(($key ^ ("\x36" x 64)) . $data)));
}

# APOP: returns the client after the reply to APOP, and that reply

sub apop {
    my ($port, $user, $password, %opts) = @_;

    my $s = MailPlus::Test::Client->new($t->port($port)) or return;
    my $greeting = $s->getline() // '';
    my ($salt) = $greeting =~ /^\+OK .*(<[^>]+>)\r\n$/ or return ($s, '');

    my $digest = md5_hex($salt . $password);
    $digest = uc $digest if $opts{upper};

    return ($s, $s->pop3("APOP $user $digest"));
}

# CRAM-MD5 over POP3 AUTH or IMAP AUTHENTICATE

sub cram {
    my ($proto, $port, $user, $password) = @_;

    my $s = MailPlus::Test::Client->new($t->port($port)) or return;
    $s->getline();

    $s->send($proto eq 'imap' ? 'a1 AUTHENTICATE CRAM-MD5'
        : 'AUTH CRAM-MD5');

    my $line = $s->getline() // '';
    my ($challenge) = $line =~ /^\+ (\S+)\r\n$/ or return ($s, $line);
    $challenge = decode_base64($challenge);

    $s->send(encode_base64("$user " . hmac_md5_hex($password, $challenge),
        ''));

    my $r = $proto eq 'imap' ? $s->read_until(qr/^a1 /) : $s->getline();

    return ($s, $r // '', $challenge);
}

###############################################################################

# module-handled POP3: the greeting carries the salt, APOP logs in to
# Dovecot with the cleartext password

my ($s, $r) = apop('pop3', 'alice', 'secret');
like($r, qr/^\+OK/, 'apop: logged in');
like($s->pop3('STAT'), qr/^\+OK 1 /, 'apop: the mailbox is there');
$s->pop3('QUIT');

($s, $r) = apop('pop3', 'alice', 'secret', upper => 1);
like($r, qr/^\+OK/, 'apop: digest in upper case');
$s->pop3('QUIT');

($s, $r) = apop('pop3', 'alice', 'wrong');
like($r, qr/^-ERR/, 'apop: wrong password refused');
like($s->pop3('USER alice') . $s->pop3('PASS secret'), qr/^\+OK/m,
    'apop: USER and PASS after a failed APOP');
$s->pop3('QUIT');

($s, $r) = apop('pop3', 'bob', 'hashed');
like($r, qr/^-ERR/, 'apop: hashed password refused');

($s, $r) = apop('pop3', 'carol', 'backend');
like($r, qr/^-ERR/, 'apop: pool with auth backend refused');

($s, $r) = apop('pop3', 'nobody', 'secret');
like($r, qr/^-ERR/, 'apop: unknown user refused');

# a salt is one session's: the digest of another greeting does not log in

$s = MailPlus::Test::Client->new($t->port('pop3'));
$s->getline();
like($s->pop3('APOP alice ' . md5_hex('<1.1@localhost>secret')),
    qr/^-ERR/, 'apop: digest of another salt refused');

# a server without "pop3_auth apop": no salt, APOP unknown

$s = MailPlus::Test::Client->new($t->port('pop3_plain'));
unlike($s->getline() // '', qr/</, 'no apop: no salt in the greeting');
like($s->pop3('APOP alice ' . md5_hex('secret')), qr/^-ERR/,
    'no apop: APOP refused');
like($s->pop3('AUTH CRAM-MD5'), qr/^-ERR/, 'no cram-md5: AUTH refused');

# CRAM-MD5, POP3 and IMAP

my $c;
($s, $r, $c) = cram('pop3', 'pop3', 'alice', 'secret');
like($r, qr/^\+OK/, 'pop3 cram-md5: logged in');
like($c, qr/^<.+>$/, 'pop3 cram-md5: challenge is the salt');
like($s->pop3('STAT'), qr/^\+OK 1 /, 'pop3 cram-md5: the mailbox is there');
$s->pop3('QUIT');

($s, $r) = cram('pop3', 'pop3', 'alice', 'wrong');
like($r, qr/^-ERR/, 'pop3 cram-md5: wrong password refused');

($s, $r) = cram('imap', 'imap', 'alice', 'secret');
like($r, qr/^a1 OK/m, 'imap cram-md5: logged in');
like($s->imap('a2', 'SELECT INBOX'), qr/^\* 1 EXISTS/m,
    'imap cram-md5: the mailbox is there');
$s->imap('a3', 'LOGOUT');

($s, $r) = cram('imap', 'imap', 'alice', 'wrong');
like($r, qr/^a1 NO/m, 'imap cram-md5: wrong password refused');

($s, $r) = cram('imap', 'imap', 'bob', 'hashed');
like($r, qr/^a1 NO/m, 'imap cram-md5: hashed password refused');

# stock servers ask the auth_http endpoint, which answers with the
# cleartext password for the stock proxy's backend login

($s, $r) = apop('pop3_stock', 'alice', 'secret');
like($r, qr/^\+OK/, 'stock apop: logged in');
like($s->pop3('STAT'), qr/^\+OK 1 /, 'stock apop: the mailbox is there');
$s->pop3('QUIT');

($s, $r) = apop('pop3_stock', 'alice', 'wrong');
like($r, qr/^-ERR/, 'stock apop: wrong password refused');

($s, $r) = cram('imap', 'imap_stock', 'alice', 'secret');
like($r, qr/^a1 OK/m, 'stock imap cram-md5: logged in');
$s->imap('a2', 'LOGOUT');

($s, $r) = cram('imap', 'imap_stock', 'bob', 'hashed');
like($r, qr/^a1 NO/m, 'stock imap cram-md5: hashed password refused');

$s->disconnect() if $s;

my $log = $t->read_file('error.log');
like($log, qr/APOP and CRAM-MD5 need a \{PLAIN\} password/,
    'the reason for a hashed password is logged');
like($log, qr/APOP and CRAM-MD5 need a pool with "auth router"/,
    'the reason for a backend pool is logged');

$t->finish();

###############################################################################
