#!/usr/bin/perl

# Token logins and Dovecot.  A real Dovecot validates JWTs itself, with
# its "oauth2" passdb in local mode (the keys in a dict of files, one per
# azp/alg/kid): as the router's verifier ("router_token_dovecot", through a
# "router_directory dovecot" block: good, bad, another user's and
# XOAUTH2 tokens, Dovecot's auth service down), and as the backend of
# the module's proxy after a token login ("token_login" of a pool): the
# token passed on with OAUTHBEARER for IMAP and POP3, a Dovecot master
# user login, a backend that offers no token mechanism.  nginx -t refuses
# an unknown directory name, a directory that is not Dovecot's and an
# unreadable master password file.  No token is ever in nginx's log.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use MIME::Base64 qw/ encode_base64 decode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;
use MailPlus::Token;

###############################################################################

my $t = MailPlus::Test->new();

my $dir = $t->testdir();
my $k = MailPlus::Token->new($t);

# Dovecot's keys: "shared/<azp>/<alg>/<kid>" of the dict, a token without
# "azp" looks in "default"; a file per key, its public PEM

for my $key ([ 'RS256', 'rsa1' ], [ 'ES256', 'ec1' ]) {
    my ($alg, $kid) = @$key;
    mkdir "$dir/keys";
    mkdir "$dir/keys/default";
    mkdir "$dir/keys/default/$alg";
    system('openssl', 'pkey', '-in', $k->key_file($kid), '-pubout',
        '-out', "$dir/keys/default/$alg/$kid") == 0
        or die "openssl pkey $kid\n";
}

system('chmod', '-R', 'a+rX', "$dir/keys");

$t->write_file('oauth2.conf', <<"EOF");
introspection_mode = local
local_validation_key_dict = fs:posix:prefix=$dir/keys/
username_attribute = email
issuers = @{[ $k->issuer ]}
EOF

$t->write_file('master.passwd', "mp:{PLAIN}masterpw\n");
$t->write_file('master.pw', "masterpw\n");

# b: the mailboxes, the token mechanisms, a master user, the auth-client
# socket for nginx

my %users = (
    'alice@example.com' => 'pwA', 'bob@example.com' => 'pwB',
    'carol@example.com' => 'pwC', 'dave@example.com' => 'pwD',
);

my %dovecot_b = (users => \%users, extra => <<"EOF");
instance_name = mailplus-tokdv-$$
auth_mechanisms = plain login oauthbearer xoauth2
auth_failure_delay = 0
auth_verbose = yes
auth_master_user_separator = *
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN username_format=%u $dir/master.passwd
}
passdb {
  driver = oauth2
  mechanisms = oauthbearer xoauth2
  args = $dir/oauth2.conf
}
service auth {
  unix_listener $dir/auth-client {
    mode = 0666
  }
}
EOF

my $db = $t->dovecot('b', %dovecot_b);

# c: no token mechanism

my $dc = $t->dovecot('c', addr => '127.0.0.2', users => \%users);

# d: token mechanisms, but the P-256 key only: it refuses RS256 tokens

mkdir "$dir/keys-d";
mkdir "$dir/keys-d/default";
mkdir "$dir/keys-d/default/ES256";
system('cp', "$dir/keys/default/ES256/ec1", "$dir/keys-d/default/ES256/ec1");
system('chmod', '-R', 'a+rX', "$dir/keys-d");

(my $oauth2_d = $t->read_file('oauth2.conf')) =~ s!/keys/!/keys-d/!;
$t->write_file('oauth2-d.conf', $oauth2_d);

my $dd = $t->dovecot('d', addr => '127.0.0.3', users => \%users,
    extra => <<"EOF");
auth_mechanisms = plain login oauthbearer xoauth2
auth_failure_delay = 0
passdb {
  driver = oauth2
  mechanisms = oauthbearer xoauth2
  args = $dir/oauth2-d.conf
}
EOF

# before nginx: Dovecot takes a good token and refuses a bad one itself

my $good = $k->token(user => 'alice@example.com');

{
    my $s = MailPlus::Test::Client->new($db->{imap});
    $s->getline();
    my $ir = encode_base64($k->oauthbearer($good,
        user => 'alice@example.com'), '');
    like($s->imap('a', "AUTHENTICATE OAUTHBEARER $ir"), qr/^a OK/m,
        'Dovecot validates a token locally');

    # from another address: Dovecot's penalty for it stays there

    $s = MailPlus::Test::Client->new($db->{imap}, local => '127.0.0.3');
    $s->getline();
    $ir = encode_base64($k->oauthbearer($good . 'x',
        user => 'alice@example.com'), '');
    $s->send("a AUTHENTICATE OAUTHBEARER $ir");
    like($s->getline() // '', qr/^\+ /, 'Dovecot: a bad token continued');
    $s->send('AQ==');
    like($s->getline() // '', qr/^a NO/, 'Dovecot: then refused');
}

$t->write_file('users', <<"EOF");
alice\@example.com:{PLAIN}pwA:tok
bob\@example.com:{PLAIN}pwB:master
carol\@example.com:{PLAIN}pwC:none
dave\@example.com:{PLAIN}pwD:other
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_auth_delay 0;
    router_zone   z:1m;
    router_users  %%TESTDIR%%/users;

    router_directory dovecot dv {
        auth     unix:$dir/auth-client;
        timeout  3s;
    }

    router_token_dovecot dv;

    router_pool tok {
        server 127.0.0.1 imap=$db->{imap} pop3=$db->{pop3};
        token_login token;
    }

    router_pool master {
        server 127.0.0.1 imap=$db->{imap} pop3=$db->{pop3};
        token_login master mp %%TESTDIR%%/master.pw;
    }

    router_pool none {
        server 127.0.0.2 imap=$dc->{imap} pop3=$dc->{pop3};
    }

    router_pool other {
        server 127.0.0.3 imap=$dd->{imap} pop3=$dd->{pop3};
    }

    auth_http 127.0.0.1:%%PORT_http%%/auth;

    router_token_auth oauthbearer xoauth2;

    server {
        listen     127.0.0.1:%%PORT_pop3%%;
        protocol   pop3;
        router_proxy on;
    }

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        router_proxy on;
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

$t->run();

###############################################################################

my $http = HTTP::Tiny->new(timeout => 20);

# the auth_http endpoint asked as a stock server asks it for a token login

sub auth {
    my ($method, $user, $token, $proto) = @_;

    my $r = $http->get('http://127.0.0.1:' . $t->port('http') . '/auth',
        { headers => {
            'Auth-Method' => $method, 'Auth-User' => $user,
            'Auth-Pass' => $token, 'Auth-Protocol' => $proto || 'imap',
            'Auth-Login-Attempt' => 1, 'Client-IP' => '127.0.0.1',
        } });

    return $r->{headers};
}

# router_token_dovecot: the token checked by Dovecot's oauth2 passdb

my $h = auth('oauthbearer', 'alice@example.com', $good);
is($h->{'auth-status'}, 'OK', 'dovecot verifier: a good token');
is($h->{'auth-user'}, 'alice@example.com', 'dovecot verifier: its user');

$h = auth('oauthbearer', 'bob@example.com', $k->token(user => 'bob@example.com',
    alg => 'ES256'));
is($h->{'auth-status'}, 'OK', 'dovecot verifier: ES256');
is($h->{'auth-user'}, 'bob@example.com*mp',
    'dovecot verifier: the user named, as the master user logs in');

# Dovecot 2.3's OAUTHBEARER wants the user in the GS2 header: a token
# login without one is refused there ("Missing username or token")

$h = auth('oauthbearer', '', $good);
isnt($h->{'auth-status'}, 'OK', 'dovecot verifier: no SASL user refused');

$h = auth('xoauth2', 'alice@example.com', $good);
is($h->{'auth-status'}, 'OK', 'dovecot verifier: XOAUTH2');

$h = auth('oauthbearer', 'alice@example.com', $good . 'x');
isnt($h->{'auth-status'}, 'OK', 'dovecot verifier: a bad signature refused');
ok($h->{'auth-error-sasl'}, 'dovecot verifier: the RFC 7628 status');

$h = auth('oauthbearer', 'alice@example.com',
    $k->token(user => 'alice@example.com', claims => { exp => time() - 600 }));
isnt($h->{'auth-status'}, 'OK', 'dovecot verifier: an expired token');

$h = auth('oauthbearer', 'alice@example.com',
    $k->token(user => 'alice@example.com', key => 'rogue'));
isnt($h->{'auth-status'}, 'OK', 'dovecot verifier: another key\'s');

$h = auth('oauthbearer', 'alice@example.com',
    $k->token(user => 'bob@example.com'));
isnt($h->{'auth-status'}, 'OK', 'dovecot verifier: another user\'s token');

# the backend login after a token login, through the module's proxy (the
# client side of token logins is the router's: skipped where it is not
# offered yet)

sub imap_caps {
    my $s = MailPlus::Test::Client->new($t->port('imap')) or return '';
    my $g = $s->getline() // '';
    return $g . $s->imap('c', 'CAPABILITY');
}

SKIP: {
    skip 'the proxy offers no AUTH=OAUTHBEARER', 15
        unless imap_caps() =~ /AUTH=OAUTHBEARER/i;

    my $tok = sub { $k->token(user => $_[0]) };
    my $ir = sub {
        encode_base64($k->oauthbearer($_[1], user => $_[0]), '');
    };

    # IMAP, token_login token: Dovecot checks the token again

    my $s = MailPlus::Test::Client->new($t->port('imap'));
    $s->getline();
    like($s->imap('a', 'AUTHENTICATE OAUTHBEARER '
        . $ir->('alice@example.com', $good)), qr/^a OK/m,
        'imap token_login token: logged in');
    like($s->imap('b', 'SELECT INBOX'), qr/^b OK/m,
        'imap token_login token: the mailbox');
    $s->imap('z', 'LOGOUT');

    like($t->dovecot_log($db), qr/Login: user=<alice\@example\.com>, (?#
        )method=OAUTHBEARER/, 'imap token_login token: OAUTHBEARER at Dovecot');

    # IMAP with XOAUTH2 from the client, token_login master

    $s = MailPlus::Test::Client->new($t->port('imap'));
    $s->getline();
    like($s->imap('a', 'AUTHENTICATE XOAUTH2 ' . encode_base64(
        $k->xoauth2('bob@example.com', $tok->('bob@example.com')), '')),
        qr/^a OK/m, 'imap token_login master: logged in');
    like($s->imap('b', 'SELECT INBOX'), qr/^b OK/m,
        'imap token_login master: the mailbox');
    $s->imap('z', 'LOGOUT');

    like($t->dovecot_log($db), qr/Login: user=<bob\@example\.com>.*(?#
        )method=PLAIN|Login: user=<bob\@example\.com>/,
        'imap token_login master: bob at Dovecot');

    # POP3, both

    $s = MailPlus::Test::Client->new($t->port('pop3'));
    $s->getline();
    like($s->pop3('AUTH OAUTHBEARER ' . $ir->('alice@example.com', $good)),
        qr/^\+OK/, 'pop3 token_login token: logged in');
    like($s->pop3('STAT'), qr/^\+OK/, 'pop3 token_login token: STAT');
    $s->pop3('QUIT');

    $s = MailPlus::Test::Client->new($t->port('pop3'));
    $s->getline();
    like($s->pop3('AUTH OAUTHBEARER ' . $ir->('bob@example.com',
        $tok->('bob@example.com'))), qr/^\+OK/,
        'pop3 token_login master: logged in');
    like($s->pop3('STAT'), qr/^\+OK/, 'pop3 token_login master: STAT');
    $s->pop3('QUIT');

    # a backend that refuses the token: its error exchange ended with the
    # dummy response, the client refused as for a wrong password

    $s = MailPlus::Test::Client->new($t->port('imap'));
    $s->getline();
    like($s->imap('a', 'AUTHENTICATE OAUTHBEARER '
        . $ir->('dave@example.com', $tok->('dave@example.com'))),
        qr/^a NO/m, 'imap: the backend refuses the token');

    $s = MailPlus::Test::Client->new($t->port('pop3'));
    $s->getline();
    like($s->pop3('AUTH OAUTHBEARER ' . $ir->('dave@example.com',
        $tok->('dave@example.com'))), qr/^-ERR/,
        'pop3: the backend refuses the token');

    like($t->dovecot_log($dd), qr/auth failed.*user=<dave\@example\.com>, (?#
        )method=OAUTHBEARER/, 'the backend checked the token');

    # a backend without a token mechanism: a backend error, logged

    $s = MailPlus::Test::Client->new($t->port('imap'));
    $s->getline();
    like($s->imap('a', 'AUTHENTICATE OAUTHBEARER '
        . $ir->('carol@example.com', $tok->('carol@example.com'))),
        qr/^a NO/m, 'no token mechanism: refused');

    ok(wait_for(sub { $t->read_file('error.log')
        =~ /offers no token mechanism/ }, 5),
        'no token mechanism: logged');
}

# Dovecot's auth service down: a temporary failure.  Its auth process
# serves its clients on after its master is gone: stopped by its PID,
# found by the instance's name

sub leftovers {
    my @pids;

    for my $p (glob '/proc/[0-9]*') {
        open my $fh, '<', "$p/cmdline" or next;
        my $cmd = <$fh> // '';
        push @pids, $p =~ s!/proc/!!r
            if $cmd =~ m!^dovecot-mailplus-tokdv-$$/!;
    }

    return @pids;
}

ok($t->stop_dovecot($db, 10), 'Dovecot stopped');
kill 'TERM', leftovers();
ok(wait_for(sub { !leftovers() }, 10), 'its auth process too');

$h = auth('oauthbearer', 'alice@example.com', $good);
like($h->{'auth-status'} // '', qr/Temporary authentication failure/,
    'dovecot verifier: Dovecot down, a temporary failure')
    or diag(explain($h));

like($t->read_file('error.log'), qr/could not check a token/,
    'dovecot verifier: Dovecot down logged');

# no token in nginx's log

# (but in nginx's own debug lines of the auth_http headers, request and
# response, where the token is the password of a stock server's login)

my $log = join '', grep { /^\d{4}\/\d\d\/\d\d / && !/http header: "Auth-Pass: / }
    split /^/, $t->read_file('error.log');
my $sig = $k->signature($good);
unlike($log, qr/\Q$sig\E/, 'no token in the error log');

$t->stop();

###############################################################################

# nginx -t

my $nconf = 0;

$t->write_file('users-t', "x:{PLAIN}x:a\n");

sub conf_with {
    my ($mail) = @_;
    my $name = 'test' . ++$nconf . '.conf';
    $t->write_file_expand($name, <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    router_zone   z:1m;
    router_users  %%TESTDIR%%/users-t;

    router_pool a {
        server 127.0.0.1 imap=$db->{imap} pop3=$db->{pop3};
    }
$mail
}
EOF
    return $name;
}

my ($rc, $out) = $t->nginx_t(conf_with(<<"EOF"));
    router_directory dovecot dv {
        auth unix:$dir/auth-client;
    }
    router_token_dovecot other;
EOF
isnt($rc, 0, 'nginx -t: an unknown directory refused');
like($out, qr/no "router_directory" named "other"/,
    'nginx -t: an unknown directory named');

($rc, $out) = $t->nginx_t(conf_with(<<"EOF"));
    router_pool b {
        server 127.0.0.1 imap=$db->{imap} pop3=$db->{pop3};
        token_login master mp %%TESTDIR%%/no-such-file;
    }
EOF
isnt($rc, 0, 'nginx -t: an unreadable master password file refused');
like($out, qr/no-such-file/, 'nginx -t: the file named');

$t->write_file('master.bad', "master\x01pw\n");

($rc, $out) = $t->nginx_t(conf_with(<<"EOF"));
    router_pool b {
        server 127.0.0.1 imap=$db->{imap} pop3=$db->{pop3};
        token_login master mp %%TESTDIR%%/master.bad;
    }
EOF
isnt($rc, 0, 'nginx -t: a control byte in the master password refused');
unlike($out, qr/master\x01pw|masterpw/, 'nginx -t: the password not shown');

($rc, $out) = $t->nginx_t(conf_with(<<"EOF"));
    router_pool b {
        server 127.0.0.1 imap=$db->{imap} pop3=$db->{pop3};
        token_login master mp %%TESTDIR%%/master.pw;
    }
EOF
is($rc, 0, 'nginx -t: token_login master') or diag($out);

done_testing();
