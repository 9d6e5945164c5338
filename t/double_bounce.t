#!/usr/bin/perl

# Double bounces: a message from <> (a bounce) whose delivery fails for
# good has no sender to go back to.  It is logged at "warn" and, with
# queue_double_bounce_to, a short notice goes to that address.  A message
# from bob@nowhere.example to ghost (known to the router, not to the
# mailbox backend: 550 over LMTP) bounces to bob; nowhere.example is
# routed to an smtp-sink that refuses every RCPT with a 5xx, so the bounce
# fails too.  The notice reaches the postmaster's mailbox in Dovecot;
# without the directive there is a warn line; a notice that itself fails
# is only logged, nothing loops.

use warnings;
use strict;

use Test::More;

use Net::SMTP;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

plan(skip_all => 'no smtp-sink') unless -x $MailPlus::Test::SMTP_SINK;

my $t = MailPlus::Test->new();

my $da = $t->dovecot('a', users => {
    'alice@example.com' => 'pwA',
    'postmaster@example.com' => 'pwP',
});

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
postmaster@example.com:{PLAIN}pwP:a
ghost@example.com:{PLAIN}pwG:a
EOF

$t->smtp_sink('nowhere', '-f', 'RCPT');

sub conf {
    my ($double) = @_;

    $t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 2;

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
    queue_connect_timeout 3s;
    queue_helo_name mx.test;
    $double

    queue_route nowhere.example 127.0.0.1:%%PORT_nowhere%%;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_trusted_networks 127.0.0.0/8;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen  127.0.0.1:%%PORT_http%%;

        location = /auth {
            mail_router_auth;
        }
    }
}
EOF
}

sub send_mail {
    my ($from, $to, $subject) = @_;

    my $smtp = Net::SMTP->new('127.0.0.1', Port => $t->port('smtp'),
        Hello => 'client.test', Timeout => 10) or return 'connect';

    $smtp->mail($from) or return 'MAIL';
    $smtp->recipient($to) or return 'RCPT';
    $smtp->data("From: $from\r\nSubject: $subject\r\n\r\nHello.\r\n")
        or return 'DATA';

    my ($id) = $smtp->message() =~ /queued as (\w+)/;
    $smtp->quit();

    return $id || 'no ID';
}

sub spool_empty {
    return !grep { $t->spool('spool', $_) } qw/ incoming active deferred /;
}

sub postmaster_count {
    return $t->maildir_count($da, 'postmaster@example.com');
}

###############################################################################

# with queue_double_bounce_to: the notice reaches the postmaster

conf('queue_double_bounce_to postmaster@example.com;');
$t->run();

my $id = send_mail('bob@nowhere.example', 'ghost@example.com', 'to ghost');
like($id, qr/^\w{22}$/, 'queued for ghost');

ok(wait_for(sub { postmaster_count() == 1 }, 20),
    'a double bounce notice reached the postmaster');

my $text = $t->maildir_text($da, 'postmaster@example.com');

like($text, qr/^Return-Path: <>/m, 'the notice is from <>');
like($text, qr/^Subject: Undeliverable mail from <> \(double bounce\)\r?$/m,
    'its subject');
like($text, qr/^<bob\@nowhere\.example>: 5\d\d /m,
    'it names the bounce recipient and the refusal');

my $log = $t->read_file('error.log');

like($log, qr/\[warn\].*undeliverable message from <>, (?#
    )to=<bob\@nowhere\.example>/, 'the double bounce logged at warn');
like($log, qr/\[warn\].*double bounce notice to <postmaster\@example\.com>/,
    'and the notice');
like($t->read_file('nowhere.log'), qr/RCPT TO:<bob\@nowhere\.example>/,
    'the bounce was tried at the sender\'s domain');

ok(wait_for(\&spool_empty, 10), 'nothing left in the queue');

# a failure of a message the client sent from <> is a double bounce too

$id = send_mail('', 'ghost@example.com', 'null sender to ghost');
like($id, qr/^\w{22}$/, 'queued from <>');

ok(wait_for(sub { postmaster_count() == 2 }, 20),
    'a notice for a message from <>');
like($t->maildir_text($da, 'postmaster@example.com'),
    qr/^<ghost\@example\.com>: 5\d\d /m, 'it names ghost');

ok(wait_for(\&spool_empty, 10), 'nothing left in the queue');

###############################################################################

# off (the default): only the warn line

conf('');
$t->restart();

my $before = length $t->read_file('error.log');

$id = send_mail('carol@nowhere.example', 'ghost@example.com', 'no notice');
like($id, qr/^\w{22}$/, 'queued without the directive');

ok(wait_for(sub {
    substr($t->read_file('error.log'), $before)
        =~ /\[warn\].*undeliverable message from <>, (?#
            )to=<carol\@nowhere\.example>.*no double bounce notice/
}, 20), 'a warn line, no notice');

ok(wait_for(\&spool_empty, 10), 'nothing left in the queue');
is(postmaster_count(), 2, 'the postmaster got nothing more');

###############################################################################

# a notice that fails itself is only logged: no notice about a notice

conf('queue_double_bounce_to ghost@example.com;');
$t->restart();

$before = length $t->read_file('error.log');

$id = send_mail('dave@nowhere.example', 'ghost@example.com', 'no loop');
like($id, qr/^\w{22}$/, 'queued with the notice going to ghost');

ok(wait_for(sub {
    substr($t->read_file('error.log'), $before)
        =~ /\[warn\].*undeliverable message from <>, to=<ghost\@example\.com>/
}, 20), 'the failed notice logged');

ok(wait_for(\&spool_empty, 10), 'nothing left in the queue');

select undef, undef, undef, 1.5;

my @notices = substr($t->read_file('error.log'), $before)
    =~ /double bounce notice to/g;
is(scalar @notices, 1, 'one notice, not a loop');

$t->finish();
