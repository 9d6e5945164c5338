#!/usr/bin/perl

# SMTP store-and-forward and RFC 3461 (DSN): EHLO advertises DSN; RET and
# ENVID of MAIL, NOTIFY and ORCPT of RCPT are checked and kept in the queue
# file, in the lines the delivery reads; bad values get 555.

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

$t->write_file('users', "bob\@example.com:{PLAIN}secret\n"
    . "carol\@example.com:{PLAIN}secret\n");

$t->write_file_expand('nginx.conf', <<'EOF');
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%TESTDIR%%/users;

    router_pool a {
        server 127.0.0.1 imap=1 lmtp=1;
    }

    auth_http    127.0.0.1:9/auth;
    queue_spool  %%TESTDIR%%/spool;

    server {
        listen                  127.0.0.1:%%PORT_smtp%%;
        protocol                smtp;
        server_name             mx.test;
        smtp_store_and_forward  on;
        smtp_local_domains      example.com;
    }
}
EOF

$t->run();

###############################################################################

my $c = MailPlus::Test::Client->new($t->port('smtp')) or die "no connection\n";
like($c->getline(), qr/^220 /, 'greeting');
like($c->smtp('EHLO client.example'), qr/^250-DSN\r$/m, 'EHLO advertises DSN');

# bad values

like($c->smtp('MAIL FROM:<a@remote.example> RET=ALL'), qr/^555 /,
    'RET must be FULL or HDRS');
like($c->smtp('MAIL FROM:<a@remote.example> ENVID=a=b'), qr/^555 /,
    'ENVID must be xtext');

is($c->smtp('MAIL FROM:<a@remote.example> RET=HDRS ENVID=QQ+2B1'),
    "250 2.1.0 Ok\r\n", 'MAIL with RET and ENVID');

like($c->smtp('RCPT TO:<bob@example.com> NOTIFY=NEVER,SUCCESS'), qr/^555 /,
    'NEVER stands alone');
like($c->smtp('RCPT TO:<bob@example.com> NOTIFY=SOMETIMES'), qr/^555 /,
    'unknown NOTIFY value');
like($c->smtp('RCPT TO:<bob@example.com> ORCPT=bob@example.com'), qr/^555 /,
    'ORCPT needs an address type');

is($c->smtp('RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE '
    . 'ORCPT=rfc822;Bob+40example.com'), "250 2.1.5 Ok\r\n",
    'RCPT with NOTIFY and ORCPT');
is($c->smtp('RCPT TO:<carol@example.com>'), "250 2.1.5 Ok\r\n",
    'RCPT without DSN parameters');

like($c->smtp('DATA'), qr/^354 /, 'DATA');
my $r = $c->smtp("Subject: dsn\r\n\r\nhello\r\n.");
my ($id) = $r =~ /^250 2\.0\.0 Ok: queued as (\w+)/;
ok($id, 'queued');

my $q = $t->read_file("spool/incoming/$id");
my ($env) = $q =~ /^(.*?\r\nend\r\n)/s;

like($env, qr/^ret HDRS\r$/m, 'queue file: ret');
like($env, qr/^envid QQ\+2B1\r$/m, 'queue file: envid');
my $dsn = "rcpt bob\@example.com\r\n"
    . "dsn NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+40example.com\r\n";
ok(index($env, $dsn) >= 0, 'queue file: dsn line after its recipient');
like($env, qr/^rcpt carol\@example\.com\r\nend\r$/m,
    'queue file: no dsn line without parameters');

# a transaction without DSN parameters writes none

is($c->smtp('MAIL FROM:<a@remote.example>'), "250 2.1.0 Ok\r\n", 'MAIL');
is($c->smtp('RCPT TO:<bob@example.com>'), "250 2.1.5 Ok\r\n", 'RCPT');
like($c->smtp('DATA'), qr/^354 /, 'DATA');
($id) = $c->smtp("Subject: plain\r\n\r\nhello\r\n.")
    =~ /^250 2\.0\.0 Ok: queued as (\w+)/;

$q = $t->read_file("spool/incoming/$id");
unlike($q, qr/^(ret|envid|dsn) /m, 'no DSN lines without parameters');

$c->smtp('QUIT');

$t->finish();

###############################################################################
