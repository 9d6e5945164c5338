#!/usr/bin/perl

# Delivery with STARTTLS and certificate checks: with "queue_tls_verify on"
# a next hop with "starttls=required" (and one with "starttls=verify")
# must show a certificate that a CA of "queue_tls_trusted_certificate"
# signed, for the host name written in its route (or "tls_name=");
# otherwise its recipients are deferred with 4.7.5 and the reason.
# "starttls=on" stays opportunistic and never checks.  "nginx -t" fails
# when a check is asked for without trusted certificates.
#
# The receiving side is a second nginx with this module's SMTP server and
# STARTTLS, one server per certificate; the CAs and certificates are made
# here with openssl.

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

# openssl(@args): runs openssl quietly, true on success

sub openssl {
    my $cmd = join(' ', 'openssl', @_) . " >>$dir/openssl.log 2>&1";
    return system($cmd) == 0;
}

# ca($name): a self-signed CA; cert($name, $ca, @dns): a server
# certificate with these DNS names, signed by $ca

sub ca {
    my ($name) = @_;

    return openssl('req -x509 -newkey rsa:2048 -nodes -days 2',
        "-subj /CN=$name -keyout $dir/$name.key -out $dir/$name.pem",
        '-addext basicConstraints=critical,CA:TRUE',
        '-addext keyUsage=critical,keyCertSign,cRLSign');
}

sub cert {
    my ($name, $ca, @dns) = @_;

    my $san = join(',', map { "DNS:$_" } @dns);

    $rx->write_file("$name.ext", "subjectAltName=$san\n"
        . "extendedKeyUsage=serverAuth\n");

    return openssl('req -newkey rsa:2048 -nodes',
            "-subj /CN=$dns[0] -keyout $dir/$name.key -out $dir/$name.csr")
        && openssl("x509 -req -in $dir/$name.csr -days 2",
            "-CA $dir/$ca.pem -CAkey $dir/$ca.key -CAcreateserial",
            "-extfile $dir/$name.ext -out $dir/$name.pem");
}

(ca('ca') && ca('other-ca')
    && cert('good', 'ca', 'localhost', 'rx.test')
    && cert('badca', 'other-ca', 'localhost', 'rx.test')
    && cert('badname', 'ca', 'elsewhere.test'))
    or plan(skip_all => 'openssl could not make the certificates');

# the receiver: one STARTTLS server per certificate, and one without

$rx->write_file('users', join('', map { "u\@$_.example:{PLAIN}x\n" }
    qw/ good named may badca badname ip plain /));

my $servers = '';

for my $name (qw/ good badca badname plain /) {
    my $tls = $name eq 'plain' ? '' : <<"EOF";
        starttls on;
        ssl_certificate      %%TESTDIR%%/$name.pem;
        ssl_certificate_key  %%TESTDIR%%/$name.key;
EOF

    $servers .= <<"EOF";
    server {
        listen 127.0.0.1:%%PORT_$name%%;
        protocol smtp;
        server_name rx.test;
$tls
        smtp_store_and_forward on;
        smtp_local_domains .example;
    }

EOF
}

$rx->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    auth_http  127.0.0.1:9/auth;

    router_users  %%TESTDIR%%/users;

    router_pool a {
        server 127.0.0.1 imap=1;
    }

    router_default_pool a;

    queue_spool %%TESTDIR%%/spool;

$servers}
EOF

$rx->run();

my %p = map { $_ => $rx->port($_) } qw/ good badca badname plain /;

# the sender: which route checks what

my $routes = <<"EOF";
    queue_route good.example localhost:$p{good} starttls=required;
    queue_route named.example 127.0.0.1:$p{good} starttls=verify
                tls_name=rx.test;
    queue_route may.example localhost:$p{badca};
    queue_route badca.example localhost:$p{badca} starttls=required;
    queue_route badname.example localhost:$p{badname} starttls=required;
    queue_route ip.example 127.0.0.1:$p{good} starttls=required;
    queue_route plain.example localhost:$p{plain} starttls=verify;
EOF

sub tx_conf {
    my ($tls) = @_;

    return $tx->expand(<<"EOF");
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

$tls
$routes
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
}

# nginx -t: no check without trusted certificates

sub nginx_t {
    my ($tls) = @_;

    $tx->write_file('t.conf', tx_conf($tls));
    return $tx->nginx_t('t.conf');
}

my ($rc, $out) = nginx_t('    queue_tls_verify on;');
isnt($rc, 0, 'nginx -t: queue_tls_verify without trusted certificates');
like($out, qr/no "queue_tls_trusted_certificate" for "queue_tls_verify"/,
    'nginx -t: says why');

($rc, $out) = nginx_t('');
isnt($rc, 0, 'nginx -t: starttls=verify without trusted certificates');
like($out, qr/no "queue_tls_trusted_certificate" for "queue_route .*starttls=verify"/,
    'nginx -t: says which');

($rc, $out) = nginx_t("    queue_tls_verify on;\n"
    . "    queue_tls_trusted_certificate $dir/missing.pem;");
isnt($rc, 0, 'nginx -t: trusted certificates file missing');
like($out, qr/missing\.pem/, 'nginx -t: names the file');

($rc, $out) = nginx_t("    queue_tls_verify on;\n"
    . "    queue_tls_trusted_certificate $dir/ca.pem;\n"
    . "    queue_tls_verify_depth 2;");
is($rc, 0, 'nginx -t: verification with trusted certificates')
    or diag($out);

$tx->write_file('nginx.conf', tx_conf("    queue_tls_verify on;\n"
    . "    queue_tls_trusted_certificate $dir/ca.pem;"));

$tx->run();

###############################################################################

sub submit {
    my ($rcpt) = @_;

    return $tx->submit($tx->port('smtp'), 'alice@client.example', [$rcpt],
        "Subject: to $rcpt\r\n\r\nbody\r\n");
}

# received(): subject => the message's text, of what the receiver has

sub received {
    my %r;

    for my $id ($rx->spool('spool')) {
        my $text = $rx->read_file("spool/incoming/$id");
        $r{$1} = $text if $text =~ /^Subject: to (\S+)\r$/m;
    }

    return %r;
}

my @sent = qw/ u@good.example u@named.example u@may.example /;
my @held = qw/ u@badca.example u@badname.example u@ip.example
    u@plain.example /;

like(submit($_), qr/^250 /, "queued $_") for @sent, @held;

ok(wait_for(sub { my %r = received(); keys %r == @sent }, 15),
    'received the messages that may go');

ok(wait_for(sub { $tx->spool('spool', 'deferred') == @held }, 15),
    'the others deferred');

my %r = received();

for my $rcpt (@sent) {
    like($r{$rcpt} || '', qr/^\tby rx\.test \(nginx mail_plus\) with ESMTPS /m,
        "$rcpt: over TLS");
}

ok(!exists $r{$_}, "$_: not sent") for @held;

my $log = $tx->read_file('error.log');

like($log, qr/to=<u\@good\.example>.*status=sent/,
    'verified against the name of the route');
like($log, qr/to=<u\@named\.example>.*status=sent/,
    'verified against tls_name=');
like($log, qr/to=<u\@may\.example>.*status=sent/,
    'starttls=on: not verified');

like($log, qr/to=<u\@badca\.example>.*dsn=4\.7\.5, status=deferred, reply="4\.7\.5 certificate verify failed: \(2[01]:unable to (?:get local issuer certificate|verify the first certificate)\)"/,
    'unknown CA: deferred with the verify error');
like($log, qr/\[error\].*certificate of 127\.0\.0\.1:$p{badca} \("localhost"\) does not verify: \(2[01]:/,
    'unknown CA: logged');

like($log, qr/to=<u\@badname\.example>.*dsn=4\.7\.5, status=deferred, reply="4\.7\.5 certificate name mismatch: localhost"/,
    'wrong name: deferred');
like($log, qr/\[error\].*certificate of 127\.0\.0\.1:$p{badname} does not match "localhost"/,
    'wrong name: logged');

like($log, qr/to=<u\@ip\.example>.*dsn=4\.7\.5, status=deferred, reply="4\.7\.5 certificate name mismatch: 127\.0\.0\.1"/,
    'an IP address for a name: deferred');

like($log, qr/to=<u\@plain\.example>.*dsn=4\.7\.4, status=deferred/,
    'starttls=verify, not offered: deferred');

$tx->stop();
$rx->stop();

for my $t ($tx, $rx) {
    my ($alerts, $san) = $t->log_problems();
    is(join("\n", @$alerts), '', 'no alerts');
    is(join("\n", @$san), '', 'no sanitizer reports');
}

done_testing();

###############################################################################
