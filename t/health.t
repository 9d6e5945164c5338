#!/usr/bin/perl

# Backend health: three Dovecot backends in one pool and a backup, checked
# every second by two workers sharing the zone.  A backend that stops is
# logged down once, its users move to the next live server of the hash
# ring (real POP3 and IMAP sessions through nginx reach it) while everybody
# else stays; started again it is logged up once and its users come back.
# With every primary down the backup takes the users; with nothing alive
# logins get the protocols' temporary failure at once, never a hang.

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5 /;
use HTTP::Tiny;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $INTERVAL = 1;                    # router_health_check interval, seconds
my $NOTICE = 8 * $INTERVAL + 5;      # bound for a state change to be logged

my @users = map { sprintf('hu%02d', $_) } 0 .. 35;
my %pw = map { $_ => "pw-$_" } @users;

# every backend knows every user; each holds its own mailbox for each, so
# the subject of the first message says where a session landed.  Login
# processes are kept running: a greeting that waits for a new process can
# take longer than the check timeout on a busy machine.

my %d;

sub backend {
    my ($name) = @_;
    return $d{$name} = $t->dovecot($name, users => \%pw,
        login_processes => 1);
}

backend($_) for qw/ a b c d /;

for my $name (qw/ a b c d /) {
    $t->seed($d{$name}, $_, subject => "on backend $name for $_") for @users;
}

$t->write_file('users', join '', map { "$_:{PLAIN}$pw{$_}\n" } @users);

my @primaries = qw/ a b c /;

my $servers = join '', map {
    "        server 127.0.0.1 imap=$d{$_}{imap} pop3=$d{$_}{pop3}"
        . ($_ eq 'd' ? ' backup' : '') . ";\n"
} qw/ a b c d /;

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes  2;

events {
}

mail {
    router_users         %%TESTDIR%%/users;
    router_zone          mailrouter:1m;
    router_health_check  interval=${INTERVAL}s timeout=1s;

    router_pool main {
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
        listen  127.0.0.1:%%PORT_http%%;

        location = /auth {
            mail_router_auth;
        }
    }
}
EOF

$t->run();

###############################################################################

# port => backend name, for both protocols

my %by_port;

for my $name (keys %d) {
    $by_port{$d{$name}{$_}} = $name for qw/ imap pop3 /;
}

# auth($user, $protocol): the auth_http answer, as a hash; a new connection
# each time, so that either worker may answer

sub auth {
    my ($user, $proto) = @_;

    my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 10);

    my $r = $http->get('http://127.0.0.1:' . $t->port('http') . '/auth', {
        headers => {
            'Auth-Method' => 'plain',
            'Auth-User' => $user,
            'Auth-Pass' => $pw{$user},
            'Auth-Protocol' => $proto,
            'Auth-Login-Attempt' => 1,
            'Client-IP' => '127.0.0.1',
        },
    });

    my %h = map { lc($_) => $r->{headers}{$_} } keys %{$r->{headers}};
    $h{status} = $r->{status};
    return \%h;
}

# where($user, $protocol): the backend the router sends the user to

sub where {
    my ($user, $proto) = @_;

    my $r = auth($user, $proto);

    return 'none: ' . ($r->{'auth-status'} || $r->{status})
        unless ($r->{'auth-status'} || '') eq 'OK';
    return 'unknown server' unless ($r->{'auth-server'} || '') eq '127.0.0.1';

    return $by_port{$r->{'auth-port'} || 0} || 'unknown port';
}

# pop3($user) and imap($user): the subject of the first message of a real
# session through nginx, or the error line

sub pop3 {
    my ($user) = @_;

    my $s = MailPlus::Test::Client->new($t->port('pop3')) or return 'connect';
    $s->getline();
    $s->pop3("USER $user");

    my $r = $s->pop3("PASS $pw{$user}");
    return defined $r ? $r : 'no answer' unless defined $r && $r =~ /^\+OK/;

    $r = $s->pop3('RETR 1', multi => 1);
    $s->pop3('QUIT');

    return 'no answer' unless defined $r;
    return $r =~ /^Subject: (.*?)\r\n/m ? $1 : $r;
}

sub imap {
    my ($user) = @_;

    my $s = MailPlus::Test::Client->new($t->port('imap')) or return 'connect';
    $s->getline();

    my $r = $s->imap('a1', "LOGIN \"$user\" \"$pw{$user}\"");
    return $r unless $r =~ /^a1 OK/m;

    $s->imap('a2', 'SELECT INBOX');
    $r = $s->imap('a3', 'FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]');
    $s->imap('a4', 'LOGOUT');

    return $r =~ /^Subject: (.*?)\r\n/m ? $1 : $r;
}

# both protocols of every given user land where %$want says

sub sessions_land {
    my ($want, $what) = @_;

    for my $u (sort keys %$want) {
        is(pop3($u), "on backend $want->{$u} for $u",
            "$what: pop3 $u on $want->{$u}");
        is(imap($u), "on backend $want->{$u} for $u",
            "$what: imap $u on $want->{$u}");
    }
}

# the router's answers for every user, both protocols: user => backend,
# or "mixed" if the protocols disagree

sub map_users {
    my %map;

    for my $u (@users) {
        my $i = where($u, 'imap');
        my $p = where($u, 'pop3');
        $map{$u} = $i eq $p ? $i : "mixed: imap $i, pop3 $p";
    }

    return \%map;
}

# state change lines in error.log

sub state_lines {
    my ($name, $state) = @_;

    my $log = $t->read_file('error.log');
    my %n;

    for my $p (qw/ imap pop3 /) {
        my $addr = "127.0.0.1:$d{$name}{$p}";
        my $level = $state eq 'down' ? 'warn' : 'notice';
        my $re = qr/\[$level\] .*mail router: $p server /;
        $re = qr/$re\Q$addr\E is $state\b/;
        $n{$p} = () = $log =~ /$re/g;
    }

    return \%n;
}

# waits until backend $name has been logged $state ("down" or "up") for
# both protocols $count times in all; returns the time it was seen

sub wait_state {
    my ($name, $state, $count) = @_;

    my $ok = wait_for(sub {
        my $n = state_lines($name, $state);
        return $n->{imap} >= $count && $n->{pop3} >= $count;
    }, $NOTICE);

    ok($ok, "backend $name logged $state within ${NOTICE}s")
        or diag(join "\n", grep { /mail router: \w+ server/ }
            split /\n/, $t->read_file('error.log'));

    return time();
}

# the same once more, a few check intervals after it was seen: no other
# worker or later check logged it again

sub logged_once {
    my ($name, $state, $count, $since) = @_;

    # the rest of the window of three intervals since the change was seen
    wait_for(sub { time() >= $since + 3 * $INTERVAL }, 4 * $INTERVAL);

    is_deeply(state_lines($name, $state), { imap => $count, pop3 => $count },
        "backend $name $state logged once for each protocol");
}

# the order in which a login meets the primary servers on the hash ring,
# computed as the module does it (ketama, 1000 points a server, MD5)

my @ring;

for my $name (@primaries) {
    for my $j (0 .. 249) {
        my $digest = md5("127.0.0.1:$d{$name}{imap}-$j");
        push @ring, map { [ $_, $name ] } unpack('V4', $digest);
    }
}

@ring = sort { $a->[0] <=> $b->[0] } @ring;

sub ring_order {
    my ($user) = @_;

    my $hash = unpack('V', md5(lc $user));

    my ($lo, $hi) = (0, scalar @ring);

    while ($lo < $hi) {
        my $mid = int(($lo + $hi) / 2);
        if ($ring[$mid][0] < $hash) { $lo = $mid + 1 } else { $hi = $mid }
    }

    my (@order, %seen);

    for my $i (0 .. $#ring) {
        my $name = $ring[($lo + $i) % @ring][1];
        push @order, $name unless $seen{$name}++;
        last if @order == @primaries;
    }

    return @order;
}

###############################################################################

# where everybody lands with all backends up

my $home = map_users();

is_deeply($home, { map { $_ => (ring_order($_))[0] } @users },
    'every user on the first server of its ring order')
    or diag(explain($home));

my %count;
$count{$home->{$_}}++ for @users;

ok($count{$_}, "backend $_ has users") for @primaries;
ok(!$count{d}, 'backup has no users while primaries are up');

sessions_land($home, 'all up');

is(scalar(() = $t->read_file('error.log') =~ /mail router: \w+ server/g), 0,
    'no state changes while all are up');

# stop the backend with the most users: its users move on along the
# ring, the others stay

my ($victim) = sort { $count{$b} <=> $count{$a} || $a cmp $b } @primaries;
my @moved = grep { $home->{$_} eq $victim } @users;
my @stay = grep { $home->{$_} ne $victim } @users;

ok($t->stop_dovecot($d{$victim}), "backend $victim stopped");

my $seen = wait_state($victim, 'down', 1);

my $down = map_users();

my %expect = map {
    $_ => $home->{$_} eq $victim
        ? (grep { $_ ne $victim } ring_order($_))[0]
        : $home->{$_}
} @users;

is_deeply($down, \%expect,
    "$victim down: its users on the next live server, others stay")
    or diag(explain($down));

ok(scalar(grep { $down->{$_} eq $victim } @users) == 0,
    "nobody routed to $victim");

sessions_land({ map { $_ => $expect{$_} } @moved }, "$victim down, moved");
sessions_land({ map { $_ => $expect{$_} } @stay[0 .. 3] },
    "$victim down, stayed");

logged_once($victim, 'down', 1, $seen);
is_deeply(state_lines($victim, 'up'), { imap => 0, pop3 => 0 },
    "$victim not logged up while stopped");

my $line = "imap server 127.0.0.1:$d{$victim}{imap} is down: ";
ok($t->read_file('error.log') =~ /\[warn\] .*mail router: \Q$line\E\S/,
    'down line has a reason, at warn');

# start it again: logged up once, its users come back

backend($victim);

$seen = wait_state($victim, 'up', 1);

is_deeply(map_users(), $home, "$victim up: everybody home again");
sessions_land({ map { $_ => $victim } @moved }, "$victim up again");

logged_once($victim, 'up', 1, $seen);
is_deeply(state_lines($victim, 'down'), { imap => 1, pop3 => 1 },
    "$victim logged down only the once");

# every primary down: the backup takes everybody

$t->stop_dovecot($d{$_}) for @primaries;

wait_state($_, 'down', $_ eq $victim ? 2 : 1) for @primaries;

is_deeply(map_users(), { map { $_ => 'd' } @users },
    'all primaries down: everybody on the backup');

sessions_land({ map { $_ => 'd' } @users[0 .. 5] }, 'backup');

# nothing alive: a temporary failure at once, and the session is closed

ok($t->stop_dovecot($d{d}), 'backup stopped');
wait_state('d', 'down', 1);

my $r = auth($users[0], 'imap');
is($r->{'auth-status'}, '[UNAVAILABLE] Temporary authentication failure.',
    'nothing alive: auth_http imap status');
ok(!defined $r->{'auth-wait'}, 'nothing alive: no Auth-Wait');
ok(!defined $r->{'auth-server'}, 'nothing alive: no server');

$r = auth($users[0], 'pop3');
is($r->{'auth-status'}, '[SYS/TEMP] Temporary authentication failure.',
    'nothing alive: auth_http pop3 status');

for my $u (@users[0 .. 2]) {
    my $s = MailPlus::Test::Client->new($t->port('pop3'));
    like($s->getline(), qr/^\+OK/, "nothing alive: pop3 $u banner");
    $s->pop3("USER $u");

    my $start = time();
    my $line = $s->pop3("PASS $pw{$u}");
    my $took = time() - $start;

    is($line, "-ERR [SYS/TEMP] Temporary authentication failure.\r\n",
        "nothing alive: pop3 $u temporary failure");
    cmp_ok($took, '<', 5, "nothing alive: pop3 $u answered promptly");
    ok($s->at_eof(5), "nothing alive: pop3 $u session closed");

    $s = MailPlus::Test::Client->new($t->port('imap'));
    like($s->getline(), qr/^\* OK/, "nothing alive: imap $u banner");

    $start = time();
    $line = $s->imap('a1', "LOGIN \"$u\" \"$pw{$u}\"");
    $took = time() - $start;

    is($line, "a1 NO [UNAVAILABLE] Temporary authentication failure.\r\n",
        "nothing alive: imap $u temporary failure");
    cmp_ok($took, '<', 5, "nothing alive: imap $u answered promptly");
    ok($s->at_eof(5), "nothing alive: imap $u session closed");
}

ok($t->read_file('error.log')
    =~ /failed temporarily: no live server for the protocol/,
    'nothing alive: reason logged');

# the backup comes back: it takes everybody again

backend('d');
wait_state('d', 'up', 1);

is_deeply(map_users(), { map { $_ => 'd' } @users },
    'backup up again: everybody on the backup');
is(pop3($users[1]), "on backend d for $users[1]", 'backup up again: pop3');

$t->finish();

###############################################################################
