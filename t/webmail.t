#!/usr/bin/perl

# The web mail page (webmail/) in a real browser: Debian's Chromium,
# headless, driven by puppeteer-core (t/lib/webmail_browser.mjs), against
# nginx serving the page as static files with its security headers and
# the JMAP endpoint in front of Dovecot, with the SMTP queue delivering
# over LMTP.  alice's INBOX is seeded (one message delivered over SMTP
# through the queue, one HTML message that loads a remote image and runs
# a script); in the browser alice signs in (a wrong password first: the
# error shown), sees INBOX and its unread count, reads the HTML message
# in a sandboxed frame (no script runs, no request leaves for the remote
# address, which also listens here and sees no connection), marks it
# unread, reads a text message as text, downloads an attachment, moves
# with the keyboard and Tab, pages through a folder of 60 messages, moves a
# message to Archive, deletes one to Trash, searches, writes to bob and
# replies to him; bob's mailbox is then read over IMAP (Mail::IMAPClient):
# both messages arrive, the reply with In-Reply-To, and alice's Sent holds
# them.  On a failure the browser's screenshot is kept and its path shown.

use warnings;
use strict;

use Test::More;

use File::Basename qw/ dirname /;
use File::Copy qw/ copy /;
use File::Path qw/ make_path /;
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use List::Util;
use POSIX qw/ WNOHANG /;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $ROOT = "$FindBin::Bin/..";
my $CHROMIUM = '/usr/bin/chromium';
my $SCRIPT = "$FindBin::Bin/lib/webmail_browser.mjs";

plan(skip_all => "$CHROMIUM not installed") unless -x $CHROMIUM;
plan(skip_all => 'node not installed')
    unless system('node --version >/dev/null 2>&1') == 0;
plan(skip_all => 'puppeteer-core not installed (make node-deps)')
    unless -d "$FindBin::Bin/node/node_modules/puppeteer-core";
plan(skip_all => 'Mail::IMAPClient not installed')
    unless eval { require Mail::IMAPClient; 1 };

my $t = MailPlus::Test->new();

my %users = ('alice@example.com' => 'pwA', 'bob@example.com' => 'pwB');

my $da = $t->dovecot('a', users => \%users, extra => <<'EOF');
namespace inbox {
  inbox = yes
  mailbox Drafts {
    auto = subscribe
    special_use = \Drafts
  }
  mailbox Sent {
    auto = subscribe
    special_use = \Sent
  }
  mailbox Archive {
    auto = subscribe
    special_use = \Archive
  }
  mailbox Junk {
    auto = subscribe
    special_use = \Junk
  }
  mailbox Trash {
    auto = subscribe
    special_use = \Trash
  }
}
EOF

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
bob@example.com:{PLAIN}pwB:a
EOF

# the page, installed as make install-webmail would

make_path($t->path('webmail'));

for my $f (qw/ index.html webmail.css webmail.js /) {
    copy("$ROOT/webmail/$f", $t->path("webmail/$f"))
        or die "copy $f: $!\n";
    chmod 0644, $t->path("webmail/$f");
}
chmod 0755, $t->path('webmail');

# the "remote" server the HTML message points at: it listens, and must see
# no connection

my $remote_port = $t->port('remote');
my $remote = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$remote_port",
    Listen => 5, ReuseAddr => 1) or die "listen: $!\n";
my $remote_addr = "127.0.0.1:$remote_port";

my $csp = "default-src 'self'; script-src 'self'; "
    . "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    . "frame-src 'self' about:; connect-src 'self'; object-src 'none'; "
    . "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 1s;
    router_auth_max_delay 1s;
    router_login_fails 5;
    router_zone   throttle:1m;

    router_pool a {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3} lmtp=$da->{lmtp};
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
        server_name  webmail.test;

        client_max_body_size 20m;

        location = /auth {
            mail_router_auth;
        }

        location /jmap/ {
            mail_plus_jmap;
        }

        location /mail/ {
            alias %%TESTDIR%%/webmail/;

            types {
                text/html              html;
                text/css               css;
                text/javascript        js;
            }

            add_header Content-Security-Policy "$csp" always;
            add_header X-Frame-Options DENY always;
            add_header Referrer-Policy no-referrer always;
            add_header X-Content-Type-Options nosniff always;
            add_header Cache-Control no-cache;
        }
    }
}
EOF

$t->run();

###############################################################################

# alice's INBOX: one message over SMTP through the queue, the rest seeded

my $smtp = $t->submit($t->port('smtp'), 'carol@example.net',
    ['alice@example.com'], "From: carol\@example.net\r\n"
    . "To: alice\@example.com\r\nSubject: Over SMTP\r\n\r\n"
    . "Delivered by the queue.\r\n");
like($smtp, qr/^250 /m, 'SMTP: queued');
ok(wait_for(sub { $t->maildir_count($da, 'alice@example.com') == 1 }, 20),
    'SMTP: delivered to alice over LMTP');

$t->seed($da, 'alice@example.com', text => <<"EOF");
From: Mallory <mallory\@example.net>
To: alice\@example.com
Subject: HTML message
Date: Mon, 30 Nov 2026 09:00:00 +0000
Message-ID: <html-1\@example.net>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Hello in text.
--b1
Content-Type: text/html; charset=utf-8

<html><head><title>x</title>
<script>document.title = 'pwned';</script></head>
<body><p>Hello in HTML.</p>
<img src="http://$remote_addr/pixel.png" alt="pixel">
<p style="background: url(http://$remote_addr/bg.png)">styled</p>
<script>
document.body.setAttribute('data-ran', '1');
new Image().src = 'http://$remote_addr/script-ran';
</script>
<img src="x" onerror="document.body.setAttribute('data-ran', '2')">
</body></html>
--b1--
EOF

$t->seed($da, 'alice@example.com', subject => 'Plain words',
    body => "Some <b>not bold</b> text & more.\n");
$t->seed($da, 'alice@example.com', subject => 'Move me');
$t->seed($da, 'alice@example.com', subject => 'Delete me');
$t->seed($da, 'alice@example.com', subject => 'The haystack',
    body => "Somewhere in here is a needle.\n");
$t->seed($da, 'alice@example.com', text => <<'EOF');
From: Bob <bob@example.com>
To: alice@example.com
Subject: Lunch?
Date: Mon, 30 Nov 2026 11:00:00 +0000
Message-ID: <lunch-1@example.com>

Lunch tomorrow?
EOF
$t->seed($da, 'alice@example.com', text => <<'EOF');
From: Dave <dave@example.net>
To: alice@example.com
Subject: With attachment
Date: Mon, 30 Nov 2026 12:00:00 +0000
Message-ID: <att-1@example.net>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b2"

--b2
Content-Type: text/plain

See the notes.
--b2
Content-Type: text/plain; name="notes.txt"
Content-Disposition: attachment; filename="notes.txt"

The notes' text.
--b2--
EOF

# a folder of 60 messages, for paging

for my $i (1 .. 60) {
    $t->seed($da, 'alice@example.com', folder => 'Lists',
        subject => "list message $i");
}

my $count = $t->maildir_count($da, 'alice@example.com');
is($count, 8, 'INBOX seeded');

# the page's headers

my $http = HTTP::Tiny->new(timeout => 20);
my $base = 'http://127.0.0.1:' . $t->port('http');

my $r = $http->get("$base/mail/");
is($r->{status}, 200, 'the page: 200');
like($r->{headers}{'content-type'}, qr{^text/html}, 'the page: text/html');
is($r->{headers}{'content-security-policy'}, $csp, 'the page: its CSP');
is($r->{headers}{'x-frame-options'}, 'DENY', 'the page: X-Frame-Options');
is($r->{headers}{'referrer-policy'}, 'no-referrer',
    'the page: Referrer-Policy');
unlike($r->{content}, qr/<script>|\son\w+=/i,
    'the page: no inline script or handler (the CSP allows none)');
$r = $http->get("$base/mail/webmail.js");
like($r->{headers}{'content-type'}, qr{^text/javascript},
    'the script: text/javascript');

###############################################################################

# the browser

my %cfg = (
    base => "$base/mail/",
    user => 'alice@example.com',
    pass => 'pwA',
    remote => $remote_addr,
    dir => $t->testdir,
    unread => 8,
    messages => 8,
    lists => 60,
    timeout => 150,
);

my ($output, $chromium) = browser(\%cfg, 180);

my %passed;

for my $line (split /\n/, $output) {
    if ($line =~ /^ok - (.*)$/) {
        pass("browser: $1");
        $passed{$1} = 1;
    } elsif ($line =~ /^not ok - (.*)$/) {
        fail("browser: $1");
    } elsif ($line =~ /^screenshot (\S+)$/) {
        keep_screenshot($1);
    } elsif ($line =~ /^# (.*)$/) {
        note($1);
    }
}

like($output, qr/^ok - narrow screen/m, 'browser: every step ran');

# the remote address saw nothing

ok(!IO::Select->new($remote)->can_read(0),
    'no connection reached the remote address');

# bob's mailbox over IMAP: the message and the reply (what the browser did
# not get to do is not looked for)

my %bob;

after('write and send a message to bob', sub {
    my $imap;
    my @found;
    my $want = $passed{'reply to bob: To, Re:, then sent'} ? 2 : 1;

    ok(wait_for(sub {
        $imap ||= Mail::IMAPClient->new(Server => '127.0.0.1',
            Port => $da->{imap}, User => 'bob@example.com',
            Password => 'pwB', Timeout => 10) or return 0;
        $imap->examine('INBOX') or return 0;
        @found = @{$imap->search('ALL') || []};
        return @found >= $want;
    }, 30), "bob: $want message(s) arrived");

    for my $uid (@found) {
        my $text = $imap->message_string($uid) // '';
        my ($s) = $text =~ /^Subject: ([^\r\n]*)/mi;
        $bob{$s // ''} = $text;
    }

    $imap->logout() if $imap;

    my $sent = $bob{'From the web page'} // '';
    like($sent, qr/^From: .*alice\@example\.com/mi, 'bob: from alice');
    like($sent, qr/^To: .*bob\@example\.com/mi, 'bob: to bob');
    like($sent, qr/Sent by the browser\.\r?\nBye\./, 'bob: the text');
});

after('reply to bob: To, Re:, then sent', sub {
    my $reply = $bob{'Re: Lunch?'} // '';
    ok(length $reply, 'bob: the reply');
    like($reply, qr/^In-Reply-To: <lunch-1\@example\.com>/mi,
        'bob: the reply\'s In-Reply-To');
    like($reply, qr/^References: .*<lunch-1\@example\.com>/mi,
        'bob: the reply\'s References');
    like($reply, qr/Yes, at noon\./, 'bob: the reply\'s text');
});

# alice: Sent holds what was sent, no longer drafts; Archive and Trash
# what moved

my $ai = Mail::IMAPClient->new(Server => '127.0.0.1', Port => $da->{imap},
    User => 'alice@example.com', Password => 'pwA', Timeout => 10);
ok($ai, 'alice over IMAP');

after('write and send a message to bob', sub {
    my $n = $passed{'reply to bob: To, Re:, then sent'} ? 2 : 1;
    $ai->examine('Sent');
    is(scalar @{$ai->search('ALL') || []}, $n, 'alice: Sent holds them');
    is(scalar @{$ai->search('DRAFT') || []}, 0, 'alice: not drafts');
    $ai->examine('Drafts');
    is(scalar @{$ai->search('ALL') || []}, 0, 'alice: Drafts empty');
}) if $ai;

after('move a message to Archive', sub {
    $ai->examine('Archive');
    is(scalar @{$ai->search('SUBJECT "Move me"') || []}, 1,
        'alice: Archive holds the moved message');
}) if $ai;

after('delete: to Trash', sub {
    $ai->examine('Trash');
    is(scalar @{$ai->search('SUBJECT "Delete me"') || []}, 1,
        'alice: Trash holds the deleted message');
}) if $ai;

after('u: marked unread again', sub {
    $ai->examine('INBOX');
    is(scalar @{$ai->search('UNSEEN SUBJECT "HTML message"') || []}, 1,
        'alice: the HTML message unread again');
}) if $ai;

$ai->logout() if $ai;

ok(!$chromium || !alive($chromium), 'Chromium gone');

$t->finish();

###############################################################################

# browser(\%cfg, $bound): runs the node script, its output read with a
# bound; node, and Chromium if still there, killed by PID past it

sub browser {
    my ($cfg, $bound) = @_;

    my $json = encode_json($cfg);
    my $pid = open(my $fh, '-|') // die "fork: $!\n";

    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec('node', $SCRIPT, $json) or POSIX::_exit(127);
    }

    my $sel = IO::Select->new($fh);
    my $out = '';
    my $deadline = time() + $bound;
    my $chromium;

    my $exited = 0;

    # until the end of the output, or node gone (a helper of Chromium may
    # hold the pipe open), or the bound

    while (time() < $deadline) {
        if ($sel->can_read(0.5)) {
            my $n = sysread($fh, my $buf, 65536);
            last unless $n;
            $out .= $buf;
            next;
        }

        if (waitpid($pid, WNOHANG) == $pid) {
            $exited = 1;
            last;
        }
    }

    while ($sel->can_read(0)) {
        my $n = sysread($fh, my $buf, 65536);
        last unless $n;
        $out .= $buf;
    }

    # node ends just after its output does: a few seconds for it, within
    # the bound

    $exited ||= wait_for(sub { waitpid($pid, WNOHANG) == $pid },
        List::Util::max(1, List::Util::min(10, $deadline - time())));

    if (!$exited) {
        diag("the browser run took more than ${bound}s: killed");
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }

    ($chromium) = $out =~ /^chromium (\d+)$/m;

    # Chromium and its helpers, its process group (puppeteer starts it as
    # the leader of one), by its PID

    if ($chromium && alive($chromium)) {
        kill 'KILL', -$chromium;
        kill 'KILL', $chromium;
        wait_for(sub { !alive($chromium) }, 10);
    }

    close $fh;

    return ($out, $chromium);
}

# after($step, $code): checks of what a browser step did, run if it passed

sub after {
    my ($step, $code) = @_;

    if ($passed{$step}) {
        $code->();
    } else {
        note("not checked: the browser step '$step' did not pass");
    }
}

# a process there and not a zombie (an orphan's parent may not reap it)

sub alive {
    my ($pid) = @_;

    return 0 unless kill(0, $pid);

    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    close $fh;

    return $stat !~ /^\d+ \(.*\) Z /;
}

# a failure's screenshot kept next to the test's directory, which goes

sub keep_screenshot {
    my ($png) = @_;

    my ($n) = $png =~ /-(\d+)\.png$/;
    my $keep = dirname($t->testdir) . "/webmail-failure-$$-" . ($n // 0)
        . '.png';

    if (copy($png, $keep)) {
        diag("screenshot of the failure: $keep");
    } else {
        diag("screenshot of the failure: $png (not kept: $!)");
    }
}
