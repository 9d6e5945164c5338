#!/usr/bin/perl

# The seed's flow in JMAP terms, end to end with real peers: bob sends
# alice a message over SMTP; the module's queue delivers it to her
# Dovecot over LMTP; a JMAP client library under node (jmap-jam, with a
# bearer token checked by router_token_jwks and Dovecot logged in to as
# its master user) lists and reads it, moves it to a new mailbox, finds
# it by a search, writes a reply and sends it with EmailSubmission/set
# into the module's queue (the draft moved to Sent), and destroys the
# original; the queue delivers the reply to bob's Dovecot, read back
# over IMAP.  Plain HTTP requests (curl) check the session and the
# /.well-known/jmap redirect.

use warnings;
use strict;

use Test::More;

use JSON::PP;
use Mail::IMAPClient;
use Net::SMTP;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;
use MailPlus::Token;

###############################################################################

my $node_dir = "$FindBin::Bin/node";

ok(-d "$node_dir/node_modules/jmap-jam", 'jmap-jam is installed')
    or BAIL_OUT('no t/node/node_modules: run "make node-deps"');

my $t = MailPlus::Test->new();
my $k = MailPlus::Token->new($t);
my $dir = $t->testdir();

$t->write_file('master.passwd', "mp:{PLAIN}masterpw\n");
$t->write_file('master.pw', "masterpw\n");

# alice's server has the special-use mailboxes a mail client looks for;
# bob's is another server

my %boxes = (Drafts => 'Drafts', Sent => 'Sent', Trash => 'Trash',
    Junk => 'Junk', Archive => 'Archive');
my $ns = join '', map { "  mailbox $_ {\n    special_use = \\$boxes{$_}\n"
    . "    auto = subscribe\n  }\n" } sort keys %boxes;

my $da = $t->dovecot('a', users => { 'alice@example.com' => 'pwA' },
    extra => <<"EOF");
auth_failure_delay = 0
auth_master_user_separator = *
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN username_format=%u $dir/master.passwd
}
namespace inbox {
  inbox = yes
$ns}
EOF

my $db = $t->dovecot('b', addr => '127.0.0.2',
    users => { 'bob@example.com' => 'pwB' });

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
bob@example.com:{PLAIN}pwB:b
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;
    router_zone   z:1m;
    router_health_check off;

    router_token_jwks      @{[ $k->jwks_file ]};
    router_token_issuer    @{[ $k->issuer ]};
    router_token_audience  @{[ $k->audience ]};

    router_pool a {
        server 127.0.0.1 imap=$da->{imap} lmtp=$da->{lmtp};
        token_login master mp %%TESTDIR%%/master.pw;
    }

    router_pool b {
        server 127.0.0.2 imap=$db->{imap} lmtp=$db->{lmtp};
    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    queue_spool %%TESTDIR%%/spool;
    queue_delivery on;
    queue_retry_first 1s;
    queue_retry_max 2s;
    queue_scan_interval 300ms;
    queue_connect_timeout 3s;
    queue_helo_name mx.test;

    server {
        listen     127.0.0.1:%%PORT_smtp%%;
        protocol   smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
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

        location = /.well-known/jmap {
            return 301 /jmap/session;
        }

        location /jmap/ {
            mail_plus_jmap;
        }
    }
}
EOF

$t->run();

my $port = $t->port('http');
my $base = "http://127.0.0.1:$port";
my $json = JSON::PP->new;

###############################################################################

# plain HTTP: the redirect and the session, with curl

my $loc = `curl -s -o /dev/null -w '%{http_code} %{redirect_url}' --max-time 20 $base/.well-known/jmap`;
like($loc, qr{^301 http://[^/]+/jmap/session$}, 'curl: /.well-known/jmap');

my $s = `curl -s --max-time 20 -u alice\@example.com:pwA $base/jmap/session`;
my $session = eval { $json->decode($s) } || {};
ok($session->{capabilities}{'urn:ietf:params:jmap:mail'},
    'curl: the session has the mail capability');
ok($session->{capabilities}{'urn:ietf:params:jmap:submission'},
    'curl: and the submission capability');
is($session->{username}, 'alice@example.com', 'curl: the session\'s user');

# 1. bob writes to alice over SMTP; the queue delivers it to her Dovecot

my $word = "kumquat$$";
my $subject = "Plans for $word";

my $smtp = Net::SMTP->new("127.0.0.1:" . $t->port('smtp'), Timeout => 20,
    Hello => 'client.test');
ok($smtp, 'SMTP: connected') or BAIL_OUT('no SMTP');
$smtp->mail('bob@example.com');
$smtp->to('alice@example.com');
$smtp->data();
$smtp->datasend("From: Bob <bob\@example.com>\r\n"
    . "To: Alice <alice\@example.com>\r\n"
    . "Subject: $subject\r\n"
    . "Message-ID: <flow-$$\@example.com>\r\n"
    . "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n"
    . "Shall we meet about the $word on Friday?\r\n");
ok($smtp->dataend(), 'SMTP: accepted into the queue');
$smtp->quit();

sub imap {
    my ($d, $user, $pass) = @_;
    return Mail::IMAPClient->new(Server => '127.0.0.1', Port => $d->{imap},
        User => $user, Password => $pass, Timeout => 20, Uid => 1)
        if $d == $da;
    return Mail::IMAPClient->new(Server => '127.0.0.2', Port => $d->{imap},
        User => $user, Password => $pass, Timeout => 20, Uid => 1);
}

sub count_in {
    my ($d, $user, $pass, $folder, $re) = @_;
    my $c = imap($d, $user, $pass) or return 0;
    $c->examine($folder) or do { $c->logout(); return 0 };
    my $n = 0;
    for my $uid (@{ $c->messages() || [] }) {
        my $h = $c->get_header($uid, 'Subject') // '';
        $n++ if $h =~ $re;
    }
    $c->logout();
    return $n;
}

ok(wait_for(sub {
        count_in($da, 'alice@example.com', 'pwA', 'INBOX', qr/\Q$word/) }, 30),
    'delivered to alice\'s Dovecot');

# 2. the JMAP client library: read, move, search, reply, destroy

my $token = $k->token(user => 'alice@example.com');
my $arg = $json->encode({ session => "$base/jmap/session",
    token => $token, word => $word,
    to => 'bob@example.com' });

my $pid = open(my $fh, '-|', 'timeout', '120', 'node',
    "$node_dir/jmap_flow.mjs", $arg);
ok($pid, 'node started') or BAIL_OUT("node: $!");
my @lines = <$fh>;
close $fh;
my $status = $? >> 8;

my $res = eval { $json->decode($lines[-1] // '') } || {};
is($status, 0, 'the JMAP client\'s flow ran to its end')
    or diag(join '', @lines);
diag($res->{error}) if $res->{error};

is_deeply($res->{steps},
    [qw/ session mailboxes read search sent destroyed /], 'every step');
is($res->{session}{username}, 'alice@example.com', 'jmap-jam: the session');
ok($res->{mailboxes}{inbox} >= 1, 'jmap-jam: the INBOX has unread mail');
ok($res->{mailboxes}{drafts} && $res->{mailboxes}{sent},
    'jmap-jam: Drafts and Sent found by their roles');
is($res->{read}{subject}, $subject, 'jmap-jam: the message\'s subject');
is($res->{read}{from}, 'bob@example.com', 'jmap-jam: its sender');
is($res->{read}{body}, "Shall we meet about the $word on Friday?\n",
    'jmap-jam: its text body');
like($res->{read}{preview} // '', qr/^Shall we meet/, 'jmap-jam: preview');
ok(!$res->{read}{seen}, 'jmap-jam: unread when read first');
ok($res->{search}{hits} >= 1, 'jmap-jam: the search finds it');
ok($res->{search}{inProjects}, 'jmap-jam: in Projects, where it was moved');
ok($res->{search}{seen}, 'jmap-jam: marked read with the move');
is($res->{sent}{identity}, 'alice@example.com', 'jmap-jam: the identity');
is($res->{destroyed}{destroyed}, 1, 'jmap-jam: the original destroyed');
is($res->{destroyed}{left}, 0, 'jmap-jam: Projects is empty');

# 3. the reply reaches bob's Dovecot through the queue

ok(wait_for(sub {
        count_in($db, 'bob@example.com', 'pwB', 'INBOX',
            qr/^Re: \Q$subject\E$/) }, 30),
    'the reply is delivered to bob\'s Dovecot');

my $c = imap($db, 'bob@example.com', 'pwB');
$c->examine('INBOX');
my ($reply) = grep {
    ($c->get_header($_, 'Subject') // '') =~ /^Re: / } @{ $c->messages() };
my $text = $c->message_string($reply) // '';
$c->logout();

like($text, qr/^In-Reply-To: <flow-$$\@example\.com>\r?$/mi,
    'the reply: In-Reply-To the original');
like($text, qr/^From: .*alice\@example\.com/mi, 'the reply: from alice');
unlike($text, qr/^Bcc:/mi, 'the reply: no Bcc header');
like($text, qr/Got it: \Q$word\E\./, 'the reply: its text');

# the draft is in alice's Sent, no longer a draft; Drafts is empty

$c = imap($da, 'alice@example.com', 'pwA');
$c->examine('Sent');
my @sent = @{ $c->messages() || [] };
is(scalar @sent, 1, 'alice\'s Sent has the reply');
my $flags = @sent ? join(' ', @{ $c->flags($sent[0]) || [] }) : '';
unlike($flags, qr/\\Draft/, 'not a draft any more');
like($flags, qr/\\Seen/, 'seen');
$c->examine('Drafts');
is(scalar @{ $c->messages() || [] }, 0, 'Drafts is empty');
$c->logout();

# nothing the client sent reached the log as a token, but for nginx's own
# debug line of each request header (as with any Authorization header)

my $log = join '', grep { !/ http header: "Authorization: Bearer /i }
    split /^/, $t->read_file('error.log');
my $sig = $k->signature($token);
unlike($log, qr/\Q$sig\E/, 'no token in the log');

$t->stop();

done_testing();

###############################################################################
