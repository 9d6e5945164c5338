#!/usr/bin/perl

# Delivery status notifications (RFC 3461/3464) made by the delivery
# engine: NOTIFY=SUCCESS gives the sender a report with "Action: delivered"
# for a local mailbox, "Action: relayed" for a next hop without DSN, and
# none for a next hop with DSN (it gets NOTIFY= and reports itself) or for
# the null sender; RET=FULL returns the whole message in a failure report,
# RET=HDRS its header section, and a message over queue_bounce_size_limit
# its header section with a note.  alice sends with Net::SMTP and reads
# the reports from her mailbox with Net::POP3, both through nginx.

use warnings;
use strict;

use Test::More;

use Net::POP3;
use Net::SMTP;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

plan(skip_all => 'no smtp-sink') unless -x $MailPlus::Test::SMTP_SINK;

my $t = MailPlus::Test->new();

my $da = $t->dovecot('a', users => {
    'alice@example.com' => 'pwA',
    'bob@example.com' => 'pwB',
});

# ghost is known to the router but not to its backend: 550 from LMTP

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
bob@example.com:{PLAIN}pwB:a
ghost@example.com:{PLAIN}pwG:a
EOF

$t->smtp_sink('nodsn', '-N');
$t->smtp_sink('dsn');

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
    queue_bounce_size_limit 8k;

    queue_route nodsn.example 127.0.0.1:%%PORT_nodsn%%;
    queue_route dsn.example 127.0.0.1:%%PORT_dsn%%;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_trusted_networks 127.0.0.0/8;
    }

    server {
        listen    127.0.0.1:%%PORT_pop3%%;
        protocol  pop3;
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

# send_mail(\%mail_opts, [[rcpt, \%rcpt_opts], ...], subject, body): from
# alice with Net::SMTP (Return => 'FULL', Notify => [...]); returns the
# queue ID

sub send_mail {
    my ($mail, $rcpts, $subject, $body) = @_;

    my $smtp = Net::SMTP->new('127.0.0.1', Port => $t->port('smtp'),
        Hello => 'client.test', Timeout => 10) or return 'connect';

    $smtp->mail('alice@example.com', %$mail) or return 'MAIL';

    for my $r (@$rcpts) {
        $smtp->recipient($r->[0], $r->[1] || {}) or return 'RCPT';
    }

    $smtp->data("From: alice\@example.com\r\nSubject: $subject\r\n\r\n"
        . $body) or return 'DATA';

    my ($id) = $smtp->message() =~ /queued as (\w+)/;
    $smtp->quit();

    return $id || 'no ID';
}

sub mailbox_count {
    my $md = "$da->{dir}/home/alice\@example.com/Maildir";
    my @f = (glob("$md/new/*"), glob("$md/cur/*"));
    return scalar @f;
}

# report(n): the n-th message of alice's mailbox, read over POP3

sub report {
    my ($n) = @_;

    my $pop = Net::POP3->new('127.0.0.1', Port => $t->port('pop3'),
        Timeout => 10) or return 'connect';

    defined $pop->login('alice@example.com', 'pwA') or return 'login';

    my $lines = $pop->get($n);
    $pop->quit();

    return $lines ? join('', @$lines) : 'RETR';
}

sub queued {
    my ($id) = @_;
    return grep { /^\Q$id\E/ }
        map { $t->spool('spool', $_) } qw/ incoming active deferred /;
}

sub sink_log {
    return $t->read_file("$_[0].log");
}

###############################################################################

# NOTIFY=SUCCESS: delivered to a local mailbox, and passed on to a next hop
# with DSN; one report, for the local recipient only, headers only even
# with RET=FULL

my $id = send_mail({ Return => 'FULL' }, [
    [ 'bob@example.com', { Notify => ['SUCCESS'] } ],
    [ 'y@dsn.example', { Notify => ['SUCCESS', 'FAILURE'] } ],
], 'hello bob', "SUCCESS-BODY-MARK\r\n");
like($id, qr/^\w{22}$/, 'queued for bob and the DSN relay');

ok(wait_for(sub { mailbox_count() == 1 }, 15), 'a report reached alice');

my $r = report(1);

like($r, qr/^Return-Path: <>/m, 'from the null sender');
like($r, qr/^Subject: Successful Mail Delivery Report\r?$/m, 'subject');
like($r, qr/report-type=delivery-status/, 'a multipart report');
like($r, qr/^Final-Recipient: rfc822; bob\@example\.com\r?\n(?#
    )Action: delivered\r?\nStatus: 2\.0\.0\r?$/m, 'bob: Action: delivered');
like($r, qr/^Remote-MTA: dns; 127\.0\.0\.1:$da->{lmtp}\r?$/m,
    'the mailbox backend');
like($r, qr/^Diagnostic-Code: smtp; 250 /m, 'its reply');
unlike($r, qr/y\@dsn\.example/, 'not the recipient passed on with DSN');
like($r, qr/^Content-Type: text\/rfc822-headers\r?$/m, 'header section');
like($r, qr/^Subject: hello bob\r?$/m, 'with the original subject');
unlike($r, qr/SUCCESS-BODY-MARK/, 'no body in a success report');

like(sink_log('dsn'), qr/RCPT TO:<y\@dsn\.example> NOTIFY=SUCCESS,FAILURE/,
    'NOTIFY passed on to the next hop with DSN');

# NOTIFY=SUCCESS to a next hop without DSN: relayed

$id = send_mail({}, [
    [ 'x@nodsn.example', { Notify => ['SUCCESS'] } ],
], 'relayed', "body\r\n");
like($id, qr/^\w{22}$/, 'queued for the next hop without DSN');

ok(wait_for(sub { mailbox_count() == 2 }, 15), 'a second report');

$r = report(2);

like($r, qr/^Final-Recipient: rfc822; x\@nodsn\.example\r?\n(?#
    )Action: relayed\r?\nStatus: 2\.\d\.\d\r?$/m, 'Action: relayed');
like($r, qr/^Remote-MTA: dns; 127\.0\.0\.1:${\ $t->port('nodsn')}\r?$/m,
    'the next hop');
like(sink_log('nodsn'), qr/RCPT TO:<x\@nodsn\.example>$/m,
    'no NOTIFY to a next hop without DSN');

# no success report for the null sender, nor without NOTIFY=SUCCESS

my @quiet = (
    $t->inject('spool', '', "rcpt bob\@example.com\r\n"
        . "dsn NOTIFY=SUCCESS\r\n"),
    $t->inject('spool', 'alice@example.com', "rcpt bob\@example.com\r\n"
        . "dsn NOTIFY=FAILURE,DELAY\r\n"),
    $t->inject('spool', 'alice@example.com', "rcpt bob\@example.com\r\n"),
);

for my $q (@quiet) {
    ok(wait_for(sub { !queued($q) }, 15), "$q delivered and removed");
}

my $log = $t->read_file('error.log');

for my $q (@quiet) {
    like($log, qr/delivery $q: to=<bob\@example\.com>.*status=sent/,
        "$q sent");
    unlike($log, qr/delivery $q: sender success notification/,
        "$q: no success report");
}

# RET=FULL: the whole message in the failure report

$id = send_mail({ Return => 'FULL' }, [ [ 'ghost@example.com' ] ],
    'ret full', "FULL-BODY-MARK line 1\r\nline 2\r\n");
like($id, qr/^\w{22}$/, 'RET=FULL queued');

ok(wait_for(sub { mailbox_count() == 3 }, 15), 'a bounce for RET=FULL');

$r = report(3);

like($r, qr/^Action: failed\r?$/m, 'Action: failed');
like($r, qr/^Content-Type: message\/rfc822\r?$/m, 'message/rfc822');
unlike($r, qr/text\/rfc822-headers/, 'not the header section only');
like($r, qr/^Subject: ret full\r?\n\r?\nFULL-BODY-MARK line 1\r?\n(?#
    )line 2\r?$/m, 'the whole message');

# RET=HDRS: the header section only

$id = send_mail({ Return => 'HDRS' }, [ [ 'ghost@example.com' ] ],
    'ret hdrs', "HDRS-BODY-MARK\r\n");
like($id, qr/^\w{22}$/, 'RET=HDRS queued');

ok(wait_for(sub { mailbox_count() == 4 }, 15), 'a bounce for RET=HDRS');

$r = report(4);

like($r, qr/^Content-Type: text\/rfc822-headers\r?$/m, 'header section');
like($r, qr/^Subject: ret hdrs\r?$/m, 'with the original subject');
unlike($r, qr/HDRS-BODY-MARK/, 'without the body');
unlike($r, qr/message\/rfc822/, 'not the whole message');

# RET=FULL over queue_bounce_size_limit: the header section, and a note

my $big = ('z' x 76 . "\r\n") x 200;

$id = send_mail({ Return => 'FULL' }, [ [ 'ghost@example.com' ] ],
    'ret full big', "BIG-BODY-MARK\r\n$big");
like($id, qr/^\w{22}$/, 'a big RET=FULL queued');

ok(wait_for(sub { mailbox_count() == 5 }, 15), 'a bounce for the big one');

$r = report(5);

like($r, qr/^The message is larger than 8192 bytes: only its header (?#
    )section is returned\.\r?$/m, 'the note');
like($r, qr/^Content-Type: text\/rfc822-headers\r?$/m, 'header section');
like($r, qr/^Subject: ret full big\r?$/m, 'with the original subject');
unlike($r, qr/BIG-BODY-MARK/, 'without the body');

$t->finish();

###############################################################################
