#!/usr/bin/perl

# The default idle timeout after login (router_proxy_timeout, 30 minutes):
# an IMAP session logged in through the module stays up, quiet, past the
# stock 60 s mail timeout (which still applies before login), and IDLE
# then hears of a new message.  Takes about 65 seconds.

use warnings;
use strict;

use Test::More;

use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

my $d = $t->dovecot('a', users => { alice => 'secret' });

$t->write_file('users', "alice:{PLAIN}secret\n");

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

    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;

    server {
        listen        127.0.0.1:%%PORT_imap%%;
        protocol      imap;
        router_proxy  on;
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

###############################################################################

my $s = MailPlus::Test::Client->new($t->port('imap'));
like($s->getline(), qr/^\* OK/, 'greeting');
like($s->imap('a1', 'LOGIN alice secret'), qr/^a1 OK/m, 'login');
like($s->imap('a2', 'SELECT INBOX'), qr/^a2 OK/m, 'select');

$s->send('a3 IDLE');
like($s->getline(), qr/^\+ /, 'idle');

# nothing crosses the session for 65 seconds but Dovecot's keepalives
# (imap_idle_notify_interval, one minute in the harness)

my @got;
my $end = time() + 65;

while ((my $left = $end - time()) > 0) {
    my $line = $s->getline($left);
    last unless defined $line;
    push @got, $line;
}

ok(!grep({ !/^\* OK Still here/ } @got), 'quiet for 65 seconds')
    or diag(join '', @got);

$t->seed($d, 'alice', subject => 'late');

like(scalar $s->read_until(qr/^\* 1 EXISTS/, 10), qr/^\* 1 EXISTS/m,
    'notification after 65 seconds');
$s->send('DONE');
like(scalar $s->read_until(qr/^a3 /), qr/^a3 OK/m, 'idle done');
like($s->imap('a4', 'LOGOUT'), qr/^a4 OK/m, 'logout');

unlike($t->read_file('error.log'), qr/timed out/, 'nothing timed out');

$t->finish();

###############################################################################
