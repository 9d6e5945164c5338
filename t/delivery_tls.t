#!/usr/bin/perl

# Delivery with STARTTLS: a relay that offers STARTTLS gets the message
# over TLS (opportunistic by default); "starttls=required" defers when the
# next hop does not offer it.  The receiving side is a second nginx with
# this module's SMTP server and STARTTLS, delivery off.

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $rx = MailPlus::Test->new();
my $tx = MailPlus::Test->new();

my $dir = $rx->testdir();

system("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=rx.test "
    . "-keyout $dir/key.pem -out $dir/cert.pem -batch >/dev/null 2>&1") == 0
    or plan(skip_all => 'openssl could not make a certificate');

# the receiver: STARTTLS offered on one port, not on the other; the relay
# user may AUTH

$rx->write_file('users', "relay:{PLAIN}relaypw\n"
    . join('', map { "$_:{PLAIN}x\n" }
        qw/ x@tls.example y@plain.example z@auth.example /));

$rx->write_file_expand('nginx.conf', <<'EOF');
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    auth_http  127.0.0.1:9/auth;

    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;

    router_pool a {
        server 127.0.0.1 imap=1;
    }

    router_default_pool a;

    queue_spool %%TESTDIR%%/spool;

    ssl_certificate      %%TESTDIR%%/cert.pem;
    ssl_certificate_key  %%TESTDIR%%/key.pem;

    server {
        listen 127.0.0.1:%%PORT_tls%%;
        protocol smtp;
        server_name rx.test;
        starttls on;

        smtp_store_and_forward on;
        smtp_local_domains tls.example plain.example auth.example;
    }

    server {
        listen 127.0.0.1:%%PORT_plain%%;
        protocol smtp;
        server_name rx.test;

        smtp_store_and_forward on;
        smtp_local_domains tls.example plain.example auth.example;
    }
}
EOF

$rx->run();

my ($tls, $plain) = ($rx->port('tls'), $rx->port('plain'));

$tx->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    auth_http  127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_retry_first 1s;
    queue_retry_max 1s;
    queue_scan_interval 300ms;

    queue_route tls.example 127.0.0.1:$tls;
    queue_route auth.example 127.0.0.1:$tls auth=relay:relaypw;
    queue_route plain.example 127.0.0.1:$plain starttls=required;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name tx.test;

        smtp_store_and_forward on;
        smtp_local_domains local.invalid;
        smtp_trusted_networks 127.0.0.0/8;
    }
}
EOF

$tx->run();

###############################################################################

sub submit {
    my ($rcpt, $subject) = @_;

    return $tx->submit($tx->port('smtp'), 'alice@client.example', [$rcpt],
        "Subject: $subject\r\n\r\nbody\r\n");
}

like(submit('x@tls.example', 'over tls'), qr/^250 /, 'queued');

ok(wait_for(sub { $rx->spool('spool') == 1 }, 10), 'received');

my ($id) = $rx->spool('spool');
my $text = $rx->read_file("spool/incoming/$id");

like($text, qr/^Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\tby rx\.test \(nginx mail_plus\) with ESMTPS /m,
    'over TLS');
like($text, qr/^Subject: over tls\r$/m, 'the message');
like($rx->read_file('error.log'), qr/smtp command \d+ "BDAT \d+ LAST"/,
    'with BDAT, which the receiver offers');

ok(wait_for(sub { !$tx->spool('spool') && !$tx->spool('spool', 'active') },
    5), 'gone from the sender\'s spool');

# AUTH PLAIN after STARTTLS

like(submit('z@auth.example', 'with auth'), qr/^250 /, 'queued');

ok(wait_for(sub { $rx->spool('spool') == 2 }, 10), 'received');

my ($id2) = grep { $_ ne $id } $rx->spool('spool');
like($rx->read_file("spool/incoming/$id2"),
    qr/^\tby rx\.test \(nginx mail_plus\) with ESMTPSA /m,
    'over TLS, authenticated');

like(submit('y@plain.example', 'needs tls'), qr/^250 /, 'queued');

ok(wait_for(sub { $tx->spool('spool', 'deferred') == 1 }, 10),
    'deferred: the next hop offers no STARTTLS');

like($tx->read_file('error.log'),
    qr/to=<y\@plain\.example>.*dsn=4\.7\.4, status=deferred/,
    'logged');

is($rx->spool('spool'), 2, 'nothing sent in plain text');

$tx->stop();
$rx->stop();

for my $t ($tx, $rx) {
    my ($alerts, $san) = $t->log_problems();
    is(join("\n", @$alerts), '', 'no alerts');
    is(join("\n", @$san), '', 'no sanitizer reports');
}

done_testing();

###############################################################################
