#!/usr/bin/perl

# Reload: a changed users file takes effect on "nginx -s reload" (HUP to
# the master); a broken one is refused and the running one stays.

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

# the backend takes any password: only the router checks them here

my $d = $t->dovecot('a', any_password => 1,
    users => { alice => 'x', zed => 'x' });

$t->seed($d, 'alice', subject => 'alice here');
$t->seed($d, 'zed', subject => 'zed here');

$t->write_file('users', "alice:{PLAIN}old-secret\n");

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
        listen  unix:%%TESTDIR%%/auth.sock;

        location = /auth {
            mail_router_auth;
        }
    }
}
EOF

$t->run();

###############################################################################

sub pop3 {
    my ($user, $pass) = @_;

    my $s = MailPlus::Test::Client->new($t->port('pop3')) or return 'connect';
    $s->getline();
    $s->pop3("USER $user");

    my $r = $s->pop3("PASS $pass");
    $s->pop3('QUIT');
    $s->disconnect();

    return defined $r ? $r : 'no answer';
}

sub imap {
    my ($user, $pass) = @_;

    my $s = MailPlus::Test::Client->new($t->port('imap')) or return 'connect';
    $s->getline();

    my $r = $s->imap('a1', "LOGIN $user $pass");
    $s->imap('a2', 'LOGOUT');
    $s->disconnect();

    return $r;
}

like(pop3('alice', 'old-secret'), qr/^\+OK/, 'old password');
like(pop3('alice', 'new-secret'), qr/^-ERR/, 'new password not yet');
like(pop3('zed', 'zed-secret'), qr/^-ERR/, 'new user not yet');

# a session that is open across the reload keeps working

my $open = MailPlus::Test::Client->new($t->port('imap'));
$open->getline();
like($open->imap('a1', 'LOGIN alice old-secret'), qr/^a1 OK/m,
    'session before reload');

# change the users file, reload

$t->write_file('users', "alice:{PLAIN}new-secret\nzed:{PLAIN}zed-secret\n");

ok($t->reload(), 'reload');

like(pop3('alice', 'new-secret'), qr/^\+OK/, 'pop3 new password');
like(pop3('alice', 'old-secret'), qr/^-ERR/, 'pop3 old password refused');
like(imap('alice', 'new-secret'), qr/^a1 OK/m, 'imap new password');
like(imap('alice', 'old-secret'), qr/^a1 NO/m, 'imap old password refused');
like(pop3('zed', 'zed-secret'), qr/^\+OK/, 'new user');

like($open->imap('a2', 'SELECT INBOX'), qr/^a2 OK/m,
    'session opened before reload goes on');
$open->imap('a3', 'LOGOUT');
$open->disconnect();

# a broken users file: the reload is refused, the running router stays

$t->write_file('users', "alice:{PLAIN}newer\nzed:{BOGUS}zzz\n");

my $pid = $t->nginx_pid();
my $log = length $t->read_file('error.log');

kill 'HUP', $pid;

ok(MailPlus::Test::wait_for(sub {
    substr($t->read_file('error.log'), $log) =~ /\[emerg\].*users:2/;
}), 'broken users file reported with its line');

like(pop3('alice', 'new-secret'), qr/^\+OK/, 'running router unchanged');
like(pop3('alice', 'newer'), qr/^-ERR/, 'broken file not loaded');

# fixed again

$t->write_file('users', "alice:{PLAIN}newest\n");
ok($t->reload(), 'reload after fix');
like(pop3('alice', 'newest'), qr/^\+OK/, 'fixed file loaded');
like(pop3('zed', 'zed-secret'), qr/^-ERR/, 'removed user refused');

$t->finish();

###############################################################################
