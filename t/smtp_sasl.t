#!/usr/bin/perl

# SMTP AUTH of store-and-forward servers with the module's SASL decoding:
# base64 taken strictly, a PLAIN authorization identity other than the
# login refused, a password never cut at a NUL.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

$t->write_file('users', <<'EOF');
alice:{PLAIN}secret
bob:{PLAIN}other
EOF

$t->write_file_expand('nginx.conf', <<'EOF');
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;

    router_pool a {
        server 127.0.0.1 imap=1 pop3=1;
    }

    router_default_pool a;

    auth_http 127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_auth_plaintext on;
        smtp_max_errors 20;
    }
}
EOF

$t->run();

sub client {
    my $c = MailPlus::Test::Client->new($t->port('smtp'))
        or die "no connection\n";
    $c->getline();
    $c->smtp('EHLO c.example');
    return $c;
}

###############################################################################

my $c = client();

# base64 with bytes after its padding is not base64

like($c->smtp('AUTH PLAIN ' . encode_base64("\0alice\0secret", '') . 'QQ'),
    qr/^501 5\.5\.2 /, 'base64 after the padding');
like($c->smtp('AUTH PLAIN AGFsaWNlAHNlY3JldA=x'), qr/^501 5\.5\.2 /,
    'a character after "="');
like($c->smtp('AUTH PLAIN AGFsaWNlAHNlY3JldA==='), qr/^501 5\.5\.2 /,
    'three "="');

# PLAIN: an authorization identity other than the login

like($c->smtp('AUTH PLAIN ' . encode_base64("bob\0alice\0secret", '')),
    qr/^535 5\.7\.8 /, 'authzid of another user refused');

# a password with a NUL is refused, not cut

like($c->smtp('AUTH PLAIN ' . encode_base64("\0alice\0secret\0x", '')),
    qr/^535 5\.7\.8 /, 'secret\\0x refused');

like($c->smtp('AUTH LOGIN'), qr/^334 /, 'AUTH LOGIN');
like($c->smtp(encode_base64('alice', '')), qr/^334 /, 'AUTH LOGIN username');
like($c->smtp(encode_base64("secret\0x", '')), qr/^535 5\.7\.8 /,
    'AUTH LOGIN: secret\\0x refused');

# the login as its own authorization identity, and the usual forms

like($c->smtp('AUTH PLAIN ' . encode_base64("alice\0alice\0secret", '')),
    qr/^235 /, 'authzid equal to the login');

$c = client();
like($c->smtp('AUTH PLAIN ' . encode_base64("\0alice\0secret", '')),
    qr/^235 /, 'AUTH PLAIN');

$c = client();
like($c->smtp('AUTH PLAIN'), qr/^334 /, 'AUTH PLAIN, no initial response');
like($c->smtp(encode_base64("\0alice\0secret", '')), qr/^235 /,
    'AUTH PLAIN response');

$c = client();
like($c->smtp('AUTH LOGIN ' . encode_base64('alice', '')), qr/^334 /,
    'AUTH LOGIN with the username');
like($c->smtp(encode_base64('secret', '')), qr/^235 /, 'AUTH LOGIN password');

$t->finish();

###############################################################################
