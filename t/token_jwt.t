#!/usr/bin/perl

# Token logins checked by the local JWT verifier (router_token_jwks),
# through the auth_http endpoint (mail_router_auth): "Auth-Method:
# oauthbearer" or "xoauth2", the SASL user in Auth-User (may be empty), the
# token in Auth-Pass.
#
# A token signed by each key type of the JWKS (RS256, ES256, EdDSA) logs
# in to the route of the user it names; every broken token is refused with
# the RFC 7628 status in Auth-Error-SASL and its reason in the log; the
# JWKS, the issuer, the audience and the clock skew are checked by
# "nginx -t"; a changed JWKS is read by "nginx -s reload".  No byte of a
# token's signature is ever in a line of ours in the error log (read at
# debug level: only stock nginx's own debug lines of the request's and the
# answer's headers may show it, in Auth-Pass).

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw/ decode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;
use MailPlus::Token;

###############################################################################

my $t = MailPlus::Test->new();
my $k = MailPlus::Token->new($t);

my $jwks = $k->jwks_file;
my $openid = 'https://idp.test/.well-known/openid-configuration';
my $iss = $k->issuer;
my $aud = $k->audience;

# conf(%directives): the configuration, with the token directives given
# (undef leaves one out)

sub conf {
    my (%o) = @_;

    my %d = (
        router_token_jwks => $jwks,
        router_token_issuer => $iss,
        router_token_audience => "other $aud",
        router_token_openid_configuration => $openid,
        router_token_max_size => '4k',
        %o,
    );

    my $tok = '';

    for my $name (sort keys %d) {
        next unless defined $d{$name};
        for my $v (split / /, $d{$name}) {
            $tok .= "    $name  $v;\n";
        }
    }

    return <<"EOF";
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_address_fails   1000;
    router_login_fails     1000;

    router_pool ex {
        server 127.0.0.1 imap=10143 pop3=10110;
        auth backend;
    }

    router_pool other {
        server 127.0.0.2 imap=10143 pop3=10110;
        auth backend;
    }

    router_rule "\@example\\.com\$" pool=ex;
    router_default_pool  other;

$tok
    auth_http  127.0.0.1:%%PORT_http%%/auth;

    server {
        listen    127.0.0.1:%%PORT_imap%%;
        protocol  imap;
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

# nginx_t(%directives): "nginx -t" of such a configuration: (code, output)

sub nginx_t {
    my (%o) = @_;
    $t->write_file_expand('t.conf', conf(%o));
    return $t->nginx_t('t.conf');
}

my ($rc, $out);

###############################################################################

# nginx -t

($rc, $out) = nginx_t();
is($rc, 0, 'nginx -t: the configuration is right') or diag($out);

$t->write_file('notjson.json', "{\"keys\": [\n");
($rc, $out) = nginx_t(router_token_jwks => $t->path('notjson.json'));
isnt($rc, 0, 'nginx -t: a JWKS that is not JSON fails');
like($out, qr/router_token_jwks ".*notjson\.json" is not JSON/,
    'nginx -t: the file named, "is not JSON"');

($rc, $out) = nginx_t(router_token_jwks => $t->path('missing.json'));
isnt($rc, 0, 'nginx -t: a missing JWKS fails');
like($out, qr/missing\.json" cannot be read/, 'nginx -t: cannot be read');

my %enc = (%{ $k->jwk('ec1') }, use => 'enc');
my %x448 = (kty => 'OKP', crv => 'X448', kid => 'x', x => 'AAAA');

$t->write_file('enc.json', JSON::PP->new->encode({ keys => [ \%enc ] }));
($rc, $out) = nginx_t(router_token_jwks => $t->path('enc.json'));
isnt($rc, 0, 'nginx -t: a JWKS without a signing key fails');
like($out, qr/enc\.json": no usable key/, 'nginx -t: no usable key');
like($out, qr/key #1 skipped: its "use" is not "sig"/,
    'nginx -t: the "enc" key skipped with a warning');

$t->write_file('skip.json', JSON::PP->new->encode({ keys => [ \%x448,
    $k->jwk('rsa1') ] }));
($rc, $out) = nginx_t(router_token_jwks => $t->path('skip.json'));
is($rc, 0, 'nginx -t: an unsupported key beside a good one passes');
like($out, qr/\[warn\].*key #1 skipped: an OKP key on another curve/,
    'nginx -t: the X448 key skipped with a warning');

my %short = (%{ $k->jwk('ec1') }, kid => 'short');
$short{x} = substr($short{x}, 0, 40);

$t->write_file('bad.json', JSON::PP->new->encode({ keys => [
    $k->jwk('rsa1'), \%short ] }));
($rc, $out) = nginx_t(router_token_jwks => $t->path('bad.json'));
isnt($rc, 0, 'nginx -t: a bad EC key fails');
like($out, qr/bad\.json": key #2: its "x" or "y" is missing, not base64url/,
    'nginx -t: the bad key and the reason');

my %offcurve = (%{ $k->jwk('ec1') }, kid => 'off');
$offcurve{y} = $k->jwk('ec1')->{x};

$t->write_file('curve.json', JSON::PP->new->encode({ keys => [
    \%offcurve ] }));
($rc, $out) = nginx_t(router_token_jwks => $t->path('curve.json'));
isnt($rc, 0, 'nginx -t: an EC point off the curve fails');
like($out, qr/key #1: OpenSSL/, 'nginx -t: OpenSSL refuses it');

# a 1024-bit RSA key

system('openssl', 'genpkey', '-algorithm', 'RSA', '-pkeyopt',
    'rsa_keygen_bits:1024', '-out', $t->path('small.pem')) == 0
    or die "openssl genpkey\n";
my ($mod) = `openssl rsa -in @{[ $t->path('small.pem') ]} -noout -modulus`
    =~ /^Modulus=([0-9A-F]+)/;

$t->write_file('small.json', JSON::PP->new->encode({ keys => [ { kty => 'RSA',
    kid => 'small', e => 'AQAB',
    n => MailPlus::Token::b64url(pack('H*', $mod)) } ] }));
($rc, $out) = nginx_t(router_token_jwks => $t->path('small.json'));
isnt($rc, 0, 'nginx -t: a 1024-bit RSA key fails');
like($out, qr/key #1: an RSA key of less than 2048/,
    'nginx -t: too short a modulus');

$t->write_file('dup.json', JSON::PP->new->encode({ keys => [
    $k->jwk('rsa1'), { %{ $k->jwk('rogue') }, kid => 'rsa1' } ] }));
($rc, $out) = nginx_t(router_token_jwks => $t->path('dup.json'));
isnt($rc, 0, 'nginx -t: a repeated kid fails');
like($out, qr/key #2: its "kid" is the one of an earlier key/,
    'nginx -t: repeated kid');

my %nokid = %{ $k->jwk('ed1') };
delete $nokid{kid};

$t->write_file('nokid.json', JSON::PP->new->encode({ keys => [ \%nokid ] }));
($rc, $out) = nginx_t(router_token_jwks => $t->path('nokid.json'));
isnt($rc, 0, 'nginx -t: a key without kid fails');
like($out, qr/key #1: no "kid"/, 'nginx -t: no kid');

($rc, $out) = nginx_t(router_token_issuer => undef);
isnt($rc, 0, 'nginx -t: no issuer fails');
like($out, qr/"router_token_jwks" in .* needs "router_token_issuer"/,
    'nginx -t: needs router_token_issuer');

($rc, $out) = nginx_t(router_token_audience => undef);
isnt($rc, 0, 'nginx -t: no audience fails');
like($out, qr/needs "router_token_audience"/,
    'nginx -t: needs router_token_audience');

($rc, $out) = nginx_t(router_token_clock_skew => '11m');
isnt($rc, 0, 'nginx -t: a clock skew of 11m fails');
like($out, qr/"router_token_clock_skew" is at most 10m/,
    'nginx -t: skew at most 10m');

($rc, $out) = nginx_t(router_token_clock_skew => '10m');
is($rc, 0, 'nginx -t: a clock skew of 10m passes') or diag($out);

($rc, $out) = nginx_t(router_token_openid_configuration => '"https://x/"a"');
isnt($rc, 0, 'nginx -t: a quote in the openid-configuration URL fails');

###############################################################################

$t->write_file_expand('nginx.conf', conf());
$t->run();

my $http = HTTP::Tiny->new(timeout => 10 * $MailPlus::Test::SCALE);
my @tokens;

# auth($token, %headers): the endpoint's answer headers

sub auth {
    my ($token, %h) = @_;

    push @tokens, $token;

    my $r = $http->get('http://127.0.0.1:' . $t->port('http') . '/auth', {
        headers => {
            'Auth-Method' => 'oauthbearer',
            'Auth-User' => '',
            'Auth-Pass' => $token,
            'Auth-Protocol' => 'imap',
            'Auth-Login-Attempt' => 1,
            'Client-IP' => '127.0.0.1',
            %h,
        },
    });

    return $r->{headers};
}

sub ok_to {
    my ($name, $server, $token, %h) = @_;

    my $a = auth($token, %h);

    is($a->{'auth-status'}, 'OK', "$name: OK")
        or diag(explain($a));
    is(($a->{'auth-server'} // '') . ':' . ($a->{'auth-port'} // ''),
        "$server:10143", "$name: the user's server");
}

my $status = '{"status":"invalid_token","schemes":"bearer",'
    . qq{"openid-configuration":"$openid"\}};

sub refused {
    my ($name, $reason, $token, %h) = @_;

    my $a = auth($token, %h);

    isnt($a->{'auth-status'} // 'OK', 'OK', "$name: refused");
    is(decode_base64($a->{'auth-error-sasl'} // ''), $status,
        "$name: the RFC 7628 status");

    ok(wait_for(sub {
        $t->read_file('error.log') =~ /invalid token: \Q$reason\E/
    }, 5), "$name: \"$reason\" in the log");
}

my $now = time();

ok_to('RS256', '127.0.0.1', $k->token(alg => 'RS256'));
ok_to('ES256, another user', '127.0.0.2',
    $k->token(alg => 'ES256', user => 'carol@other.test'));
ok_to('EdDSA, XOAUTH2, the SASL user in another case', '127.0.0.1',
    $k->token(alg => 'EdDSA'), 'Auth-Method' => 'xoauth2',
    'Auth-User' => 'Alice@Example.COM');
ok_to('RS256, aud an array, the SASL user', '127.0.0.1',
    $k->token(alg => 'RS256', claims => { aud => [ 'x', $aud ] }),
    'Auth-User' => 'alice@example.com');
ok_to('ES256, expired within the skew', '127.0.0.1',
    $k->token(alg => 'ES256', claims => { exp => $now - 20 }));
ok_to('EdDSA, no nbf and no iat', '127.0.0.1',
    $k->token(alg => 'EdDSA', claims => { nbf => undef, iat => undef }));

refused('expired', 'expired',
    $k->token(claims => { exp => $now - 120, iat => $now - 700,
        nbf => $now - 700 }));
refused('not yet valid (nbf)', 'not yet valid',
    $k->token(alg => 'ES256', claims => { nbf => $now + 300 }));
refused('issued in the future (iat)', 'not yet valid',
    $k->token(alg => 'EdDSA', claims => { iat => $now + 300 }));
refused('no exp', 'no expiry', $k->token(claims => { exp => undef }));
refused('exp a string', 'malformed',
    $k->token(claims => { exp => "" . ($now + 600) }));
refused('wrong audience', 'wrong audience',
    $k->token(claims => { aud => 'webmail' }));
refused('no audience', 'wrong audience',
    $k->token(claims => { aud => undef }));
refused('wrong issuer', 'wrong issuer',
    $k->token(alg => 'EdDSA', claims => { iss => 'https://evil.test' }));
refused('unknown kid', 'unknown key', $k->token(kid => 'nope'));
refused('no kid', 'no key id', $k->token(kid => undef));
refused('signed by the rogue key', 'bad signature',
    $k->token(key => 'rogue'));
refused('the rogue key under its own kid', 'unknown key',
    $k->token(key => 'rogue', kid => 'rogue'));
refused('alg none', 'algorithm not allowed', $k->token(none => 1));
refused('HS256 keyed with the public key', 'algorithm not allowed',
    $k->token(alg => 'HS256'));
refused('ES256 under an RSA kid', 'algorithm not allowed',
    $k->token(alg => 'ES256', kid => 'rsa1'));
refused('crit', 'critical header not supported',
    $k->token(alg => 'EdDSA', header => { crit => [ 'exp' ] }));
refused('for another user', 'the token is for another user',
    $k->token(alg => 'ES256'), 'Auth-User' => 'bob@example.com');
refused('tampered payload', 'bad signature', $k->token(tamper => 1));
refused('tampered payload, EdDSA', 'bad signature',
    $k->token(alg => 'EdDSA', tamper => 1));
refused('garbage', 'malformed', 'garbage');
refused('four parts', 'malformed', $k->token() . '.x');
refused('padding', 'malformed', $k->token() . '==');
refused('oversize', 'the token is too long', 'a' x 5000);
refused('login claim with a space', 'bad login claim',
    $k->token(alg => 'EdDSA', user => 'alice @example.com'));
refused('no login claim', 'no login claim',
    $k->token(alg => 'EdDSA', claims => { email => undef }));

###############################################################################

# the JWKS changed: the rogue key in, rsa1 out, read by a reload

my $rogue = $k->token(key => 'rogue', kid => 'rogue');
my $rsa1 = $k->token(alg => 'RS256');

$k->write_jwks($jwks, qw/ ec1 ed1 rogue /);
ok($t->reload(), 'reload with the new JWKS');

ok_to('after reload: the rogue key is in', '127.0.0.1', $rogue);
refused('after reload: rsa1 is out', 'unknown key', $rsa1);
ok_to('after reload: ES256 still', '127.0.0.1', $k->token(alg => 'ES256'));

###############################################################################

# no signature of a token is in a line of ours: stock nginx's debug lines
# of the request's headers and of the answer's (a login's answer carries
# the token on in Auth-Pass, for the backend) are left aside

my @leaks;

for my $line (split /\n(?=\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[)/,
    $t->read_file('error.log'))
{
    next if $line =~ /\bhttp header: "Auth-Pass: /;
    next if $line =~ /^\S+ \S+ \[debug\] \S+ \*\d+ HTTP\/1\.[01] \d{3} /;

    for my $tok (@tokens) {
        my $sig = $k->signature($tok);
        next unless length $sig >= 16;
        push @leaks, $line if index($line, $sig) >= 0;
    }

    push @leaks, $line if index($line, 'a' x 64) >= 0;
}

is(scalar @leaks, 0, 'no token in the error log but stock header lines')
    or diag(join "\n", @leaks[0 .. (@leaks > 5 ? 4 : $#leaks)]);

like($t->read_file('error.log'), qr/router: token jwt: signature by "ed1"/,
    'the debug lines tell the key');

done_testing();
