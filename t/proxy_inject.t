#!/usr/bin/perl

# What a "router_proxy" session sends to the mailbox backend, with Dovecot
# checking the passwords ("auth backend"): logins and passwords holding
# '"', '\', spaces, '=', '{5}' and 8-bit bytes reach Dovecot exactly, by
# each way of logging in (AUTHENTICATE PLAIN with SASL-IR, LOGIN with
# LITERAL+, LOGIN with quoted strings and synchronizing literals,
# AUTHENTICATE PLAIN after "+", POP3 USER/PASS); a login crafted to end
# the backend's command early logs nobody else in; the client's address
# goes to Dovecot by default (IMAP ID, POP3 XCLIENT when offered) and no
# login can choose it; a backend slow to refuse a login (Dovecot's
# auth_failure_delay) is not marked down; the proxy's log lines show
# logins escaped.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

# every Dovecot has these users, each name with its instance's prefix

my %hostile = (
    'q"uote' => 'pa"ss',
    'back\\slash' => 'pa\\ss',
    'sp ace' => 'p w',
    'eq=ual' => 'p=w',
    "\xc3\xa9t\xc3\xa9" => "p\xc3\xa9",
    'a" b' => 'x" y',
    'l{5}it' => '{5}',
    'victim' => 'victimpw',
    'x addr=6.6.6.6' => 'xpw',
);

sub users {
    my ($prefix) = @_;
    return { map { ("$prefix$_" => $hostile{$_}) } keys %hostile };
}

my $open = "auth_username_chars =\nauth_failure_delay = 0\n";

# d1: Dovecot's own capabilities (SASL-IR, AUTH=PLAIN, LITERAL+);
# d2: none of them (quoted strings, synchronizing literals);
# d3: LITERAL+ without SASL-IR; d4: LOGINDISABLED (AUTHENTICATE PLAIN,
# the response after "+"); sl: slow to refuse, and does not trust nginx

my $d1 = $t->dovecot('d1', users => users('d1'), extra => $open);
my $d2 = $t->dovecot('d2', users => users('d2'),
    extra => $open . "imap_capability = IMAP4rev1 ID\n");
my $d3 = $t->dovecot('d3', users => users('d3'),
    extra => $open . "imap_capability = IMAP4rev1 ID LITERAL+\n");
my $d4 = $t->dovecot('d4', users => users('d4'),
    extra => $open . "imap_capability = IMAP4rev1 ID LOGINDISABLED\n");
my $sl = $t->dovecot('sl', users => { slow => 'secret' },
    extra => "auth_failure_delay = 3s\n"
        . "login_trusted_networks = 192.0.2.1/32\n");

# Dovecot's passwd-file lookup escapes '"' and '\' in the name it looks
# up: the file has them escaped (it is read again when it changes)

for my $d ($d1, $d2, $d3, $d4) {
    my $passwd = '';

    for my $u (sort keys %{$d->{users}}) {
        (my $e = $u) =~ s/(["\\])/\\$1/g;
        $passwd .= "$e:{PLAIN}$d->{users}{$u}::::::\n";
    }

    $t->write_file("$d->{dir}/passwd", $passwd);
}

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    router_zone          mail:1m;
    router_health_check  interval=60s;
    router_login_fails   1000;
    router_address_fails 1000;
    router_auth_delay    0;

    router_pool d1 {
        server 127.0.0.1 imap=$d1->{imap} pop3=$d1->{pop3};
        auth backend;
    }

    router_pool d2 {
        server 127.0.0.1 imap=$d2->{imap} pop3=$d2->{pop3};
        auth backend;
    }

    router_pool d3 {
        server 127.0.0.1 imap=$d3->{imap} pop3=$d3->{pop3};
        auth backend;
    }

    router_pool d4 {
        server 127.0.0.1 imap=$d4->{imap} pop3=$d4->{pop3};
        auth backend;
    }

    router_pool sl {
        server 127.0.0.1 imap=$sl->{imap} pop3=$sl->{pop3};
        auth backend;
    }

    router_rule  "^d1"   pool=d1;
    router_rule  "^d2"   pool=d2;
    router_rule  "^d3"   pool=d3;
    router_rule  "^d4"   pool=d4;
    router_rule  "^slow" pool=sl;

    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;

    router_proxy                  on;
    router_proxy_connect_timeout  1s;

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        imap_auth  login plain;

        # room for a password longer than Dovecot's input buffer
        router_proxy_command_size  16k;
        router_proxy_literal_size  8k;
    }

    server {
        listen     127.0.0.1:%%PORT_pop3%%;
        protocol   pop3;
        pop3_auth  plain;
    }

    server {
        listen     127.0.0.1:%%PORT_imap_short%%;
        protocol   imap;
        router_proxy_login_timeout  1s;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen  unix:%%TESTDIR%%/auth.sock;

        location = /auth {
            mail_router_auth;
        }
    }
}
EOF

$t->run(log_level => 'info');

# IMAP LOGIN with synchronizing literals: any byte reaches nginx as it is

sub imap_login {
    my ($user, $pass, %opts) = @_;

    my $s = MailPlus::Test::Client->new($t->port($opts{port} || 'imap'),
        %opts) or return;
    $s->getline() =~ /^\* OK/ or return;

    $s->send('a1 LOGIN {' . length($user) . '}');
    $s->getline() =~ /^\+/ or return;
    $s->send($user . ' {' . length($pass) . '}');
    $s->getline() =~ /^\+/ or return;
    $s->send($pass);

    my $r = $s->read_until(qr/^a1 /);
    return wantarray ? ($s, $r) : ($r =~ /^a1 OK/m ? $s : undef);
}

# POP3 AUTH PLAIN: the same

sub pop3_login {
    my ($user, $pass, %opts) = @_;

    my $s = MailPlus::Test::Client->new($t->port('pop3'), %opts) or return;
    $s->getline() =~ /^\+OK/ or return;

    my $r = $s->pop3('AUTH PLAIN ' . encode_base64("\0$user\0$pass", ''));
    return wantarray ? ($s, $r) : ($r =~ /^\+OK/ ? $s : undef);
}

# Dovecot delays refusals to an address that failed before (its auth
# penalty): each wrong login comes from an address of its own, which
# Dovecot sees because nginx forwards it

my $next_addr = 0;

sub fresh {
    $next_addr++;
    return (local => '127.0.1.' . $next_addr);
}

sub printable {
    my ($v) = @_;
    $v =~ s/([^\x21-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    return $v;
}

sub dovecot_logins {
    my ($d, $proto) = @_;
    my $log = $t->dovecot_log($d);
    my %u;
    $u{$1}++ while $log =~ /$proto-login: Info: Login: user=<(.*?)>, /g;
    return \%u;
}

###############################################################################

# each user logs in with its password, by each way of logging in; the
# wrong password (the right one with a byte more) fails

my @forms = ([ $d1, 'd1', 'sasl-ir' ], [ $d2, 'd2', 'quoted, literals' ],
    [ $d3, 'd3', 'literal+' ], [ $d4, 'd4', 'authenticate after +' ]);

my @names = grep { $_ ne 'victim' } sort keys %hostile;

for my $f (@forms) {
    my ($d, $prefix, $form) = @$f;

    for my $name (@names) {
        my $user = "$prefix$name";
        my $pass = $hostile{$name};
        my $what = "imap $form: " . printable($user);

        my $s = imap_login($user, $pass);
        ok($s, "$what logs in");
        like($s->imap('a2', 'SELECT INBOX'), qr/^a2 OK/m, "$what: select")
            if $s;
        $s->imap('a3', 'LOGOUT') if $s;

        my ($w, $r) = imap_login($user, $pass . 'z', fresh());
        like($r, qr/^a1 NO /m, "$what: wrong password refused");
        like($w->imap('a2', 'NOOP'), qr/^a2 OK/m, "$what: session goes on")
            if $w;
    }
}

for my $name (@names) {
    my $user = "d1$name";
    my $what = 'pop3: ' . printable($user);

    my $s = pop3_login($user, $hostile{$name});
    ok($s, "$what logs in");
    like($s->pop3('STAT'), qr/^\+OK/, "$what: stat") if $s;
    $s->pop3('QUIT') if $s;

    my ($w, $r) = pop3_login($user, $hostile{$name} . 'z', fresh());
    like($r, qr/^-ERR /, "$what: wrong password refused");
}

# logins crafted to close the quotes of the victim's login and put its
# password after it: the victim is never logged in

for my $prefix (qw/ d1 d2 d3 d4 /) {
    for my $login ("${prefix}victim\" \"victimpw", "${prefix}victim\" {8}",
        "${prefix}victim\\\" \"victimpw\" \"")
    {
        my ($s, $r) = imap_login($login, 'victimpw', fresh());
        like($r, qr/^a1 NO /m, "imap $prefix: " . printable($login)
            . ' refused');
    }
}

my ($s, $r) = pop3_login('d1victim victimpw', 'victimpw', fresh());
like($r, qr/^-ERR /, 'pop3: login with a space and a password refused');

# Dovecot logged in exactly the users above, each by its own name, and
# never the victim

for my $d ($d1, $d2, $d3, $d4) {
    my $prefix = $d->{name};

    my $u = {};
    MailPlus::Test::wait_for(sub {
        $u = dovecot_logins($d, 'imap');
        return keys %$u >= @names;
    }, 5);

    is_deeply([ sort keys %$u ], [ sort map { "$prefix$_" } @names ],
        "dovecot $prefix: imap logins by the exact names");
}

my $u = dovecot_logins($d1, 'pop3');
is_deeply([ sort keys %$u ], [ sort map { "d1$_" } @names ],
    'dovecot d1: pop3 logins by the exact names');

# a password longer than Dovecot's input buffer: Dovecot refuses it or
# closes the connection; either way the client gets a refusal and the
# server stays up for everyone else

for my $prefix (qw/ d1 d2 /) {
    my ($s, $r) = imap_login("${prefix}eq=ual", 'x' x 6000, fresh());
    like($r, qr/^a1 NO /m, "imap $prefix: oversized password refused");
    ok(imap_login("${prefix}eq=ual", 'p=w'),
        "imap $prefix: good login after an oversized password");
}

# the client's address: Dovecot sees 127.0.0.2, the client's, through ID
# and XCLIENT (offered in its greeting to a trusted peer); a login that
# holds " ADDR=6.6.6.6" does not choose it

$s = imap_login('d1eq=ual', 'p=w', local => '127.0.0.2');
ok($s, 'imap from 127.0.0.2');
$s->imap('a3', 'LOGOUT') if $s;

$s = pop3_login('d1x addr=6.6.6.6', 'xpw', local => '127.0.0.2');
ok($s, 'pop3 login with " ADDR=" from 127.0.0.2');
$s->pop3('QUIT') if $s;

my $dlog = '';
MailPlus::Test::wait_for(sub {
    $dlog = $t->dovecot_log($d1);
    return $dlog =~ /pop3-login: .* user=<d1x addr.*rip=127\.0\.0\.2,/
        && $dlog =~ /imap-login: .* user=<d1eq=ual>.*rip=127\.0\.0\.2,/;
}, 5);

like($dlog, qr/imap-login: Info: Login: user=<d1eq=ual>.*rip=127\.0\.0\.2,/,
    'imap: dovecot sees the client by default (auth backend)');
like($dlog,
    qr/pop3-login: Info: Login: user=<d1x addr=6\.6\.6\.6>.*rip=127\.0\.0\.2,/,
    'pop3: dovecot sees the client (XCLIENT), not the login\'s address');
unlike($dlog, qr/rip=6\.6\.6\.6/, 'no address from a login');

# a backend that does not trust nginx offers no XCLIENT in its greeting:
# CAPA is asked (it lists none), then the login works

$s = pop3_login('slow', 'secret', local => '127.0.0.2');
ok($s, 'pop3: backend without XCLIENT');
$s->pop3('QUIT') if $s;

# slow refusal (Dovecot's auth_failure_delay, longer than the connect
# timeout): the backend's own refusal, and the server stays up

my $start = time();
($s, $r) = imap_login('slow', 'wrong', timeout => 20);
like($r, qr/^a1 NO \[AUTHENTICATIONFAILED\]/m, 'imap: slow refusal passed on');
cmp_ok(time() - $start, '>=', 2.5, 'imap: refusal came late');

$start = time();
($s, $r) = pop3_login('slow', 'wrong', timeout => 20);
like($r, qr/^-ERR \[AUTH\]/, 'pop3: slow refusal passed on');

# (Dovecot does not trust nginx here: its penalty for the failures above
# falls on nginx's address and may delay these too)

ok(imap_login('slow', 'secret', timeout => 20),
    'imap: good login after slow refusals');
ok(pop3_login('slow', 'secret', timeout => 20),
    'pop3: good login after slow refusals');

# router_proxy_login_timeout: a temporary failure, still not a dead server

$start = time();
($s, $r) = imap_login('slow', 'wrong', port => 'imap_short');
like($r, qr/^a1 NO \[UNAVAILABLE\]/m, 'login timeout: temporary failure');
cmp_ok(time() - $start, '<', 2.5, 'login timeout: in its time');
ok(imap_login('slow', 'secret', timeout => 20),
    'login timeout: good login after it');

# a login with CR LF, decoded from SASL: refused by the router, and its
# bytes do not start a log line of their own

$s = MailPlus::Test::Client->new($t->port('imap'));
$s->getline();
like($s->imap('c1', 'AUTHENTICATE PLAIN '
    . encode_base64("\0d1evil\r\nforged line\"\0pw", '')), qr/^c1 NO /m,
    'login with CR LF refused');
$s->imap('c2', 'LOGOUT');

my $log = '';
MailPlus::Test::wait_for(sub {
    $log = $t->read_file('error.log');
    return $log =~ /login "d1evil/;
}, 5);

unlike($log, qr/^forged/m, 'no log line starts with client text');
like($log, qr/login "d1evil\\x0d\\x0aforged line\\x22" denied/,
    'denied login escaped');
unlike($log, qr/server \S+ is down/, 'no backend marked down');
like($log, qr/did not answer the login of "slow" in time/,
    'login timeout logged');

# log lines: logins and backend replies escaped

like($log, qr/backend \S+ refused the login with "NO \[AUTHENTICATIONFAILED\]/,
    'backend refusal logged');
like($log, qr/login: "d1q\\x22uote"/, 'login escaped in the log suffix');
like($log, qr/user="d1back\\x5cslash"/, 'session log line: user escaped');
like($log, qr/user="d1a\\x22 b"/, 'session log line: quote escaped');
unlike($log, qr/user="[^"\n]*"[^ \n]/, 'no user closes its quotes');
unlike($log, qr/^[^\n]*login: "[^"\n]*"[^,\n]/m,
    'no login closes its quotes');

$t->finish();

###############################################################################
