#!/usr/bin/perl

# IMAP through nginx and the router to Dovecot: authentication forms,
# folders, APPEND, MOVE, SEARCH, partial FETCH and IDLE.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;
use Mail::IMAPClient;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

# t/imap_proxy.t runs this file again with the module handling the session

my $router_proxy = do { no warnings 'once'; $main::ROUTER_PROXY }
    ? 'router_proxy  on;' : '';

my $d = $t->dovecot('a', users => { alice => 'secret', bob => 'secret' });

$t->write_file('users', <<'EOF');
alice:{PLAIN}secret
bob:{PLAIN}secret
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%TESTDIR%%/users;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    router_default_pool  a;
    router_auth_delay    1s;

    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        $router_proxy
        imap_auth  login plain;
    }
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

my $first = $t->seed($d, 'alice', subject => 'first message',
    body => join('', map { "line $_ of the first message\n" } 1 .. 10));
$t->seed($d, 'alice', subject => 'second message');

$t->run();

my $port = $t->port('imap');

sub client {
    my $s = MailPlus::Test::Client->new($port) or return;
    $s->getline() =~ /^\* OK/ or return;
    return $s;
}

sub imapclient {
    my ($user) = @_;

    return Mail::IMAPClient->new(
        Server => '127.0.0.1',
        Port => $port,
        User => $user,
        Password => 'secret',
        Uid => 1,
        Timeout => 10,
    );
}

###############################################################################

# greeting and capabilities before login come from nginx

my $s = MailPlus::Test::Client->new($port);
like($s->getline(), qr/^\* OK/, 'greeting');

my $r = $s->imap('c1', 'CAPABILITY');
like($r, qr/^\* CAPABILITY .*IMAP4rev1/m, 'capability');
like($r, qr/^\* CAPABILITY .*AUTH=PLAIN/m, 'capability auth plain');
like($r, qr/^c1 OK/m, 'capability ok');

# LOGIN

like($s->imap('a1', 'LOGIN alice secret'), qr/^a1 OK/m, 'login');

$r = $s->imap('c2', 'CAPABILITY');
like($r, qr/^\* CAPABILITY .*\bIDLE\b/m, 'backend capability idle');
like($r, qr/^\* CAPABILITY .*\bMOVE\b/m, 'backend capability move');

like($s->imap('a2', 'SELECT INBOX'), qr/^\* 2 EXISTS/m, 'select');
like($s->imap('a3', 'LOGOUT'), qr/^\* BYE.*\r\na3 OK/ms, 'logout');
ok($s->at_eof(), 'closed after logout');

# LOGIN with quoted strings

$s = client();
like($s->imap('a1', 'LOGIN "alice" "secret"'), qr/^a1 OK/m, 'login quoted');

# LOGIN with synchronizing literals

$s = client();
$s->send('a1 LOGIN {5}');
like($s->getline(), qr/^\+ /, 'literal user continuation');
$s->send('alice {6}');
like($s->getline(), qr/^\+ /, 'literal password continuation');
$s->send('secret');
like(scalar $s->read_until(qr/^a1 /), qr/^a1 OK/m, 'login literals');
like($s->imap('a2', 'SELECT INBOX'), qr/^\* 2 EXISTS/m,
    'select after literals');

# AUTHENTICATE PLAIN, initial response and continuation

$s = client();
like($s->imap('a1', 'AUTHENTICATE PLAIN '
    . encode_base64("\0alice\0secret", '')), qr/^a1 OK/m,
    'authenticate plain');

$s = client();
$s->send('a1 AUTHENTICATE PLAIN');
like($s->getline(), qr/^\+/, 'authenticate plain continuation');
$s->send(encode_base64("\0alice\0secret", ''));
like(scalar $s->read_until(qr/^a1 /), qr/^a1 OK/m,
    'authenticate plain response');

# AUTHENTICATE LOGIN

$s = client();
$s->send('a1 AUTHENTICATE LOGIN');
like($s->getline(), qr/^\+ VXNlcm5hbWU6/, 'authenticate login username');
$s->send(encode_base64('alice', ''));
like($s->getline(), qr/^\+ UGFzc3dvcmQ6/, 'authenticate login password');
$s->send(encode_base64('secret', ''));
like(scalar $s->read_until(qr/^a1 /), qr/^a1 OK/m, 'authenticate login');

# failures: NO after the delay, the session goes on

$s = client();

my $start = time();
like($s->imap('a1', 'LOGIN alice wrong'), qr/^a1 NO/m, 'wrong password');
cmp_ok(time() - $start, '>=', 0.9, 'wrong password delayed');
like($s->imap('a2', 'LOGIN nosuchuser secret'), qr/^a2 NO/m,
    'unknown user');
like($s->imap('a3', 'AUTHENTICATE PLAIN '
    . encode_base64("\0alice\0wrong", '')), qr/^a3 NO/m,
    'authenticate plain wrong password');
like($s->imap('a4', 'LOGIN alice secret'), qr/^a4 OK/m,
    'login after failures');
$s->disconnect();

# folders, APPEND, SEARCH, MOVE with a real client

my $imap = imapclient('alice');
ok($imap && $imap->IsAuthenticated(), 'imapclient login')
    or diag($@);

ok($imap->create('Archive'), 'create folder');
ok((grep { $_ eq 'Archive' } $imap->folders()), 'folder listed');

my $msg = "From: carol\@example.com\r\nTo: alice\@example.com\r\n"
    . "Subject: appended zebra\r\n\r\nAppended through nginx.\r\n";

my $uid = $imap->append_string('INBOX', $msg);
ok($uid, 'append');
is($imap->message_count('INBOX'), 3, 'three messages');

$imap->select('INBOX');
my $found = $imap->search('SUBJECT', $imap->Quote('zebra'));
is_deeply($found, [ $uid ], 'search finds appended');
my $none = $imap->search('SUBJECT', $imap->Quote('nothing-like-it'));
is_deeply($none, [], 'search finds nothing');

ok($imap->move('Archive', $uid), 'move');
$imap->expunge();
is($imap->message_count('INBOX'), 2, 'inbox after move');
is($imap->message_count('Archive'), 1, 'archive after move');

$imap->select('Archive');
my ($moved) = @{$imap->search('ALL')};
like($imap->message_string($moved), qr/^Subject: appended zebra\r$/m,
    'moved message in archive');
$imap->logout();

# partial FETCH

$s = client();
$s->imap('a1', 'LOGIN alice secret');
$s->imap('a2', 'SELECT INBOX');
$s->send('a3 FETCH 1 BODY.PEEK[]<0.100>');

my $line = $s->getline();
like($line, qr/^\* 1 FETCH \(.*BODY\[\]<0> \{100\}\r\n$/, 'partial fetch');

(my $crlf = $first) =~ s/\n/\r\n/g;
is($s->read_bytes(100), substr($crlf, 0, 100), 'partial fetch data');
like(scalar $s->read_until(qr/^a3 /), qr/^a3 OK/m, 'partial fetch ok');

$s->send('a4 FETCH 1 BODY.PEEK[]<100.50>');
like($s->getline(), qr/BODY\[\]<100> \{50\}\r\n$/, 'partial fetch offset');
is($s->read_bytes(50), substr($crlf, 100, 50), 'partial fetch offset data');
$s->read_until(qr/^a4 /);

# IDLE: a second session appends, the idling one hears of it

$s->send('i1 IDLE');
like($s->getline(), qr/^\+ /, 'idle continuation');

my $other = imapclient('alice');
ok($other->append_string('INBOX', "Subject: while idling\r\n\r\nhi\r\n"),
    'append while idling');
$other->logout();

like(scalar $s->read_until(qr/^\* 3 EXISTS/, 15), qr/^\* 3 EXISTS/m,
    'idle notification');

$s->send('DONE');
like(scalar $s->read_until(qr/^i1 /), qr/^i1 OK/m, 'idle done');
like($s->imap('a5', 'LOGOUT'), qr/^a5 OK/m, 'logout after idle');
$s->disconnect();

# another user reaches their own mailbox

$imap = imapclient('bob');
ok($imap && $imap->IsAuthenticated(), 'second user login');
is($imap->message_count('INBOX'), 0, 'second user has own mailbox');
$imap->logout();

$t->finish();

###############################################################################
