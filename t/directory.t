#!/usr/bin/perl

# Directories in order ("router_directory"), with two real sources: a
# PostgreSQL table first, an LDAP tree second.  A user only the second
# knows logs in after the first said it does not know it; a user both
# know is decided by the first.  The first stopped: a user the second
# knows still logs in, the others get temporary failures, unknown users
# too.  SMTP recipients are asked of both, at RCPT and again when the
# queue delivers (the users file knows none of them: mail for them is
# delivered, not bounced).  The directories' counters and state in the
# metrics.  "nginx -t" on the blocks themselves.

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Socket::INET;

use MailPlus::Pg;
use MailPlus::Slapd;
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $d = $t->dovecot('b', any_password => 1, users => {
    map { $_ => 'x' } qw/ alice@example.com bob@example.com carol@example.com /
});

my $pg = MailPlus::Pg->new($t);

$pg->psql(<<'EOF', 'postgres') or die "psql:\n" . $pg->setup_log();
CREATE ROLE nginx LOGIN PASSWORD 'pgpass';
CREATE DATABASE mail OWNER postgres;
EOF

$pg->psql(<<'EOF') or die "psql:\n" . $pg->setup_log();
CREATE TABLE users (username varchar(255) PRIMARY KEY,
                    password varchar(255) NOT NULL);
GRANT SELECT ON users TO nginx;
INSERT INTO users VALUES ('alice@example.com', '{PLAIN}pwA'),
                         ('carol@example.com', '{PLAIN}pwC-sql');
EOF

my $ldap = MailPlus::Slapd->new($t, suffix => 'dc=example,dc=com',
    ldif => <<"EOF");
dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: uid=bob,dc=example,dc=com
objectClass: inetOrgPerson
uid: bob
cn: bob
sn: bob
mail: bob\@example.com
userPassword: {PLAIN}pwB

dn: uid=carol,dc=example,dc=com
objectClass: inetOrgPerson
uid: carol
cn: carol
sn: carol
mail: carol\@example.com
userPassword: {PLAIN}pwC-ldap
EOF

my $pgport = $pg->port();

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_auth_delay 0;
    router_zone   z:1m;
    router_trusted_networks 127.0.0.0/8;

    router_directory pgsql sql {
        connect "host=127.0.0.1 port=$pgport dbname=mail user=nginx password=pgpass";
        query   "SELECT password FROM users WHERE username = \$1";
        recipient_query "SELECT 1 FROM users WHERE username = \$1";
        timeout 3s;
    }

    router_directory ldap {
        url      ldap://127.0.0.1:%%PORT_ldap%%;
        base     "dc=example,dc=com";
        filter   "(mail=%u)";
        password attribute=userPassword;
        recipient_filter "(mail=%u)";
        timeout  3s;
    }

    router_directory_valid 0;
    router_directory_invalid 0;

    router_pool back {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3} lmtp=$d->{lmtp};
    }

    auth_http 127.0.0.1:%%PORT_http%%/auth;

    queue_spool %%TESTDIR%%/spool;
    queue_delivery on;
    queue_retry_first 1s;
    queue_scan_interval 300ms;
    queue_helo_name mx.test;

    server {
        listen     127.0.0.1:%%PORT_pop3%%;
        protocol   pop3;
        router_proxy on;
    }

    server {
        listen     127.0.0.1:%%PORT_smtp%%;
        protocol   smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_max_errors 50;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen       127.0.0.1:%%PORT_http%%;

        location = /auth {
            mail_router_auth;
        }

        location = /metrics {
            mail_plus_metrics;
        }
    }
}
EOF

$t->run();

###############################################################################

sub pop3_login {
    my ($user, $pass) = @_;

    my $c = MailPlus::Test::Client->new($t->port('pop3')) or return '';
    $c->getline();
    $c->pop3("USER $user");
    my $r = $c->pop3("PASS $pass") // '';
    $c->disconnect();

    return $r;
}

# one message to $to over SMTP: the reply to RCPT, and to DATA's end

sub mail {
    my ($to) = @_;

    my $c = MailPlus::Test::Client->new($t->port('smtp'))
        or die "no connection\n";
    $c->getline();
    $c->smtp('EHLO c.example');
    $c->smtp('MAIL FROM:<x@remote.example>');

    my $rcpt = $c->smtp("RCPT TO:<$to>") // '';
    my $end = '';

    if ($rcpt =~ /^250 /) {
        $c->smtp('DATA');
        $end = $c->smtp("Subject: to $to\r\n\r\nHello.\r\n.") // '';
    }

    $c->smtp('QUIT');
    $c->disconnect();

    return ($rcpt, $end);
}

sub metrics {
    my $s = IO::Socket::INET->new('127.0.0.1:' . $t->port('http'))
        or return '';
    print $s "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    return join('', <$s>);
}

###############################################################################

# in order: the first that knows a user decides

like(pop3_login('alice@example.com', 'pwA'), qr/^\+OK/,
    'a user of the first directory');
like(pop3_login('bob@example.com', 'pwB'), qr/^\+OK/,
    'a user of the second, after the first did not know it');
like(pop3_login('bob@example.com', 'wrong'), qr/^-ERR/,
    'a wrong password of the second');
like(pop3_login('carol@example.com', 'pwC-sql'), qr/^\+OK/,
    'a user both know: the first decides');
like(pop3_login('carol@example.com', 'pwC-ldap'), qr/^-ERR (?!\[SYS)/,
    'the password of the second is not asked for');
like(pop3_login('zed@example.com', 'pw'), qr/^-ERR (?!\[SYS)/,
    'a user neither knows: refused');

# recipients: the users file knows none; both directories are asked, at
# RCPT and when the queue delivers

my ($rcpt, $end) = mail('alice@example.com');
like($rcpt, qr/^250 /, 'rcpt: a user of the first directory');
like($end, qr/^250 /, 'rcpt: the message queued');

($rcpt, $end) = mail('bob@example.com');
like($rcpt, qr/^250 /, 'rcpt: a user of the second');

like((mail('zed@example.com'))[0], qr/^550 5\.1\.1 /,
    'rcpt: a user neither knows');

ok(wait_for(sub { $t->maildir_count($d, 'alice@example.com') == 1
        && $t->maildir_count($d, 'bob@example.com') == 1 }, 20),
    'both delivered to the mailbox server, none bounced');

my $m = metrics();
like($m, qr/^mail_plus_directory_up\{directory="sql"\} 1$/m, 'metrics: up');
like($m, qr/^mail_plus_directory_lookups_total\{directory="ldap"\} [1-9]/m,
    'metrics: lookups of the second');

# the first directory stopped

ok($pg->stop('INT'), 'PostgreSQL stopped');

like(pop3_login('bob@example.com', 'pwB'), qr/^\+OK/,
    'first down: a user of the second still logs in');
like(pop3_login('alice@example.com', 'pwA'), qr/^-ERR \[SYS\/TEMP\]/,
    'first down: its user fails temporarily');
like(pop3_login('zed@example.com', 'pw'), qr/^-ERR \[SYS\/TEMP\]/,
    'first down: an unknown user fails temporarily, the first may know it');

like((mail('alice@example.com'))[0], qr/^451 4\.3\.0 /,
    'first down: rcpt, a temporary failure');

($rcpt, $end) = mail('bob@example.com');
like($rcpt, qr/^250 /, 'first down: rcpt of the second');

ok(wait_for(sub { $t->maildir_count($d, 'bob@example.com') == 2 }, 20),
    'first down: delivered to the second\'s user');

$m = metrics();
like($m, qr/^mail_plus_directory_up\{directory="sql"\} 0$/m,
    'metrics: down');
like($m, qr/^mail_plus_directory_failures_total\{directory="sql"\} [1-9]/m,
    'metrics: failures');

my $log = $t->read_file('error.log');
is(() = $log =~ /directory "sql" is not reachable/g, 1,
    'the state change logged once');

ok($pg->start(), 'PostgreSQL started again');

like(pop3_login('alice@example.com', 'pwA'), qr/^\+OK/,
    'first back: its user logs in');

###############################################################################

# nginx -t on the blocks

sub conf_t {
    my ($mail) = @_;

    $t->write_file_expand('t.conf', <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
$mail
    router_pool back {
        server 127.0.0.1 imap=$d->{imap};
    }

    auth_http 127.0.0.1:1/auth;

    server {
        listen     127.0.0.1:%%PORT_t%%;
        protocol   pop3;
        router_proxy on;
    }
}
EOF

    return $t->nginx_t('t.conf');
}

my $ldap_block = "router_directory ldap NAME {\n"
    . "    url ldap://127.0.0.1:1;\n    base \"dc=x\";\n"
    . "    filter \"(mail=%u)\";\n    password attribute=userPassword;\n}\n";

(my $one = $ldap_block) =~ s/ NAME//;

like(join('', conf_t($one)), qr/"router_directory" needs "router_zone"/,
    'nginx -t: directories need the zone');
like(join('', conf_t("router_zone z:1m;\n$one$one")),
    qr/duplicate directory "ldap"/, 'nginx -t: two of a type need names');
like(join('', conf_t("router_zone z:1m;\n"
        . ($ldap_block =~ s/NAME/a/r) . ($ldap_block =~ s/NAME/b/r))),
    qr/test is successful/, 'nginx -t: two named');
like(join('', conf_t("router_zone z:1m;\nrouter_directory nis {\n}\n")),
    qr/unknown directory type "nis"/, 'nginx -t: an unknown type');
like(join('', conf_t("router_zone z:1m;\n"
        . ($one =~ s/\}\n$/    colour blue;\n}\n/r))),
    qr/unknown parameter "colour" of directory "ldap"/,
    'nginx -t: an unknown parameter');
like(join('', conf_t("router_zone z:1m;\n"
        . ($one =~ s/\}\n$/    timeout 0;\n}\n/r))),
    qr/invalid "timeout"/, 'nginx -t: a bad timeout');
like(join('', conf_t("router_zone z:1m;\n"
        . ($ldap_block =~ s/NAME/a-very-long-name-of-more-than-32-chars/r))),
    qr/invalid directory name/, 'nginx -t: a name too long');

###############################################################################

$t->finish();
