#!/usr/bin/perl

# Delivery: alice submits over SMTP through nginx, nginx queues the message
# and delivers it over LMTP to the Dovecot holding bob's mailbox, where bob
# reads it over POP3 and IMAP through nginx; a recipient refused with 5xx
# is bounced to the sender's mailbox; a backend down defers the message
# until it comes back; a restart with a full queue loses nothing and
# delivers nothing twice; a worker killed during delivery loses nothing.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my %da_users = ('alice@example.com' => 'pwA');
my %db_users = ('bob@example.com' => 'pwB');

my $da = $t->dovecot('a', users => \%da_users);
my $db = $t->dovecot('b', addr => '127.0.0.2', users => \%db_users);

# ghost is known to the router but not to its backend: 550 from LMTP

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
bob@example.com:{PLAIN}pwB:b
ghost@example.com:{PLAIN}pwG:b
EOF

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

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_auth_plaintext on;
    }

    server {
        listen    127.0.0.1:%%PORT_pop3%%;
        protocol  pop3;
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
        listen  127.0.0.1:%%PORT_http%%;

        location = /auth {
            mail_router_auth;
        }
    }
}
EOF

$t->run();

###############################################################################

my $n = 0;

# submit(\@rcpts, subject): as alice, with AUTH PLAIN; returns the reply
# to the end of the data

sub submit {
    my ($rcpts, $subject, %opts) = @_;

    my $body = $opts{body} || "Hello.\r\n..leading dot\r\n";

    return $t->submit($t->port('smtp'), 'alice@example.com', $rcpts,
        "From: alice\@example.com\r\nTo: bob\@example.com\r\n"
        . "Subject: $subject\r\n\r\n$body",
        auth => encode_base64("\0alice\@example.com\0pwA", ''));
}

sub maildir_count { $t->maildir_count(@_) }
sub maildir_text { $t->maildir_text(@_) }

sub pop3_subject { $t->pop3_retr($t->port('pop3'), @_) }
sub imap_fetch { $t->imap_fetch($t->port('imap'), @_) }

sub spool_all {
    return map { $t->spool('spool', $_) } qw/ incoming active deferred /;
}

###############################################################################

# the whole path

like(submit(['bob@example.com'], 'hello bob'), qr/^250 /, 'submitted');

ok(wait_for(sub { maildir_count($db, 'bob@example.com') == 1 }, 10),
    'delivered to the backend of bob');

my $r = pop3_subject('bob@example.com', 'pwB', 1);
like($r, qr/^Subject: hello bob\r$/m, 'bob reads it over POP3');
like($r, qr/^\.\.leading dot\r$/m, 'dot-stuffing kept the dot');
like($r, qr/^Received: from client\.test/m, 'with its Received field');

like(imap_fetch('bob@example.com', 'pwB', 1), qr/Subject: hello bob/,
    'bob reads it over IMAP');

ok(wait_for(sub { !spool_all() }, 5), 'the spool is empty');

like($t->read_file('error.log'),
    qr/delivery \w+: to=<bob\@example\.com>, relay=127\.0\.0\.2:\d+, delay=\d+, dsn=2\.\d\.\d, status=sent/,
    'the log line of the delivery');

# one good and one failing recipient: one delivery, one bounce

like(submit(['bob@example.com', 'ghost@example.com'], 'half good'),
    qr/^250 /, 'submitted to bob and ghost');

ok(wait_for(sub { maildir_count($db, 'bob@example.com') == 2 }, 10),
    'delivered to bob');

ok(wait_for(sub { maildir_count($da, 'alice@example.com') == 1 }, 10),
    'a bounce reached alice');

my $bounce = maildir_text($da, 'alice@example.com');

like($bounce, qr/^Return-Path: <>/m, 'from the null sender');
like($bounce, qr/Content-Type: multipart\/report; report-type=delivery-status/,
    'a multipart report');
like($bounce, qr/^Final-Recipient: rfc822; ghost\@example\.com\r?$/m,
    'with the failed recipient');
unlike($bounce, qr/Final-Recipient: rfc822; bob/, 'not the delivered one');
like($bounce, qr/^Action: failed\r?$/m, 'action');
like($bounce, qr/^Status: 5\.\d\.\d+\r?$/m, 'status');
like($bounce, qr/^Diagnostic-Code: smtp; 550/m, 'diagnostic code');
like($bounce, qr/^Reporting-MTA: dns; mx\.test\r?$/m,
    'reporting MTA: queue_helo_name');
like($bounce, qr/^From: .*<MAILER-DAEMON\@mx\.test>/m,
    'from the mailer daemon of queue_helo_name');
like($bounce, qr/^Arrival-Date: /m, 'arrival date');
like($bounce, qr/^Subject: half good\r?$/m, 'the original headers');

ok(wait_for(sub { !spool_all() }, 5), 'the spool is empty again');

sleep 1;
is(maildir_count($db, 'bob@example.com'), 2, 'bob got it once');
is(maildir_count($da, 'alice@example.com'), 1, 'alice got one bounce');

# RFC 3461 fields of the envelope (docs/spool.md) in the bounce

$t->inject('spool', 'alice@example.com', "envid ENV42\r\n"
    . "rcpt ghost\@example.com\r\n"
    . "dsn NOTIFY=FAILURE ORCPT=rfc822;Ghost\@example.com\r\n");

ok(wait_for(sub { maildir_count($da, 'alice@example.com') == 2 }, 10),
    'a bounce for the injected message');

$bounce = maildir_text($da, 'alice@example.com');

like($bounce, qr/^Original-Envelope-Id: ENV42\r?$/m, 'Original-Envelope-Id');
like($bounce, qr/^Original-Recipient: rfc822;Ghost\@example\.com\r?\n(?#
    )Final-Recipient: rfc822; ghost\@example\.com\r?$/m,
    'Original-Recipient');

# the backend down: deferred, then delivered at a retry

kill 'TERM', $db->{pid};
waitpid($db->{pid}, 0);

like(submit(['bob@example.com'], 'while down'), qr/^250 /, 'submitted');

ok(wait_for(sub { $t->spool('spool', 'deferred') == 1 }, 10),
    'deferred while the backend is down');

my ($id) = $t->spool('spool', 'deferred');
like($t->read_file("spool/state/$id"), qr/^attempts \d+$/m, 'a state file');

$db = $t->dovecot('b', addr => '127.0.0.2', users => \%db_users);

ok(wait_for(sub { maildir_count($db, 'bob@example.com') == 3 }, 15),
    'delivered when the backend is back');

ok(wait_for(sub { !spool_all() }, 5), 'the spool is empty');
ok(!-e $t->path("spool/state/$id"), 'the state file is gone');

# a restart with a full queue: nothing lost, nothing twice

kill 'TERM', $db->{pid};
waitpid($db->{pid}, 0);

for my $i (1 .. 10) {
    submit(['bob@example.com'], "queued $i");
}

ok(wait_for(sub { $t->spool('spool', 'deferred') == 10 }, 15),
    'ten messages deferred');

$t->stop();

$db = $t->dovecot('b', addr => '127.0.0.2', users => \%db_users);

$t->run();

ok(wait_for(sub { maildir_count($db, 'bob@example.com') == 13 }, 20),
    'every queued message delivered after the restart');

ok(wait_for(sub { !spool_all() }, 5), 'the spool is empty');
sleep 2;
is(maildir_count($db, 'bob@example.com'), 13, 'none twice');

# a reload with a full queue: the new workers take it over

kill 'TERM', $db->{pid};
waitpid($db->{pid}, 0);

for my $i (1 .. 5) {
    submit(['bob@example.com'], "reloaded $i");
}

ok(wait_for(sub { $t->spool('spool', 'deferred') == 5 }, 15),
    'five messages deferred');

ok($t->reload(), 'reloaded');

$db = $t->dovecot('b', addr => '127.0.0.2', users => \%db_users);

ok(wait_for(sub { maildir_count($db, 'bob@example.com') == 18 }, 20),
    'every queued message delivered after the reload');

ok(wait_for(sub { !spool_all() }, 5), 'the spool is empty');
sleep 2;
is(maildir_count($db, 'bob@example.com'), 18, 'none twice');

# kill -9 of the workers during delivery: never lost

my $big = ("x" x 998 . "\r\n") x 2000;

for my $i (1 .. 10) {
    submit(['bob@example.com'], "big $i", body => $big);
}

kill 'KILL', $t->workers();
$t->{ignore_alerts} = qr/exited on signal 9/;

ok(wait_for(sub {
    my $text = maildir_text($db, 'bob@example.com');
    my %seen = map { $_ => 1 } ($text =~ /^Subject: (big \d+)/mg);
    return scalar(keys %seen) == 10;
}, 30), 'every message delivered after kill -9 of the workers');

ok(wait_for(sub { !spool_all() }, 10), 'the spool is empty');

my $count = maildir_count($db, 'bob@example.com') - 18;
ok($count >= 10 && $count <= 20, "delivered $count times, at least once");

$t->finish();

###############################################################################
