#!/usr/bin/perl

# Bad input to a live session: random bytes and mangled commands over many
# connections (pipelined, in random pieces).  The worker must survive (no
# crash, no respawn), answer a normal session afterwards, and log no
# alerts; under "make check-asan" no sanitizer reports either.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

$t->write_file('users', "alice:{PLAIN}secretA\n");

$t->write_file_expand('nginx.conf', <<'EOF');
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;

    router_pool a {
        server 127.0.0.1 imap=1;
    }

    auth_http 127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_auth_plaintext on;
        smtp_max_line_length 512;
        smtp_max_message_size 64k;
        smtp_max_errors 50;
    }
}
EOF

$t->run();

my $port = $t->port('smtp');
my $worker;
MailPlus::Test::wait_for(sub { ($worker) = $t->workers(); $worker });

# GARBAGE_SEED and GARBAGE_SESSIONS make longer runs by hand

my $total = $ENV{GARBAGE_SESSIONS} || 150;
srand($ENV{GARBAGE_SEED} || 20261130);

my @pieces = (
    "HELO x", "EHLO x", "MAIL FROM:<", "MAIL FROM:<a\@b> SIZE=",
    "MAIL FROM:<a\@b> BODY=8BITMIME SMTPUTF8", "RCPT TO:<",
    "RCPT TO:<alice\@example.com>", "RCPT TO:<\"q\\\"x\"\@example.com>",
    "DATA", "BDAT ", "BDAT 5", "BDAT 3 LAST", "AUTH PLAIN ", "AUTH LOGIN",
    "AUTH PLAIN " . encode_base64("\0alice\0secretA", ''), "*", "=",
    "RSET", "NOOP", "VRFY", "HELP", "STARTTLS", "QUIT", ".", "..", "\r",
    "\n", "\r\n", "\r\n.\r\n", "\0", "\xff\xfe", "@", "<>", ":",
);

sub garbage {
    my $s = '';

    for (1 .. 1 + int(rand(40))) {
        my $r = rand();

        if ($r < 0.5) {
            $s .= $pieces[int(rand(@pieces))];

        } elsif ($r < 0.8) {
            $s .= join '', map { chr(int(rand(256))) } 1 .. int(rand(20));

        } elsif ($r < 0.9) {
            $s .= int(rand(100000));

        } else {
            $s .= "x" x int(rand(2000));
        }

        $s .= "\r\n" if rand() < 0.6;
    }

    return $s;
}

my $sessions = 0;

for my $n (1 .. $total) {
    my $c = MailPlus::Test::Client->new($port, timeout => 2) or next;
    $sessions++;

    my $data = garbage();

    # in random pieces, reading what comes back in between

    while (length $data) {
        my $piece = substr($data, 0, 1 + int(rand(300)), '');
        $c->send($piece, raw => 1) or last;
        $c->getline(0.01) while rand() < 0.5 && defined $c->getline(0.01);
    }

    $c->disconnect();
}

is($sessions, $total, "$total sessions of garbage");

ok(kill(0, $worker), 'the worker is alive');
is_deeply([ $t->workers() ], [ $worker ], 'and was never replaced');

my $c = MailPlus::Test::Client->new($port);
like($c->getline(), qr/^220 /, 'greeting after the garbage');
$c->smtp('EHLO c.example');
$c->smtp('MAIL FROM:<a@b.example>');
$c->smtp('RCPT TO:<alice@example.com>');
$c->smtp('DATA');
$c->send("Subject: after\r\n\r\nfine\r\n.\r\n", raw => 1);
like($c->smtp_reply(), qr/^250 2\.0\.0 Ok: queued as/, 'a message after the garbage');
$c->smtp('QUIT');

$t->stop();

is_deeply([ $t->spool('spool', 'tmp') ], [], 'no temporary files left');

my ($alerts, $san) = $t->log_problems();
is(join("\n", @$alerts), '', 'no alerts in error.log');
is(join("\n", @$san), '', 'no sanitizer reports');

done_testing();
