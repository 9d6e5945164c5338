#!/usr/bin/perl

# The LDAP directory ("router_directory ldap") against a real slapd with a
# small tree: "nginx -t" on filter templates, POP3 and IMAP logins to
# Dovecot with the password hash read from an attribute ({SSHA},
# {CRYPT}$6$) and with a bind as the user, wrong passwords, unknown users,
# logins that try to change the filter, an entry found twice, a field with
# a control character, SMTP AUTH and RCPT, many lookups at once on few
# connections, the cache, and slapd killed and started again.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Slapd;
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

my $d = $t->dovecot('a', any_password => 1,
    users => { map { $_ => 'x' } qw/ alice bob carol dave weird ctl / });

# passwords as OpenLDAP stores them

*ssha = \&MailPlus::Slapd::ssha;

my $bob_crypt = crypt('bobpw', '$6$ldaptestsalt$');
die "no sha512-crypt\n" unless $bob_crypt =~ /^\$6\$/;

my %pw = (
    nginx => ssha('nginxpw'),
    alice => ssha('alicepw'),
    carol => ssha('carolpw'),
    dave => ssha('davepw'),
    weird => ssha('weirdpw'),
    dup => ssha('duppw'),
    ctl => ssha('ctlpw'),
);

sub person {
    my ($uid, $mail, $pw, @more) = @_;
    return join("\n", "dn: uid=$uid,ou=people,dc=example,dc=org",
        'objectClass: inetOrgPerson', "uid: $uid", "cn: $uid", "sn: $uid",
        "mail: $mail", "userPassword: $pw", @more) . "\n\n";
}

my $ldif = <<"EOF"
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: cn=nginx,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: nginx
userPassword: $pw{nginx}

EOF
    . person('alice', 'alice@example.org', $pw{alice}, 'departmentNumber: a')
    . person('bob', 'bob@example.org', "{CRYPT}$bob_crypt",
        'departmentNumber: a', 'l: 127.0.0.1')
    . person('carol', 'carol@example.org', $pw{carol})
    . person('dave', 'dave@example.org', $pw{dave}, 'departmentNumber: a')
    . person('weird', 'we(i)r*d\\x@example.org', $pw{weird})
    . person('dup1', 'dup@example.org', $pw{dup})
    . person('dup2', 'dup@example.org', $pw{dup})
    . person('ctl', 'ctl@example.org', $pw{ctl},
        'departmentNumber:: ' . encode_base64("a\x01b", ''));

my $ldap = MailPlus::Slapd->new($t, suffix => 'dc=example,dc=org',
    ldif => $ldif, acl => <<'EOF');
access to attrs=userPassword
    by dn.exact="cn=nginx,dc=example,dc=org" read
    by anonymous auth
    by * none
access to *
    by * read
EOF

my $slapd = $ldap->pid();

sub slurp {
    my ($path) = @_;
    open(my $fh, '<', $path) or return '';
    local $/;
    return scalar <$fh>;
}

###############################################################################

# "nginx -t": the templates and parameters of a directory

my $common = <<'EOF';
    url      ldap://127.0.0.1:%%PORT_ldap%%;
    base     "ou=people,dc=example,dc=org";
EOF

sub conf {
    my ($block, %o) = @_;

    my $servers = $o{servers} || '';

    return <<"EOF";
%%LOAD_MODULES%%

events {
}

mail {
    router_users        %%TESTDIR%%/users;
    router_zone         mail_plus:1m;
    router_auth_delay   0;
    router_login_fails  0;
    router_address_fails 0;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3} lmtp=$d->{lmtp};
    }

    router_default_pool  a;

$block

    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;

    queue_spool  %%TESTDIR%%/spool;

$servers
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
}

$t->write_file('users', "nobody-here:{PLAIN}x\n");

sub conf_t {
    my ($params) = @_;
    $t->write_file_expand('t.conf', conf("router_directory ldap {\n"
        . "$common$params\n}"));
    return $t->nginx_t('t.conf');
}

my ($rc, $out);

($rc, $out) = conf_t("filter \"(mail=%u)\";\npassword attribute=userPassword;");

die "the module was built without libldap: install libldap-dev\n"
    if $out =~ /built without libldap/;

is($rc, 0, 'nginx -t: a good directory') or diag($out);

($rc, $out) = conf_t("filter \"(mail=x)\";\npassword bind;");
like($out, qr/has no "%u"/, 'nginx -t: a filter without %u');

($rc, $out) = conf_t("filter \"(mail=%u\";\npassword bind;");
like($out, qr/not balanced|one filter in parentheses/,
    'nginx -t: a filter not balanced');

($rc, $out) = conf_t("filter \"(&(mail=%u)))(uid=*)\";\npassword bind;");
like($out, qr/one filter in parentheses/,
    'nginx -t: a filter closed early');

($rc, $out) = conf_t("filter '(mail=\"%u\")';\npassword bind;");
like($out, qr/in quotes/, 'nginx -t: %u in quotes');

($rc, $out) = conf_t("filter \"(mail=%s)\";\npassword bind;");
like($out, qr/unknown escape/, 'nginx -t: an unknown % escape');

($rc, $out) = conf_t("filter \"(%u=x)\";\npassword bind;");
like($out, qr/outside an assertion's value/,
    'nginx -t: %u as an attribute');

($rc, $out) = conf_t("filter \"(mail=\\zz%u)\";\npassword bind;");
like($out, qr/two hex digits/, 'nginx -t: a bad \\XX escape');

($rc, $out) = conf_t("filter \"(mail=%u)\";");
like($out, qr/needs "password/, 'nginx -t: no password mode');

($rc, $out) = conf_t("filter \"(mail=%u)\";\npassword bind;\n"
    . "recipient_filter \"(mail=x)\";");
like($out, qr/"recipient_filter" .* has no "%u"/,
    'nginx -t: a recipient filter without %u');

($rc, $out) = conf_t("filter \"(mail=%u)\";\npassword bind;\nscope all;");
like($out, qr/"scope" must be/, 'nginx -t: a bad scope');

($rc, $out) = conf_t("filter \"(mail=%u)\";\npassword bind;\nbind_dn x;");
like($out, qr/go together/, 'nginx -t: bind_dn without its password');

($rc, $out) = conf_t("filter \"(mail=%u)\";\npassword bind;\nfields pool;");
like($out, qr/invalid field/, 'nginx -t: a field without an attribute');

($rc, $out) = conf_t("filter \"(mail=%u)\";\npassword bind;\nsizelimit 1;");
like($out, qr/unknown parameter "sizelimit"/, 'nginx -t: an unknown parameter');

$t->write_file_expand('t.conf', conf(<<'EOF'));
router_directory ldap {
    url      ldap://127.0.0.1:%%PORT_nothing%%;
    base     "ou=people,dc=example,dc=org";
    filter   "(mail=%u)";
    password bind;
}
EOF
($rc, $out) = $t->nginx_t('t.conf');
is($rc, 0, 'nginx -t: a server not listening is not an error') or diag($out);

$t->write_file_expand('t.conf', conf(<<'EOF'));
router_directory ldap {
    url      ldap://localhost:%%PORT_nothing%%/;
    base     "ou=people,dc=example,dc=org";
    filter   "(mail=%u)";
    password bind;
}
EOF
($rc, $out) = $t->nginx_t('t.conf');
is($rc, 0, 'nginx -t: a host name') or diag($out);

$t->write_file_expand('t.conf', conf(<<'EOF'));
router_directory ldap {
    url      ldap://127.0.0.1:389/dc=example,dc=org;
    base     "ou=people,dc=example,dc=org";
    filter   "(mail=%u)";
    password bind;
}
EOF
($rc, $out) = $t->nginx_t('t.conf');
like($out, qr/invalid "url"/, 'nginx -t: a URL with a DN');

$t->write_file_expand('t.conf', conf(<<'EOF'));
router_directory ldap {
    url      ldaps://127.0.0.1:636;
    base     "ou=people,dc=example,dc=org";
    filter   "(mail=%u)";
    password bind;
}
EOF
($rc, $out) = $t->nginx_t('t.conf');
like($out, qr/needs "url ldap:/, 'nginx -t: ldaps:// refused');

###############################################################################

# the service: the hash from an attribute (the first directory), a bind as
# the user (the second, by uid, searching anonymously)

$t->write_file_expand('nginx.conf', conf(<<'EOF', servers => <<'EOF'));
router_directory ldap {
    url           ldap://127.0.0.1:%%PORT_ldap%%;
    bind_dn       "cn=nginx,dc=example,dc=org";
    bind_password nginxpw;
    base          "ou=people,dc=example,dc=org";
    scope         sub;
    filter        "(&(objectClass=inetOrgPerson)(mail=%u))";
    password      attribute=userPassword;
    fields        pool=departmentNumber host=l user=uid;
    recipient_filter "(&(objectClass=inetOrgPerson)(mail=%u))";
    timeout       3s;
    connections   2;
}

router_directory ldap bind {
    url           ldap://127.0.0.1:%%PORT_ldap%%/;
    base          "ou=people,dc=example,dc=org";
    scope         one;
    filter        "(&(objectClass=inetOrgPerson)(uid=%u))";
    password      bind;
    fields        user=uid;
    timeout       3s;
    connections   1;
}
EOF
server {
    listen    127.0.0.1:%%PORT_pop3%%;
    protocol  pop3;
    router_proxy  on;
}

server {
    listen    127.0.0.1:%%PORT_imap%%;
    protocol  imap;
    router_proxy  on;
}

server {
    listen    127.0.0.1:%%PORT_smtp%%;
    protocol  smtp;
    server_name  mx.test;

    smtp_store_and_forward  on;
    smtp_local_domains      example.org;
    smtp_auth_plaintext     on;
    smtp_max_errors         50;
}
EOF

$t->run();

###############################################################################

sub pop3 {
    my ($user, $pass) = @_;

    my $s = MailPlus::Test::Client->new($t->port('pop3')) or return '';
    $s->getline() =~ /^\+OK/ or return '';
    $s->pop3("USER $user") =~ /^\+OK/ or return 'USER refused';
    my $r = $s->pop3("PASS $pass");
    $r = $s->pop3('STAT') if $r =~ /^\+OK/;
    $s->pop3('QUIT');

    return $r // '';
}

sub imap_quote {
    my ($v) = @_;
    $v =~ s/(["\\])/\\$1/g;
    return "\"$v\"";
}

sub imap {
    my ($user, $pass) = @_;

    my $s = MailPlus::Test::Client->new($t->port('imap')) or return '';
    $s->getline() =~ /^\* OK/ or return '';
    my $r = $s->imap('a1', 'LOGIN ' . imap_quote($user) . ' '
        . imap_quote($pass));
    $r = $s->imap('a2', 'SELECT INBOX') if $r =~ /^a1 OK/m;
    $s->imap('a3', 'LOGOUT');

    return $r // '';
}

sub smtp {
    my $s = MailPlus::Test::Client->new($t->port('smtp')) or return;
    $s->getline();
    $s->smtp('EHLO c.example');
    return $s;
}

# the password from an attribute

like(pop3('alice@example.org', 'alicepw'), qr/^\+OK 0 /,
    'pop3: {SSHA} from the attribute');
like(pop3('alice@example.org', 'wrong'), qr/^-ERR (?!\[SYS)/,
    'pop3: wrong password');
like(imap('bob@example.org', 'bobpw'), qr/^a2 OK/m,
    'imap: {CRYPT}$6$ from the attribute, host= from "l"');
like(imap('bob@example.org', 'alicepw'), qr/^a1 NO \[AUTHENTICATIONFAILED\]/m,
    'imap: wrong password');
like(pop3('nobody@example.org', 'x'), qr/^-ERR (?!\[SYS)/,
    'pop3: unknown user');

# a bind as the user

like(pop3('carol', 'carolpw'), qr/^\+OK 0 /, 'pop3: bind as the user');
like(pop3('carol', 'alicepw'), qr/^-ERR (?!\[SYS)/,
    'pop3: bind as the user, wrong password');
like(imap('carol', 'carolpw'), qr/^a2 OK/m, 'imap: bind as the user');
like(imap('carol', ''), qr/^a1 NO (?!\[UNAVAILABLE)/m,
    'imap: an empty password is refused, not an anonymous bind');
like(imap('alice', 'alicepw'), qr/^a2 OK/m,
    'imap: bind as the user, found by uid');
like(imap('alice', 'wrong'), qr/^a1 NO \[AUTHENTICATIONFAILED\]/m,
    'imap: bind as the user by uid, wrong password');

# the filter: what the login has is matched as itself, never as a filter

like(pop3('we(i)r*d\\x@example.org', 'weirdpw'), qr/^\+OK 0 /,
    'pop3: a login with "(", ")", "*" and "\\" matched as is');
like(imap('we(i)r*d\\x@example.org', 'weirdpw'), qr/^a2 OK/m,
    'imap: the same');

for my $login ('*', '*@example.org', 'a*@example.org',
    'alice@example.org)(mail=*', '*)(uid=alice', 'alice\\2a',
    'al\\69ce@example.org', 'we(i)r*d\\2ax@example.org', 'al(ice')
{
    like(pop3($login, 'alicepw'), qr/^-ERR (?!\[SYS)/,
        "pop3: \"$login\" matches no one");
}

like(pop3('*', 'carolpw'), qr/^-ERR (?!\[SYS)/,
    'pop3: "*" as a uid matches no one either');

# an entry found twice, a value with a control character

like(pop3('dup@example.org', 'duppw'), qr/^-ERR \[SYS\/TEMP\]/,
    'pop3: two entries found: a temporary failure');
like(pop3('ctl@example.org', 'ctlpw'), qr/^-ERR \[SYS\/TEMP\]/,
    'pop3: a control character in a field: a temporary failure');

like($t->read_file('error.log'), qr/more than one entry/,
    'two entries logged');
like($t->read_file('error.log'),
    qr/"departmentNumber" for "ctl\@example.org" has a control character/,
    'the control character logged');

# SMTP AUTH, RCPT

my $s = smtp();
like($s->smtp('AUTH PLAIN '
    . encode_base64("\0alice\@example.org\0alicepw", '')), qr/^235 /,
    'smtp: AUTH PLAIN');

$s = smtp();
like($s->smtp('AUTH PLAIN ' . encode_base64("\0carol\0carolpw", '')),
    qr/^235 /, 'smtp: AUTH PLAIN, bind as the user');

$s = smtp();
like($s->smtp('AUTH PLAIN '
    . encode_base64("\0alice\@example.org\0wrong", '')), qr/^535 /,
    'smtp: AUTH PLAIN, wrong password');

# recipients, answered by the directory later than at once

{

$s = smtp();
like($s->smtp('MAIL FROM:<x@remote.example>'), qr/^250 /, 'smtp: MAIL');
like($s->smtp('RCPT TO:<alice@example.org>'), qr/^250 /,
    'smtp: RCPT of a user of the directory');
like($s->smtp('RCPT TO:<nobody@example.org>'), qr/^550 /,
    'smtp: RCPT of an unknown user');
like($s->smtp('RCPT TO:<*@example.org>'), qr/^550 /,
    'smtp: RCPT of "*" matches no one');
$s->smtp('QUIT');
}

# many lookups at once, more than the connections: they wait in line

my @c;

for my $i (1 .. 8) {
    my $c = MailPlus::Test::Client->new($t->port('pop3')) or next;
    $c->getline();
    $c->pop3('USER alice@example.org');
    push @c, $c;
}

$_->send($_ == $c[3] ? 'PASS alicepw' : "PASS wrong$_") for @c;

my @r = map { $_->getline() // '' } @c;

is(scalar(grep { /^\+OK/ } @r), 1, 'eight at once: one right');
is(scalar(grep { /^-ERR (?!\[SYS)/ } @r), 7, 'eight at once: seven wrong')
    or diag(join('', @r));

undef @c;

# a lookup's answer replaces what the cache knew of the user (its right
# password too): one more login makes alice's password known again

like(pop3('alice@example.org', 'alicepw'), qr/^\+OK 0 /, 'pop3: once more');

# the cache; slapd gone: temporary failures for what is not cached

$ldap->kill();

like(pop3('alice@example.org', 'alicepw'), qr/^\+OK 0 /,
    'slapd gone: pop3, a cached answer');
like(imap('carol', 'carolpw'), qr/^a2 OK/m,
    'slapd gone: imap, a cached bind');
like(pop3('dave@example.org', 'davepw'), qr/^-ERR \[SYS\/TEMP\]/,
    'slapd gone: pop3, temporary failure');
like(imap('dave@example.org', 'davepw'), qr/^a1 NO \[UNAVAILABLE\]/m,
    'slapd gone: imap, temporary failure');

$s = smtp();
like($s->smtp('AUTH PLAIN '
    . encode_base64("\0dave\@example.org\0davepw", '')), qr/^454 /,
    'slapd gone: smtp AUTH, temporary failure');

{

$s = smtp();
$s->smtp('MAIL FROM:<x@remote.example>');
like($s->smtp('RCPT TO:<dave@example.org>'), qr/^4\d\d /,
    'slapd gone: RCPT, temporary failure');
$s->smtp('QUIT');
}

like($t->read_file('error.log'), qr/directory "ldap" is not reachable/,
    'the state logged');

# started again

$ldap->start();
$slapd = $ldap->pid();

like(pop3('dave@example.org', 'davepw'), qr/^\+OK 0 /,
    'slapd back: pop3');
like(imap('dave@example.org', 'davepw'), qr/^a2 OK/m, 'slapd back: imap');
like(pop3('dave', 'davepw'), qr/^\+OK 0 /, 'slapd back: bind as the user');

like($t->read_file('error.log'), qr/directory "ldap" is reachable again/,
    'the state logged again');

# slapd stopped: it accepts and does not answer, each step times out

kill 'STOP', $slapd;

# every thread of slapd stopped before a question is asked

MailPlus::Test::wait_for(sub {
    my @st = map { slurp($_) }
        glob("/proc/$slapd/task/*/stat");
    return @st && !grep { !/\) [tT] / } @st;
}, 10) or diag('slapd did not stop');

my $start = time();
like(pop3('dave@example.org', 'other'), qr/^-ERR \[SYS\/TEMP\]/,
    'slapd stopped: a search times out');
like(imap('carol', 'other'), qr/^a1 NO \[UNAVAILABLE\]/m,
    'slapd stopped: a bind times out');
cmp_ok(time() - $start, '>=', 5, 'slapd stopped: after the timeouts');

kill 'CONT', $slapd;

like($t->read_file('error.log'), qr/is not reachable: timed out/,
    'the timeout logged');

like(pop3('dave@example.org', 'davepw'), qr/^\+OK 0 /,
    'slapd going on: pop3');
like(imap('carol', 'carolpw'), qr/^a2 OK/m, 'slapd going on: imap');

unlike($t->read_file('error.log'), qr/alicepw|carolpw|davepw/,
    'no password in the log');

$t->finish();

###############################################################################
