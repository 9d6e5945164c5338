#!/usr/bin/perl

# The JMAP endpoint's mailboxes over its IMAP client (Dovecot): Mailbox/get
# (roles from SPECIAL-USE, counts after seeding, parentId, a non-ASCII
# name in modified UTF-7 read back in UTF-8, ids, properties, notFound),
# Mailbox/changes, the session's mail and submission capabilities; the
# client's keep-alive (two requests, one backend login), failover from a
# dead first server, a backend that never greets (serverFail within
# mail_plus_jmap_imap_timeout), and a token login through the pool's
# master user.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use Digest::MD5 qw/ md5_hex /;
use MIME::Base64 qw/ encode_base64 decode_base64 /;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;
use MailPlus::Token;

###############################################################################

my $t = MailPlus::Test->new();
my $k = MailPlus::Token->new($t);
my $dir = $t->{dir};

$t->write_file('master.passwd', "mp:{PLAIN}masterpw\n");
$t->write_file('master.pw', "masterpw\n");

my %users = ('alice@example.com' => 'pwA', 'bob@example.com' => 'pwB',
    'carol@example.com' => 'pwC');
$users{"f$_\@example.com"} = "pf$_" for 1 .. 6;

my $da = $t->dovecot('a', users => \%users, extra => <<"EOF");
auth_failure_delay = 0
auth_master_user_separator = *
auth_verbose = yes
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN username_format=%u $dir/master.passwd
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = create
  }
  mailbox Archive {
    special_use = \\Archive
    auto = create
  }
}
EOF

# a scripted backend: no LITERAL+ (a password with 8-bit bytes is a
# synchronizing literal: nothing of it may come before the "+"), a mailbox
# name that is not valid modified UTF-7, a BYE in the middle of a command

my $fake_port = $t->port('fake', '127.0.0.4');
my $fake = IO::Socket::INET->new(LocalAddr => "127.0.0.4:$fake_port",
    Listen => 16, ReuseAddr => 1) or die "listen 127.0.0.4: $!\n";

sub fake_session {
    my ($c) = @_;
    my $caps = 'IMAP4rev1 LIST-STATUS SPECIAL-USE SASL-IR AUTH=OAUTHBEARER';
    my $user = '';
    open my $log, '>>', "$dir/fake.log" or die "fake.log: $!\n";
    $log->autoflush(1);

    print $c "* OK [CAPABILITY $caps] fake ready\r\n";

    while (defined(my $line = <$c>)) {

        # a synchronizing literal: "+" only once nothing more came

        while ($line =~ /\{(\d+)\}\r\n\z/) {
            my $n = $1;
            my $rin = '';
            vec($rin, fileno($c), 1) = 1;
            print $log "early\n" if select(my $rout = $rin, undef, undef, 0.3);
            print $c "+ go on\r\n";
            read($c, my $lit, $n);
            $line .= $lit . (<$c> // '');
        }

        my ($tag, $cmd) = $line =~ /^(\S+) (\S+)/ or last;
        print $log $line;

        if (uc $cmd eq 'LOGIN') {
            if ($line =~ /^\S+ LOGIN (\S+) \{4\}\r\npw\xc3\xa9\r\n\z/) {
                $user = $1;
                print $c "$tag OK [CAPABILITY $caps] logged in\r\n";
            } else {
                print $c "$tag NO [AUTHENTICATIONFAILED] no\r\n";
            }

        } elsif (uc $cmd eq 'AUTHENTICATE'
                 && $line =~ /^\S+ AUTHENTICATE OAUTHBEARER (\S+)\r\n\z/)
        {
            my $ir = decode_base64($1);

            if ($ir =~ /^n,a=tok\@example\.com,\x01host=127\.0\.0\.4
                \x01port=\d+\x01auth=Bearer\ [\w.-]+\x01\x01\z/x)
            {
                $user = 'tok@example.com';
                print $log "token good\n";
                print $c "$tag OK [CAPABILITY $caps] logged in\r\n";
                next;
            }

            # RFC 7628's error exchange: the client's dummy response, NO

            print $c "+ " . encode_base64('{"status":"invalid_token"}', '')
                . "\r\n";
            my $dummy = <$c> // '';
            print $log "dummy $dummy";
            print $c "$tag NO [AUTHENTICATIONFAILED] bad token\r\n";

        } elsif (uc $cmd eq 'LIST' && $user ne 'bye@example.com') {
            print $c "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
                . "* STATUS INBOX (MESSAGES 2 UNSEEN 1 UIDVALIDITY 7 "
                . "UIDNEXT 3)\r\n"
                . "* LIST (\\HasNoChildren \\Sent) \"/\" {10}\r\n"
                . "Sent Items\r\n"
                . "* STATUS \"Sent Items\" (MESSAGES 5 UNSEEN 0 UIDVALIDITY 7 "
                . "UIDNEXT 6)\r\n"
                . "* LIST () \"/\" \"bad&AOk\"\r\n"
                . "$tag OK listed\r\n";

            # an idle session the backend ends: the kept one is dropped

            if ($user eq 'drop@example.com') {
                sleep 1;
                print $c "* BYE idle too long\r\n";
                last;
            }

        } elsif (uc $cmd eq 'LIST') {
            print $c "* BYE going away\r\n";
            last;

        } else {
            print $c "$tag BAD what\r\n";
        }
    }

    close $c;
    print $log "=====\n";
    close $log;
}

my $fake_pid = fork();
die "fork: $!\n" unless defined $fake_pid;

if ($fake_pid == 0) {
    $SIG{CHLD} = 'IGNORE';

    while (1) {
        my $c = $fake->accept() or next;
        my $pid = fork();

        if (defined $pid && $pid == 0) {
            binmode $c;
            fake_session($c);
            exit 0;
        }

        close $c;
    }
}

push @{$t->{daemons}}, $fake_pid;
close $fake;

# a backend that takes connections and never greets

my $mute_port = $t->port('mute');
my $mute = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$mute_port",
    Listen => 16, ReuseAddr => 1) or die "listen: $!\n";

my $users_file = join '', map { "$_:{PLAIN}$users{$_}:a\n" }
    grep { !/^f/ } sort keys %users;
$users_file .= join '', map { "f$_\@example.com:{PLAIN}pf$_:f\n" } 1 .. 6;
$users_file .= "mute\@example.com:{PLAIN}pwM:m\n";
$users_file .= "eve\@example.com:{PLAIN}pwE:a\n";
$users_file .= "kim\@example.com:{PLAIN}pw\xc3\xa9:k\n";
$users_file .= "bye\@example.com:{PLAIN}pw\xc3\xa9:k\n";
$users_file .= "drop\@example.com:{PLAIN}pw\xc3\xa9:k\n";
$users_file .= "tok\@example.com:{PLAIN}pwT:k\n";
$users_file .= "badtok\@example.com:{PLAIN}pwT:k\n";
$t->write_file('users', $users_file);

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;
    router_auth_max_delay 1s;
    router_zone   throttle:1m;

    # the dead and the mute servers are found by the client, not by checks
    router_health_check off;

    router_token_jwks      @{[ $k->jwks_file ]};
    router_token_issuer    @{[ $k->issuer ]};
    router_token_audience  @{[ $k->audience ]};

    router_pool a {
        server 127.0.0.1 imap=$da->{imap};
        token_login master mp %%TESTDIR%%/master.pw;
    }

    router_pool f {
        server 127.0.0.2 imap=%%PORT_dead%%;
        server 127.0.0.1 imap=$da->{imap};
    }

    router_pool m {
        server 127.0.0.3 imap=$mute_port;
    }

    router_pool k {
        server 127.0.0.4 imap=$fake_port;
    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen       127.0.0.1:%%PORT_http%%;
        server_name  jmap.test;

        location = /auth {
            mail_router_auth;
        }

        location /jmap/ {
            mail_plus_jmap;
        }

        location /nokeep/ {
            mail_plus_jmap;
            mail_plus_jmap_imap_keepalive 0;
        }

        location /slow/ {
            mail_plus_jmap;
            mail_plus_jmap_imap_timeout 2s;
        }
    }
}
EOF

# the mute backend listens on 127.0.0.3: move it there

close $mute;
$mute = IO::Socket::INET->new(LocalAddr => "127.0.0.3:$mute_port",
    Listen => 16, ReuseAddr => 1) or die "listen 127.0.0.3: $!\n";

# mailboxes with a name out of US-ASCII, made over IMAP

{
    my $s = MailPlus::Test::Client->new($da->{imap}) or die "connect\n";
    $s->getline();
    $s->imap('a1', 'LOGIN "alice@example.com" "pwA"');
    my $r = $s->imap('a2', 'CREATE "R&AOk-unions"');
    like($r, qr/^a2 OK/m, 'imap: CREATE Réunions');
    $r = $s->imap('a3', 'CREATE "R&AOk-unions/&AMk-t&AOk-"');
    like($r, qr/^a3 OK/m, 'imap: CREATE Réunions/Été');
    $s->imap('a4', 'LOGOUT');
}

$t->seed($da, 'alice@example.com', subject => "inbox $_") for 1 .. 3;
$t->seed($da, 'alice@example.com', folder => 'Sent', subject => "sent $_")
    for 1 .. 2;

$t->run();

###############################################################################

my $http = HTTP::Tiny->new(timeout => 30);
my $port = $t->port('http');
my $base = "http://127.0.0.1:$port";
my $json = JSON::PP->new->canonical(1);

sub basic { 'Basic ' . encode_base64("$_[0]:$_[1]", '') }

sub api {
    my ($auth, $calls, $path) = @_;
    my $r = $http->request('POST', $base . ($path || '/jmap/api'), {
        headers => { 'Content-Type' => 'application/json',
            Authorization => $auth },
        content => $json->encode({ using => ['urn:ietf:params:jmap:core',
            'urn:ietf:params:jmap:mail'], methodCalls => $calls }) });
    my $d = eval { decode_json($r->{content}) };
    return ($r, $d);
}

sub session {
    my ($auth) = @_;
    my $r = $http->request('GET', "$base/jmap/session",
        { headers => { Authorization => $auth } });
    return decode_json($r->{content});
}

sub mid { 'M' . substr(md5_hex($_[0]), 0, 16) }

my $alice = basic('alice@example.com', 'pwA');

# the session

my $s = session($alice);
my $acc = (keys %{$s->{accounts}})[0];
my $mail = 'urn:ietf:params:jmap:mail';
my $sub = 'urn:ietf:params:jmap:submission';

ok(exists $s->{capabilities}{$mail}, 'session: mail capability');
ok(exists $s->{capabilities}{$sub}, 'session: submission capability');
is($s->{primaryAccounts}{$mail}, $acc, 'session: primary mail account');
is($s->{primaryAccounts}{$sub}, $acc, 'session: primary submission account');
my $ac = $s->{accounts}{$acc}{accountCapabilities};
is($ac->{$mail}{maxMailboxesPerEmail}, 1, 'session: maxMailboxesPerEmail');
ok(exists $ac->{$mail}{maxMailboxDepth}
    && !defined $ac->{$mail}{maxMailboxDepth}, 'session: maxMailboxDepth null');
is($ac->{$mail}{maxSizeMailboxName}, 490, 'session: maxSizeMailboxName');
is($ac->{$mail}{maxSizeAttachmentsPerEmail}, 25 * 1024 * 1024,
    'session: maxSizeAttachmentsPerEmail');
is_deeply($ac->{$mail}{emailQuerySortOptions}, ['receivedAt'],
    'session: emailQuerySortOptions');
ok($ac->{$mail}{mayCreateTopLevelMailbox}, 'session: mayCreateTopLevelMailbox');
is($ac->{$sub}{maxDelayedSend}, 0, 'session: maxDelayedSend');
is_deeply($ac->{$sub}{submissionExtensions}, {},
    'session: submissionExtensions');

# Mailbox/get, all

my $logins = () = $t->dovecot_log($da) =~ /Login: user=<alice\@example\.com>/g;

my ($r, $d) = api($alice, [['Mailbox/get', { accountId => $acc }, 'g']]);
is($r->{status}, 200, 'get: 200');
my $res = $d->{methodResponses}[0];
is($res->[0], 'Mailbox/get', 'get: answered') or diag($r->{content});
my %mb = map { $_->{name} => $_ } @{$res->[1]{list}};
my %role = map { ($_->{role} // '') => $_->{name} } @{$res->[1]{list}};

is($res->[1]{accountId}, $acc, 'get: accountId');
like($res->[1]{state}, qr/^S[0-9a-f]{16}$/, 'get: state');
is_deeply($res->[1]{notFound}, [], 'get: notFound empty');
is_deeply([sort keys %mb], [sort 'INBOX', 'Sent', 'Drafts', 'Trash', 'Junk',
    'Archive', "R\x{e9}unions", "\x{c9}t\x{e9}"], 'get: the mailboxes');
is($role{inbox}, 'INBOX', 'get: inbox role');
is($role{$_}, ucfirst $_, "get: $_ role") for qw/ sent drafts trash junk
    archive /;
is($mb{INBOX}{totalEmails}, 3, 'get: INBOX total');
is($mb{INBOX}{unreadEmails}, 3, 'get: INBOX unread');
is($mb{INBOX}{totalThreads}, 3, 'get: INBOX threads');
is($mb{Sent}{totalEmails}, 2, 'get: Sent total');
is($mb{Drafts}{totalEmails}, 0, 'get: Drafts empty');
is($mb{INBOX}{id}, mid('INBOX'), 'get: INBOX id');
is($mb{"\x{c9}t\x{e9}"}{id}, mid("R\xc3\xa9unions/\xc3\x89t\xc3\xa9"),
    'get: the id from the whole UTF-8 name');
is($mb{"\x{c9}t\x{e9}"}{parentId}, $mb{"R\x{e9}unions"}{id},
    'get: parentId');
ok(!defined $mb{INBOX}{parentId}, 'get: INBOX no parent');
ok($mb{Sent}{isSubscribed}, 'get: Sent subscribed');
ok(!$mb{Junk}{isSubscribed}, 'get: Junk not subscribed');
ok($mb{INBOX}{myRights}{mayReadItems}, 'get: myRights');
ok(!$mb{INBOX}{myRights}{mayDelete}, 'get: INBOX not deletable');
ok(exists $mb{INBOX}{sortOrder}, 'get: sortOrder');

# keep-alive: a second request, no second login

my ($r2, $d2) = api($alice, [['Mailbox/get', { accountId => $acc,
    ids => [$mb{Sent}{id}, 'Mnothere'], properties => ['name', 'role'] },
    'g']]);
$res = $d2->{methodResponses}[0][1];
is_deeply($res->{list}, [{ id => $mb{Sent}{id}, name => 'Sent',
    role => 'sent' }], 'get: ids and properties');
is_deeply($res->{notFound}, ['Mnothere'], 'get: notFound');

# Dovecot's log process may write a little later

sub logins {
    my ($user) = @_;
    my $n = () = $t->dovecot_log($da) =~ /Login: user=<\Q$user\E>/g;
    return $n;
}

wait_for(sub { logins('alice@example.com') > $logins }, 10);
is(logins('alice@example.com') - $logins, 1,
    'keep-alive: two requests, one backend login');
like($t->read_file('error.log'), qr/jmap imap: reused session/,
    'keep-alive: reused');

# errors of the arguments

($r, $d) = api($alice, [['Mailbox/get', { accountId => 'nope' }, 'g'],
    ['Mailbox/get', { accountId => $acc, properties => ['nope'] }, 'h'],
    ['Mailbox/get', { accountId => $acc, ids => 'x' }, 'i']]);
is($d->{methodResponses}[0][1]{type}, 'accountNotFound',
    'get: accountNotFound');
is($d->{methodResponses}[1][1]{type}, 'invalidArguments',
    'get: unknown property');
is($d->{methodResponses}[2][1]{type}, 'invalidArguments', 'get: bad ids');

# Mailbox/changes

my $state = $d2->{methodResponses}[0][1]{state};
($r, $d) = api($alice, [['Mailbox/changes', { accountId => $acc,
    sinceState => $state }, 'c'], ['Mailbox/changes', { accountId => $acc,
    sinceState => 'Sbogus' }, 'd']]);
$res = $d->{methodResponses}[0];
is($res->[0], 'Mailbox/changes', 'changes: answered');
is($res->[1]{newState}, $state, 'changes: same state');
is_deeply([@{$res->[1]}{qw/ created updated destroyed /}], [[], [], []],
    'changes: none');
ok(!$res->[1]{hasMoreChanges}, 'changes: hasMoreChanges false');
is($d->{methodResponses}[1][1]{type}, 'cannotCalculateChanges',
    'changes: another state');

$t->seed($da, 'alice@example.com', subject => 'one more');
($r, $d) = api($alice, [['Mailbox/get', { accountId => $acc,
    ids => [$mb{INBOX}{id}] }, 'g']]);
$res = $d->{methodResponses}[0][1];
is($res->{list}[0]{totalEmails}, 4, 'get: a new message counted');
isnt($res->{state}, $state, 'get: the state changed');

# failover: the pool's first server is dead

my $fails = 0;
for my $i (1 .. 6) {
    ($r, $d) = api(basic("f$i\@example.com", "pf$i"),
        [['Mailbox/get', { accountId => session(basic("f$i\@example.com",
        "pf$i"))->{primaryAccounts}{$mail}, properties => ['name'] }, 'g']]);
    $fails++ unless ($d->{methodResponses}[0][0] // '') eq 'Mailbox/get';
}
is($fails, 0, 'failover: every user of the pool answered');
like($t->read_file('error.log'),
    qr/IMAP backend 127\.0\.0\.2:\d+ of "f\d.*trying the next/,
    'failover: the dead server skipped');

# a backend that never greets: serverFail within the timeout

my $muteauth = basic('mute@example.com', 'pwM');
my $macc = session($muteauth)->{primaryAccounts}{$mail};
my $t0 = time();
($r, $d) = api($muteauth, [['Mailbox/get', { accountId => $macc }, 'g']],
    '/slow/api');
my $took = time() - $t0;
is($d->{methodResponses}[0][1]{type}, 'serverFail', 'mute: serverFail');
ok($took >= 1.5 && $took < 10, "mute: within the timeout ($took s)");

# a token login: the pool's master user

my $jwt = $k->token(user => 'carol@example.com');
my $cacc = session("Bearer $jwt")->{primaryAccounts}{$mail};
($r, $d) = api("Bearer $jwt", [['Mailbox/get', { accountId => $cacc,
    properties => ['name', 'role'] }, 'g']]);
is($d->{methodResponses}[0][0], 'Mailbox/get', 'token: answered')
    or diag($r->{content});
ok((grep { ($_->{role} // '') eq 'inbox' }
    @{$d->{methodResponses}[0][1]{list}}),
    'token: the INBOX');
like($t->dovecot_log($da),
    qr/Master user logging in as carol\@example\.com/,
    'token: logged in as the master user');

# no keep-alive: a login each request

my $bob = basic('bob@example.com', 'pwB');
my $bacc = session($bob)->{primaryAccounts}{$mail};
my $blog = () = $t->dovecot_log($da) =~ /Login: user=<bob\@example\.com>/g;
for (1 .. 2) {
    ($r, $d) = api($bob, [['Mailbox/get', { accountId => $bacc,
        properties => ['name'] }, 'g']], '/nokeep/api');
    is($d->{methodResponses}[0][0], 'Mailbox/get', "no keep-alive: get $_");
}
ok(wait_for(sub { logins('bob@example.com') - $blog == 2 }, 10),
    'no keep-alive: two requests, two logins');

# a login the backend refuses: serverFail, no failover

my $eve = basic('eve@example.com', 'pwE');
($r, $d) = api($eve, [['Mailbox/get', { accountId =>
    session($eve)->{primaryAccounts}{$mail} }, 'g']]);
is($d->{methodResponses}[0][1]{type}, 'serverFail', 'refused: serverFail');
is($d->{methodResponses}[0][1]{description}, 'the backend refused the login',
    'refused: why');
like($t->read_file('error.log'), qr/refused the login of "eve\@example\.com"/,
    'refused: logged');
unlike($t->read_file('error.log'), qr/of "eve\@example\.com".*trying the next/,
    'refused: no failover');

# the scripted backend

my $kim = basic('kim@example.com', "pw\xc3\xa9");
my $kacc = session($kim)->{primaryAccounts}{$mail};
($r, $d) = api($kim, [['Mailbox/get', { accountId => $kacc }, 'g']]);
$res = $d->{methodResponses}[0];
is($res->[0], 'Mailbox/get', 'literal: logged in, listed')
    or diag($r->{content});
my %k = map { $_->{name} => $_ } @{$res->[1]{list}};
is_deeply([sort keys %k], ['INBOX', 'Sent Items'],
    'literal: a name in a literal; a bad modified UTF-7 name left out');
is($k{'Sent Items'}{role}, 'sent', 'literal: role');
is($k{'Sent Items'}{totalEmails}, 5, 'literal: STATUS after a literal name');
is($k{INBOX}{unreadEmails}, 1, 'literal: INBOX unread');
like($t->read_file('error.log'), qr/not valid modified UTF-7 left out/,
    'literal: the bad name logged');
my $fl = $t->read_file('fake.log');
like($fl, qr/LOGIN kim\@example\.com \{4\}\r\npw/,
    'literal: a synchronizing literal');
unlike($fl, qr/early/, 'literal: nothing sent before the "+"');

my $bye = basic('bye@example.com', "pw\xc3\xa9");
($r, $d) = api($bye, [['Mailbox/get', { accountId =>
    session($bye)->{primaryAccounts}{$mail} }, 'g']]);
is($d->{methodResponses}[0][1]{type}, 'serverFail', 'BYE: serverFail');
like($d->{methodResponses}[0][1]{description} // '', qr/ended the session/,
    'BYE: the session ended');

# nginx's own debug lines show the request's headers: ours, none

my $ours = join "\n", grep { !/http header:/ } split /\n/,
    $t->read_file('error.log');
# a token login with the token itself: OAUTHBEARER with SASL-IR, and a
# refusal (RFC 7628's error exchange)

my $tjwt = $k->token(user => 'tok@example.com');
($r, $d) = api("Bearer $tjwt", [['Mailbox/get', { accountId =>
    session("Bearer $tjwt")->{primaryAccounts}{$mail} }, 'g']]);
is($d->{methodResponses}[0][0], 'Mailbox/get', 'oauthbearer: logged in')
    or diag($r->{content});
like($t->read_file('fake.log'), qr/token good/, 'oauthbearer: the response');

my $bjwt = $k->token(user => 'badtok@example.com');
($r, $d) = api("Bearer $bjwt", [['Mailbox/get', { accountId =>
    session("Bearer $bjwt")->{primaryAccounts}{$mail} }, 'g']]);
is($d->{methodResponses}[0][1]{description}, 'the backend refused the login',
    'oauthbearer: refused');
like($t->read_file('fake.log'), qr/dummy AQ==\r\n/,
    'oauthbearer: the dummy response');
unlike($t->read_file('fake.log'), qr/\Q$bjwt\E|\Q$tjwt\E/,
    'oauthbearer: the token in base64 only');

# a kept session that the backend ends is dropped; the next request logs
# in again

my $drop = basic('drop@example.com', "pw\xc3\xa9");
my $dacc = session($drop)->{primaryAccounts}{$mail};
($r, $d) = api($drop, [['Mailbox/get', { accountId => $dacc }, 'g']]);
is($d->{methodResponses}[0][0], 'Mailbox/get', 'drop: first request');
ok(wait_for(sub { $t->read_file('error.log')
    =~ /kept session to 127\.0\.0\.4:\d+ dropped: the backend spoke/ }, 10),
    'drop: the kept session dropped');
($r, $d) = api($drop, [['Mailbox/get', { accountId => $dacc }, 'g']]);
is($d->{methodResponses}[0][0], 'Mailbox/get', 'drop: second request');
my $dl = () = $t->read_file('fake.log') =~ /LOGIN drop\@example\.com/g;
is($dl, 2, 'drop: logged in again');

$ours = join "\n", grep { !/http header:/ } split /\n/,
    $t->read_file('error.log');
unlike($ours, qr/pwA|masterpw|\Q$jwt\E/, 'no password or token in the log');

done_testing();
