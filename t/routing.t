#!/usr/bin/perl

# Routing: users reach their own backend over POP3 and IMAP; rules with
# captures rewrite the login; a two-server pool hashes users; every
# password scheme of the users file works; "auth backend" pools let the
# backend check the password.

use warnings;
use strict;

use Test::More;

use Digest::SHA qw/ sha1 /;
use HTTP::Tiny;
use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

# users of the hashing pool exist on both backends

my @hashed = map { sprintf('u%02d', $_) } 0 .. 15;
my %hpw = map { $_ => 'hashpw' } @hashed;

# every scheme of the users file: login => [ password, users file entry ]

my $salt = 'Ab3.Cd4/';
my %schemes = (
    s_sha512 => [ 'pw512', '{SHA512-CRYPT}' . crypt('pw512', "\$6\$$salt\$") ],
    s_sha256 => [ 'pw256', '{SHA256-CRYPT}' . crypt('pw256', "\$5\$$salt\$") ],
    s_blf2y => [ 'pwblf',
        '{BLF-CRYPT}' . crypt('pwblf', '$2y$05$abcdefghijklmnopqrstuu') ],
    s_blf2b => [ 'pwblfb',
        '{BLF-CRYPT}' . crypt('pwblfb', '$2b$05$ABCDEFGHIJKLMNOPQRSTUu') ],
    s_ssha => [ 'pwssha',
        '{SSHA}' . encode_base64(sha1('pwssha' . 'salt4u') . 'salt4u', '') ],
    s_sha => [ 'pwsha', '{SHA}' . encode_base64(sha1('pwsha'), '') ],
    s_plain => [ 'pw-plain!', '{PLAIN}pw-plain!' ],
    s_bare6 => [ 'pwbare6', crypt('pwbare6', "\$6\$$salt\$") ],
    s_bare5 => [ 'pwbare5', crypt('pwbare5', "\$5\$$salt\$") ],
    s_bare2y => [ 'pwbare2y',
        crypt('pwbare2y', '$2y$05$zyxwvutsrqponmlkjihgfe') ],
);

for my $s (sort keys %schemes) {
    my $h = $schemes{$s}[1];
    die "crypt() failed for $s: $h\n" unless defined $h && length $h > 15;
}

my $da = $t->dovecot('a', users => {
    alice => 'secretA',
    dave => 'secretD',
    frank => 'frankpw',
    %hpw,
    map { $_ => $schemes{$_}[0] } keys %schemes,
});

my $db = $t->dovecot('b', addr => '127.0.0.2', users => {
    bob => 'secretB',
    carol => 'secretC',
    erin => 'secretE',
    %hpw,
});

for my $d ($da, $db) {
    for my $u (keys %{$d->{users}}) {
        $t->seed($d, $u, subject => "on backend $d->{name} for $u");
    }
}

my $users = <<'EOF';
# users of pool a, the default
alice:{PLAIN}secretA
dave:{PLAIN}secretD:a

# users of pool b: by pool name, by rule, by server address
bob:{PLAIN}secretB:b
carol@b.example:{PLAIN}secretC
erin:{PLAIN}secretE:127.0.0.2

EOF

$users .= "$_:$schemes{$_}[1]\n" for sort keys %schemes;

$t->write_file('users', $users);

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%TESTDIR%%/users;

    router_pool a {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3};
    }

    router_pool b {
        server 127.0.0.2 imap=$db->{imap} pop3=$db->{pop3};
    }

    router_pool pass {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3};
        auth backend;
    }

    router_pool h {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3};
        server 127.0.0.2 imap=$db->{imap} pop3=$db->{pop3};
        auth backend;
    }

    router_rule "^(.+)\@b\\.example\$" pool=b login=\$1;
    router_rule "^(.+)\@pass\\.example\$" pool=pass login=\$1;
    router_rule "^(.+)\@h\\.example\$" pool=h login=\$1;

    router_default_pool  a;
    router_auth_delay    1s;

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    # with "auth backend" the backend's refusal reaches the client
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

$t->run();

###############################################################################

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

# auth($user, $pass, $protocol): the auth_http answer, as a hash

my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 10);

sub auth {
    my ($user, $pass, $proto) = @_;

    my $r = $http->get('http://127.0.0.1:' . $t->port('http') . '/auth', {
        headers => {
            'Auth-Method' => 'plain',
            'Auth-User' => $user,
            'Auth-Pass' => $pass,
            'Auth-Protocol' => $proto || 'imap',
            'Auth-Login-Attempt' => 1,
            'Client-IP' => '127.0.0.1',
        },
    });

    my %h = map { lc($_) => $r->{headers}{$_} } keys %{$r->{headers}};
    return \%h;
}

###############################################################################

# each user on their own backend, both protocols

my %where = (
    alice => [ 'a', 'secretA', 'default pool' ],
    dave => [ 'a', 'secretD', 'target pool a' ],
    bob => [ 'b', 'secretB', 'target pool b' ],
    erin => [ 'b', 'secretE', 'target server address' ],
);

for my $u (sort keys %where) {
    my ($b, $pass, $why) = @{$where{$u}};

    is(pop3($u, $pass), "on backend $b for $u", "pop3 $u: $why");
    is(imap($u, $pass), "on backend $b for $u", "imap $u: $why");
}

# a rule with a capture: carol@b.example is carol on backend b

is(pop3('carol@b.example', 'secretC'), 'on backend b for carol',
    'pop3 rule rewrites login');
is(imap('carol@b.example', 'secretC'), 'on backend b for carol',
    'imap rule rewrites login');
like($t->dovecot_log($db), qr/user=<carol>/, 'backend b saw carol');

# the auth_http answers themselves

my $r = auth('alice', 'secretA', 'imap');
is($r->{'auth-status'}, 'OK', 'auth alice status');
is($r->{'auth-server'}, '127.0.0.1', 'auth alice server');
is($r->{'auth-port'}, $da->{imap}, 'auth alice imap port');
is($r->{'auth-pass'}, 'secretA', 'auth alice pass');

$r = auth('alice', 'secretA', 'pop3');
is($r->{'auth-port'}, $da->{pop3}, 'auth alice pop3 port');

$r = auth('carol@b.example', 'secretC', 'pop3');
is($r->{'auth-status'}, 'OK', 'auth carol status');
is($r->{'auth-server'}, '127.0.0.2', 'auth carol server');
is($r->{'auth-port'}, $db->{pop3}, 'auth carol port');
is($r->{'auth-user'}, 'carol', 'auth carol rewritten login');

$r = auth('erin', 'secretE', 'imap');
is($r->{'auth-server'} . ':' . $r->{'auth-port'}, "127.0.0.2:$db->{imap}",
    'auth erin server by address');

$r = auth('alice', 'wrong', 'imap');
isnt($r->{'auth-status'}, 'OK', 'auth wrong password refused');
is($r->{'auth-wait'}, 1, 'auth wrong password wait');
ok(!defined $r->{'auth-server'}, 'auth wrong password no server');

$r = auth('nosuchuser', 'secretA', 'pop3');
isnt($r->{'auth-status'}, 'OK', 'auth unknown user refused');
is($r->{'auth-wait'}, 1, 'auth unknown user wait');

# refusals as the protocols say them

like(pop3('alice', 'wrong'), qr/^-ERR/, 'pop3 wrong password');
like(pop3('nosuchuser', 'secretA'), qr/^-ERR/, 'pop3 unknown user');
like(imap('alice', 'wrong'), qr/^a1 NO/m, 'imap wrong password');
like(imap('nosuchuser', 'secretA'), qr/^a1 NO/m, 'imap unknown user');
like(imap('bob', 'secretA'), qr/^a1 NO/m, 'imap password of another user');
like(pop3('carol@b.example', 'wrong'), qr/^-ERR/, 'pop3 rule wrong password');

# every password scheme

for my $u (sort keys %schemes) {
    my ($pass, $entry) = @{$schemes{$u}};
    my ($scheme) = $entry =~ /^(\{[^}]+\}|\$\w+\$)/;

    is(pop3($u, $pass), "on backend a for $u", "scheme $scheme login");
}

like(pop3('s_sha512', 'pw256'), qr/^-ERR/, 'scheme SHA512-CRYPT wrong');
like(pop3('s_blf2y', 'pwblf2'), qr/^-ERR/, 'scheme BLF-CRYPT wrong');
like(pop3('s_ssha', 'pwssh'), qr/^-ERR/, 'scheme SSHA wrong');
like(imap('s_sha', 'pwsha '), qr/^a1 NO/m, 'scheme SHA wrong');

# auth backend: no users file entry, the backend checks the password

is(pop3('frank@pass.example', 'frankpw'), 'on backend a for frank',
    'pass-through pop3');
is(imap('frank@pass.example', 'frankpw'), 'on backend a for frank',
    'pass-through imap');
like(pop3('frank@pass.example', 'wrong'), qr/^-ERR/,
    'pass-through pop3 wrong password');
like(imap('frank@pass.example', 'wrong'), qr/^a1 NO/m,
    'pass-through imap wrong password');

# a pool of two servers: consistent hashing picks one per user, the
# session lands there, and both servers get users

my %seen;

for my $u (@hashed) {
    my $first = auth("$u\@h.example", 'hashpw', 'imap');
    my $again = auth("$u\@h.example", 'hashpw', 'imap');
    my $pop = auth("$u\@h.example", 'hashpw', 'pop3');

    my $server = $first->{'auth-server'} || 'none';
    my $b = $server eq '127.0.0.1' ? 'a' : $server eq '127.0.0.2' ? 'b' : '?';

    $seen{$b}++;

    is($again->{'auth-server'}, $server, "hash $u stable");
    is($pop->{'auth-server'}, $server, "hash $u same for pop3");
    is(imap("$u\@h.example", 'hashpw'), "on backend $b for $u",
        "hash $u imap lands on $b");
}

# rules match whatever the case; the hash takes the lower-cased login

for my $u (qw/ u01 u02 u03 u04 /) {
    is(auth(uc($u) . '@H.Example', 'hashpw', 'imap')->{'auth-server'},
        auth("$u\@h.example", 'hashpw', 'imap')->{'auth-server'},
        "hash $u: case of login and rule");
}

ok($seen{a} && $seen{b}, 'hash pool uses both servers')
    or diag(explain(\%seen));
is(pop3('u03@h.example', 'hashpw'),
    imap('u03@h.example', 'hashpw'), 'hash pop3 and imap agree');

$t->finish();

###############################################################################
