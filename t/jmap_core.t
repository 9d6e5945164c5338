#!/usr/bin/perl

# The core of the JMAP endpoint (mail_plus_jmap, RFC 8620): the session
# resource (capabilities and limits, the account, absolute URLs), the
# /.well-known/jmap redirect, HTTP Basic checked by the router as an IMAP
# login (401 without or with a wrong password, lockout after
# router_login_fails) and a bearer token checked by router_token_jwks;
# the API: Core/echo, result references (with "*" and JSON Pointer
# escapes), every request-level error as problem details, method errors,
# and hostile JSON answered with errors, the workers alive after it.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;
use MailPlus::Token;

###############################################################################

my $t = MailPlus::Test->new();
my $k = MailPlus::Token->new($t);

my %users = ('alice@example.com' => 'pwA', 'bob@example.com' => 'pwB',
    'mallory@example.com' => 'pwM');
my $da = $t->dovecot('a', users => \%users);

# dave's pool has no live server: a temporary failure

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
bob@example.com:{PLAIN}pwB:a
mallory@example.com:{PLAIN}pwM:a
dave@example.com:{PLAIN}pwD:d
EOF

my $jwks = $k->jwks_file;
my $iss = $k->issuer;
my $aud = $k->audience;

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 1s;
    router_auth_max_delay 1s;
    router_login_fails 3;
    router_zone   throttle:1m;

    router_token_jwks      $jwks;
    router_token_issuer    $iss;
    router_token_audience  $aud;

    router_health_check interval=1s timeout=1s;

    router_pool a {
        server 127.0.0.1 imap=$da->{imap};
    }

    router_pool d {
        server 127.0.0.1 imap=%%PORT_dead%%;
    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen       127.0.0.1:%%PORT_http%%;
        server_name  jmap.test;

        client_max_body_size 20m;

        location = /auth {
            mail_router_auth;
        }

        location = /.well-known/jmap {
            return 301 /jmap/session;
        }

        location /jmap/ {
            mail_plus_jmap;
            mail_plus_jmap_max_calls_in_request 4;
        }

        location /small/ {
            mail_plus_jmap;
            mail_plus_jmap_max_size_request 1k;
        }
    }
}
EOF

$t->run();

###############################################################################

my $http = HTTP::Tiny->new(timeout => 20, max_redirect => 0);
my $port = $t->port('http');
my $base = "http://127.0.0.1:$port";
my $json = JSON::PP->new->canonical(1);

sub basic { 'Basic ' . encode_base64("$_[0]:$_[1]", '') }

sub get {
    my ($path, %h) = @_;
    return $http->request('GET', "$base$path", { headers => \%h });
}

sub post {
    my ($path, $body, %h) = @_;
    $h{'Content-Type'} = 'application/json'
        unless exists $h{'Content-Type'};
    delete $h{'Content-Type'} unless defined $h{'Content-Type'};
    $h{Authorization} = basic('alice@example.com', 'pwA')
        unless exists $h{Authorization};
    return $http->request('POST', "$base$path",
        { headers => \%h, content => $body });
}

sub api {
    my ($req, $path) = @_;
    my $r = post($path || '/jmap/api', ref $req ? $json->encode($req) : $req);
    my $d = eval { decode_json($r->{content}) };
    return ($r, $d);
}

sub echo_req {
    return { using => ['urn:ietf:params:jmap:core'], methodCalls => [@_] };
}

# a request-level error: status, problem type, and limit if given

sub problem {
    my ($req, $status, $type, $name, %o) = @_;
    my ($r, $d) = api($req, $o{path});
    is($r->{status}, $status, "$name: status $status");
    like($r->{headers}{'content-type'} || '', qr{^application/problem\+json},
        "$name: problem details");
    is($d && $d->{type}, "urn:ietf:params:jmap:error:$type", "$name: $type");
    is($d && $d->{status}, $status, "$name: status in the problem");
    is($d && $d->{limit}, $o{limit}, "$name: limit $o{limit}") if $o{limit};
}

###############################################################################

# the session resource

my $r = get('/jmap/session', Authorization => basic('alice@example.com',
    'pwA'));
is($r->{status}, 200, 'session: 200');
like($r->{headers}{'content-type'}, qr{^application/json}, 'session: JSON');
my $s = decode_json($r->{content});

my $core = $s->{capabilities}{'urn:ietf:params:jmap:core'};
is_deeply([sort keys %{$s->{capabilities}}], ['urn:ietf:params:jmap:core',
    'urn:ietf:params:jmap:mail', 'urn:ietf:params:jmap:submission'],
    'session: the core, mail and submission capabilities');
is($core->{maxSizeRequest}, 10 * 1024 * 1024, 'session: maxSizeRequest');
is($core->{maxCallsInRequest}, 4, 'session: maxCallsInRequest');
is($core->{maxObjectsInGet}, 500, 'session: maxObjectsInGet');
is($core->{maxSizeUpload}, 25 * 1024 * 1024, 'session: maxSizeUpload');
is($core->{maxConcurrentRequests}, 4, 'session: maxConcurrentRequests');
ok(exists $core->{maxConcurrentUpload} && exists $core->{maxObjectsInSet}
    && ref $core->{collationAlgorithms} eq 'ARRAY',
    'session: the other core limits');
is($s->{username}, 'alice@example.com', 'session: username');
my @acc = keys %{$s->{accounts}};
is(scalar @acc, 1, 'session: one account');
like($acc[0], qr/^a[0-9a-f]{16}$/, 'session: account id');
is($s->{accounts}{$acc[0]}{name}, 'alice@example.com', 'session: name');
is(ref $s->{primaryAccounts}, 'HASH', 'session: primaryAccounts');
is($s->{apiUrl}, "http://127.0.0.1:$port/jmap/api", 'session: apiUrl');
like($s->{downloadUrl},
    qr{^http://127\.0\.0\.1:$port/jmap/download/\{accountId\}/\{blobId\}/\{name\}\?type=\{type\}$},
    'session: downloadUrl');
like($s->{uploadUrl}, qr{^http://127\.0\.0\.1:$port/jmap/upload/\{accountId\}/$},
    'session: uploadUrl');
like($s->{eventSourceUrl}, qr{\{types\}.*\{closeafter\}.*\{ping\}},
    'session: eventSourceUrl');
ok(length $s->{state}, 'session: state');

$r = get('/jmap/session', Authorization => basic('alice@example.com', 'pwA'));
my $s2 = decode_json($r->{content});
is($s2->{state}, $s->{state}, 'session: state stable');
is((keys %{$s2->{accounts}})[0], $acc[0], 'session: account id stable');

$r = get('/jmap/session', Authorization => basic('bob@example.com', 'pwB'));
isnt((keys %{decode_json($r->{content})->{accounts}})[0], $acc[0],
    'session: another user, another account');

# HTTP::Tiny sets Host itself: curl sends the ones it would not

sub curl_host {
    my ($host) = @_;
    my $code = `curl -s -o /dev/null -w '%{http_code}' -u alice\@example.com:pwA -H 'Host: $host' $base/jmap/session`;
    return $code;
}

is(curl_host('evil"host'), '400', 'session: a Host with a quote: 400');
is(curl_host('a{b}'), '400', 'session: a Host with braces: 400');
is(curl_host('jmap.test:8080'), '200', 'session: a host and a port: 200');
my $c = `curl -s -u alice\@example.com:pwA -H 'Host: jmap.test:8080' $base/jmap/session`;
like($c, qr{"apiUrl":"http://jmap\.test:8080/jmap/api"},
    'session: the URLs from Host');

$r = $http->request('HEAD', "$base/jmap/session", { headers => {
    Authorization => basic('alice@example.com', 'pwA') } });
is($r->{status}, 200, 'session: HEAD 200');
ok(!length($r->{content} // ''), 'session: HEAD, no body');

$r = post('/jmap/session', '{}');
is($r->{status}, 405, 'session: POST 405');
$r = get('/jmap/api', Authorization => basic('alice@example.com', 'pwA'));
is($r->{status}, 405, 'api: GET 405');
is($r->{headers}{allow}, 'POST', 'api: Allow POST');
$r = get('/jmap/other', Authorization => basic('alice@example.com', 'pwA'));
is($r->{status}, 404, 'unknown resource: 404');

# the well-known URL

$r = get('/.well-known/jmap');
is($r->{status}, 301, 'well-known: 301');
like($r->{headers}{location}, qr{/jmap/session$}, 'well-known: to session');

# authentication

$r = get('/jmap/session');
is($r->{status}, 401, 'no credentials: 401');
my $wa = $r->{headers}{'www-authenticate'};
$wa = join ', ', @$wa if ref $wa;
like($wa, qr/Basic realm="mail"/, 'no credentials: Basic');
like($wa, qr/Bearer realm="mail"/, 'no credentials: Bearer, tokens on');

$r = get('/jmap/session', Authorization => basic('bob@example.com', 'bad'));
is($r->{status}, 401, 'wrong password: 401');

$r = post('/jmap/api', $json->encode(echo_req(['Core/echo', {}, 'c'])),
    Authorization => basic('alice@example.com', 'nope'));
is($r->{status}, 401, 'api, wrong password: 401');

# a temporary failure: 503 with Retry-After

ok(wait_for(sub {
    $r = get('/jmap/session', Authorization => basic('dave@example.com',
        'pwD'));
    $r->{status} == 503;
}, 15), 'no live server: 503');
is($r->{headers}{'retry-after'}, 60, 'no live server: Retry-After');

# a token

my $jwt = $k->token(user => 'alice@example.com');
$r = get('/jmap/session', Authorization => "Bearer $jwt");
is($r->{status}, 200, 'bearer token: 200');
is(eval { decode_json($r->{content})->{username} }, 'alice@example.com',
    'bearer token: username');
is(eval { (keys %{decode_json($r->{content})->{accounts}})[0] }, $acc[0],
    'bearer token: the same account');

$r = get('/jmap/session',
    Authorization => 'Bearer ' . $k->token(user => 'alice@example.com',
        tamper => 1));
is($r->{status}, 401, 'bearer token tampered: 401');

# Core/echo and result references

my $d;
($r, $d) = api(echo_req(['Core/echo', { hello => 'world', n => [1, 2] },
    'c1']));
is($r->{status}, 200, 'echo: 200');
is_deeply($d->{methodResponses},
    [['Core/echo', { hello => 'world', n => [1, 2] }, 'c1']], 'echo');
is($d->{sessionState}, $s->{state}, 'echo: sessionState');
ok(!exists $d->{createdIds}, 'echo: no createdIds');

my $req = echo_req(
    ['Core/echo', { list => [{ id => 'x', v => [1] }, { id => 'y',
        v => [2, 3] }], 'a/b' => 'slash', 'm~n' => 'tilde' }, 'c1'],
    ['Core/echo', {
        '#ids' => { resultOf => 'c1', name => 'Core/echo',
            path => '/list/*/id' },
        '#vs' => { resultOf => 'c1', name => 'Core/echo',
            path => '/list/*/v' },
        '#s' => { resultOf => 'c1', name => 'Core/echo', path => '/a~1b' },
        '#t' => { resultOf => 'c1', name => 'Core/echo', path => '/m~0n' },
        '#one' => { resultOf => 'c1', name => 'Core/echo',
            path => '/list/1/id' },
        plain => 1 }, 'c2']);
$req->{createdIds} = { k1 => 'id1' };
($r, $d) = api($req);
is_deeply($d->{methodResponses}[1], ['Core/echo', { ids => ['x', 'y'],
    vs => [1, 2, 3], s => 'slash', t => 'tilde', one => 'y', plain => 1 },
    'c2'], 'result references: resolved, "*" flattens');
is_deeply($d->{createdIds}, { k1 => 'id1' }, 'createdIds given back');

# method errors

sub method_error {
    my ($req, $type, $name) = @_;
    my ($r, $d) = api($req);
    is($r->{status}, 200, "$name: 200");
    my $last = $d && $d->{methodResponses}[-1];
    is($last && $last->[0], 'error', "$name: an error response");
    is($last && $last->[1]{type}, $type, "$name: $type");
}

method_error(echo_req(['Mailbox/get', {}, 'c']), 'unknownMethod',
    'unknown method');
method_error({ using => [], methodCalls => [['Core/echo', {}, 'c']] },
    'unknownMethod', 'capability not in using');
method_error(echo_req(['Core/echo', { a => 1, '#a' => { resultOf => 'c',
    name => 'Core/echo', path => '' } }, 'c']), 'invalidArguments',
    'both "a" and "#a"');

my $ref = sub { { '#x' => { resultOf => 'c1', name => 'Core/echo', @_ } } };
for my $bad (
    [{ path => '/nope' }, 'path not found'],
    [{ path => '/l/5' }, 'index out of range'],
    [{ path => '/l/01' }, 'leading zero'],
    [{ path => 'l' }, 'no leading slash'],
    [{ path => '/l', name => 'Other/get' }, 'name differs'],
    [{ path => '/l', resultOf => 'zz' }, 'no such call'],
    [{ path => 5 }, 'path not a string'],
    [{ path => '/l', extra => 1 }, 'an extra member'])
{
    method_error(echo_req(['Core/echo', { l => [1] }, 'c1'],
        ['Core/echo', $ref->(%{$bad->[0]}), 'c2']),
        'invalidResultReference', "bad reference: $bad->[1]");
}

method_error(echo_req(['Core/echo', { '#x' => { resultOf => 'c1',
    name => 'Core/echo', path => '' } }, 'c1']), 'invalidResultReference',
    'a reference to itself');

($r, $d) = api(echo_req(['Nope/x', {}, 'c1'], ['Core/echo', { a => 1 },
    'c2']));
is_deeply($d->{methodResponses}[1], ['Core/echo', { a => 1 }, 'c2'],
    'a call after a failed one runs');

# request-level errors

problem('{"using":', 400, 'notJSON', 'truncated JSON');
problem('', 400, 'notJSON', 'empty body');
problem([1, 2], 400, 'notRequest', 'an array');
problem({ using => ['urn:ietf:params:jmap:core'] }, 400, 'notRequest',
    'no methodCalls');
problem({ using => 'x', methodCalls => [] }, 400, 'notRequest',
    'using not an array');
problem({ using => [1], methodCalls => [] }, 400, 'notRequest',
    'using not strings');
problem(echo_req(['Core/echo', {}]), 400, 'notRequest', 'a call of 2');
problem(echo_req(['Core/echo', [], 'c']), 400, 'notRequest',
    'arguments not an object');
problem(echo_req(['Core/echo', {}, 5]), 400, 'notRequest',
    'call id not a string');
problem({ %{echo_req()}, createdIds => { a => 1 } }, 400, 'notRequest',
    'createdIds values not strings');
problem({ using => ['urn:example:not-a-capability'], methodCalls => [] },
    400,
    'unknownCapability', 'unknown capability');
problem(echo_req(map { ['Core/echo', {}, "c$_"] } 1 .. 5), 400, 'limit',
    'too many calls', limit => 'maxCallsInRequest');
problem(echo_req(['Core/echo', { x => 'y' x 2000 }, 'c']), 413, 'limit',
    'too large', limit => 'maxSizeRequest', path => '/small/api');

# a chunked body over the limit: refused when it goes over

$t->write_file('big.json',
    '{"using":[],"methodCalls":[],"x":"' . ('y' x 3000) . '"}');
$c = `curl -s -w ' %{http_code}' -u alice\@example.com:pwA \\
    -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' \\
    --data-binary \@${\ $t->path('big.json')} $base/small/api`;
like($c, qr/"limit":"maxSizeRequest".* 413$/s, 'chunked, too large: 413');
($r, $d) = api(echo_req(['Core/echo', { after => 1 }, 'c']), '/small/api');
is($r->{status}, 200, 'small: a request within the limit after it');

$r = post('/jmap/api', '{}', 'Content-Type' => 'text/plain');
is($r->{status}, 400, 'text/plain: 400');
like($r->{content}, qr/notJSON/, 'text/plain: notJSON');
$r = post('/jmap/api', $json->encode(echo_req(['Core/echo', {}, 'c'])),
    'Content-Type' => 'application/json; charset=utf-8');
is($r->{status}, 200, 'application/json with charset: 200');

# hostile JSON

problem(('[' x 100000) . (']' x 100000), 400, 'notJSON', 'deep nesting');
problem('{"using":[],"methodCalls":[],"using":[]}', 400, 'notJSON',
    'duplicate keys');
problem('{"using":[],"methodCalls":[["Core/echo",{"a":1,"a":2},"c"]]}',
    400, 'notJSON', 'duplicate keys, nested');
problem('{"using":["urn:ietf:params:jmap:core"],"methodCalls":'
    . '[["Core/echo",{"n":1' . ('0' x 400) . '},"c"]]}', 400, 'notJSON',
    'a huge integer');
problem('{"using":["urn:ietf:params:jmap:core"],"methodCalls":'
    . '[["Core/echo",{"n":1e99999},"c"]]}', 400, 'notJSON',
    'a huge real');
problem('{"using":["urn:ietf:params:jmap:core"],"methodCalls":'
    . '[["Core/echo",{"s":"a\\u0000b"},"c"]]}', 400, 'notJSON',
    'an escaped NUL in a string');
problem("{\"using\":[\"urn:ietf:params:jmap:core\"],\"methodCalls\":"
    . "[[\"Core/echo\",{\"s\":\"a\0b\"},\"c\"]]}", 400, 'notJSON',
    'a raw NUL in a string');
problem("{\"using\":[],\"methodCalls\":[[\"Core/echo\",{\"s\":\"\xff\xfe\"},"
    . "\"c\"]]}", 400, 'notJSON', 'invalid UTF-8');

# references that multiply the response are bounded

my @calls = (['Core/echo', { l => [map { 'z' x 100 } 1 .. 40] }, 'c0']);
for my $i (1 .. 3) {
    my $p = $i - 1;
    push @calls, ['Core/echo', { map { ("#k$_" => { resultOf => "c$p",
        name => 'Core/echo', path => '' }) } 1 .. 300 }, "c$i"];
}
($r, $d) = post_big(@calls);

sub post_big {
    my $r = post('/jmap/api', $json->encode({
        using => ['urn:ietf:params:jmap:core'], methodCalls => [@_] }));
    return ($r, eval { decode_json($r->{content}) });
}

is($r->{status}, 200, 'multiplying references: 200');
is($d && $d->{methodResponses}[2][1]{type}, 'serverFail',
    'multiplying references: refused past the budget');
is($d && $d->{methodResponses}[3][1]{type}, 'invalidResultReference',
    'multiplying references: a reference to the refused call');
ok(length($r->{content}) < 60 * 1024 * 1024, 'multiplying references: '
    . 'the response bounded');

($r, $d) = api(echo_req(['Core/echo', { ok => 1 }, 'c']));
is($r->{status}, 200, 'alive after hostile JSON');

# lockout after failed logins (router_login_fails 3)

for (1 .. 3) {
    get('/jmap/session', Authorization => basic('mallory@example.com', 'x'));
}
$r = get('/jmap/session', Authorization => basic('mallory@example.com',
    'pwM'));
is($r->{status}, 401, 'locked out after failed logins: the right password '
    . 'refused');
like($t->read_file('error.log'),
    qr/\[info\].*http jmap: login "mallory\@example\.com" failed/,
    'failed login logged');

$t->finish();
