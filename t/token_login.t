#!/usr/bin/perl

# Token logins from real clients: Python's imaplib, poplib and smtplib and
# curl's --oauth2-bearer, over the module's IMAP and POP3 sessions
# ("router_proxy on") and SMTP store-and-forward, with OAUTHBEARER (RFC
# 7628) and XOAUTH2, tokens checked by the JWT verifier (router_token_jwks)
# and a Dovecot backend logged in to with its master user.
#
# The mechanisms are offered only where "router_token_auth" says so; a
# good token of each key type logs in the user it names; each broken token
# is refused with RFC 7628's error exchange (the JSON status as a
# challenge, the client's dummy answer, then the protocol's failure);
# failed token logins lock the login out as failed passwords do; malformed
# SASL responses get the protocol's syntax error; no token is ever in the
# error log.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw/ encode_base64 decode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;
use MailPlus::Token;

###############################################################################

my $t = MailPlus::Test->new();
my $k = MailPlus::Token->new($t);
my $dir = $t->testdir;

my $python = '/usr/bin/python3';
my $client = "$FindBin::Bin/lib/token_client.py";

ok(-x $python, 'Debian\'s python3 is there') or BAIL_OUT('no python3');

$t->write_file('master.passwd', "mp:{PLAIN}masterpw\n");
$t->write_file('master.pw', "masterpw\n");

# the mailbox server: passwords, and a master user for nginx's logins

my $d = $t->dovecot('a', users => {
        'alice@example.com' => 'pwA', 'bob@example.com' => 'pwB' },
    extra => <<"EOF");
auth_failure_delay = 0
auth_master_user_separator = *
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN username_format=%u $dir/master.passwd
}
EOF

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
bob@example.com:{PLAIN}pwB:a
EOF

my $conf = <<"EOF";
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_auth_delay    0;
    router_zone          z:1m;
    router_users         %%TESTDIR%%/users;
    router_login_fails   4;
    router_address_fails 100;
    router_fail_window   1m;
    router_auth_max_delay 1s;

    router_token_jwks      @{[ $k->jwks_file ]};
    router_token_issuer    @{[ $k->issuer ]};
    router_token_audience  @{[ $k->audience ]};
    router_token_openid_configuration https://idp.test/.well-known/openid-configuration;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3} lmtp=$d->{lmtp};
        token_login master mp %%TESTDIR%%/master.pw;
    }

    auth_http 127.0.0.1:9/auth;
    queue_spool %%TESTDIR%%/spool;
    smtp_max_errors 50;
    imap_client_buffer 8k;

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        router_proxy on;
        router_token_auth oauthbearer xoauth2;
        max_errors 50;
    }

    server {
        listen     127.0.0.1:%%PORT_pop3%%;
        protocol   pop3;
        router_proxy on;
        router_token_auth oauthbearer xoauth2;
        max_errors 50;
    }

    server {
        listen     127.0.0.1:%%PORT_imap2%%;
        protocol   imap;
        router_proxy on;
    }

    server {
        listen     127.0.0.1:%%PORT_smtp%%;
        protocol   smtp;
        server_name mx.test;
        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_auth_plaintext on;
        router_token_auth oauthbearer xoauth2;
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

# "router_token_auth" without a verifier cannot check anything

(my $bad = $conf) =~ s/\n    router_token_jwks.*?\n    router_token_openid\S+ \S+;//s;
$t->write_file_expand('nginx.conf', $bad);
my ($rc, $out) = $t->nginx_t();
isnt($rc, 0, 'nginx -t: router_token_auth without a verifier');
like($out, qr/"router_token_auth" needs a token verifier/,
    'nginx -t: says why');

$t->write_file_expand('nginx.conf', $conf);
$t->run();

###############################################################################

# py(proto, mech, user, token[, rcpt]): the client's lines

sub py {
    my ($proto, $mech, $user, $token, $rcpt) = @_;

    my @cmd = ($python, $client, $proto, $t->port($proto), $mech,
        $user eq '' ? '-' : $user, $token, defined $rcpt ? ($rcpt) : ());

    my $pid = open(my $fh, '-|', 'timeout', '60', @cmd)
        or return "ERROR cannot run python3";
    local $/;
    my $lines = <$fh> // '';
    close $fh;

    return $lines;
}

sub curl {
    my (@args) = @_;

    my $pid = open(my $fh, '-|', 'timeout', '60', 'curl', '-s', '-S',
        '--max-time', '30', @args)
        or return '';
    local $/;
    my $lines = <$fh> // '';
    close $fh;

    return ($? >> 8, $lines);
}

my $json = '{"status":"invalid_token","schemes":"bearer",'
    . '"openid-configuration":'
    . '"https://idp.test/.well-known/openid-configuration"}';

my $good = $k->token(user => 'alice@example.com');

# the mechanisms where configured, and only there

my $s = MailPlus::Test::Client->new($t->port('imap'));
$s->getline();
like($s->imap('c', 'CAPABILITY'),
    qr/^\* CAPABILITY .*AUTH=OAUTHBEARER AUTH=XOAUTH2 SASL-IR/m,
    'imap: the token mechanisms offered, with SASL-IR');

$s = MailPlus::Test::Client->new($t->port('imap2'));
$s->getline();
unlike($s->imap('c', 'CAPABILITY'), qr/OAUTHBEARER|XOAUTH2/,
    'imap: not offered without router_token_auth');
like($s->imap('a', 'AUTHENTICATE XOAUTH2 '
        . encode_base64($k->xoauth2('alice@example.com', $good), '')),
    qr/^a NO authentication mechanism not supported/m,
    'imap: not taken without router_token_auth');

$s = MailPlus::Test::Client->new($t->port('pop3'));
$s->getline();
like($s->pop3('CAPA', multi => 1), qr/^SASL PLAIN LOGIN OAUTHBEARER XOAUTH2\r?$/m,
    'pop3: the SASL line has them');
like($s->pop3('AUTH', multi => 1), qr/^OAUTHBEARER\r?\nXOAUTH2\r?\n\.\r?$/m,
    'pop3: AUTH lists them');

$s = MailPlus::Test::Client->new($t->port('smtp'));
$s->getline();
like($s->smtp('EHLO c.test'), qr/^250-AUTH PLAIN LOGIN OAUTHBEARER XOAUTH2\r?$/m,
    'smtp: EHLO offers them');

###############################################################################

# good tokens, each key type, each protocol, each mechanism

like(py('imap', 'XOAUTH2', 'alice@example.com', $good),
    qr/^OK select OK/m, 'imaplib XOAUTH2 (RS256): logged in, INBOX');
like(py('imap', 'OAUTHBEARER', 'alice@example.com',
        $k->token(user => 'alice@example.com', alg => 'ES256')),
    qr/^OK select OK/m, 'imaplib OAUTHBEARER (ES256)');
like(py('imap', 'OAUTHBEARER', '',
        $k->token(user => 'bob@example.com', alg => 'EdDSA')),
    qr/^OK select OK/m, 'imaplib OAUTHBEARER (EdDSA), no SASL user: '
        . 'the token names the user');
like(py('pop3', 'OAUTHBEARER', 'alice@example.com', $good),
    qr/^OK stat \d+/m, 'poplib OAUTHBEARER: logged in, STAT');
like(py('pop3', 'XOAUTH2', 'bob@example.com',
        $k->token(user => 'bob@example.com', alg => 'ES256')),
    qr/^OK stat \d+/m, 'poplib XOAUTH2');
like(py('smtp', 'OAUTHBEARER', 'alice@example.com', $good,
        'bob@example.com'),
    qr/^OK sent/m, 'smtplib OAUTHBEARER: authenticated, mail accepted');
like(py('smtp', 'XOAUTH2', 'alice@example.com',
        $k->token(user => 'alice@example.com', alg => 'EdDSA')),
    qr/^OK auth/m, 'smtplib XOAUTH2');

ok(wait_for(sub { $t->read_file('error.log')
        =~ /client authenticated as "alice\@example.com"/ }, 10),
    'smtp: the session is the token\'s user');

# curl: OAUTHBEARER where offered (with its host and port keys), XOAUTH2 on
# request; IMAP, POP3, SMTP

my ($code, $text) = curl('--oauth2-bearer', $good,
    '-u', 'alice@example.com:',
    'imap://127.0.0.1:' . $t->port('imap') . '/INBOX', '-X', 'EXAMINE INBOX');
is($code, 0, 'curl imap OAUTHBEARER: logged in') or diag($text);
like($text, qr/EXISTS/, 'curl imap: EXAMINE answered');

($code, $text) = curl('--oauth2-bearer',
    $k->token(user => 'bob@example.com', alg => 'ES256'),
    '--login-options', 'AUTH=XOAUTH2', '-u', 'bob@example.com:',
    'imap://127.0.0.1:' . $t->port('imap') . '/INBOX', '-X', 'EXAMINE INBOX');
is($code, 0, 'curl imap XOAUTH2: logged in') or diag($text);

($code, $text) = curl('--oauth2-bearer', $good, '-u', 'alice@example.com:',
    'pop3://127.0.0.1:' . $t->port('pop3') . '/');
is($code, 0, 'curl pop3 OAUTHBEARER: LIST') or diag($text);

$t->write_file('mail.txt', "Subject: curl\r\n\r\nwith a token\r\n");
($code, $text) = curl('--oauth2-bearer', $good, '-u', 'alice@example.com:',
    '--mail-from', 'alice@example.com', '--mail-rcpt', 'bob@example.com',
    '--upload-file', "$dir/mail.txt",
    'smtp://127.0.0.1:' . $t->port('smtp') . '/c.test');
is($code, 0, 'curl smtp OAUTHBEARER: mail sent') or diag($text);

($code, $text) = curl('--oauth2-bearer', $good . 'x',
    '-u', 'alice@example.com:',
    'imap://127.0.0.1:' . $t->port('imap') . '/INBOX', '-X', 'EXAMINE INBOX');
isnt($code, 0, 'curl imap: a bad token refused');

###############################################################################

# every broken token: the JSON status as the challenge, then the failure

sub broken {
    my ($case, $u) = @_;

    my %c = (
        'expired' => sub { $k->token(user => $u,
            claims => { exp => time() - 3600, iat => time() - 7200,
                        nbf => time() - 7200 }) },
        'not yet valid' => sub { $k->token(user => $u,
            claims => { nbf => time() + 3600 }) },
        'wrong audience' => sub { $k->token(user => $u,
            claims => { aud => 'calendar' }) },
        'wrong issuer' => sub { $k->token(user => $u,
            claims => { iss => 'https://evil.test' }) },
        'unknown kid' => sub { $k->token(user => $u, kid => 'nobody') },
        'bad signature' => sub { $k->token(user => $u, key => 'rogue',
            kid => 'rsa1') },
        'alg none' => sub { $k->token(user => $u, none => 1) },
        'HS256' => sub { $k->token(user => $u, alg => 'HS256') },
        'tampered' => sub { $k->token(user => $u, tamper => 1) },
        'garbage' => sub { 'abc.def.ghi' },
    );

    return $c{$case}->();
}

my %why = (
    'expired' => 'expired', 'not yet valid' => 'not yet valid',
    'wrong audience' => 'audience', 'wrong issuer' => 'issuer',
    'unknown kid' => 'key', 'bad signature' => 'signature',
    'alg none' => 'algorithm|malformed', 'HS256' => 'algorithm',
    'tampered' => 'signature', 'garbage' => 'malformed',
);

# each case its own user: one failure each, no lockout

my (%broken, $n);

for my $case (sort keys %why) {
    my $u = 'u' . ++$n . '@example.com';
    my $token = broken($case, $u);
    $broken{$case} = [ $token, $why{$case} ];

    my $r = py('imap', 'OAUTHBEARER', $u, $token);

    like($r, qr/^NO .*AUTHENTICATIONFAILED/m, "imap $case: refused");
    like($r, qr/^CHALLENGE \Q$json\E$/m, "imap $case: RFC 7628 status");
}

# bob's token for alice

my $r = py('imap', 'XOAUTH2', 'alice@example.com',
    $k->token(user => 'bob@example.com'));
like($r, qr/^NO .*AUTHENTICATIONFAILED/m, 'imap: another user\'s token');
like($r, qr/^CHALLENGE \Q$json\E$/m, 'imap: another user\'s token, status');

$r = py('pop3', 'OAUTHBEARER', 'p@example.com',
    broken('expired', 'p@example.com'));
like($r, qr/^CHALLENGE \Q$json\E$/m, 'pop3 expired: RFC 7628 status');
like($r, qr/^NO .*-ERR \[AUTH\]/m, 'pop3 expired: refused');

$r = py('smtp', 'OAUTHBEARER', 's@example.com',
    broken('expired', 's@example.com'));
like($r, qr/^CHALLENGE \Q$json\E$/m, 'smtp expired: RFC 7628 status');
like($r, qr/^NO 535 /m, 'smtp expired: 535');

$r = py('smtp', 'XOAUTH2', 's2@example.com',
    broken('expired', 's2@example.com'));
like($r, qr/^NO 535 /m, 'smtp XOAUTH2 expired: 535');

my $expired = broken('expired', 'bob@example.com');

# the reasons are in the log

my $log = $t->read_file('error.log');

for my $case (sort keys %broken) {
    my $why = $broken{$case}[1];
    like($log, qr/denied: invalid token: [^\n]*(?:$why)/i,
        "log: $case, the reason");
}

###############################################################################

# SASL responses that are not what the mechanisms define: syntax errors

$s = MailPlus::Test::Client->new($t->port('imap'));
$s->getline();

for my $ir ("n,a=alice\@example.com,\x01auth=Bearer $good\x01",  # no end
    "p=tls-unique,,\x01auth=Bearer $good\x01\x01",             # binding
    "n,,\x01host=x\x01\x01",                                     # no auth
    "n,,\x01auth=Basic $good\x01\x01",                           # not Bearer
    "n,,\x01auth=Bearer a b\x01\x01",                            # not b64token
    "n,a=al=ice,\x01auth=Bearer $good\x01\x01")                  # bad saslname
{
    like($s->imap('a', 'AUTHENTICATE OAUTHBEARER ' . encode_base64($ir, '')),
        qr/^a BAD/m, 'imap: a malformed OAUTHBEARER response gets BAD');
}

like($s->imap('a', 'AUTHENTICATE XOAUTH2 '
        . encode_base64("user=alice\@example.com\x01auth=Bearer $good", '')),
    qr/^a BAD/m, 'imap: a malformed XOAUTH2 response gets BAD');
like($s->imap('a', 'AUTHENTICATE XOAUTH2 !!!'), qr/^a BAD/m,
    'imap: not base64');

# a control byte in the SASL user is refused as in a login, and counted

like($s->imap('a', 'AUTHENTICATE OAUTHBEARER ' . encode_base64(
        "n,a=carol\r\x01x\@example.com,\x01auth=Bearer $good\x01\x01", '')),
    qr/^a NO \[AUTHENTICATIONFAILED\]/m,
    'imap: a control byte in the SASL user refused');
like($t->read_file('error.log'),
    qr/denied: control character in the login or the token/,
    'imap: the refusal\'s reason logged');

# the continuation, then "*" cancels

$s->send('a AUTHENTICATE OAUTHBEARER');
like($s->getline() // '', qr/^\+ ?\r?$/, 'imap: the empty continuation');
$s->send('*');
like($s->getline() // '', qr/^a BAD/, 'imap: "*" cancels');

###############################################################################

# failed token logins count: the login is locked out, a good token then too

for (1 .. 4) {
    py('imap', 'OAUTHBEARER', 'bob@example.com', $expired);
}

$r = py('imap', 'OAUTHBEARER', 'bob@example.com',
    $k->token(user => 'bob@example.com'));
like($r, qr/^NO /m, 'throttling: a good token refused after 4 failures');
like($t->read_file('error.log'), qr/login "bob\@example.com" denied: locked out/,
    'throttling: locked out');

like(py('imap', 'OAUTHBEARER', 'alice@example.com', $good),
    qr/^OK select OK/m, 'throttling: another user still logs in');

###############################################################################

# the auth_http endpoint, for stock servers: the pool's master user in the
# answer, and Dovecot takes it

my $h = HTTP::Tiny->new(timeout => 20)->get('http://127.0.0.1:'
    . $t->port('http') . '/auth', { headers => {
        'Auth-Method' => 'xoauth2', 'Auth-User' => 'alice@example.com',
        'Auth-Pass' => $good, 'Auth-Protocol' => 'imap',
        'Auth-Login-Attempt' => 1, 'Client-IP' => '127.0.0.9' } })->{headers};

is($h->{'auth-status'}, 'OK', 'auth_http: a token login allowed');
is($h->{'auth-user'}, 'alice@example.com*mp',
    'auth_http: the backend login is the master user\'s');
is($h->{'auth-pass'}, 'masterpw', 'auth_http: with the master password');

$s = MailPlus::Test::Client->new($d->{imap});
$s->getline();
like($s->imap('a', "LOGIN \"$h->{'auth-user'}\" \"$h->{'auth-pass'}\""),
    qr/^a OK/m, 'auth_http: Dovecot takes that login');

###############################################################################

# no token, nor a part of one, in the log

# (but stock nginx's own debug lines of the auth_http request's headers)

my $leaks = 0;

for my $line (split /\n/, $t->read_file('error.log')) {
    next if $line =~ /\bhttp header: "Auth-Pass: /;

    for my $token ($good, map { $_->[0] } values %broken) {
        my ($sig) = $token =~ /\.([^.]{16,})$/;
        $leaks++ if $sig && index($line, $sig) >= 0;
    }
}

is($leaks, 0, 'no token signature in the error log');

$t->finish();
