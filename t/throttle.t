#!/usr/bin/perl

# Throttling through the shared zone, with two workers: password guessing
# is slowed (the failure delay doubles) and then locked out, the right
# password too, until the window from the first failure ends; the lockout
# holds whichever worker answers, for failures made in real POP3 and IMAP
# sessions; a success resets the count; an address (IPv6: its /64) is
# locked after many failures of any logins; trusted networks never are;
# router_login_rate gives a temporary failure beyond its rate; a zone that
# fills up drops old entries, warns once, and never refuses a login.
#
# The lockouts last a few seconds (router_fail_window 4s).  What must
# happen inside one window is timed, and run again with fresh logins and
# addresses if the machine stalled so long that the window may have ended.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $WINDOW = 4;        # router_fail_window
my $FAILS = 3;         # router_login_fails
my $ADDR_FAILS = 20;   # router_address_fails (the default)
my $MAX = 4;           # router_auth_max_delay

# what must happen within one window must happen within this many seconds
# of the first failure (the module counts whole seconds)

my $BUDGET = $WINDOW - 1.5;

my %DENY = (
    imap => '[AUTHENTICATIONFAILED] Authentication failed.',
    pop3 => '[AUTH] Authentication failed.',
);

my %TEMP = (
    imap => '[UNAVAILABLE] Temporary authentication failure.',
    pop3 => '[SYS/TEMP] Temporary authentication failure.',
);

# real users: each timed scenario has its own for each of three tries

my @users = ('plain1', 'rate1', 'rate2', 'zone1', 'zone2', map {
    my $p = $_;
    map { "$p$_" } 1 .. 3
} qw/ guess cross reset addr trust six /);

my %pw = map { $_ => "pw-$_" } @users;

my $da = $t->dovecot('a', users => \%pw);
$t->seed($da, $_, subject => "mailbox of $_") for @users;

$t->write_file('users', join '', map { "$_:{PLAIN}$pw{$_}\n" } @users);

# conf(%directives): the configuration with these mail{} directives on top
# of the throttling settings of the test

sub conf {
    my (%o) = @_;

    my $zone = $o{zone} || 'throttle:1m';
    my $extra = $o{extra} || '';
    my $servers = $o{servers} || '';

    $t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes  2;

events {
}

mail {
    router_users             %%TESTDIR%%/users;
    router_zone              $zone;

    router_fail_window       ${WINDOW}s;
    router_login_fails       $FAILS;
    router_auth_max_delay    ${MAX}s;
    router_trusted_networks  10.0.0.0/8 fd00::/8;
$extra
    router_pool main {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3};
$servers    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    server {
        listen    127.0.0.1:%%PORT_pop3%%;
        protocol  pop3;
    }

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        imap_auth  login plain;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        # each worker its own socket: connections spread over both
        listen  127.0.0.1:%%PORT_http%% reuseport;

        location = /auth {
            mail_router_auth;
        }
    }
}
EOF
}

conf();
$t->run();

###############################################################################

# auth($user, $pass, $protocol, $client_ip): the auth_http answer as a hash
# of lower-cased headers; a new connection each time, so that either worker
# may answer

my $http_keep = HTTP::Tiny->new(keep_alive => 1, timeout => 10);

sub auth {
    my ($user, $pass, $proto, $ip, $http) = @_;

    $http ||= HTTP::Tiny->new(keep_alive => 0, timeout => 10);

    my $r = $http->get('http://127.0.0.1:' . $t->port('http') . '/auth', {
        headers => {
            'Auth-Method' => 'plain',
            'Auth-User' => $user,
            'Auth-Pass' => $pass,
            'Auth-Protocol' => $proto,
            'Auth-Login-Attempt' => 1,
            'Client-IP' => $ip,
        },
    });

    my %h = map { lc($_) => $r->{headers}{$_} } keys %{$r->{headers}};
    $h{status} = $r->{status};
    $h{'auth-status'} = "HTTP $r->{status}" unless defined $h{'auth-status'};
    return \%h;
}

sub ok_answer {
    my ($r) = @_;
    return $r->{'auth-status'} eq 'OK' && !defined $r->{'auth-wait'}
        && ($r->{'auth-server'} || '') eq '127.0.0.1';
}

# the answers as show() puts them: a login let in, one locked out

my $OK = 'auth-status: OK, auth-wait: -, auth-server: 127.0.0.1';

sub locked {
    my ($proto) = @_;
    return "auth-status: $DENY{$proto}, auth-wait: $MAX, auth-server: -";
}

sub show {
    my ($r) = @_;
    return join ', ', map { "$_: " . (defined $r->{$_} ? $r->{$_} : '-') }
        qw/ auth-status auth-wait auth-server /;
}

# real sessions through nginx, started and finished apart so that several
# run at once: login($protocol, $user, $pass) sends the login and returns
# the session; reply($session) is the answer to it (after nginx's delay)

sub login {
    my ($proto, $user, $pass) = @_;

    my $s = MailPlus::Test::Client->new($t->port($proto)) or return undef;
    $s->getline();

    if ($proto eq 'pop3') {
        $s->pop3("USER $user");
        $s->send("PASS $pass");
    } else {
        $s->send("a1 LOGIN \"$user\" \"$pass\"");
    }

    return { proto => $proto, s => $s };
}

sub reply {
    my ($l) = @_;

    return 'connect' unless $l;

    my $r = $l->{proto} eq 'pop3'
        ? $l->{s}->getline(15)
        : scalar $l->{s}->read_until(qr/^a1 (OK|NO|BAD)/, 15);

    return defined $r && length $r ? $r : 'no answer';
}

# the refusal a real session gets

sub refused {
    my ($proto, $text) = @_;
    return $proto eq 'pop3' ? "-ERR $text\r\n" : "a1 NO $text\r\n";
}

# session($protocol, $user, $pass): a whole session; the subject of the
# first message, or the answer to the login

sub session {
    my ($proto, $user, $pass) = @_;

    my $l = login($proto, $user, $pass) or return 'connect';
    my $s = $l->{s};
    my $r = reply($l);

    if ($proto eq 'pop3') {
        return $r unless $r =~ /^\+OK/;
        $r = $s->pop3('RETR 1', multi => 1);
        $s->pop3('QUIT');

    } else {
        return $r unless $r =~ /^a1 OK/m;
        $s->imap('a2', 'SELECT INBOX');
        $r = $s->imap('a3', 'FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]');
        $s->imap('a4', 'LOGOUT');
    }

    return 'no answer' unless defined $r;
    return $r =~ /^Subject: (.*?)\r\n/m ? $1 : $r;
}

# error.log lines of the router's refusals of a login: the process ids of
# the workers that logged them

sub refusals {
    my ($user, $why, $from) = @_;

    my $what = qr/ login "\Q$user\E" from (\S+) (?:denied|failed temporarily): /;
    my @pids;

    for my $line (split /\n/, $t->read_file('error.log')) {
        next if index($line, ' mail router: ') < 0
            || index($line, $why) < 0;

        next unless $line =~ /^\S+ \S+ \[\w+\] (\d+)#\d+: .*$what\Q$why\E/;
        next if defined $from && $2 ne $from;

        push @pids, $1;
    }

    return @pids;
}

sub wait_refusals {
    my ($n, @args) = @_;
    return wait_for(sub { refusals(@args) >= $n }, 10);
}

# timed($what, sub { my ($try, $check) = @_; ... }): runs a scenario that
# must happen within one window.  The sub records its checks with
# $check->(is => $got, $expected, $name) (any Test::More function and its
# arguments, taken as they are then) and returns the time of its last decisive
# request; if that was more than $BUDGET after the start, the machine
# stalled and the scenario runs again (with the next try's logins and
# addresses), at most three times.  Returns the try and its start time.

sub timed {
    my ($what, $run) = @_;

    for my $try (1 .. 3) {
        my @checks;
        my $start = time();

        my $end = $run->($try, sub { push @checks, [ @_ ] }, $start);

        if ($end - $start <= $BUDGET || $try == 3) {
            for my $c (@checks) {
                my ($fn, @args) = @$c;
                Test::More->can($fn)->(@args);
            }

            return ($try, $start);
        }

        diag(sprintf('%s: %.1fs, more than one window may have passed, '
            . 'once more', $what, $end - $start));
    }
}

# works_again($user, $ip, $since): polls until the right password works
# again, at most until well after the window; returns the time it did

sub works_again {
    my ($user, $ip, $since) = @_;

    my $at;

    wait_for(sub {
        return 0 unless ok_answer(auth($user, $pw{$user}, 'imap', $ip));
        $at = time();
        return 1;
    }, $since + $WINDOW + 8 - time());

    return $at;
}

# the worker processes, once both run

sub workers {
    my @w;
    wait_for(sub { (@w = sort { $a <=> $b } $t->children($t->nginx_pid()))
        == 2 });
    return @w;
}

my @workers = workers();
is(scalar @workers, 2, 'two workers');

###############################################################################

# a real login works, without delay

is(session('pop3', 'plain1', $pw{plain1}), 'mailbox of plain1',
    'pop3 login works');
is(session('imap', 'plain1', $pw{plain1}), 'mailbox of plain1',
    'imap login works');

# password guessing: the delay doubles, then every attempt is refused, the
# right password too, from any address, until the window ends

my ($try, $t0) = timed('guessing', sub {
    my ($try, $check) = @_;

    my $u = "guess$try";
    my $ip = "192.0.2.1$try";

    my @waits;

    for my $n (1 .. $FAILS) {
        my $r = auth($u, 'wrong', 'imap', $ip);
        push @waits, $r->{'auth-wait'};
        $check->(is => $r->{'auth-status'}, $DENY{imap},
            "guessing: failure $n refused");
    }

    $check->(is_deeply => \@waits, [ 1, 2, 4 ],
        'guessing: Auth-Wait 1, 2, 4');

    my $r = auth($u, 'wrong', 'imap', $ip);
    $check->(is => show($r), locked('imap'),
        'guessing: next attempt locked out');

    $r = auth($u, $pw{$u}, 'imap', $ip);
    $check->(is => show($r), locked('imap'),
        'guessing: right password refused');

    $r = auth($u, $pw{$u}, 'pop3', "192.0.2.2$try");
    $check->(is => show($r), locked('pop3'),
        'guessing: right password from another address refused');

    return time();
});

my $u = "guess$try";

is(scalar(refusals($u, 'locked out: too many failures for the login')), 3,
    'guessing: lockouts logged with the reason');
is(scalar(refusals($u, 'wrong password')), $FAILS,
    'guessing: failures logged; lockouts are not counted as failures');

my $at = works_again($u, "192.0.2.3$try", $t0);

ok(defined $at, 'guessing: the right password works again after the window');
cmp_ok(($at || 0) - $t0, '>=', $WINDOW - 1,
    'guessing: not before the window ended');

is(session('pop3', $u, $pw{$u}), "mailbox of $u",
    'guessing: pop3 session after the window');

my $r = auth($u, 'wrong', 'imap', "192.0.2.4$try");
is($r->{'auth-wait'}, 1, 'guessing: a success reset the count');

# failures made in real sessions, over both workers: the lockout holds for
# requests however they are spread; both workers enforce it

my @cross_pids;

($try, $t0) = timed('across workers', sub {
    my ($try, $check) = @_;

    my $u = "cross$try";
    my $before = refusals($u, 'wrong password');

    # three failures at once, in sessions of both protocols

    my @fails = map { login($_, $u, 'wrong') } qw/ pop3 imap pop3 /;

    my $counted = wait_refusals($before + 3, $u, 'wrong password');
    $check->(ok => $counted, 'across workers: three failures counted');

    # the right password, over new connections until both workers have
    # refused it

    my @bad;
    my $n = 0;

    while ($n < 100) {
        my $proto = $n++ % 2 ? 'pop3' : 'imap';
        my $r = auth($u, $pw{$u}, $proto, "192.0.2.5$try");

        push @bad, "$proto: " . show($r)
            unless $r->{'auth-status'} eq $DENY{$proto}
                && ($r->{'auth-wait'} || '') eq $MAX;

        my %seen = map { $_ => 1 }
            refusals($u, 'locked out: too many failures for the login');
        last if keys %seen >= 2 && $n >= 6;
    }

    $check->(is => join("\n", @bad), '',
        "across workers: right password refused in all of $n requests");

    # and in real sessions

    my @right = map { login($_, $u, $pw{$u}) } qw/ pop3 imap /;

    my $locked = wait_refusals(2, $u,
        'locked out: too many failures for the login', '127.0.0.1');

    my $end = time();

    $check->(ok => $locked, 'across workers: sessions locked out');

    @cross_pids = refusals($u, 'locked out: too many failures for the login');

    # what the clients saw: the ordinary refusal, after the delay

    for my $l (@fails) {
        my $got = reply($l);
        $check->(is => $got, refused($l->{proto}, $DENY{$l->{proto}}),
            "across workers: $l->{proto} wrong password refused");
    }

    for my $l (@right) {
        my $got = reply($l);
        $check->(is => $got, refused($l->{proto}, $DENY{$l->{proto}}),
            "across workers: $l->{proto} right password refused");
    }

    return $end;
});

my %enforcing = map { $_ => 1 } @cross_pids;
is_deeply([ sort { $a <=> $b } keys %enforcing ], \@workers,
    'across workers: both workers enforced the lockout');

$u = "cross$try";
$at = works_again($u, "192.0.2.6$try", $t0);
ok(defined $at, 'across workers: works again after the window');
is(session('imap', $u, $pw{$u}), "mailbox of $u",
    'across workers: imap session after the window');

# a success resets the count: two failures, a success, two failures, and
# the right password still works (without the reset it would be locked)

timed('reset', sub {
    my ($try, $check) = @_;

    my $u = "reset$try";
    my $ip = "192.0.2.7$try";
    my $before = refusals($u, 'wrong password');

    my @fails = map { login($_, $u, 'wrong') } qw/ imap pop3 /;

    my $counted = wait_refusals($before + 2, $u, 'wrong password');
    $check->(ok => $counted, 'reset: two failures counted');

    my $got = session('pop3', $u, $pw{$u});
    $check->(is => $got, "mailbox of $u", 'reset: success in between');

    my @waits = map { auth($u, 'wrong', 'imap', $ip)->{'auth-wait'} } 1, 2;
    $check->(is_deeply => \@waits, [ 1, 2 ], 'reset: counting starts over');

    my $r = auth($u, $pw{$u}, 'imap', $ip);
    my $end = time();

    $check->(is => show($r), $OK, 'reset: not locked out');

    for my $l (@fails) {
        my $got = reply($l);
        $check->(is => $got, refused($l->{proto}, $DENY{$l->{proto}}),
            "reset: $l->{proto} failure refused");
    }

    return $end;
});

# an address: failures of many logins lock it, for every login, until the
# window ends; other addresses are not affected

($try, $t0) = timed('address', sub {
    my ($try, $check) = @_;

    my $ip = "198.51.100.1$try";
    my $u = "addr$try";

    my @waits;
    my @bad;

    for my $n (1 .. $ADDR_FAILS) {
        my $r = auth("nobody$try-$n", 'wrong', 'pop3', $ip, $http_keep);
        push @waits, $r->{'auth-wait'};
        push @bad, show($r) unless $r->{'auth-status'} eq $DENY{pop3};
    }

    $check->(is => join("\n", @bad), '', "address: $ADDR_FAILS refused");
    $check->(is_deeply => \@waits, [ 1, 2, (4) x ($ADDR_FAILS - 2) ],
        'address: Auth-Wait grows with the address count');

    my $r = auth($u, $pw{$u}, 'imap', $ip);
    my $end = time();

    $check->(is => show($r), locked('imap'),
        'address: right password refused');

    $r = auth($u, $pw{$u}, 'imap', "198.51.100.2$try");
    $check->(is => show($r), $OK, 'address: another address works');

    return $end;
});

is(scalar(refusals("addr$try", 'locked out: too many failures from the address',
    "198.51.100.1$try")), 1, 'address: lockout logged with the reason');

$at = works_again("addr$try", "198.51.100.1$try", $t0);
ok(defined $at, 'address: works again after the window');
cmp_ok(($at || 0) - $t0, '>=', $WINDOW - 1,
    'address: not before the window ended');

# trusted networks are never throttled: no growing delay, no lockout, for
# the address or the login

for my $ip ('10.1.2.3', 'fd00::5') {
    my $u = $ip =~ /:/ ? 'trust2' : 'trust1';

    my @waits;

    for my $n (1 .. $ADDR_FAILS + 5) {
        push @waits, auth($u, 'wrong', 'imap', $ip, $http_keep)->{'auth-wait'};
        push @waits, auth("stranger$n", 'wrong', 'pop3', $ip,
            $http_keep)->{'auth-wait'};
    }

    is(join(',', grep { !defined $_ || $_ ne '1' } @waits), '',
        "trusted $ip: every failure waits 1s");

    $r = auth($u, $pw{$u}, 'imap', $ip);
    ok(ok_answer($r), "trusted $ip: right password works") or diag(show($r));

    $r = auth($u, $pw{$u}, 'pop3', '192.0.2.99');
    ok(ok_answer($r), "trusted $ip: login not counted for other addresses")
        or diag(show($r));
}

# IPv6: the /64 counts as one address

($try, $t0) = timed('ipv6', sub {
    my ($try, $check) = @_;

    my $net = $try == 1 ? '2001:db8::' : "2001:db8:$try\::";
    my $other = $try == 1 ? '2001:db8:0:1::1' : "2001:db8:$try:1::1";
    my $u = "six$try";

    my @waits;

    for my $n (1 .. $ADDR_FAILS) {
        my $ip = $net . ($n % 2 ? '1' : '2');
        push @waits, auth("v6nobody$try-$n", 'wrong', 'imap', $ip,
            $http_keep)->{'auth-wait'};
    }

    $check->(is_deeply => \@waits, [ 1, 2, (4) x ($ADDR_FAILS - 2) ],
        "ipv6: ${net}1 and ${net}2 count together");

    my $r = auth($u, $pw{$u}, 'imap', "${net}ffff");
    my $end = time();

    $check->(is => show($r), locked('imap'),
        "ipv6: ${net}ffff of the /64 locked out");

    $r = auth($u, $pw{$u}, 'imap', $other);
    $check->(is => show($r), $OK, "ipv6: $other in another /64 works");

    $r = auth("v6nobody$try-x", 'wrong', 'imap', $other);
    $check->(is => $r->{'auth-wait'}, 1, "ipv6: $other counts on its own");

    return $end;
});

ok(scalar(refusals("six$try", 'locked out: too many failures from the address')),
    'ipv6: lockout logged');

###############################################################################

# router_login_rate: at most 3 successful logins a minute for one login,
# counted by both workers; beyond, a temporary failure

conf(extra => "    router_login_rate        3;\n");
$t->restart();

@workers = workers();

is(session('pop3', 'rate1', $pw{rate1}), 'mailbox of rate1', 'rate: login 1');
is(session('imap', 'rate1', $pw{rate1}), 'mailbox of rate1', 'rate: login 2');
ok(ok_answer(auth('rate1', $pw{rate1}, 'imap', '192.0.2.80')),
    'rate: login 3');

my @bad;
my $n = 0;

while ($n < 100) {
    my $proto = $n++ % 2 ? 'pop3' : 'imap';
    my $r = auth('rate1', $pw{rate1}, $proto, '192.0.2.81');

    push @bad, "$proto: " . show($r)
        unless show($r) eq "auth-status: $TEMP{$proto}, auth-wait: -, "
            . 'auth-server: -';

    my %seen = map { $_ => 1 } refusals('rate1', 'too many logins a minute');
    last if keys %seen >= 2 && $n >= 4;
}

is(join("\n", @bad), '', "rate: temporary failure in all of $n requests");

my %seen = map { $_ => 1 } refusals('rate1', 'too many logins a minute');
is_deeply([ sort { $a <=> $b } keys %seen ], \@workers,
    'rate: both workers enforce the rate');

for my $proto (qw/ pop3 imap /) {
    my $l = login($proto, 'rate1', $pw{rate1});
    my $start = time();

    is(reply($l), refused($proto, $TEMP{$proto}),
        "rate: $proto session gets the temporary failure");
    cmp_ok(time() - $start, '<', 5, "rate: $proto answered at once");
    ok($l->{s}->at_eof(5), "rate: $proto session closed");
}

is(session('imap', 'rate2', $pw{rate2}), 'mailbox of rate2',
    'rate: another login is not limited');

###############################################################################

# the smallest zone fills up: thousands of failing logins from as many
# addresses never make it refuse a login; it warns once

conf(zone => 'z:32k');
$t->restart();

# the user's own count: two failures, below the limit

is(auth('zone1', 'wrong', 'imap', '192.0.2.90')->{'auth-wait'}, 1,
    'zone: first failure');
is(auth('zone1', 'wrong', 'imap', '192.0.2.90')->{'auth-wait'}, 2,
    'zone: second failure');

my $FLOOD = 3000;
my $start = time();
my %answers;
my @good;
my $http;

for my $i (1 .. $FLOOD) {

    # a new connection now and then, for both workers
    $http = HTTP::Tiny->new(keep_alive => 1, timeout => 10)
        if $i % 100 == 1;

    my $ip = sprintf('172.16.%d.%d', int($i / 250), $i % 250 + 1);
    my $r = auth(sprintf('flood%05d', $i), 'wrong', 'imap', $ip, $http);

    $answers{show($r)}++;

    # a real login now and then, while the zone is full
    push @good, ok_answer(auth('zone2', $pw{zone2}, 'imap', $ip, $http))
        if $i % 500 == 0;
}

my $took = time() - $start;

is_deeply([ keys %answers ],
    [ "auth-status: $DENY{imap}, auth-wait: 1, auth-server: -" ],
    "zone: $FLOOD failures refused as usual")
    or diag(explain(\%answers));

is(join(',', @good), join(',', (1) x @good),
    'zone: logins work while the zone is full');

$r = auth('zone1', $pw{zone1}, 'imap', '192.0.2.91');
ok(ok_answer($r), 'zone: right password of a user with two failures works')
    or diag(show($r));

is(session('pop3', 'zone1', $pw{zone1}), 'mailbox of zone1',
    'zone: pop3 session after the flood');
is(session('imap', 'zone2', $pw{zone2}), 'mailbox of zone2',
    'zone: imap session after the flood');

my @full = $t->read_file('error.log')
    =~ /^(.*\[warn\] .*mail router zone "z" is full.*)$/mg;

ok(@full >= 1, 'zone: full zone warned about');
cmp_ok(scalar @full, '<=', 1 + int($took / 60),
    sprintf('zone: warned at most once a minute (%d in %.0fs)',
        scalar @full, $took));

# a reload that adds servers needs health entries in the full zone:
# throttling entries make room for them

conf(zone => 'z:32k', servers => join '', map {
    "        server 127.0.0.$_ imap=1143 pop3=1110 backup;\n"
} 2 .. 9);

ok($t->reload(), 'zone: reload with more servers while the zone is full');
unlike($t->read_file('error.log'), qr/\[emerg\]/, 'zone: no emerg on reload');
is(session('imap', 'zone2', $pw{zone2}), 'mailbox of zone2',
    'zone: imap session after the reload');

$t->finish();

###############################################################################
