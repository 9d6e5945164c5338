#!/usr/bin/perl

# The "pgsql" directory against a real PostgreSQL 15 with PostfixAdmin's
# "mailbox" table: POP3, IMAP and SMTP AUTH logins to Dovecot, SMTP
# recipients ("recipient_query"), wrong
# passwords, unknown and inactive users, a login with ' \ and % (the
# login is a parameter, never put into the query), answers that are not
# valid (two rows, a control character), the cache (a second login does
# not reach the server), a query that takes too long, the server stopped
# mid-query and while idle (temporary failures, the change logged once,
# stale answers), and started again without reloading nginx.  "nginx -t"
# refuses queries that would interpolate the login.

use warnings;
use strict;

use Test::More;

use IO::Select;
use MIME::Base64 qw/ encode_base64 /;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Pg;
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $pg = MailPlus::Pg->new($t);
my $pgport = $pg->port();

sub psql { $pg->psql(@_) }
sub asked { $pg->asked(@_) }

psql(<<'EOF', 'postgres') or die "psql:\n" . $pg->setup_log();
CREATE ROLE nginx LOGIN PASSWORD 'pgpass';
CREATE DATABASE mail OWNER postgres;
EOF

my $sha512 = crypt('secret', '$6$saltsaltsalt$');
my $md5 = crypt('carolpw', '$1$c9809462$');

die "no SHA512-CRYPT in crypt()\n" unless $sha512 =~ /^\$6\$/;

# PostfixAdmin's table as its PostgreSQL schema has it, and the routing
# columns in a table of our own, joined by a view; one login twice in the
# view (ambiguous); a slow login (the query sleeps)

psql(<<"EOF") or die "psql:\n" . $pg->setup_log();
CREATE TABLE mailbox (
    username    varchar(255) NOT NULL PRIMARY KEY,
    password    varchar(255) NOT NULL,
    name        varchar(255) NOT NULL DEFAULT '',
    maildir     varchar(255) NOT NULL DEFAULT '',
    quota       bigint NOT NULL DEFAULT 0,
    local_part  varchar(255) NOT NULL,
    domain      varchar(255) NOT NULL,
    created     timestamp with time zone DEFAULT now(),
    modified    timestamp with time zone DEFAULT now(),
    active      boolean NOT NULL DEFAULT true
);

CREATE TABLE mailbox_route (
    username    varchar(255) NOT NULL PRIMARY KEY
                REFERENCES mailbox (username),
    pool        varchar(64),
    host        varchar(255),
    destuser    varchar(255),
    nologin     boolean
);

CREATE FUNCTION slow(login text) RETURNS boolean AS \$\$
BEGIN
    IF login LIKE 'slow%' THEN
        PERFORM pg_sleep(10);
    END IF;
    RETURN true;
END;
\$\$ LANGUAGE plpgsql;

CREATE VIEW mail_users AS
    SELECT m.username, m.password, m.active, r.pool, r.host, r.destuser,
           r.nologin
      FROM mailbox m LEFT JOIN mailbox_route r USING (username)
    UNION ALL
    SELECT username, password, active, NULL, NULL, NULL, NULL
      FROM mailbox WHERE username = 'twin\@example.com';

INSERT INTO mailbox (username, password, name, maildir, local_part, domain)
VALUES
    ('alice\@example.com', '{SHA512-CRYPT}$sha512', 'Alice',
     'example.com/alice/', 'alice', 'example.com'),
    ('bob\@example.com', '{PLAIN}bobpw', 'Bob', 'example.com/bob/', 'bob',
     'example.com'),
    ('carol\@example.com', '$md5', 'Carol', 'example.com/carol/', 'carol',
     'example.com'),
    ('dave\@example.com', '{PLAIN}davepw', 'Dave', 'example.com/dave/',
     'dave', 'example.com'),
    (E'o''q\\\\%x\@example.com', '{PLAIN}weirdpw', 'Weird', 'example.com/w/',
     E'o''q\\\\%x', 'example.com'),
    ('twin\@example.com', '{PLAIN}twinpw', 'Twin', 'example.com/twin/',
     'twin', 'example.com'),
    ('ctl\@example.com', '{PLAIN}ctlpw', 'Ctl', 'example.com/ctl/', 'ctl',
     'example.com'),
    ('frank\@example.com', '{PLAIN}frankpw', 'Frank', 'example.com/frank/',
     'frank', 'example.com'),
    ('gone\@example.com', '{PLAIN}gonepw', 'Gone', 'example.com/gone/',
     'gone', 'example.com'),
    ('late\@example.com', '{PLAIN}latepw', 'Late', 'example.com/late/',
     'late', 'example.com'),
    ('slow\@example.com', '{PLAIN}slowpw', 'Slow', 'example.com/slow/',
     'slow', 'example.com'),
    ('slow2\@example.com', '{PLAIN}slowpw', 'Slow', 'example.com/slow2/',
     'slow2', 'example.com'),
    ('slow3\@example.com', '{PLAIN}slowpw', 'Slow', 'example.com/slow3/',
     'slow3', 'example.com'),
    ('slow4\@example.com', '{PLAIN}slowpw', 'Slow', 'example.com/slow4/',
     'slow4', 'example.com'),
    ('slow5\@example.com', '{PLAIN}slowpw', 'Slow', 'example.com/slow5/',
     'slow5', 'example.com'),
    ('nol\@example.com', '{PLAIN}nolpw', 'Nol', 'example.com/nol/', 'nol',
     'example.com');

UPDATE mailbox SET active = false WHERE username = 'dave\@example.com';

INSERT INTO mailbox_route (username, pool, host, destuser, nologin) VALUES
    ('alice\@example.com', 'a', NULL, NULL, false),
    ('carol\@example.com', 'a', '127.0.0.1', NULL, NULL),
    (E'o''q\\\\%x\@example.com', 'a', NULL, 'weird', NULL),
    ('ctl\@example.com', E'a\\tb', NULL, NULL, NULL),
    ('nol\@example.com', 'a', NULL, NULL, true);

GRANT SELECT ON mailbox, mailbox_route, mail_users TO nginx;
EOF

my $weird = q{o'q\\%x@example.com};

my $d = $t->dovecot('a', any_password => 1, users => {
    map { $_ => 'x' } qw/ alice@example.com bob@example.com
        carol@example.com weird frank@example.com gone@example.com
        late@example.com local /
});

$t->write_file('users', "local:{PLAIN}localpw:a\n");

my $conninfo = "host=127.0.0.1 port=$pgport dbname=mail user=nginx "
    . 'password=pgpass';

my $query = 'SELECT password, \'Y\' AS proxy, pool, host, destuser, '
    . 'nologin FROM mail_users WHERE username = $1 AND active '
    . 'AND slow($1)';

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_zone   z:1m;

    router_directory pgsql pg {
        connect          "$conninfo";
        query            "$query";
        recipient_query  "SELECT 1 FROM mailbox WHERE username = \$1
                          AND active";
        timeout          5s;
        connections      2;
    }

    router_directory_valid    3s;
    router_directory_invalid  3s;
    router_directory_stale    1h;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3} lmtp=$d->{lmtp};
    }

    router_default_pool  a;
    router_auth_delay    0;

    # many failed logins from one address: not throttled here
    router_trusted_networks  127.0.0.0/8;

    auth_http  127.0.0.1:9/auth;

    router_proxy  on;

    queue_spool %%TESTDIR%%/spool;

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        imap_auth  login plain;
    }

    server {
        listen     127.0.0.1:%%PORT_pop3%%;
        protocol   pop3;
    }

    server {
        listen  127.0.0.1:%%PORT_smtp%%;
        protocol  smtp;
        server_name  mx.test;

        smtp_store_and_forward  on;
        smtp_local_domains      example.com;
        smtp_auth_plaintext     on;
    }
}
EOF

# nothing is connected at "nginx -t"

my ($rc, $out) = $t->nginx_t();
is($rc, 0, 'nginx -t') or diag($out);

$t->run();

###############################################################################

sub pop3_login {
    my ($user, $pass) = @_;

    my $c = MailPlus::Test::Client->new($t->port('pop3')) or return '';
    $c->getline();
    $c->pop3("USER $user");
    my $r = $c->pop3("PASS $pass", ) // '';
    $c->pop3('QUIT') if $r =~ /^\+OK/;
    return $r;
}

sub imap_quote {
    my ($s) = @_;
    $s =~ s/([\\"])/\\$1/g;
    return qq{"$s"};
}

sub imap_login {
    my ($user, $pass, $timeout) = @_;

    my $c = MailPlus::Test::Client->new($t->port('imap')) or return '';
    $c->getline();
    my $r = $c->imap('a1', 'LOGIN ' . imap_quote($user) . ' '
        . imap_quote($pass), $timeout);
    $c->imap('a2', 'LOGOUT') if $r =~ /^a1 OK/m;
    return $r;
}

sub smtp_auth {
    my ($user, $pass) = @_;

    my $c = MailPlus::Test::Client->new($t->port('smtp')) or return '';
    $c->getline();
    $c->smtp('EHLO c.example');
    return $c->smtp('AUTH PLAIN ' . encode_base64("\0$user\0$pass", ''));
}

sub smtp_rcpt {
    my ($addr) = @_;

    my $c = MailPlus::Test::Client->new($t->port('smtp')) or return '';
    $c->getline();
    $c->smtp('EHLO c.example');
    $c->smtp('MAIL FROM:<sender@remote.example>');
    return $c->smtp("RCPT TO:<$addr>");
}

###############################################################################

# POP3, IMAP and SMTP AUTH: SHA512-CRYPT, PLAIN and md5crypt hashes as
# PostfixAdmin stores them; the first lookups connect

like(imap_login('alice@example.com', 'secret'), qr/^a1 OK/m,
    'imap: SHA512-CRYPT password');
like(pop3_login('bob@example.com', 'bobpw'), qr/^\+OK/,
    'pop3: PLAIN password, the default pool');
like(pop3_login('carol@example.com', 'carolpw'), qr/^\+OK/,
    'pop3: md5crypt password, host column');
like(smtp_auth('alice@example.com', 'secret'), qr/^235 /, 'smtp: AUTH');

# wrong passwords, unknown and inactive users

like(imap_login('alice@example.com', 'wrong'), qr/^a1 NO /m,
    'imap: wrong password');
like(pop3_login('bob@example.com', 'wrong'), qr/^-ERR /,
    'pop3: wrong password');
like(smtp_auth('carol@example.com', 'wrong'), qr/^535 /,
    'smtp: wrong password');
like(imap_login('nobody@example.com', 'x'), qr/^a1 NO /m, 'unknown user');
like(pop3_login('dave@example.com', 'davepw'), qr/^-ERR /, 'inactive user');
unlike(pop3_login('dave@example.com', 'davepw'), qr/SYS\/TEMP/,
    'inactive user: not a temporary failure');

# recipients: "recipient_query"

like(smtp_rcpt('alice@example.com'), qr/^250 /, 'rcpt: a mailbox');
like(smtp_rcpt('nobody@example.com'), qr/^550 5\.1\.1 /, 'rcpt: unknown');
like(smtp_rcpt('dave@example.com'), qr/^550 5\.1\.1 /, 'rcpt: inactive');
ok(asked('nobody@example.com') >= 1, 'rcpt: the server asked');

# the users file is asked first

like(pop3_login('local', 'localpw'), qr/^\+OK/, 'users file first');
is(asked('local'), 0, 'users file: the directory not asked');

# a login with ' \ and %: a parameter, never interpolated; a boolean
# column false is no "nologin", true is

like(pop3_login($weird, 'weirdpw'), qr/^\+OK/,
    'login with quote, backslash, percent: pop3');
like(imap_login($weird, 'weirdpw'), qr/^a1 OK/m,
    'login with quote, backslash, percent: imap');
is(asked($weird), 2,
    'asked once for each protocol, with the login as it is');
like(pop3_login('nol@example.com', 'nolpw'), qr/^-ERR /, 'nologin column');

# a lookup that does not know the user does not quote the login into SQL:
# the statement with a quote is neither an error nor a match

like(imap_login(q{x' OR ''='@example.com}, 'x'), qr/^a1 NO /m,
    'injection attempt: unknown');
unlike($t->read_file('error.log'), qr/query failed/,
    'injection attempt: no query error');

# two rows, a control character: temporary failures, logged

like(pop3_login('twin@example.com', 'twinpw'), qr/^-ERR \[SYS\/TEMP\]/,
    'two rows: temporary failure');
like($t->read_file('error.log'), qr/ambiguous: the query returned 2 rows/,
    'two rows: logged');
like(imap_login('ctl@example.com', 'ctlpw'), qr/^a1 NO \[UNAVAILABLE\]/m,
    'control character: temporary failure');
like($t->read_file('error.log'),
    qr/the column "pool" has a control character/,
    'control character: logged');

# the cache (a login's answer is kept for its protocol): a second login
# within router_directory_valid does not reach the server; after it (whole
# seconds: up to a second more), the server is asked again

my $n = asked('frank@example.com');
like(pop3_login('frank@example.com', 'frankpw'), qr/^\+OK/, 'cache: first');
like(pop3_login('frank@example.com', 'frankpw'), qr/^\+OK/, 'cache: second');
like(imap_login('frank@example.com', 'frankpw'), qr/^a1 OK/m,
    'cache: imap');
like(imap_login('frank@example.com', 'frankpw'), qr/^a1 OK/m,
    'cache: imap again');
is(asked('frank@example.com') - $n, 2,
    'cache: the server asked once for each protocol');

sleep(4.5);

like(pop3_login('frank@example.com', 'frankpw'), qr/^\+OK/,
    'cache expired: login');
is(asked('frank@example.com') - $n, 3, 'cache expired: asked again');

# more lookups at once than connections: they wait in line, each is
# answered

my @cs = map {
    my $c = MailPlus::Test::Client->new($t->port('pop3'));
    $c->getline();
    $c->pop3("USER many$_\@example.com");
    $c
} 1 .. 20;

$_->send('PASS x') for @cs;

my @replies = map { $_->getline() // 'none' } @cs;

is(scalar(grep { /^-ERR / && !/SYS\/TEMP/ } @replies), 20,
    'lookups waiting for a connection: all answered')
    or diag(join '', @replies);
is(scalar(grep { asked("many$_\@example.com") == 1 } 1 .. 20), 20,
    'lookups waiting for a connection: each asked');

# a query longer than the timeout: closed, a temporary failure; the next
# lookup connects again

my $t0 = time();
like(imap_login('slow@example.com', 'slowpw', 15), qr/^a1 NO \[UNAVAILABLE\]/m,
    'query timeout: temporary failure');
my $took = time() - $t0;
ok($took >= 4.5 && $took < 9, 'query timeout: after the timeout')
    or diag("took $took s");
like($t->read_file('error.log'), qr/timed out waiting for the query/,
    'query timeout: logged');
like(pop3_login('bob@example.com', 'bobpw'), qr/^\+OK/,
    'after a timeout: works again');

# a server that takes every query and answers none: lookups that wait
# behind the hung ones (both connections busy) fail after waiting
# "timeout", not after the queries before them each took theirs; the two
# taken when the first queries time out take a "timeout" of their own

my @hung = map {
    my $c = MailPlus::Test::Client->new($t->port('pop3'), timeout => 20);
    $c->getline();
    $c->pop3("USER $_\@example.com");
    $c
} qw/ slow slow2 slow3 slow4 slow5 /;

$hung[$_]->send('PASS slowpw') for 0, 1;
sleep(0.5);

$t0 = time();
$hung[$_]->send('PASS slowpw') for 2 .. 4;

my (%took, %reply);
my $sel = IO::Select->new(map { $hung[$_]->sock() } 2 .. 4);

while ($sel->count() && time() - $t0 < 20) {
    for my $s ($sel->can_read(1)) {
        my ($i) = grep { $hung[$_]->sock() == $s } 2 .. 4;
        $reply{$i} = $hung[$i]->getline() // 'none';
        $took{$i} = time() - $t0;
        $sel->remove($s);
    }
}

like($reply{$_} // 'none', qr/^-ERR \[SYS\/TEMP\]/,
    "queued behind hung queries $_: temporary failure") for 2 .. 4;

my ($first) = sort { $a <=> $b } values %took;
ok($first >= 4 && $first < 7.5,
    'queued behind hung queries: failed after about the timeout')
    or diag(explain \%took);
like($t->read_file('error.log'), qr/no connection free within the timeout/,
    'queued behind hung queries: logged');

###############################################################################

# the server stopped in the middle of a query: its lookup fails at once
# (57P01), not at the timeout; later logins fail with each protocol's
# temporary error, except those the cache knows (router_directory_stale)

like(pop3_login('gone@example.com', 'gonepw'), qr/^\+OK/,
    'before the stop: login (cached)');

sleep(4.5);

my $mark = length $t->read_file('error.log');

my $c = MailPlus::Test::Client->new($t->port('imap'));
$c->getline();
$c->send('s1 LOGIN slow2@example.com slowpw');

sleep(1);

$t0 = time();
ok($pg->stop('INT'), 'server stopped (fast shutdown)');

like(scalar $c->read_until(qr/^s1 /), qr/^s1 NO \[UNAVAILABLE\]/m,
    'stopped mid-query: temporary failure');
ok(time() - $t0 < 3, 'stopped mid-query: before the timeout');
like($t->read_file('error.log'),
    qr/could not answer for "slow2\@example\.com": FATAL: terminating conn/,
    'stopped mid-query: the server\'s reason logged');

like(pop3_login('late@example.com', 'latepw'),
    qr/^-ERR \[SYS\/TEMP\] /, 'down: pop3 temporary failure');
like(imap_login('late@example.com', 'latepw'),
    qr/^a1 NO \[UNAVAILABLE\] /m, 'down: imap temporary failure');
like(smtp_auth('late@example.com', 'latepw'), qr/^454 4\.7\.0 /,
    'down: smtp temporary failure');
like(smtp_rcpt('late@example.com'), qr/^451 4\.3\.0 /,
    'down: rcpt temporary failure');

like(pop3_login('gone@example.com', 'gonepw'), qr/^\+OK/,
    'down: a stale answer is used');
like($t->read_file('error.log'), qr/a stale answer is used for "gone/,
    'down: the stale answer logged');
like(pop3_login('gone@example.com', 'wrong'), qr/^-ERR /,
    'down: stale, wrong password refused');

my @down = substr($t->read_file('error.log'), $mark)
    =~ /directory "pg" is not reachable/g;
is(scalar @down, 1, 'down: logged once');

# started again: works without reloading nginx

ok($pg->start(), 'server started again');

like(pop3_login('late@example.com', 'latepw'), qr/^\+OK/,
    'up again: pop3');
like(imap_login('late@example.com', 'latepw'), qr/^a1 OK/m,
    'up again: imap');
like(smtp_auth('late@example.com', 'latepw'), qr/^235 /, 'up again: smtp');
like(smtp_rcpt('late@example.com'), qr/^250 /, 'up again: rcpt');

my @up = substr($t->read_file('error.log'), $mark)
    =~ /directory "pg" is reachable again/g;
is(scalar @up, 1, 'up again: logged once');

###############################################################################

# "nginx -t": a query must take the login as $1, and only as that

sub conf_with {
    my ($name, $block) = @_;

    (my $conf = $t->read_file('nginx.conf'))
        =~ s/router_directory pgsql pg \{.*?\n    \}/$block/s;
    $t->write_file($name, $conf);
}

my $connect = "connect \"host=127.0.0.1 port=$pgport dbname=mail\";";

my %bad = (
    'no $1' => [ "query \"SELECT password FROM mailbox WHERE active\";",
        qr/has no parameter \$1/ ],
    'quoted %u' => [ "query \"SELECT password FROM mailbox "
        . "WHERE username = '%u'\";", qr/has a substitution/ ],
    '%s' => [ "query \"SELECT password FROM mailbox WHERE username = %s "
        . "AND \$1 = \$1\";", qr/has a substitution/ ],
    'only a quoted $1' => [ "query \"SELECT password FROM mailbox "
        . "WHERE username = '\$1'\";", qr/has no parameter \$1/ ],
    '$2' => [ "query \"SELECT password FROM mailbox WHERE username = \$1 "
        . "AND domain = \$2\";", qr/a parameter other than \$1/ ],
    'recipient_query without $1' => [ "query \"SELECT 1 WHERE \$1 = ''\"; "
        . "recipient_query \"SELECT 1\";", qr/recipient_query.*no parameter/ ],
);

for my $name (sort keys %bad) {
    my ($q, $re) = @{$bad{$name}};

    conf_with('bad.conf', "router_directory pgsql pg { $connect $q }");

    my ($rc, $out) = $t->nginx_t('bad.conf');
    isnt($rc, 0, "nginx -t refuses: $name");
    like($out, $re, "nginx -t says why: $name");
}

conf_with('bad.conf', 'router_directory pgsql pg { '
    . 'query "SELECT password FROM mailbox WHERE username = $1"; }');
($rc, $out) = $t->nginx_t('bad.conf');
like($out, qr/needs "connect"/, 'nginx -t: no connect');

conf_with('bad.conf', 'router_directory pgsql pg { '
    . 'connect "host=127.0.0.1 nosuchoption=1"; '
    . 'query "SELECT password FROM mailbox WHERE username = $1"; }');
($rc, $out) = $t->nginx_t('bad.conf');
isnt($rc, 0, 'nginx -t refuses: bad connection string');
like($out, qr/invalid "connect".*nosuchoption/, 'nginx -t: bad option named');

# a host name: warned (libpq resolves it with a blocking call); an
# unreachable server: not connected at -t, so not an error

conf_with('bad.conf', 'router_directory pgsql pg { '
    . 'connect "host=db.invalid port=1 dbname=mail"; '
    . 'query "SELECT password FROM mailbox WHERE username = $1"; }');
($rc, $out) = $t->nginx_t('bad.conf');
is($rc, 0, 'nginx -t: a host name passes');
like($out, qr/\[warn\].*the host "db\.invalid" is a name/,
    'nginx -t: a host name warned');

my $closed = $t->port('closed');

conf_with('bad.conf', 'router_directory pgsql pg { '
    . "connect \"host=127.0.0.1 port=$closed dbname=mail\"; "
    . 'query "SELECT password FROM mailbox WHERE username = $1"; }');
($rc, $out) = $t->nginx_t('bad.conf');
is($rc, 0, 'nginx -t: an unreachable server passes') or diag($out);

$t->finish();

###############################################################################
