#!/usr/bin/perl

# Delivery with STARTTLS and certificate checks: with "queue_tls_verify on"
# a next hop with "starttls=required" (and one with "starttls=verify")
# must show a certificate that a CA of "queue_tls_trusted_certificate"
# signed, for the host name written in its route (or "tls_name=");
# otherwise its recipients are deferred with 4.7.5 and the reason.
# "starttls=on" stays opportunistic and never checks.  Mailbox backends
# with "queue_backend_starttls verify" are checked by their "server" name;
# "queue_tls_verify_depth" bounds the intermediate CAs.  "nginx -t" fails
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

# ca($name): a self-signed CA; sign($name, $ca, $cn, $ext): a key and a
# certificate signed by $ca with these extensions; cert($name, $ca, @dns):
# a server certificate with these DNS names

sub ca {
    my ($name) = @_;

    return openssl('req -x509 -newkey rsa:2048 -nodes -days 2',
        "-subj /CN=$name -keyout $dir/$name.key -out $dir/$name.pem",
        '-addext basicConstraints=critical,CA:TRUE',
        '-addext keyUsage=critical,keyCertSign,cRLSign');
}

sub sign {
    my ($name, $ca, $cn, $ext) = @_;

    $rx->write_file("$name.ext", $ext);

    return openssl('req -newkey rsa:2048 -nodes',
            "-subj /CN=$cn -keyout $dir/$name.key -out $dir/$name.csr")
        && openssl("x509 -req -in $dir/$name.csr -days 2",
            "-CA $dir/$ca.pem -CAkey $dir/$ca.key -CAcreateserial",
            "-extfile $dir/$name.ext -out $dir/$name.pem");
}

sub cert {
    my ($name, $ca, @dns) = @_;

    return sign($name, $ca, $dns[0],
        'subjectAltName=' . join(',', map { "DNS:$_" } @dns) . "\n"
        . "extendedKeyUsage=serverAuth\n");
}

(ca('ca') && ca('other-ca')
    && cert('good', 'ca', 'localhost', 'rx.test')
    && cert('badca', 'other-ca', 'localhost', 'rx.test')
    && cert('badname', 'ca', 'elsewhere.test')
    && sign('inter', 'ca', 'inter', "basicConstraints=critical,CA:TRUE\n"
        . "keyUsage=critical,keyCertSign,cRLSign\n")
    && cert('leaf', 'inter', 'localhost'))
    or plan(skip_all => 'openssl could not make the certificates');

# a chain through an intermediate CA, as the server sends it

$rx->write_file('chain.pem',
    $rx->read_file('leaf.pem') . $rx->read_file('inter.pem'));
$rx->write_file('chain.key', $rx->read_file('leaf.key'));

# the receiver: one STARTTLS server per certificate, and one without

$rx->write_file('users', join('', map { "u\@$_.example:{PLAIN}x\n" }
        qw/ good named may badca badname ip plain chain chain2 /)
    . "v\@box.test:{PLAIN}x\nw\@badbox.test:{PLAIN}x\n");

my $servers = '';

for my $name (qw/ good badca badname chain plain /) {
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
        smtp_local_domains .example box.test badbox.test;
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

my %p = map { $_ => $rx->port($_) } qw/ good badca badname chain plain /;

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
    queue_route chain.example localhost:$p{chain} starttls=verify;
EOF

# tx_conf($t, $tls, $routes): a sender's configuration for instance $t

sub tx_conf {
    my ($t, $tls, $routes) = @_;

    return $t->expand(<<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    auth_http  127.0.0.1:9/auth;

    router_users  %%TESTDIR%%/users;

    router_pool box {
        server localhost smtp=$p{good};
    }

    router_pool badbox {
        server localhost smtp=$p{badname};
    }

    router_rule "\@badbox\\.test\$" pool=badbox;
    router_default_pool box;

    queue_backend_starttls verify;

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
        smtp_local_domains box.test badbox.test;
        smtp_trusted_networks 127.0.0.0/8;
    }
}
EOF
}

$tx->write_file('users', "v\@box.test:{PLAIN}x\nw\@badbox.test:{PLAIN}x\n");

# nginx -t: no check without trusted certificates

sub nginx_t {
    my ($tls) = @_;

    $tx->write_file('t.conf', tx_conf($tx, $tls, $routes));
    return $tx->nginx_t('t.conf');
}

my ($rc, $out) = nginx_t('    queue_tls_verify on;');
isnt($rc, 0, 'nginx -t: queue_tls_verify without trusted certificates');
like($out, qr/no "queue_tls_trusted_certificate" for "queue_tls_verify"/,
    'nginx -t: says why');

($rc, $out) = nginx_t('');
isnt($rc, 0, 'nginx -t: verify levels without trusted certificates');
like($out, qr/no "queue_tls_trusted_certificate" for "queue_backend_starttls verify"/,
    'nginx -t: says which');

($rc, $out) = nginx_t("    queue_tls_verify on;\n"
    . "    queue_tls_trusted_certificate $dir/missing.pem;");
isnt($rc, 0, 'nginx -t: trusted certificates file missing');
like($out, qr/missing\.pem/, 'nginx -t: names the file');

($rc, $out) = nginx_t("    queue_tls_verify on;\n"
    . "    queue_tls_trusted_certificate $dir/ca.pem;\n"
    . "    queue_tls_verify_depth 0;");
is($rc, 0, 'nginx -t: verification with trusted certificates')
    or diag($out);

$tx->write_file('nginx.conf', tx_conf($tx, "    queue_tls_verify on;\n"
    . "    queue_tls_trusted_certificate $dir/ca.pem;", $routes));

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

my @sent = qw/ u@good.example u@named.example u@may.example v@box.test
    u@chain.example /;
my @held = qw/ u@badca.example u@badname.example u@ip.example
    u@plain.example w@badbox.test /;

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

# the sender logs a delivery once the next hop's reply is in, which may be
# after the next hop has the message

wait_for(sub {
    my $l = $tx->read_file('error.log');
    return !grep { $l !~ /to=<\Q$_\E>.*status=sent/ } @sent;
}, 15);

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

like($log, qr/to=<v\@box\.test>.*relay=127\.0\.0\.1:$p{good}, .*status=sent/,
    'mailbox backend verified against its server name');
like($log, qr/to=<w\@badbox\.test>.*relay=127\.0\.0\.1:$p{badname}, .*dsn=4\.7\.5, status=deferred, reply="4\.7\.5 certificate name mismatch: localhost"/,
    'mailbox backend with a wrong name: deferred');

like($log, qr/to=<u\@chain\.example>.*status=sent/,
    'an intermediate CA with queue_tls_verify_depth 1: sent');

like($log, qr/to=<u\@plain\.example>.*dsn=4\.7\.4, status=deferred/,
    'starttls=verify, not offered: deferred');

# the same chain with queue_tls_verify_depth 0

my $tx2 = MailPlus::Test->new();

$tx2->write_file('users', $tx->read_file('users'));
$tx2->write_file('nginx.conf', tx_conf($tx2,
    "    queue_tls_trusted_certificate $dir/ca.pem;\n"
    . "    queue_tls_verify_depth 0;",
    "    queue_route chain2.example localhost:$p{chain} starttls=verify;\n"));

$tx2->run();

like($tx2->submit($tx2->port('smtp'), 'alice@client.example',
    ['u@chain2.example'], "Subject: to u\@chain2.example\r\n\r\nbody\r\n"),
    qr/^250 /, 'queued u@chain2.example');

ok(wait_for(sub { $tx2->spool('spool', 'deferred') == 1 }, 15),
    'an intermediate CA with queue_tls_verify_depth 0: deferred');

like($tx2->read_file('error.log'),
    qr/to=<u\@chain2\.example>.*dsn=4\.7\.5, status=deferred, reply="4\.7\.5 certificate verify failed: \((?:20|22):[^)]+\)"/,
    'the verify error logged');

$tx2->stop();
$tx->stop();
$rx->stop();

for my $t ($tx, $tx2, $rx) {
    my ($alerts, $san) = $t->log_problems();
    is(join("\n", @$alerts), '', 'no alerts');
    is(join("\n", @$san), '', 'no sanitizer reports');
}

done_testing();

###############################################################################
