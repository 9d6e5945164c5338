#!/usr/bin/perl

# SMTP store-and-forward: local recipients.  A local part with "@", "%" or
# "!", quoted or not, is refused at RCPT (550 5.1.3), as is a control byte,
# escaped or not; an unknown user is refused at RCPT, for a pool whose
# users the router knows (users file) and for a pool whose users only the
# backend knows ("auth backend": an LMTP RCPT probe against real Dovecot);
# the probe's answers are kept in the router zone (Dovecot stopped, the
# same answers); a backend that cannot answer gives 450; the address the
# probe checked is the one the message is delivered to.

use warnings;
use strict;

use Test::More;

use IO::Socket::INET;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $d = $t->dovecot('mb', users => { 'bob@backend.example' => 'pwB' });

my $closed = $t->port('closed');

# a server that takes connections and never says a word

my $mute = IO::Socket::INET->new(Listen => 5, ReuseAddr => 1,
    LocalAddr => '127.0.0.1:' . $t->port('mute')) or die "mute: $!\n";

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 2;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;
    router_zone   mail:1m;
    router_health_check off;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} lmtp=$d->{lmtp};
    }

    router_pool bk {
        server 127.0.0.1 imap=$d->{imap} lmtp=$d->{lmtp};
        auth backend;
    }

    router_pool mute {
        server 127.0.0.1 imap=$d->{imap} lmtp=@{[ $t->port('mute') ]};
        auth backend;
    }

    router_pool down {
        server 127.0.0.1 imap=$d->{imap} lmtp=$closed;
        auth backend;
    }

    router_rule "\@backend\\.example\$" pool=bk;
    router_rule "\@down\\.example\$" pool=down;
    router_rule "\@mute\\.example\$" pool=mute;
    router_default_pool a;

    auth_http 127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_retry_first 1s;
    queue_scan_interval 300ms;
    queue_helo_name mx.test;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com backend.example down.example
                           mute.example;
        smtp_max_errors 100;
    }

    server {
        listen 127.0.0.1:%%PORT_smtp_short%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains mute.example;
        smtp_verify_timeout 1s;
    }

    server {
        listen 127.0.0.1:%%PORT_smtp_cancel%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains mute.example;
        smtp_verify_timeout 30s;
        smtp_command_timeout 1s;
    }
}
EOF

$t->run();

###############################################################################

my $port = $t->port('smtp');

my $c = MailPlus::Test::Client->new($port) or die "no connection\n";
$c->getline();
$c->smtp('EHLO client.example');
$c->smtp('MAIL FROM:<s@remote.example>');

sub rcpt {
    return $c->smtp("RCPT TO:<$_[0]>");
}

# local parts that route elsewhere

like(rcpt('a@b@example.com'), qr/^550 5\.1\.3 /, '"@" in the local part');
like(rcpt('a%remote.example@example.com'), qr/^550 5\.1\.3 /,
    '"%" in the local part');
like(rcpt('remote.example!a@example.com'), qr/^550 5\.1\.3 /,
    '"!" in the local part');
like(rcpt('"a@remote.example"@example.com'), qr/^550 5\.1\.3 /,
    'quoted "@" in the local part');
like(rcpt('"a@remote.example"@backend.example'), qr/^550 5\.1\.3 /,
    'quoted "@" in the local part, auth backend pool');
like(rcpt('a%remote.example@backend.example'), qr/^550 5\.1\.3 /,
    '"%" in the local part, auth backend pool');
like(rcpt('bob!x@backend.example'), qr/^550 5\.1\.3 /,
    '"!" in the local part, auth backend pool');
like(rcpt('"bob\%x"@backend.example'), qr/^550 5\.1\.3 /,
    'quoted "%", auth backend pool');

# a domain that the delivery would read differently

like(rcpt('a@"x@remote.example".example.com'), qr/^501 /,
    'quoted "@" in the domain');

# control bytes, escaped or not

like(rcpt("\"bob\\\x01\"\@backend.example"), qr/^501 /,
    'escaped control byte in a quoted local part');
like(rcpt("\"bob\\\x7f\"\@example.com"), qr/^501 /,
    'escaped DEL in a quoted local part');
like(rcpt("bob\x7f\@backend.example"), qr/^501 /, 'DEL in the local part');

# unknown users

like(rcpt('nobody@example.com'), qr/^550 5\.1\.1 /,
    'unknown user of a users file pool');
is(rcpt('alice@example.com'), "250 2.1.5 Ok\r\n", 'known user');

like(rcpt('nobody@backend.example'), qr/^550 5\.1\.1 /,
    'unknown user of an auth backend pool: refused by LMTP');
is(rcpt('bob@backend.example'), "250 2.1.5 Ok\r\n",
    'known user of an auth backend pool: accepted by LMTP');
is(rcpt('"bob"@backend.example'), "250 2.1.5 Ok\r\n",
    'a quoted local part is what Dovecot says it is (RFC 5321: bob)');

like(rcpt('x@down.example'), qr/^450 4\.4\.3 /,
    'backend cannot answer: 450');

# the message goes to the address the probe checked

$c->send("DATA\r\nSubject: probe\r\n\r\nchecked\r\n.", raw => 1);
$c->smtp_reply();
like($c->smtp(''), qr/^250 2\.0\.0 Ok: queued as /, 'queued');
$c->smtp('QUIT');

ok(wait_for(sub { $t->maildir_count($d, 'bob@backend.example') == 1 }, 15),
    'delivered to the checked address');

like($t->dovecot_log($d), qr/Logged out \(state=RCPT TO\)/,
    'the LMTP probe asked Dovecot and left after RCPT');

# a server that does not answer: 450 after the timeout; a session that
# ends while its probe waits takes the probe with it

$c = MailPlus::Test::Client->new($t->port('smtp_short')) or die;
$c->getline();
$c->smtp('EHLO client.example');
$c->smtp('MAIL FROM:<s@remote.example>');
like(rcpt('x@mute.example'), qr/^450 4\.4\.3 /, 'mute server: 450 in time');
$c->smtp('QUIT');

$c = MailPlus::Test::Client->new($t->port('smtp_cancel')) or die;
$c->getline();
$c->smtp('EHLO client.example');
$c->smtp('MAIL FROM:<s@remote.example>');
like(rcpt('y@mute.example'), qr/^421 4\.4\.2 /,
    'session timed out while its probe waited');
ok(wait_for(sub {
    $t->read_file('error.log') =~ /verify "y\@mute\.example" cancelled/;
}, 10), 'and the probe ended with it');

# cached answers, Dovecot stopped

ok($t->stop_dovecot($d, 10), 'dovecot stopped');

$c = MailPlus::Test::Client->new($port) or die "no connection\n";
$c->getline();
$c->smtp('EHLO client.example');
$c->smtp('MAIL FROM:<s@remote.example>');

is(rcpt('bob@backend.example'), "250 2.1.5 Ok\r\n",
    'cached: exists (Dovecot down)');
like(rcpt('nobody@backend.example'), qr/^550 5\.1\.1 /,
    'cached: does not exist (Dovecot down)');
like(rcpt('new@backend.example'), qr/^450 4\.4\.3 /,
    'not cached, Dovecot down: 450');
$c->smtp('QUIT');

$t->finish();

###############################################################################
