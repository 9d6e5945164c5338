#!/usr/bin/perl

# Delivery and backend health: a failed LMTP connection counts for the
# backend's health, the router then keeps deliveries away from the dead
# backend (deferred, no connection attempts), and when the health check
# sees it back the deferred message is delivered.

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my %users = ('bob@example.com' => 'pwB');

my $d = $t->dovecot('a', users => \%users);

$t->write_file('users', "bob\@example.com:{PLAIN}pwB\n");

$t->write_file_expand('nginx.conf', <<"EOF2");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} lmtp=$d->{lmtp};
    }

    router_zone  mail:1m;
    router_health_check  interval=2s timeout=1s fails=1 passes=1;

    auth_http  127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_retry_first 1s;
    queue_retry_max 1s;
    queue_scan_interval 300ms;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
    }
}
EOF2

$t->run();

###############################################################################

sub submit {
    my ($subject) = @_;

    return $t->submit($t->port('smtp'), 'alice@client.example',
        ['bob@example.com'], "Subject: $subject\r\n\r\nbody\r\n");
}

sub delivered {
    my $md = "$d->{dir}/home/bob\@example.com/Maildir";
    my @f = (glob("$md/new/*"), glob("$md/cur/*"));
    return scalar @f;
}

like(submit('first'), qr/^250 /, 'queued');
ok(wait_for(sub { delivered() == 1 }, 10), 'delivered');

kill 'TERM', $d->{pid};
waitpid($d->{pid}, 0);

like(submit('second'), qr/^250 /, 'queued while the backend is down');

ok(wait_for(sub {
    $t->read_file('error.log') =~ /lmtp server 127\.0\.0\.1:\d+ is down/
}, 10), 'the backend is marked down');

ok(wait_for(sub {
    $t->read_file('error.log')
        =~ /dsn=4\.4\.3, status=deferred, reply="4\.4\.3 no mailbox server: no live server/
}, 10), 'deferred by the router, without a connection');

$d = $t->dovecot('a', users => \%users);

ok(wait_for(sub { delivered() == 2 }, 15), 'delivered when it is back');
like($t->read_file('error.log'), qr/lmtp server 127\.0\.0\.1:\d+ is up/,
    'the backend is marked up');

$t->finish();

###############################################################################
