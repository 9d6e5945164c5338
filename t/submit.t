#!/usr/bin/perl

# HTTP submission (mail_plus_submit): alice POSTs a message with HTTP Basic
# credentials checked by the router; nginx answers 202 with the queue ID
# only once the message is committed, and delivers it over LMTP to the
# Dovecot holding bob's mailbox, where bob reads it over POP3 and IMAP
# through nginx, with Received, Message-ID and Date added and bare LF made
# CRLF.  Refusals: no or wrong credentials 401 (and the router's throttle
# counts them), no recipient, a NUL byte or no message 400, another type
# 415, too large 413, GET 405.  A message answered 202 survives kill -9 of
# the workers and a restart, and is delivered.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw/ encode_base64 /;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my %da_users = ('alice@example.com' => 'pwA', 'carol@example.com' => 'pwC');
my %db_users = ('bob@example.com' => 'pwB');

my $da = $t->dovecot('a', users => \%da_users);
my $db = $t->dovecot('b', addr => '127.0.0.2', users => \%db_users);

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
carol@example.com:{PLAIN}pwC:a
bob@example.com:{PLAIN}pwB:b
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 2;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 1s;
    router_auth_max_delay 1s;
    router_login_fails 3;
    router_zone   throttle:1m;

    router_pool a {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3} lmtp=$da->{lmtp};
    }

    router_pool b {
        server 127.0.0.2 imap=$db->{imap} pop3=$db->{pop3} lmtp=$db->{lmtp};
    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_retry_first 1s;
    queue_retry_max 2s;
    queue_scan_interval 300ms;
    queue_connect_timeout 3s;
    queue_helo_name mx.test;

    # the MX: the delivery takes the local domains from it

    server {
        listen     127.0.0.1:%%PORT_smtp%%;
        protocol   smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
    }

    server {
        listen     127.0.0.1:%%PORT_pop3%%;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        imap_auth  login plain;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen       127.0.0.1:%%PORT_http%%;
        server_name  submit.test;

        client_max_body_size 20m;

        location = /auth {
            mail_router_auth;
        }

        location = /submit {
            mail_plus_submit;
        }

        location = /status {
            mail_plus_status;
        }

        location = /small {
            mail_plus_submit;
            mail_plus_submit_max_size 64k;
            mail_plus_submit_max_recipients 2;
        }
    }
}
EOF

$t->run();

###############################################################################

my $http = HTTP::Tiny->new(timeout => 20);
my $base = 'http://127.0.0.1:' . $t->port('http');

# post($path_and_query, $body, user => ..., pass => ..., headers => {})

sub post {
    my ($uri, $body, %o) = @_;

    my %h = (%{ $o{headers} || {} });
    $h{'Content-Type'} ||= 'message/rfc822';

    if (defined $o{user}) {
        $h{Authorization} = 'Basic '
            . encode_base64("$o{user}:$o{pass}", '');
    }

    return $http->request($o{method} || 'POST', "$base$uri",
        { headers => \%h, content => $body });
}

sub alice {
    my ($uri, $body, %o) = @_;
    return post($uri, $body, user => 'alice@example.com', pass => 'pwA',
        %o);
}

sub json {
    my ($r) = @_;
    my $v = eval { decode_json($r->{content}) };
    return $v || {};
}

sub pop3_retr { $t->pop3_retr($t->port('pop3'), @_) }
sub imap_fetch { $t->imap_fetch($t->port('imap'), @_) }

sub spool_all {
    return map { $t->spool('spool', $_) } qw/ incoming active deferred /;
}

sub bob_count { $t->maildir_count($db, 'bob@example.com') }

###############################################################################

# the whole path: bare LF, no Message-ID, no Date

my $msg = "From: alice\@example.com\nTo: bob\@example.com\n"
    . "Subject: over http\n\nHello over HTTP.\n.single dot\nlast line";

my $r = alice('/submit?to=bob%40example.com', $msg);

is($r->{status}, 202, 'submitted: 202 Accepted');
like($r->{headers}{'content-type'}, qr{^application/json}, 'a JSON answer');

my $id = json($r)->{queue_id};
like($id, qr/^[0-9A-F]{22}$/, 'with the queue ID');

ok(wait_for(sub { bob_count() == 1 }, 10), 'delivered to the backend of bob');

my $text = pop3_retr('bob@example.com', 'pwB', 1);
like($text, qr/^Subject: over http\r$/m, 'bob reads it over POP3');
like($text, qr/^Received: from \[127\.0\.0\.1\]\r\n\tby submit\.test (?#
    )\(nginx mail_plus\) with HTTPA id $id\r\n\tfor <bob\@example\.com>;/m,
    'with a Received field "with HTTPA"');
like($text, qr/^Message-ID: <$id\@submit\.test>\r$/m, 'a Message-ID added');
like($text, qr/^Date: \w{3}, \d+ \w{3} \d{4} [\d:]{8} \+0000\r$/m,
    'a Date added');
like($text, qr/^\.\.single dot\r$/m, 'a leading dot kept (stuffed by POP3)');
like($text, qr/^last line\r$/m, 'the last line ended');

my $stored = $t->maildir_text($db, 'bob@example.com');
unlike($stored, qr/Message-ID:.*\n(?s:.*)Message-ID:/, 'one Message-ID');

like($t->read_file('error.log'),
    qr/queued $id: from=<alice\@example\.com>, nrcpt=1, size=(\d+)/,
    'logged, with the login as the sender');

my ($size) = $t->read_file('error.log') =~ /queued $id: .*?size=(\d+)/;
my $lfs = () = $msg =~ /\n/g;
is($size, length($msg) + $lfs, 'bare LF stored as CRLF (the size)');

like(imap_fetch('bob@example.com', 'pwB', 1), qr/Subject: over http/,
    'bob reads it over IMAP');

ok(wait_for(sub { !spool_all() }, 5), 'the spool is empty');

# headers of the client are kept; two recipients, DSN arguments, from=

$r = alice('/submit?from=alice%40example.com&to=bob@example.com'
    . '&to=carol@example.com&notify=FAILURE,DELAY&ret=HDRS&envid=E42',
    "Message-ID: <own\@client>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
    . "Subject: two\r\n\r\nbody\r\n");

is($r->{status}, 202, 'two recipients: 202');

ok(wait_for(sub { bob_count() == 2 }, 10), 'delivered to bob');
ok(wait_for(sub { $t->maildir_count($da, 'carol@example.com') == 1 }, 10),
    'delivered to carol');

$text = $t->maildir_text($da, 'carol@example.com');
like($text, qr/^Message-ID: <own\@client>\r?$/m, 'own Message-ID kept');
is(() = $text =~ /^Message-ID:/mg, 1, 'no second Message-ID');
is(() = $text =~ /^Date:/mg, 1, 'no second Date');

# refusals

$r = post('/submit?to=bob@example.com', "Subject: x\r\n\r\nx\r\n");
is($r->{status}, 401, 'no credentials: 401');
like($r->{headers}{'www-authenticate'} || '', qr/^Basic realm="mail"/,
    'with WWW-Authenticate');

my $t0 = time();
$r = post('/submit?to=bob@example.com', "Subject: x\r\n\r\nx\r\n",
    user => 'alice@example.com', pass => 'wrong');
is($r->{status}, 401, 'wrong password: 401');
ok(time() - $t0 >= 0.9, 'after the router\'s delay');
is(json($r)->{error}, 'authentication failed', 'a JSON error');

# the throttle counts HTTP failures as SMTP AUTH ones: locked out, the
# right password too

for my $i (1 .. 3) {
    post('/submit?to=bob@example.com', "Subject: x\r\n\r\nx\r\n",
        user => 'carol@example.com', pass => "wrong$i");
}

$r = post('/submit?to=bob@example.com', "Subject: x\r\n\r\nx\r\n",
    user => 'carol@example.com', pass => 'pwC');
is($r->{status}, 401, 'locked out after router_login_fails failures');
like($t->read_file('error.log'), qr/login "carol\@example\.com" failed: .*/,
    'the failure logged');

# control characters in the Basic credentials: refused as a failed login
# (401, counted by the router), logged escaped, whatever the arguments

sub denied {
    my $s = json($http->get("$base/status"));
    return $s->{logins}{denied};
}

for my $case (
    [ "alice\@example.com\r\nX-Injected=1", 'pwA', 'CRLF in the login' ],
    [ "alice\@example.com\0", 'pwA', 'NUL in the login' ],
    [ "erin\@example.com", "pwA\0", 'NUL in the password' ],
    [ "erin\@example.com", "pwA\r\n", 'CRLF in the password' ])
{
    my ($user, $pass, $name) = @$case;

    my $before = denied();

    $r = post('/submit?to=bob@example.com', "Subject: x\r\n\r\nx\r\n",
        user => $user, pass => $pass);
    is($r->{status}, 401, "$name: 401");
    is(denied(), $before + 1, "$name: counted as a denied login");

    (my $esc = $user) =~ s/([\x00-\x1f\x7f"\\])/sprintf('\\x%02x', ord $1)/ge;
    like($t->read_file('error.log'), qr/http submission: login "\Q$esc\E" (?#
        )failed: control character/, "$name: the login logged escaped");
}

unlike($t->read_file('error.log'), qr/^X-Injected/m,
    'no log line starts with what the login carried');

$r = alice('/submit', "Subject: x\r\n\r\nx\r\n");
is($r->{status}, 400, 'no recipient: 400');
like(json($r)->{error}, qr/recipient/, 'and why');

$r = alice('/submit?to=not%20an%20address', "Subject: x\r\n\r\nx\r\n");
is($r->{status}, 400, 'a bad recipient: 400');

$r = alice('/submit?to=bob@example.com&rcpt=x', "Subject: x\r\n\r\nx\r\n");
is($r->{status}, 400, 'an unknown argument: 400');

$r = alice('/small?to=bob@example.com&to=carol@example.com'
    . '&to=alice@example.com', "Subject: x\r\n\r\nx\r\n");
is($r->{status}, 400, 'too many recipients: 400');

$r = alice('/submit?to=bob@example.com', "Subject: nul\r\n\r\na\0b\r\n");
is($r->{status}, 400, 'a NUL byte: 400');
like(json($r)->{error}, qr/NUL/, 'and why');

$r = alice('/submit?to=bob@example.com', '');
is($r->{status}, 400, 'an empty message: 400');

$r = alice('/submit?to=bob@example.com', "x\r\n",
    headers => { 'Content-Type' => 'text/plain' });
is($r->{status}, 415, 'another content type: 415');

my $big = "Subject: big\r\n\r\n" . ("y" x 998 . "\r\n") x 70;

$r = alice('/small?to=bob@example.com', $big);
is($r->{status}, 413, 'over mail_plus_submit_max_size: 413');

# 2 MB: more than the socket buffers hold, so that nginx refuses it before
# it has all arrived

my @chunks = (("z" x 998 . "\r\n") x 8) x 256;
unshift @chunks, "Subject: chunked\r\n\r\n";
$r = alice('/small?to=bob@example.com', sub { shift @chunks });
is($r->{status}, 413, 'chunked, over the limit: 413');
is($r->{headers}{connection}, 'close', 'the rest unread: the connection closes');
ok(!grep({ -s $_ } glob($t->path('spool/tmp') . '/*')),
    'its temporary file removed before the answer');

$r = alice('/small?to=bob@example.com', "Subject: small\r\n\r\nok\r\n");
is($r->{status}, 202, 'under the limit: 202');

$r = alice('/submit?to=bob@example.com', undef, method => 'GET');
is($r->{status}, 405, 'GET: 405');
is($r->{headers}{allow}, 'POST', 'with Allow');

ok(wait_for(sub { bob_count() == 3 }, 10), 'only the accepted one delivered');
ok(wait_for(sub { !spool_all() }, 5), 'nothing left in the spool');


# a message answered 202 survives kill -9 of the workers: the backend is
# down, so it is still in the spool when the workers die

kill 'TERM', $db->{pid};
waitpid($db->{pid}, 0);

$r = alice('/submit?to=bob@example.com',
    "Subject: survivor\nX-Bare: lf\n\nkept\nbare\rcr\n");
is($r->{status}, 202, 'accepted while the backend is down');
$id = json($r)->{queue_id};

kill 'KILL', $t->workers();
$t->{ignore_alerts} = qr/exited on signal 9/;

# it moves between incoming/, active/ and deferred/ as the new workers
# try it: read wherever it is

$text = wait_for(sub {
    for my $f (map { $t->spool_files('spool', $_) }
               qw/ incoming active deferred /)
    {
        next unless $f =~ m{/\Q$id\E$} && -s $t->path($f);
        my $v = $t->read_file($f);
        return $v if $v =~ /^end\r$/m;
    }
    return '';
}, 5);

like($text, qr/^id $id\r$/m, 'the message is in the spool');
like($text, qr/^login alice\@example\.com\r$/m, 'the login in the envelope');
unlike($text, qr/[^\r]\n|\r[^\n]/,
    'bare LF and CR stored as CRLF in the queue file');
like($text, qr/^end\r\nReceived: from \[127\.0\.0\.1\]\r\n/m,
    'the Received field first');

$t->stop();
$db = $t->dovecot('b', addr => '127.0.0.2', users => \%db_users);
$t->run();

ok(wait_for(sub {
    $t->maildir_text($db, 'bob@example.com') =~ /^Subject: survivor/m
}, 20), 'delivered after the restart');

$t->finish();

###############################################################################
