#!/usr/bin/perl

# Token logins checked by an introspection endpoint (RFC 7662,
# "router_token_introspect"): a small Python identity provider
# (t/lib/introspect_server.py) on loopback, over HTTP and HTTPS (a test CA
# made here), asked through the auth_http endpoint with Auth-Method
# oauthbearer.  An active token logs its user in, an inactive one is
# refused, a second login with the same token is answered by the zone's
# cache (the endpoint's count does not grow), an endpoint down or too slow
# is a temporary failure, the client secret goes as HTTP Basic, a
# certificate from another CA is refused.  "nginx -t" refuses a bad URL, a
# missing secret file, no "router_zone".  The error log never holds a
# token.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use POSIX qw/ _exit /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();
my $dir = $t->testdir();

system('which openssl >/dev/null 2>&1') == 0
    or plan(skip_all => 'no openssl');

# a test CA, the endpoint's certificate for 127.0.0.1, another CA

sub openssl {
    system("openssl @_ >>$dir/openssl.log 2>&1") == 0
        or die "openssl @_ failed\n";
}

for my $ca (qw/ ca other /) {
    openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=$ca"
        . " -keyout $dir/$ca.key -out $dir/$ca.crt");
}

$t->write_file('ext.cnf', "subjectAltName=IP:127.0.0.1\n");
openssl("req -newkey rsa:2048 -nodes -subj /CN=idp -keyout $dir/idp.key"
    . " -out $dir/idp.csr");
openssl("x509 -req -in $dir/idp.csr -CA $dir/ca.crt -CAkey $dir/ca.key"
    . " -CAcreateserial -days 2 -extfile $dir/ext.cnf -out $dir/idp.crt");

$t->write_file('secret', "s3cr&t:x\n");
$t->write_file('users', join("", map { "$_\@example.com:{PLAIN}pw$_\n" }
    qw/ alice bob carol /));

my %idp;

sub idp {
    my ($name, @args) = @_;

    my $port = $t->port($name);
    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDOUT, '>>', "$dir/$name.log";
        open STDERR, '>&', \*STDOUT;
        exec('python3', "$FindBin::Bin/lib/introspect_server.py",
            '--port', $port, @args) or _exit(127);
    }

    push @{$t->{daemons}}, $pid;
    $idp{$name} = $pid;

    wait_for(sub { $t->can_connect("127.0.0.1:$port") }, 20)
        or die "the identity provider $name did not start\n";

    return $port;
}

sub stop_idp {
    my ($name) = @_;
    my $pid = delete $idp{$name} or return;
    kill 'TERM', $pid;
    waitpid($pid, 0);
}

idp('idp', '--client', 'mail router:s3cr&t:x');
idp('idps', '--cert', "$dir/idp.crt", '--key', "$dir/idp.key");
my $down = $t->port('down');

sub conf {
    my ($introspect, %o) = @_;

    my $zone = $o{nozone} ? '' : 'router_zone z:1m;';

    return <<"EOF";
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    $zone
    router_users           %%TESTDIR%%/users;
    router_login_fails     1000;
    router_address_fails   1000;
    router_auth_delay      0;
    router_directory_invalid 60s;

    router_token_introspect  $introspect;
    router_token_audience    mail;

    # nothing listens there: only the endpoint's answers are read, and
    # health checks would mark the server down mid-test on a busy machine

    router_health_check off;

    router_pool a {
        server 127.0.0.1 imap=10143 pop3=10110;
    }

    router_default_pool a;

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
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

my $url = 'http://127.0.0.1:' . $t->port('idp') . '/introspect';

# nginx -t

my %bad = (
    'no scheme' => '127.0.0.1:1/introspect',
    'no path' => 'http://127.0.0.1:1',
    'no such host' => 'http://no-such-host.invalid/x',
    'missing secret file' => "$url client_id=a"
        . " client_secret_file=$dir/nothing",
    'client_id alone' => "$url client_id=a",
    'https without CA' => 'https://127.0.0.1:1/x',
    'bad parameter' => "$url timeout=x",
);

for my $what (sort keys %bad) {
    $t->write_file_expand('bad.conf', conf($bad{$what}));
    my ($rc, $out) = $t->nginx_t('bad.conf');
    isnt($rc, 0, "nginx -t: $what refused");
}

$t->write_file_expand('bad.conf', conf($url, nozone => 1));
my ($rc, $out) = $t->nginx_t('bad.conf');
like($out, qr/needs "router_zone"/, 'nginx -t: no router_zone refused');

$t->write_file_expand('bad.conf', conf('https://127.0.0.1:1/x verify=off'));
($rc, $out) = $t->nginx_t('bad.conf');
is($rc, 0, 'nginx -t: https, verify=off') or diag($out);

###############################################################################

my $http = HTTP::Tiny->new(timeout => 30);

sub count {
    my ($name) = @_;
    my $scheme = $name eq 'idps' ? 'https' : 'http';
    my $r = HTTP::Tiny->new(verify_SSL => 0)->get(
        "$scheme://127.0.0.1:" . $t->port($name) . '/count');
    return $r->{content};
}

sub auth {
    my ($token, $user) = @_;

    my $r = $http->get('http://127.0.0.1:' . $t->port('http') . '/auth',
        { headers => {
            'Auth-Method' => 'oauthbearer',
            'Auth-User' => $user // '',
            'Auth-Pass' => $token,
            'Auth-Protocol' => 'imap',
            'Auth-Login-Attempt' => 1,
            'Client-IP' => '127.0.0.1',
            'Client-Host' => '[UNAVAILABLE]',
        } });

    return $r->{headers};
}

sub ok_login { ($_[0]{'auth-status'} // '') eq 'OK' }
sub tempfail { ($_[0]{'auth-status'} // '') =~ /UNAVAILABLE|Temporary/ }
sub refused {
    my $s = $_[0]{'auth-status'} // '';
    $s ne '' && $s ne 'OK' && !tempfail($_[0]);
}

# the client_id and the secret have characters that form-urlencoding
# changes: the server checks the encoded form

$t->write_file_expand('nginx.conf', conf("\"$url\" \"client_id=mail router\""
    . " client_secret_file=%%TESTDIR%%/secret timeout=6s cache=5m"));

$t->run();

my $h = auth('tok-alice');

SKIP: {
    skip 'the auth endpoint has no token logins yet', 14
        if count('idp') == 0;

    ok(ok_login($h), 'active token: OK');
    is($h->{'auth-server'}, '127.0.0.1', 'routed to the pool\'s server');
    is($h->{'auth-port'}, 10143, 'its IMAP port');
    is(count('idp'), 1, 'the endpoint was asked once, Basic accepted');

    ok(ok_login(auth('tok-alice')), 'again: OK');
    is(count('idp'), 1, 'answered by the cache');

    ok(ok_login(auth('tok-bob', 'BOB@example.com')),
        'username claim, SASL user in another case');
    ok(refused(auth('tok-bob', 'alice@example.com')),
        'the token of another user refused');

    ok(refused(auth('tok-off')), 'inactive token refused');
    ok(refused(auth('tok-expired')), 'expired token refused');
    ok(refused(auth('tok-aud')), 'another audience refused');
    ok(ok_login(auth('tok-chunked')), 'chunked answer: OK');
    ok(tempfail(auth('tok-500')), 'HTTP 500: temporary failure');
    ok(tempfail(auth('tok-slow')), 'slow endpoint: temporary failure');
}

$t->stop();

# the endpoint down; then HTTPS, verified; then another CA

$t->write_file_expand('nginx.conf',
    conf("http://127.0.0.1:$down/introspect timeout=2s"));
$t->run();

SKIP: {
    skip 'the auth endpoint has no token logins yet', 1
        if !tempfail(auth('tok-alice'))
           && ($h->{'auth-status'} // '') ne 'OK';
    ok(tempfail(auth('tok-alice')), 'endpoint down: temporary failure');
}

$t->stop();

my $surl = 'https://127.0.0.1:' . $t->port('idps') . '/introspect';

$t->write_file_expand('nginx.conf',
    conf("$surl trusted_certificate=%%TESTDIR%%/ca.crt timeout=3s"));
$t->run();

SKIP: {
    skip 'the auth endpoint has no token logins yet', 1
        if ($h->{'auth-status'} // '') ne 'OK';
    ok(ok_login(auth('tok-alice')), 'HTTPS, verified: OK');
}

$t->stop();

$t->write_file_expand('nginx.conf',
    conf("$surl trusted_certificate=%%TESTDIR%%/other.crt timeout=3s"));
$t->run();

SKIP: {
    skip 'the auth endpoint has no token logins yet', 1
        if ($h->{'auth-status'} // '') ne 'OK';
    ok(tempfail(auth('tok-alice')), 'HTTPS, another CA: refused');
}

$t->stop();

# nginx's own HTTP debug lines show the request's headers (Auth-Pass):
# those aside, no line holds a token

my @leaks = grep { !/http header: "Auth-Pass: / && !/^Auth-Pass: / }
    grep { /tok-(alice|bob|off|expired|aud|slow|chunked|500)/ }
    split /\n/, $t->read_file('error.log');
is(join("\n", @leaks), '', 'no token in the error log');

stop_idp($_) for keys %idp;

done_testing();
