#!/usr/bin/perl

# POP3 through nginx and the router to Dovecot: the whole session,
# including the update phase.

use warnings;
use strict;

use Test::More;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

# t/pop3_proxy.t runs this file again with the module handling the session

my $router_proxy = do { no warnings 'once'; $main::ROUTER_PROXY }
    ? 'router_proxy  on;' : '';

my $d = $t->dovecot('a', users => { alice => 'secret' });

$t->write_file('users', <<'EOF');
# test users
alice:{PLAIN}secret
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%TESTDIR%%/users;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    router_default_pool  a;
    router_auth_delay    1s;

    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;

    server {
        listen    127.0.0.1:%%PORT_pop3%%;
        protocol  pop3;
        $router_proxy
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

# three messages; the second has a line starting with a dot

my @msgs = map {
    $t->seed($d, 'alice', subject => "pop3 message $_",
        body => $_ == 2 ? "line one\n.dot line\nlast line\n"
            : "body of message $_\nsecond line\n")
} 1 .. 3;

# sizes as POP3 counts them: lines end in CRLF

my @sizes = map { (my $m = $_) =~ s/\n/\r\n/g; length $m } @msgs;
my $total = 0;
$total += $_ for @sizes;

$t->run();

###############################################################################

sub login {
    my ($user, $pass) = @_;

    my $s = MailPlus::Test::Client->new($t->port('pop3')) or return;
    $s->getline() =~ /^\+OK/ or return;
    $s->pop3("USER $user") =~ /^\+OK/ or return;
    $s->pop3("PASS $pass") =~ /^\+OK/ or return;

    return $s;
}

sub uidls {
    my ($s) = @_;

    my $r = $s->pop3('UIDL', multi => 1);
    return [ $r =~ /^\d+ (\S+)\r\n/mg ];
}

# greeting, authentication

my $s = MailPlus::Test::Client->new($t->port('pop3'));
like($s->getline(), qr/^\+OK/, 'greeting');

like($s->pop3('USER alice'), qr/^\+OK/, 'user');
like($s->pop3('PASS secret'), qr/^\+OK/, 'pass');

# transaction state

is($s->pop3('STAT'), "+OK 3 $total\r\n", 'stat');

my $list = $s->pop3('LIST', multi => 1);
like($list, qr/^\+OK/, 'list');
is_deeply([ $list =~ /^(\d+ \d+)\r\n/mg ],
    [ map { "$_ $sizes[$_ - 1]" } 1 .. 3 ], 'list sizes');

is($s->pop3('LIST 2'), "+OK 2 $sizes[1]\r\n", 'list one');
like($s->pop3('LIST 4'), qr/^-ERR/, 'list no such message');

my $uidl = uidls($s);
is(scalar @$uidl, 3, 'uidl count');
is(scalar(keys %{{ map { $_ => 1 } @$uidl }}), 3, 'uidls unique');
like($s->pop3('UIDL 1'), qr/^\+OK 1 \Q$uidl->[0]\E\r\n$/, 'uidl one');

my $retr = $s->pop3('RETR 2', multi => 1);
like($retr, qr/^\+OK/, 'retr');
like($retr, qr/^Subject: pop3 message 2\r\n/m, 'retr subject');
like($retr, qr/\r\n\r\nline one\r\n\.\.dot line\r\nlast line\r\n\.\r\n$/,
    'retr body dot-stuffed');

my $top = $s->pop3('TOP 1 0', multi => 1);
like($top, qr/^Subject: pop3 message 1\r\n/m, 'top headers');
unlike($top, qr/body of message/, 'top 0 no body');

$top = $s->pop3('TOP 3 1', multi => 1);
like($top, qr/\r\n\r\nbody of message 3\r\n\.\r\n$/, 'top 1 one line');

# delete, reset

like($s->pop3('DELE 1'), qr/^\+OK/, 'dele');
like($s->pop3('RETR 1'), qr/^-ERR/, 'retr deleted');
is($s->pop3('STAT'), "+OK 2 " . ($total - $sizes[0]) . "\r\n",
    'stat after dele');

like($s->pop3('RSET'), qr/^\+OK/, 'rset');
is($s->pop3('STAT'), "+OK 3 $total\r\n", 'stat after rset');

like($s->pop3('NOOP'), qr/^\+OK/, 'noop');

# update phase: DELE then QUIT removes the message

like($s->pop3('DELE 1'), qr/^\+OK/, 'dele again');
like($s->pop3('QUIT'), qr/^\+OK/, 'quit');
ok($s->at_eof(), 'closed after quit');

$s = login('alice', 'secret');
ok($s, 'login again');
is($s->pop3('STAT'), "+OK 2 " . ($total - $sizes[0]) . "\r\n",
    'deleted message gone');
is_deeply(uidls($s), [ @$uidl[1, 2] ], 'remaining uidls');

# a dropped connection is no update: DELE without QUIT keeps the message

like($s->pop3('DELE 1'), qr/^\+OK/, 'dele before drop');
$s->disconnect();

my $kept = wait_for_stat(2);
ok($kept, 'dele without quit keeps messages');

# download and keep: RETR everything, QUIT

$s = login('alice', 'secret');
like($s->pop3("RETR $_", multi => 1), qr/^\+OK.*\.\r\n$/s, "keep: retr $_")
    for 1 .. 2;
like($s->pop3('QUIT'), qr/^\+OK/, 'keep: quit');
$s->disconnect();

$s = login('alice', 'secret');
is($s->pop3('STAT'), "+OK 2 " . ($total - $sizes[0]) . "\r\n",
    'keep: messages stay');
is_deeply(uidls($s), [ @$uidl[1, 2] ], 'keep: same uidls');
$s->pop3('QUIT');

# failed logins: -ERR after the delay, the session goes on

$s = MailPlus::Test::Client->new($t->port('pop3'));
$s->getline();
$s->pop3('USER alice');

my $start = time();
like($s->pop3('PASS wrong'), qr/^-ERR/, 'wrong password');
cmp_ok(time() - $start, '>=', 0.9, 'wrong password delayed');

like($s->pop3('USER alice'), qr/^\+OK/, 'user after failure');
like($s->pop3('PASS secret'), qr/^\+OK/, 'pass after failure');
like($s->pop3('STAT'), qr/^\+OK 2 /, 'stat after failure');
$s->pop3('QUIT');

$s = MailPlus::Test::Client->new($t->port('pop3'));
$s->getline();
$s->pop3('USER nobody-here');
like($s->pop3('PASS secret'), qr/^-ERR/, 'unknown user');

$t->finish();

###############################################################################

# after a dropped connection Dovecot may still be finishing that session:
# poll until a new login sees the expected count

sub wait_for_stat {
    my ($n) = @_;

    return MailPlus::Test::wait_for(sub {
        my $c = login('alice', 'secret') or return 0;
        my $stat = $c->pop3('STAT');
        $c->pop3('QUIT');
        return defined $stat && $stat =~ /^\+OK $n /;
    }, 10);
}

###############################################################################
