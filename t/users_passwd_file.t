#!/usr/bin/perl

# The users file in Dovecot's passwd-file layout: the very file Dovecot
# reads as its passdb and userdb is the router's "router_users".  Empty
# fields, a SHA512-CRYPT line with uid, gid and home, "user=" (the login
# the backend knows), "host=" and "port=" (another backend), "pool=",
# "nologin" with "reason=", "nopassword" (the backend checks), an empty
# password (no password matches), legacy "login:password[:target]" lines
# beside them, and "nginx -t" refusing malformed lines with file:line.

use warnings;
use strict;

use Test::More;

use Digest::SHA qw/ sha256 sha512 /;
use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $salt = 'Pf9.xQ2/';
my $crypted = crypt('pwcrypt', "\$6\$$salt\$");
die "crypt() failed: $crypted\n" unless $crypted =~ /^\$6\$/;

my $ssha512 = encode_base64(sha512('pwssha512' . 'nacl4u') . 'nacl4u', '');
my $sha256 = encode_base64(sha256('pwsha256'), '');

# backend b (another address) and c (the address of a, other ports)

my $db = $t->dovecot('b', addr => '127.0.0.2', users => {
    hosted => 'pwhost',
    pooled => 'pwpool',
    legacy2 => 'pwleg2',
    legacy3 => 'pwleg3',
    legacy4 => 'pwleg4',
});

my $dc = $t->dovecot('c', users => {
    ported => 'pwport',
    portedp => 'pwportp',
});

# backend a: its passwd file is replaced by ours below, before any login

my $da = $t->dovecot('a', users => {
    plain => 'x',
    crypted => 'x',
    real => 'x',
    npreal => 'x',
    olduser => 'x',
    ssha512 => 'x',
    sha256 => 'x',
});

my $home = "$da->{dir}/home";
my ($uid, $gid) = (getpwnam('nobody'))[2, 3];

my $passwd = <<"EOF";
# a Dovecot passwd-file, read by Dovecot a and by the router
plain:{PLAIN}pwplain::::::
crypted:{SHA512-CRYPT}$crypted:$uid:$gid:Crypted User:$home/crypted:/bin/false:
ssha512:{SSHA512}${ssha512}::::::
sha256:{SHA256}$sha256:$uid:${gid}::::
alias:{PLAIN}pwalias::::::user=real
real:{PLAIN}pwalias::::::
hosted:{PLAIN}pwhost::::::host=127.0.0.2 proxy=y
pooled:{PLAIN}pwpool::::::pool=b userdb_quota_rule=*:storage=1G
ported:{PLAIN}pwport::::::port=$dc->{imap}
portedp:{PLAIN}pwportp::::::port=$dc->{pop3}
closed:{PLAIN}pwclosed::::::nologin reason=account_closed
np:::::::nopassword user=npreal
npreal:{PLAIN}pwnp::::::
empty:::::::
olduser:{PLAIN}pwold:::::::maildir:~/Maildir

# the router's own layout beside it
# (Dovecot takes them as passdb lines only, and "b" as an invalid uid)
legacy2:{PLAIN}pwleg2
legacy3:{PLAIN}pwleg3:b
legacy4:{PLAIN}pwleg4:127.0.0.2
EOF

$t->write_file("$da->{dir}/passwd", $passwd);

for my $d ($da, $db, $dc) {
    for my $u (keys %{$d->{users}}) {
        $t->seed($d, $u, subject => "on backend $d->{name} for $u");
    }
}

my $conf = <<'EOF';
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%USERS%%;

    router_pool a {
        server 127.0.0.1 imap=%%A_IMAP%% pop3=%%A_POP3%%;
    }

    router_pool b {
        server 127.0.0.2 imap=%%B_IMAP%% pop3=%%B_POP3%%;
    }

    router_rule  "^legacy2$" pool=b;

    router_default_pool  a;
    router_auth_delay    1s;

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    # with "nopassword" the backend's refusal reaches the client
    proxy_pass_error_message  on;

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

$conf =~ s/%%A_IMAP%%/$da->{imap}/;
$conf =~ s/%%A_POP3%%/$da->{pop3}/;
$conf =~ s/%%B_IMAP%%/$db->{imap}/;
$conf =~ s/%%B_POP3%%/$db->{pop3}/;

# nginx.conf: the shared file; bad.conf: a file of the test directory

(my $main = $conf) =~ s/%%USERS%%/$da->{dir}\/passwd/;
(my $bad = $conf) =~ s/%%USERS%%/%%TESTDIR%%\/bad/;

$t->write_file_expand('nginx.conf', $main);
$t->write_file_expand('bad.conf', $bad);

###############################################################################

# malformed lines: "nginx -t" fails and names the file and the line

my $valid = "ok:{PLAIN}pw::::::\n";

my @bad = (
    [ "x:{PLAIN}pw::::::port=abc", 'invalid value of extra field "port"' ],
    [ "x:{PLAIN}pw::::::port=70000",
        'invalid value of extra field "port"' ],
    [ "x:{PLAIN}pw::::::host=a\x01b", 'invalid value of extra field "host"' ],
    [ "x:{PLAIN}pw::::::host=10.9.9.9",
        'host "10.9.9.9" is not a server of a router pool' ],
    [ "x:{PLAIN}pw::::::pool=b host=127.0.0.1",
        'host "127.0.0.1" is not a server of a router pool' ],
    [ "x:{PLAIN}pw::::::pool=nosuch", 'unknown router pool "nosuch"' ],
    [ "x:{PLAIN}pw::::::user=%n\@example.com",
        'variable or quote in the value of extra field "user"' ],
    [ "x:{PLAIN}pw::::::reason=\"closed",
        'variable or quote in the value of extra field "reason"' ],
    [ "x:{PLAIN}pw::::::user=", 'invalid value of extra field "user"' ],
    [ "x:{PLAIN}pw::::::=y", 'extra field without a name' ],
    [ "x:{NOSUCH}pw::::::", 'unknown password scheme' ],
    [ "x:pw::::::", 'password without a scheme' ],
    [ "x:{SHA512-CRYPT}\$6\$short::::::", 'invalid crypt string' ],
    [ "x:{SSHA512}${sha256}::::::", 'invalid SHA-2 hash' ],
    [ "x:{SHA256}${ssha512}::::::", 'invalid SHA-2 hash' ],
    [ "x:{PLAIN}pw:nosuch", 'unknown router pool or server "nosuch"' ],
);

for my $b (@bad) {
    my ($line, $err) = @$b;

    $t->write_file('bad', "$valid# comment\n$line\n");

    my ($rc, $out) = $t->nginx_t('bad.conf');
    (my $name = $line) =~ s/[\x00-\x1f]/?/g;

    isnt($rc, 0, "nginx -t refuses $name");
    like($out, qr/\Q$err\E in router users file \S*bad:3/,
        "nginx -t names the error and bad:3 for $name");
}

# accepted: empty fields, unknown and userdb_ extra fields, bare keys,
# IPv6-like colons in a value, the old layout's mail location

$t->write_file('bad', $valid . <<'EOF');
a1:{PLAIN}pw:::::
a2:{PLAIN}pw:1000:1000:A User, Room 1:/home/a2:/bin/sh:
a3:{PLAIN}pw::::::  nodelay  allow_nets=::1,127.0.0.1/8 userdb_mail=%d/%n
a4:{PLAIN}pw:x:y:z:w:v::mail=maildir:/var/mail/%u
a5:::::::nologin=no nopassword=y
a6:{PLAIN}pw::::::pool=a host=127.0.0.1 port=1 destuser=x user=y
EOF

my ($rc, $out) = $t->nginx_t('bad.conf');
is($rc, 0, 'nginx -t accepts the passwd-file variants') or diag($out);

###############################################################################

$t->run();

# pop3($user, $pass): the subject of the first message, or the error line

sub pop3 {
    my ($user, $pass) = @_;

    my $s = MailPlus::Test::Client->new($t->port('pop3')) or return 'connect';
    $s->getline();
    $s->pop3("USER $user");

    my $r = $s->pop3("PASS $pass");
    return $r unless defined $r && $r =~ /^\+OK/;

    $r = $s->pop3('RETR 1', multi => 1);
    $s->pop3('QUIT');

    return $r =~ /^Subject: (.*?)\r\n/m ? $1 : $r;
}

# imap($user, $pass): the subject of the first message, or the error line

sub imap {
    my ($user, $pass) = @_;

    my $s = MailPlus::Test::Client->new($t->port('imap')) or return 'connect';
    $s->getline();

    my $r = $s->imap('a1', "LOGIN \"$user\" \"$pass\"");
    return $r unless $r =~ /^a1 OK/m;

    $s->imap('a2', 'SELECT INBOX');
    $r = $s->imap('a3', 'FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]');
    $s->imap('a4', 'LOGOUT');

    return $r =~ /^Subject: (.*?)\r\n/m ? $1 : $r;
}

###############################################################################

# Dovecot itself takes the file: a direct login to backend a

my $direct = $t->imap_fetch($da->{imap}, 'crypted', 'pwcrypt', 1);

is($direct =~ /^Subject: (.*?)\r?$/m ? $1 : $direct,
    'on backend a for crypted', 'dovecot reads the file');

# through the router, both protocols

my @ok = (
    [ 'plain', 'pwplain', 'a', 'plain', 'empty fields' ],
    [ 'crypted', 'pwcrypt', 'a', 'crypted', 'SHA512-CRYPT, uid, gid, home' ],
    [ 'ssha512', 'pwssha512', 'a', 'ssha512', 'SSHA512' ],
    [ 'sha256', 'pwsha256', 'a', 'sha256', 'SHA256' ],
    [ 'alias', 'pwalias', 'a', 'real', 'user= is the backend login' ],
    [ 'hosted', 'pwhost', 'b', 'hosted', 'host= another server' ],
    [ 'pooled', 'pwpool', 'b', 'pooled', 'pool=' ],
    [ 'np', 'pwnp', 'a', 'npreal', 'nopassword, the backend checks' ],
    [ 'olduser', 'pwold', 'a', 'olduser', 'the old layout\'s mail field' ],
    [ 'legacy2', 'pwleg2', 'b', 'legacy2', 'legacy line, a rule' ],
    [ 'legacy3', 'pwleg3', 'b', 'legacy3', 'legacy line, target pool' ],
    [ 'legacy4', 'pwleg4', 'b', 'legacy4', 'legacy line, target server' ],
);

for my $c (@ok) {
    my ($u, $pass, $b, $who, $why) = @$c;

    my $want = "on backend $b for $who";

    is(pop3($u, $pass), $want, "pop3 $u: $why");
    is(imap($u, $pass), $want, "imap $u: $why");
}

like($t->dovecot_log($da), qr/user=<real>/, 'backend a saw real for alias');

# port=: the server of pool a, backend c's port

is(imap('ported', 'pwport'), 'on backend c for ported', 'imap port=');
is(pop3('portedp', 'pwportp'), 'on backend c for portedp', 'pop3 port=');

# refusals as the protocols say them

like(pop3('plain', 'wrong'), qr/^-ERR/, 'pop3 wrong password');
like(imap('crypted', 'pwplain'), qr/^a1 NO/m, 'imap wrong crypt password');
like(pop3('ssha512', 'pwsha256'), qr/^-ERR/, 'pop3 wrong SSHA512 password');
like(imap('sha256', 'pwsha25'), qr/^a1 NO/m, 'imap wrong SHA256 password');

like(pop3('closed', 'pwclosed'), qr/^-ERR/, 'pop3 nologin refused');
like(imap('closed', 'pwclosed'), qr/^a1 NO/m, 'imap nologin refused');

ok(wait_for(sub { $t->read_file('error.log') =~ /account_closed/ }, 10),
    'nologin reason in the log');

like(pop3('np', 'wrong'), qr/^-ERR/, 'pop3 nopassword: backend refuses');
like(imap('np', 'wrong'), qr/^a1 NO/m, 'imap nopassword: backend refuses');

like(pop3('empty', 'anything'), qr/^-ERR/, 'pop3 empty password refused');
like(imap('empty', 'anything'), qr/^a1 NO/m, 'imap empty password refused');

$t->finish();

###############################################################################
