#!/usr/bin/perl

# Demo of ngx_mail_plus_module (run by "make demo"): nginx with the router
# in front of two Dovecot backends on loopback.  Shows the router's
# auth_http answers, a POP3 session that reaches backend A and an IMAP
# session that reaches backend B, token logins, mail read over JMAP (the
# web mail page's protocol), then stops everything it started.

use warnings;
use strict;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw/ encode_base64 decode_base64 /;
use MailPlus::Test;
use MailPlus::Token;

$| = 1;

die "no module at " . MailPlus::Test::module() . ": run make first\n"
    unless -f MailPlus::Test::module();

my $t = MailPlus::Test->new();

sub say_step { print "\n== $_[0]\n" }

say_step('starting Dovecot backends');

# backend A also takes nginx's master user, for token logins

my $k = MailPlus::Token->new($t);
my $dir = $t->testdir;

$t->write_file('master.passwd', "nginx:{PLAIN}master-pw\n");
$t->write_file('master.pw', "master-pw\n");

my $da = $t->dovecot('a', users => { alice => 'alice-pw' }, extra => <<"EOF");
auth_master_user_separator = *
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN username_format=%u $dir/master.passwd
}
EOF
my $db = $t->dovecot('b', addr => '127.0.0.2',
    users => { bob => 'bob-pw', carol => 'carol-pw' });

print "backend A: 127.0.0.1 imap $da->{imap} pop3 $da->{pop3}\n";
print "backend B: 127.0.0.2 imap $db->{imap} pop3 $db->{pop3}\n";

for my $d ($da, $db) {
    for my $u (sort keys %{$d->{users}}) {
        $t->seed($d, $u, subject => "Welcome $u (stored on backend "
            . uc($d->{name}) . ")",
            body => "This mailbox lives on backend " . uc($d->{name}) . ".\n");
    }
}

my $sha512 = crypt('bob-pw', '$6$demosalt$');

$t->write_file('users', <<"EOF");
# login:{SCHEME}hash[:target]
alice:{PLAIN}alice-pw
bob:{SHA512-CRYPT}$sha512:b
carol\@b.example:{PLAIN}carol-pw
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%TESTDIR%%/users;

    router_pool a {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3};
        token_login master nginx %%TESTDIR%%/master.pw;
    }

    router_pool b {
        server 127.0.0.2 imap=$db->{imap} pop3=$db->{pop3};
    }

    router_rule "^(.+)\@b\\.example\$" pool=b login=\$1;
    router_default_pool  a;
    router_auth_delay    1s;

    router_token_jwks      @{[ $k->jwks_file ]};
    router_token_issuer    @{[ $k->issuer ]};
    router_token_audience  @{[ $k->audience ]};
    router_token_login_claim preferred_username;

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    server {
        listen    127.0.0.1:%%PORT_pop3%%;
        protocol  pop3;
    }

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        imap_auth  login plain;
    }

    server {
        listen             127.0.0.1:%%PORT_imap_token%%;
        protocol           imap;
        router_proxy       on;
        router_token_auth  oauthbearer xoauth2;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen  127.0.0.1:%%PORT_http%%;

        location = /auth {
            mail_router_auth;
        }

        # JMAP, and the web mail page that uses it (docs/webmail.md)

        location /jmap/ {
            mail_plus_jmap;
            mail_plus_jmap_upload_path %%TESTDIR%%/jmap_upload;
        }

        location /mail/ {
            alias  $FindBin::Bin/../webmail/;
        }
    }
}
EOF

say_step('users file');
print $t->read_file('users');

say_step('nginx.conf (mail part)');
my ($mail) = $t->read_file('nginx.conf') =~ /^(mail \{.*?^\})/ms;
print "$mail\n";

say_step('starting nginx with the module');
$t->run(log_level => 'info');
print "nginx: pop3 on 127.0.0.1:" . $t->port('pop3')
    . ", imap on 127.0.0.1:" . $t->port('imap') . "\n";

say_step('auth_http answers of the router');

my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 10);

for my $q ([ 'alice', 'alice-pw', 'pop3' ], [ 'bob', 'bob-pw', 'imap' ],
    [ 'carol@b.example', 'carol-pw', 'imap' ], [ 'bob', 'wrong', 'imap' ])
{
    my ($user, $pass, $proto) = @$q;

    my $r = $http->get('http://127.0.0.1:' . $t->port('http') . '/auth', {
        headers => {
            'Auth-Method' => 'plain', 'Auth-User' => $user,
            'Auth-Pass' => $pass, 'Auth-Protocol' => $proto,
            'Auth-Login-Attempt' => 1, 'Client-IP' => '127.0.0.1',
        },
    });

    print "$proto $user / $pass:\n";
    for my $h (qw/ auth-status auth-server auth-port auth-user auth-wait /) {
        next unless defined $r->{headers}{$h};
        printf "    %-12s %s\n", $h, $r->{headers}{$h};
    }
}

my $trace = sub { print "    $_[0]\n" };

say_step('POP3 session through nginx: alice, routed to backend A');

my $s = MailPlus::Test::Client->new($t->port('pop3'), trace => $trace)
    or die "no pop3\n";
$s->getline();
$s->pop3('USER alice');
$s->pop3('PASS alice-pw');
$s->pop3('STAT');
$s->pop3('LIST', multi => 1);
$s->pop3('RETR 1', multi => 1);
$s->pop3('QUIT');
$s->disconnect();

say_step('IMAP session through nginx: carol@b.example, '
    . 'routed to backend B as carol');

$s = MailPlus::Test::Client->new($t->port('imap'), trace => $trace)
    or die "no imap\n";
$s->getline();
$s->imap('a1', 'LOGIN carol@b.example carol-pw');
$s->imap('a2', 'SELECT INBOX');
$s->imap('a3', 'FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
$s->imap('a4', 'LOGOUT');
$s->disconnect();

say_step('IMAP with a wrong password: refused after the delay');

$s = MailPlus::Test::Client->new($t->port('imap'), trace => $trace)
    or die "no imap\n";
$s->getline();
$s->imap('a1', 'LOGIN bob wrong');
$s->imap('a2', 'LOGIN bob bob-pw');
$s->imap('a3', 'LOGOUT');
$s->disconnect();

say_step('IMAP token login (OAUTHBEARER, a JWT signed with RS256): '
    . 'alice, on backend A through its master user');

my $jwt = $k->token(user => 'alice',
    claims => { preferred_username => 'alice' });
print "    token claims: @{[ decode_base64(
    (split /\./, $jwt)[1] =~ tr/-_/+\//r) ]}\n";

$s = MailPlus::Test::Client->new($t->port('imap_token'), trace => $trace)
    or die "no imap\n";
$s->getline();
$s->imap('t1', 'CAPABILITY');
$s->imap('t2', 'AUTHENTICATE OAUTHBEARER '
    . encode_base64($k->oauthbearer($jwt, user => 'alice'), ''));
$s->imap('t3', 'SELECT INBOX');
$s->imap('t4', 'LOGOUT');
$s->disconnect();

say_step('IMAP with an expired token: RFC 7628\'s error, then NO');

$jwt = $k->token(user => 'alice', claims => { preferred_username => 'alice',
    exp => time() - 600, iat => time() - 1200, nbf => time() - 1200 });

$s = MailPlus::Test::Client->new($t->port('imap_token'), trace => $trace)
    or die "no imap\n";
$s->getline();
$s->send('t1 AUTHENTICATE OAUTHBEARER '
    . encode_base64($k->oauthbearer($jwt, user => 'alice'), ''));
my $challenge = $s->getline() // '';
print "    (the challenge decoded: "
    . decode_base64(substr($challenge, 2)) . ")\n";
$s->send('AQ==');
$s->getline();
$s->imap('t2', 'LOGOUT');
$s->disconnect();

say_step('JMAP over HTTP: alice\'s mailboxes and INBOX '
    . '(Mailbox/get, Email/query and Email/get in one request)');

my $http = HTTP::Tiny->new(timeout => 20);
my $base = 'http://127.0.0.1:' . $t->port('http');
my $auth = 'Basic ' . encode_base64('alice:alice-pw', '');
my $json = JSON::PP->new->canonical(1);

my $r = $http->get("$base/jmap/session",
    { headers => { Authorization => $auth } });
my $session = $json->decode($r->{content});
my $account = $session->{primaryAccounts}{'urn:ietf:params:jmap:mail'};
print "    GET /jmap/session: $r->{status}, account $account\n";

my $req = { using => ['urn:ietf:params:jmap:core',
        'urn:ietf:params:jmap:mail'],
    methodCalls => [
        ['Mailbox/get', { accountId => $account,
            properties => ['name', 'role', 'totalEmails'] }, 'm'],
        ['Email/query', { accountId => $account, limit => 10,
            sort => [{ property => 'receivedAt',
                isAscending => JSON::PP::false }] }, 'q'],
        ['Email/get', { accountId => $account,
            '#ids' => { resultOf => 'q', name => 'Email/query',
                path => '/ids' },
            properties => ['subject', 'from', 'receivedAt'] }, 'g']] };

$r = $http->post("$base/jmap/api", { headers => {
    Authorization => $auth, 'Content-Type' => 'application/json' },
    content => $json->encode($req) });
print "    POST /jmap/api: $r->{status}\n";

for my $resp (@{ $json->decode($r->{content})->{methodResponses} }) {
    my ($name, $args) = @$resp;

    if ($name eq 'Mailbox/get') {
        print "    $name: ", join(', ', map {
            "$_->{name} ($_->{totalEmails})" } @{ $args->{list} }), "\n";

    } elsif ($name eq 'Email/get') {
        for my $e (@{ $args->{list} }) {
            print "    $name: \"$e->{subject}\" from "
                . "$e->{from}[0]{email}, $e->{receivedAt}\n";
        }

    } else {
        print "    $name: ", $json->encode($args), "\n";
    }
}

print "    (while the demo runs, the web mail page is at $base/mail/)\n";

say_step('backend logins seen by Dovecot');

for my $d ($da, $db) {
    my $log = $t->dovecot_log($d);

    while ($log =~ /(imap|pop3)-login: (?:Info: )?Login: user=<([^>]*)>/g) {
        print "    backend " . uc($d->{name}) . ": $1 login as $2\n";
    }
}

say_step('stopping nginx and Dovecot');
$t->cleanup();
print "done\n";
