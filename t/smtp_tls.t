#!/usr/bin/perl

# SMTP store-and-forward with TLS: STARTTLS from nginx's mail ssl
# settings, then AUTH; "starttls only"; no command injection across
# STARTTLS; the Received field says ESMTPSA.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

eval { require IO::Socket::SSL; 1 }
    or plan(skip_all => 'IO::Socket::SSL not installed');

###############################################################################

my $t = MailPlus::Test->new();

my $dir = $t->testdir();

system("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=mx.test "
    . "-keyout $dir/key.pem -out $dir/cert.pem -batch >/dev/null 2>&1") == 0
    or plan(skip_all => 'openssl could not make a certificate');

# nginx's workers read the key as root at start: no chown needed

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

    ssl_certificate      %%TESTDIR%%/cert.pem;
    ssl_certificate_key  %%TESTDIR%%/key.pem;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;
        starttls on;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
    }

    server {
        listen 127.0.0.1:%%PORT_only%%;
        protocol smtp;
        server_name mx.test;
        starttls only;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
    }

    server {
        listen 127.0.0.1:%%PORT_smtps%% ssl;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
    }
}
EOF

$t->run();

my $port = $t->port('smtp');

sub starttls {
    my ($c) = @_;
    IO::Socket::SSL->start_SSL($c->sock(), SSL_verify_mode => 0,
        SSL_hostname => 'mx.test') or return 0;
    return 1;
}

###############################################################################

my $c = MailPlus::Test::Client->new($port);
$c->getline();

my $ehlo = $c->smtp('EHLO c.example');
like($ehlo, qr/^250-STARTTLS\r$/m, 'STARTTLS advertised');
unlike($ehlo, qr/AUTH/, 'no AUTH before TLS');
like($c->smtp('AUTH PLAIN ' . encode_base64("\0alice\0secretA", '')),
    qr/^538 5\.7\.11 /, 'AUTH refused before TLS');

# a command sent with STARTTLS is dropped, not run after the handshake

$c->send("STARTTLS\r\nNOOP\r\n", raw => 1);
is($c->getline(), "220 2.0.0 Ready to start TLS\r\n", 'STARTTLS');
ok(starttls($c), 'TLS handshake');

$ehlo = $c->smtp('EHLO c.example');
like($ehlo, qr/^250-mx\.test Hello/, 'EHLO over TLS, no injected reply');
unlike($ehlo, qr/STARTTLS/, 'no STARTTLS over TLS');
like($ehlo, qr/^250-AUTH PLAIN LOGIN\r$/m, 'AUTH advertised over TLS');
like($c->smtp('STARTTLS'), qr/^503 5\.5\.1 /, 'STARTTLS twice');

like($c->smtp('AUTH PLAIN ' . encode_base64("\0alice\0wrong", '')),
    qr/^535 5\.7\.8 /, 'AUTH failure over TLS');
like($c->smtp('AUTH PLAIN ' . encode_base64("\0alice\0secretA", '')),
    qr/^235 2\.7\.0 /, 'AUTH over TLS');

$c->smtp('MAIL FROM:<alice@example.com>');
is($c->smtp('RCPT TO:<x@elsewhere.example>'), "250 2.1.5 Ok\r\n",
    'relay after AUTH');
$c->smtp('DATA');
$c->send("Subject: tls\r\n\r\nover TLS\r\n.\r\n", raw => 1);
my ($id) = $c->smtp_reply() =~ /queued as (\S+)/;
ok($id, 'queued over TLS');
like($t->read_file("spool/incoming/$id"), qr/with ESMTPSA id $id/, 'ESMTPSA');
like($c->smtp('QUIT'), qr/^221 /, 'QUIT over TLS');

# "starttls only"

$c = MailPlus::Test::Client->new($t->port('only'));
$c->getline();
$c->smtp('EHLO c.example');
like($c->smtp('MAIL FROM:<a@b.example>'), qr/^530 5\.7\.0 /,
    'starttls only: MAIL refused');
like($c->smtp('STARTTLS'), qr/^220 /, 'starttls only: STARTTLS');
ok(starttls($c), 'starttls only: handshake');
$c->smtp('EHLO c.example');
like($c->smtp('MAIL FROM:<a@b.example>'), qr/^250 /, 'starttls only: MAIL after TLS');
$c->smtp('QUIT');

# implicit TLS

my $s = IO::Socket::SSL->new(PeerAddr => '127.0.0.1:' . $t->port('smtps'),
    SSL_verify_mode => 0);
ok($s, 'implicit TLS connection');
like(scalar <$s>, qr/^220 mx\.test ESMTP/, 'greeting over implicit TLS');
print $s "EHLO c.example\r\n";
my $l;
do { $l = <$s> } while defined $l && $l =~ /^250-/;
print $s "MAIL FROM:<a\@b.example>\r\nRCPT TO:<alice\@example.com>\r\nDATA\r\n";
<$s> for 1 .. 3;
print $s "Subject: s\r\n\r\nx\r\n.\r\n";
($id) = <$s> =~ /queued as (\S+)/;
ok($id, 'queued over implicit TLS');
like($t->read_file("spool/incoming/$id"), qr/with ESMTPS id $id/, 'ESMTPS');
close $s;

# Python smtplib: starttls, login, send

SKIP: {
    skip 'no python3', 1 unless -x '/usr/bin/python3';

    my $out = `python3 - <<'EOF' 2>&1
import smtplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP('127.0.0.1', $port)
s.starttls(context=ctx)
s.login('alice', 'secretA')
print('refused', s.sendmail('alice\@example.com', ['y\@elsewhere.example'], 'Subject: py\\r\\n\\r\\nx\\r\\n'))
s.quit()
EOF`;
    like($out, qr/refused \{\}/, 'smtplib STARTTLS and AUTH');
}

$t->finish();
