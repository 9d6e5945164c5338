#!/usr/bin/perl

# Debug logging: with "error_log ... debug" (Debian's nginx is built
# --with-debug), the log tells each session's whole story, part by part,
# in the order it happened: a POP3 and an IMAP session carried to their
# backend (proxy, router), an SMTP session whose message is queued and
# delivered over LMTP (smtp, queue, delivery), an HTTP submission and a
# queue API call (http).  And it never holds a password, in any encoding
# (but in the HTTP Authorization header, which stock nginx's own debug
# lines print).

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

plan(skip_all => 'nginx built without --with-debug')
    unless `$MailPlus::Test::NGINX -V 2>&1` =~ /--with-debug/;

my $pw_alice = 'Sesame-A1ice.pw';
my $pw_bob = 'Sesame-B0b.pw';

my $da = $t->dovecot('a', users => { 'alice@example.com' => $pw_alice,
    'bob@example.com' => $pw_bob });

$t->write_file('users', <<"EOF");
alice\@example.com:{PLAIN}$pw_alice:a
bob\@example.com:{PLAIN}$pw_bob:a
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;

    router_pool a {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3} lmtp=$da->{lmtp};
    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_retry_first 1s;
    queue_retry_max 2s;
    queue_scan_interval 300ms;
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
        listen        127.0.0.1:%%PORT_pop3%%;
        protocol      pop3;
        router_proxy  on;
    }

    server {
        listen        127.0.0.1:%%PORT_imap%%;
        protocol      imap;
        imap_auth     login plain;
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

        location = /submit {
            mail_plus_submit;
        }

        location /queue/ {
            mail_plus_queue_api;
        }
    }
}
EOF

$t->run();

###############################################################################

# the debug lines of one client connection: nginx prefixes every line of a
# connection's log with "*N "; the connection number is found from the
# line that logs the client's port being accepted

sub log_lines { split /\n/, $t->read_file('error.log') }

sub conn_of {
    my ($port) = @_;

    for (log_lines()) {
        return $1 if /\*(\d+) .*client 127\.0\.0\.1:$port\b/;
    }

    return undef;
}

sub story {
    my ($conn) = @_;
    return grep { / \*$conn / && /\[debug\]/ } log_lines();
}

# in_order(\@lines, qr/a/, qr/b/, ...): each pattern matches a line after
# the line the previous one matched; returns the first that does not

sub in_order {
    my ($lines, @re) = @_;

    my $i = 0;

    PATTERN: for my $re (@re) {
        while ($i < @$lines) {
            next PATTERN if $lines->[$i++] =~ $re;
        }
        return "$re";
    }

    return '';
}

###############################################################################

# POP3 through the module's own session

my $s = MailPlus::Test::Client->new($t->port('pop3'));
my $port = $s->sock->sockport();
like($s->getline(), qr/^\+OK/, 'pop3 greeting');
like($s->pop3('USER alice@example.com'), qr/^\+OK/, 'pop3 user');
like($s->pop3("PASS $pw_alice"), qr/^\+OK/, 'pop3 logged in');
like($s->pop3('STAT'), qr/^\+OK/, 'pop3 stat');
like($s->pop3('QUIT'), qr/^\+OK/, 'pop3 quit');
$s->at_eof(5);

wait_for(sub { grep { /proxy: .*close/ } story(conn_of($port) || 0) }, 5);

my $conn = conn_of($port);
ok($conn, 'pop3: connection found in the log');

is(in_order([story($conn)],
    qr/proxy: /,
    qr/router: /,
    qr/proxy: .*backend/,
    qr/proxy: .*relay/,
    qr/proxy: .*clos/,
), '', 'pop3: the session told in order');

# IMAP: a refused password, then a login

$s = MailPlus::Test::Client->new($t->port('imap'));
$port = $s->sock->sockport();
like($s->getline(), qr/^\* OK/, 'imap greeting');
like($s->imap('a1', 'LOGIN alice@example.com "wrong-Sesame"'), qr/^a1 NO/m,
    'imap wrong password');
like($s->imap('a2', "LOGIN alice\@example.com \"$pw_alice\""), qr/^a2 OK/m,
    'imap logged in');
like($s->imap('a3', 'LOGOUT'), qr/^a3 OK/m, 'imap logout');

wait_for(sub { grep { /proxy: .*clos/ } story(conn_of($port) || 0) }, 5);

$conn = conn_of($port);

is(in_order([story($conn)],
    qr/proxy: /,
    qr/router: .*(?:deny|denied|refus|fail)/i,
    qr/router: .*(?:allow|route)/i,
    qr/proxy: .*backend/,
    qr/proxy: .*clos/,
), '', 'imap: refusal, login, backend, close, in order');

# SMTP: a message queued and delivered over LMTP

$s = MailPlus::Test::Client->new($t->port('smtp'));
$port = $s->sock->sockport();
like($s->smtp_reply(), qr/^220/, 'smtp greeting');
like($s->smtp('EHLO client.test'), qr/^250/m, 'ehlo');
like($s->smtp('AUTH PLAIN '
    . encode_base64("\0alice\@example.com\0$pw_alice", '')), qr/^235/,
    'smtp auth');
like($s->smtp('MAIL FROM:<alice@example.com>'), qr/^250/, 'mail');
like($s->smtp('RCPT TO:<bob@example.com>'), qr/^250/, 'rcpt');
like($s->smtp('DATA'), qr/^354/, 'data');
like($s->smtp("Subject: debug\r\n\r\nHello.\r\n."), qr/^250/, 'queued');
like($s->smtp('QUIT'), qr/^221/, 'quit');

# AUTH LOGIN: the password alone, in base64, on a line of its own

$s = MailPlus::Test::Client->new($t->port('smtp'));
like($s->smtp_reply(), qr/^220/, 'smtp greeting');
like($s->smtp('EHLO client.test'), qr/^250/m, 'ehlo');
like($s->smtp('AUTH LOGIN'), qr/^334/, 'auth login');
like($s->smtp(encode_base64('bob@example.com', '')), qr/^334/, 'login sent');
like($s->smtp(encode_base64($pw_bob, '')), qr/^235/, 'auth login accepted');
like($s->smtp('QUIT'), qr/^221/, 'quit');

ok(wait_for(sub { $t->maildir_count($da, 'bob@example.com') >= 1 }, 15),
    'smtp: delivered');

$conn = conn_of($port);

is(in_order([story($conn)],
    qr/smtp: /,
    qr/smtp: .*EHLO/i,
    qr/smtp: .*AUTH/i,
    qr/smtp: .*MAIL/i,
    qr/smtp: .*RCPT/i,
    qr/smtp: .*DATA/i,
    qr/queue: /,
    qr/smtp: .*QUIT/i,
), '', 'smtp: the session told in order');

my @log = log_lines();

is(in_order(\@log,
    qr/queue: .*commit/i,
    qr/delivery.*: /,
    qr/delivery client: .*connect/i,
    qr/delivery client: .*LHLO/i,
    qr/delivery client: .*MAIL/i,
    qr/delivery client: .*RCPT/i,
    qr/delivery client: .*(?:DATA|BDAT)/i,
    qr/queue: /,
), '', 'delivery: the message told from commit to the LMTP reply');

# HTTP submission and the queue API

my $http = HTTP::Tiny->new(timeout => 10 * $MailPlus::Test::SCALE);
my $r = $http->request('POST', 'http://127.0.0.1:' . $t->port('http')
    . '/submit?from=bob@example.com&to=alice@example.com', {
        headers => { 'Authorization' => 'Basic '
            . encode_base64("bob\@example.com:$pw_bob", ''),
            'Content-Type' => 'message/rfc822' },
        content => "Subject: http\r\n\r\nHi.\r\n" });
is($r->{status}, 202, 'http submit accepted');

$r = $http->get('http://127.0.0.1:' . $t->port('http') . '/queue/messages');
is($r->{status}, 200, 'queue api listing');

ok(wait_for(sub { $t->maildir_count($da, 'alice@example.com') >= 1 }, 15),
    'http: delivered');

@log = log_lines();

is(in_order(\@log, qr/http submit: /, qr/queue: .*commit/i), '',
    'http submit: told, then committed');
ok((grep { /http queue api: / } @log), 'queue api: told');

# no password in any form, at any level

my $all = $t->read_file('error.log');

for my $pw ($pw_alice, $pw_bob, 'wrong-Sesame') {
    unlike($all, qr/\Q$pw\E/, "no password \"$pw\" in the log");
}

# (nginx's own HTTP debug lines print every request header, Authorization
# too: that one is stock nginx's, docs/security.md)

for my $b64 (encode_base64("\0alice\@example.com\0$pw_alice", ''),
    encode_base64($pw_bob, ''))
{
    unlike($all, qr/\Q$b64\E/, "no base64 credentials \"$b64\" in the log");
}

$t->finish();

###############################################################################
