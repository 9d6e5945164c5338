#!/usr/bin/perl

# Module-handled sessions with a router zone and two workers: the session
# limits are counted in the zone, once for all workers; a backend that
# fails in use is marked down for everybody (passive health), logged once,
# and comes back with the active checks; the growing delay of throttling
# applies to module-handled logins.

use warnings;
use strict;

use Test::More;

use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

my @users = map { "u$_" } 1 .. 16;
my %users = map { $_ => 'secret' } @users, qw/ lim1 slow1 /;

my $d = $t->dovecot('a', users => \%users, login_processes => 2);

# a server that is down when nginx starts: every user of the pool is
# first tried there, then on the live one

my $closed = $t->port('closed', '127.0.0.5');

$t->write_file('users', join('', map {
    my $pool = /^u/ ? 'two' : 'a';
    "$_:{PLAIN}secret:$pool\n"
} sort keys %users));

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes  2;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_zone   shared:1m;

    # long enough that only sessions can mark the dead server down first
    router_health_check  interval=30s timeout=1s;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    router_pool two {
        server 127.0.0.5 imap=$closed pop3=$closed weight=100;
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    router_default_pool  a;
    router_auth_delay    1s;
    router_auth_max_delay  4s;

    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;

    router_proxy                  on;
    router_proxy_user_sessions    2;
    router_proxy_connect_timeout  1s;

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        imap_auth  login plain;
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

sub imap {
    my ($user, $pass) = @_;

    my $s = MailPlus::Test::Client->new($t->port('imap')) or return;
    $s->getline() =~ /^\* OK/ or return;

    my $r = $s->imap('a1', "LOGIN $user " . ($pass || 'secret'));
    return ($s, $r);
}

###############################################################################

# six connections of one user at once, spread over two workers: two log
# in, four are refused, whichever worker has them

my @s = map { [ imap('lim1') ] } 1 .. 6;

my $in = grep { $_->[1] && $_->[1] =~ /^a1 OK/m } @s;
my $out = grep { $_->[1] && $_->[1] =~ /^a1 NO \[LIMIT\]/m } @s;

is($in, 2, 'user limit: two sessions of six log in');
is($out, 4, 'user limit: four refused');

my %pids = map { $_ => 1 } $t->read_file('error.log')
    =~ /\[info\] (\d+)#\d+: \*\d+ (?:mail session|too many sessions)/g;
ok(keys %pids >= 1, 'sessions were handled by ' . keys(%pids) . ' worker(s)');

# the counts come back to zero when the sessions end

$_->[0]->disconnect() for @s;

ok(MailPlus::Test::wait_for(sub {
    my @two = map { [ imap('lim1') ] } 1 .. 2;
    my $ok = grep { $_->[1] && $_->[1] =~ /^a1 OK/m } @two;
    $_->[0] && $_->[0]->disconnect() for @two;
    return $ok == 2;
}, 10), 'user limit: released when sessions end');

# passive health: the first session to meet the dead server marks it down
# for both workers, once; everybody logs in on the live server

my $ok = grep {
    my ($s, $r) = imap($_);
    my $good = $r && $r =~ /^a1 OK/m;
    $s->disconnect() if $s;
    $good;
} @users;

is($ok, scalar @users, 'passive health: every user logs in');

my $log = $t->read_file('error.log');
my @down = $log =~ /(mail router: imap server 127\.0\.0\.5:$closed is down)/g;
is(scalar @down, 1, 'passive health: down logged once');

my @tries = $log =~ /(backend 127\.0\.0\.5:$closed)/g;
cmp_ok(scalar @tries, '<=', 2,
    'passive health: the dead server tried at most once a worker');

# throttling: the delay of a module-handled refusal grows

my @waits;

for my $n (1 .. 3) {
    my $start = time();
    my ($s, $r) = imap('slow1', 'wrong');
    push @waits, time() - $start;
    like($r, qr/^a1 NO \[AUTHENTICATIONFAILED\]/m, "throttle: failure $n");
    $s->disconnect() if $s;
}

cmp_ok($waits[0], '>=', 0.9, sprintf('throttle: first delay %.1fs', $waits[0]));
cmp_ok($waits[2], '>=', 3.8, sprintf('throttle: third delay %.1fs', $waits[2]));

$t->finish();

###############################################################################
