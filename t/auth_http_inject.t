#!/usr/bin/perl

# The auth_http endpoint (mail_router_auth) behind stock nginx servers
# ("protocol pop3", "imap", "smtp" of ngx_mail_module, no router_proxy),
# against real Dovecot backends, with hostile logins and passwords.
#
# A client puts CR, LF or NUL in a login or a password (SASL PLAIN and
# LOGIN, IMAP literals) so that, were they written back as they are, the
# endpoint's answer would carry an Auth-Server and an Auth-Port of the
# client's choosing: here an internal Dovecot ("e" on 127.0.0.2) that takes
# any password.  None of them reaches it: each gets the protocol's error,
# counts as a denied login (the status endpoint's counters), and its log
# line shows the login escaped.
#
# SMTP AUTH for a pool with "auth backend": nobody checks the password in
# the endpoint, so it is refused by default (the same 535 for a right and a
# wrong password); with "mail_router_auth_smtp_backend on" and stock
# "proxy_smtp_auth on" the SMTP backend (Dovecot's submission service, with
# its own passwd-file) checks it: the right password is accepted and the
# mail relayed, a wrong one refused.

use warnings;
use strict;

use Test::More;

use JSON::PP;
use HTTP::Tiny;
use MIME::Base64 qw/ encode_base64 /;
use Net::SMTP;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

plan(skip_all => 'no swaks') unless -x '/usr/bin/swaks';
plan(skip_all => 'no Dovecot submission service')
    unless -x '/usr/lib/dovecot/submission';

$t->smtp_sink('sink');

# a Dovecot with a submission service that relays to smtp-sink

sub submission {
    my ($name, $addr) = @_;

    my $port = $t->port("${name}_sub", $addr);
    my $sink = $t->port('sink');

    return <<"EOF";
protocols = imap pop3 lmtp submission
hostname = $name.backend.test
submission_relay_host = 127.0.0.1
submission_relay_port = $sink
service submission-login {
  inet_listener submission {
    address = $addr
    port = $port
  }
}
EOF
}

my $d = $t->dovecot('a', users => { alice => 'pwA' },
    extra => submission('a', '127.0.0.1'));

# the internal server the attacker would like to reach: any password

my $e = $t->dovecot('e', addr => '127.0.0.2', any_password => 1,
    extra => submission('e', '127.0.0.2'));

my %evil = (pop3 => $e->{pop3}, imap => $e->{imap},
    smtp => $t->port('e_sub'));

$t->write_file('users', <<'EOF');
carol@router.example:{PLAIN}pwC:r
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_zone   z:1m;
    router_auth_delay      1s;
    router_auth_max_delay  1s;
    router_address_fails   1000;
    router_login_fails     1000;

    router_pool bk {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3}
                         smtp=@{[ $t->port('a_sub') ]};
        auth backend;
    }

    router_pool r {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    # a rewriting rule that writes CR LF into the backend login: no path
    # of the endpoint may write it into a header

    router_rule "^(.+)\@rule\.example\$" pool=bk
        "login=\$1\\r\\nAuth-Server: 127.0.0.2\\r\\nAuth-Port: $e->{pop3}";

    router_default_pool  bk;

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    server {
        listen     127.0.0.1:%%PORT_pop3%%;
        protocol   pop3;
        pop3_auth  plain;
    }

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        imap_auth  login plain;
    }

    # the endpoint's default: SMTP AUTH for "auth backend" refused

    server {
        listen     127.0.0.1:%%PORT_smtp%%;
        protocol   smtp;
        smtp_auth  login plain;
        xclient    off;
        auth_http  127.0.0.1:%%PORT_http%%/auth;
    }

    # the password passed on: the backend checks it

    server {
        listen     127.0.0.1:%%PORT_smtp_backend%%;
        protocol   smtp;
        smtp_auth  login plain;
        auth_http  127.0.0.1:%%PORT_http%%/auth_backend;

        proxy_smtp_auth           on;
        proxy_pass_error_message  on;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen  127.0.0.1:%%PORT_http%%;

        location = /auth {
            mail_router_auth;
        }

        location = /auth_backend {
            mail_router_auth;
            mail_router_auth_smtp_backend on;
        }

        location = /status {
            mail_plus_status;
        }
    }
}
EOF

# stock nginx's own debug lines show what clients sent as it is: the
# error log is read at "info", where the lines are the endpoint's

$t->run(log_level => 'info');

###############################################################################

my $http = HTTP::Tiny->new(timeout => 10);

sub denied {
    my $r = $http->get('http://127.0.0.1:' . $t->port('http') . '/status');
    my $s = eval { decode_json($r->{content}) } || {};
    return $s->{logins}{denied};
}

sub b64 { encode_base64($_[0], '') }

# what the internal server saw since the start: nothing but the harness's
# own banner checks, which make no login

my $elog_start = length $t->dovecot_log($e);

sub evil_reached {
    my $log = substr($t->dovecot_log($e), $elog_start);
    return join '', grep { /Login:|auth attempts|rip=127\.0\.0\.1/ }
        split /^/, $log;
}

# the hostile logins: CR LF with headers that name the internal server

sub inject {
    my ($proto) = @_;
    return "alice\r\nAuth-Server: 127.0.0.2\r\nAuth-Port: $evil{$proto}";
}

sub escaped {
    my ($s) = @_;
    $s =~ s/([\x00-\x1f\x7f"\\])/sprintf('\\x%02x', ord $1)/ge;
    return $s;
}

my $c;

# run($name, $proto, $login, $sub): $sub talks to nginx and returns the
# final reply; $login is the login it sends, for the log check

sub attempt {
    my ($name, $proto, $login, $re, $sub) = @_;

    my $before = denied();
    my $reply = $sub->() // '(none)';

    like($reply, $re, "$name: the protocol's error");
    is(denied(), $before + 1, "$name: counted as a denied login");

    my $log = $t->read_file('error.log');

    if (defined $login) {
        my $esc = quotemeta(escaped($login));
        like($log, qr/mail router: $proto login "$esc" from 127\.0\.0\.1 (?#
            )denied: control character/, "$name: the login logged escaped");
    }
}

# POP3

sub pop3 {
    my $c = MailPlus::Test::Client->new($t->port('pop3')) or return;
    $c->getline() =~ /^\+OK/ or return;
    return $c;
}

attempt('pop3 AUTH PLAIN, CRLF in the login', 'pop3', inject('pop3'),
    qr/^-ERR/, sub {
        my $c = pop3() or return;
        $c->pop3('AUTH PLAIN ' . b64("\0" . inject('pop3') . "\0pwA"));
    });

attempt('pop3 AUTH LOGIN, CRLF in the login', 'pop3', inject('pop3'),
    qr/^-ERR/, sub {
        my $c = pop3() or return;
        $c->pop3('AUTH LOGIN') =~ /^\+ / or return;
        $c->pop3(b64(inject('pop3'))) =~ /^\+ / or return;
        $c->pop3(b64('pwA'));
    });

attempt('pop3 AUTH LOGIN, NUL in the login', 'pop3', "alice\0x",
    qr/^-ERR/, sub {
        my $c = pop3() or return;
        $c->pop3('AUTH LOGIN') =~ /^\+ / or return;
        $c->pop3(b64("alice\0x")) =~ /^\+ / or return;
        $c->pop3(b64('pwA'));
    });

attempt('pop3 AUTH PLAIN, CRLF in the password', 'pop3', 'alice',
    qr/^-ERR/, sub {
        my $c = pop3() or return;
        $c->pop3('AUTH PLAIN '
            . b64("\0alice\0pwA\r\nAuth-Server: 127.0.0.2\r\nAuth-Port: "
                . $evil{pop3}));
    });

attempt('pop3 USER/PASS, NUL in the password', 'pop3', 'alice',
    qr/^-ERR/, sub {
        my $c = pop3() or return;
        $c->pop3('USER alice') =~ /^\+OK/ or return;
        $c->pop3("PASS pwA\0Auth-Port: 1");
    });

# IMAP

sub imap {
    my $c = MailPlus::Test::Client->new($t->port('imap')) or return;
    $c->getline() =~ /^\* OK/ or return;
    return $c;
}

attempt('imap LOGIN, CRLF in a literal login', 'imap', inject('imap'),
    qr/^a1 NO/, sub {
        my $c = imap() or return;
        my $l = inject('imap');
        $c->send('a1 LOGIN {' . length($l) . '}');
        $c->getline() =~ /^\+/ or return;
        $c->send($l . ' pwA');
        return scalar $c->read_until(qr/^a1 /);
    });

attempt('imap LOGIN, LF in a literal login', 'imap', "alice\nx",
    qr/^a1 NO/, sub {
        my $c = imap() or return;
        $c->send('a1 LOGIN {7}');
        $c->getline() =~ /^\+/ or return;
        $c->send("alice\nx pwA");
        return scalar $c->read_until(qr/^a1 /);
    });

attempt('imap AUTHENTICATE PLAIN, CRLF in the login', 'imap',
    inject('imap'), qr/^a1 NO/, sub {
        my $c = imap() or return;
        $c->send('a1 AUTHENTICATE PLAIN');
        $c->getline() =~ /^\+/ or return;
        $c->send(b64("\0" . inject('imap') . "\0pwA"));
        return scalar $c->read_until(qr/^a1 /);
    });

attempt('imap LOGIN, CRLF in a literal password', 'imap', 'alice',
    qr/^a1 NO/, sub {
        my $c = imap() or return;
        my $p = "pwA\r\nAuth-Server: 127.0.0.2\r\nAuth-Port: $evil{imap}";
        $c->send('a1 LOGIN alice {' . length($p) . '}');
        $c->getline() =~ /^\+/ or return;
        $c->send($p);
        return scalar $c->read_until(qr/^a1 /);
    });

# SMTP, both servers

for my $server (qw/ smtp smtp_backend /) {

    my $smtp = sub {
        my $c = MailPlus::Test::Client->new($t->port($server)) or return;
        $c->getline() =~ /^220/ or return;
        $c->smtp('EHLO client.example') =~ /^250 /m or return;
        return $c;
    };

    attempt("$server AUTH PLAIN, CRLF in the login", 'smtp',
        inject('smtp'), qr/^535 /, sub {
            my $c = $smtp->() or return;
            $c->smtp('AUTH PLAIN ' . b64("\0" . inject('smtp') . "\0pwA"));
        });

    attempt("$server AUTH LOGIN, CRLF in the login", 'smtp',
        inject('smtp'), qr/^535 /, sub {
            my $c = $smtp->() or return;
            $c->smtp('AUTH LOGIN') =~ /^334 / or return;
            $c->smtp(b64(inject('smtp'))) =~ /^334 / or return;
            $c->smtp(b64('pwA'));
        });

    attempt("$server AUTH PLAIN, CRLF in the password", 'smtp', 'alice',
        qr/^535 /, sub {
            my $c = $smtp->() or return;
            $c->smtp('AUTH PLAIN ' . b64("\0alice\0pwA\r\nAuth-Server: "
                . "127.0.0.2\r\nAuth-Port: $evil{smtp}"));
        });
}

# the answer's writer refuses a header value with CR LF, whatever its
# source: the login fails (temporarily), nothing is injected

$c = pop3();
$c->pop3('USER alice@rule.example');
like($c->pop3('PASS pwA') // '', qr/^-ERR/, 'rewritten login with CRLF: -ERR');
like($t->read_file('error.log'), qr/a control character in the value of (?#
    )the header "Auth-User" refused: "alice\\x0d\\x0aAuth-Server: /,
    'rewritten login with CRLF: the header refused, logged escaped');

is(evil_reached(), '', 'the internal server saw no connection');

# (stock nginx's own "client login failed" line, at info, shows the login
# as the client sent it: that one is not the endpoint's to escape)

my $log = $t->read_file('error.log');
unlike($log, qr/mail router: \w+ login "[^"\n]*[\r\0]/,
    'no raw CR or NUL in a login in the endpoint\'s lines');

# sanity: the same servers log in through the endpoint

$c = pop3();
$c->pop3('USER alice');
like($c->pop3('PASS pwA'), qr/^\+OK/, 'pop3: alice logs in (auth backend)');

$c = imap();
like($c->imap('a1', 'LOGIN alice pwA'), qr/^a1 OK/m,
    'imap: alice logs in (auth backend)');

# the endpoint asked directly, as a hostile HTTP client would: what nginx
# never sends is a bad request

sub auth {
    my (%h) = @_;
    my $r = $http->get('http://127.0.0.1:' . $t->port('http') . '/auth', {
        headers => { 'Auth-Method' => 'plain', 'Auth-Protocol' => 'pop3',
            'Auth-Pass' => 'pwA', 'Client-IP' => '127.0.0.1',
            'Auth-Login-Attempt' => 1, %h } });
    return $r;
}

is(auth('Auth-User' => 'alice%0')->{status}, 400,
    'direct: a malformed escape, 400');
is(auth('Auth-User' => 'alice%zz')->{status}, 400,
    'direct: a bad escape, 400');
is(auth('Auth-User' => [ 'alice', 'mallory' ])->{status}, 400,
    'direct: Auth-User twice, 400');
is(auth('Auth-User' => 'alice', 'Auth-Server' => '1',
    'Auth-Method' => 'none')->{status}, 400,
    'direct: Auth-Method none for POP3, 400');
# (HTTP::Tiny will not send a control character: a raw request)

$c = MailPlus::Test::Client->new($t->port('http'));
$c->send("GET /auth HTTP/1.0\r\nHost: x\r\nAuth-Method: plain\r\n"
    . "Auth-User: alice\r\nAuth-Pass: pwA\r\nAuth-Protocol: pop3\r\n"
    . "Client-IP: 127.0.0.1\x1b[2J\r\n\r\n", raw => 1);
like($c->getline() // '', qr/^HTTP\/1\.\d 400 /,
    'direct: a control character in Client-IP, 400');

my $r = auth('Auth-User' => "alice%0D%0AAuth-Server:%20127.0.0.2");
is($r->{status}, 200, 'direct: escaped CR LF in Auth-User, answered');
like($r->{headers}{'auth-status'}, qr/^\[AUTH\]/, 'direct: refused');
ok(!exists $r->{headers}{'auth-server'}, 'direct: no Auth-Server');

$r = auth('Auth-User' => 'alice');
is($r->{headers}{'auth-status'}, 'OK', 'direct: a plain login, OK');
is($r->{headers}{'auth-server'}, '127.0.0.1', 'direct: to the pool\'s server');

###############################################################################

# SMTP AUTH for a pool with "auth backend"

sub swaks {
    my ($port, $user, $pass) = @_;

    return scalar `swaks --server 127.0.0.1:$port --timeout 20 \\
        --auth PLAIN --auth-user '$user' --auth-password '$pass' \\
        --from alice\@example.com --to bob\@example.com \\
        --header 'Subject: through nginx' 2>&1`;
}

# refused by default, right and wrong password alike: nobody would check it

my $before = denied();

my $out = swaks($t->port('smtp'), 'alice', 'wrong');
like($out, qr/^<\*\* +535 5\.7\.8 /m, 'default: wrong password, 535');
unlike($out, qr/^<- +235/m, 'default: wrong password, no 235');

$out = swaks($t->port('smtp'), 'alice', 'pwA');
like($out, qr/^<\*\* +535 5\.7\.8 /m, 'default: right password, 535 too');
is(denied(), $before + 2, 'default: both counted as denied logins');
like($t->read_file('error.log'), qr/smtp login "alice" from 127\.0\.0\.1 (?#
    )denied: the pool's backends check passwords/, 'default: logged');

# passed on: Dovecot's submission service checks it

my $sink_log = length $t->read_file('sink.log');

$out = swaks($t->port('smtp_backend'), 'alice', 'pwA');
like($out, qr/^<- +235 /m, 'passed on: right password, 235');
like($out, qr/^<- +250 .*queued|^<- +250 2\.0\.0 Ok/m,
    'passed on: the mail accepted');
ok(wait_for(sub {
    substr($t->read_file('sink.log'), $sink_log) =~ /through nginx/
        || substr($t->read_file('sink.log'), $sink_log) =~ /\.$/m
}, 10), 'passed on: relayed by the backend to the sink');
like($t->dovecot_log($d), qr/submission-login: Info: Login: user=<alice>, (?#
    )method=PLAIN/, 'passed on: the backend checked the password');

$out = swaks($t->port('smtp_backend'), 'alice', 'wrong');
unlike($out, qr/^<- +235/m, 'passed on: wrong password, no 235');
like($out, qr/^<\*\* +535 /m, 'passed on: the backend\'s 535');

# Net::SMTP, a second real client

my $smtp = Net::SMTP->new('127.0.0.1', Port => $t->port('smtp_backend'),
    Timeout => 20);
ok($smtp && $smtp->auth('alice', 'pwA'), 'Net::SMTP: right password');
$smtp->quit() if $smtp;

$smtp = Net::SMTP->new('127.0.0.1', Port => $t->port('smtp_backend'),
    Timeout => 20);
ok($smtp && !$smtp->auth('alice', 'bad'), 'Net::SMTP: wrong password');

$smtp = Net::SMTP->new('127.0.0.1', Port => $t->port('smtp'),
    Timeout => 20);
ok($smtp && !$smtp->auth('alice', 'pwA'), 'Net::SMTP: refused by default');

is(evil_reached(), '', 'the internal server still saw nothing');

$t->finish();

###############################################################################
