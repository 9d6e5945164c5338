#!/usr/bin/perl

# The spool: a message answered with 250 survives kill -9 of the worker
# and a restart; kill -9 during DATA leaves nothing visible, and the
# temporary file is removed at the next start; a spool that cannot be
# written (permissions, full disk) gives 452 4.3.1 and no entry.

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $dir = $t->testdir();

# a small tmpfs for the full disk case, if this machine lets us mount one

mkdir "$dir/full";
my $tmpfs = $> == 0
    && system("mount -t tmpfs -o size=1m tmpfs $dir/full 2>/dev/null") == 0;

END {
    system("umount $dir/full 2>/dev/null") if $tmpfs;
}

$t->write_file_expand('nginx.conf', <<'EOF');
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    auth_http 127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
    }
}
EOF

$t->run();

my $port = $t->port('smtp');

sub begin {
    my $c = MailPlus::Test::Client->new($port) or return;
    $c->getline();
    $c->smtp('EHLO c.example');
    $c->smtp('MAIL FROM:<a@remote.example>');
    $c->smtp('RCPT TO:<rcpt@example.com>');
    return $c;
}

###############################################################################

# a reload while a message is being received: the old worker's temporary
# file is left alone, and the message is committed by the old worker

my $idle = MailPlus::Test::Client->new($port);
$idle->getline();
$idle->smtp('EHLO idle.example');

my $c = begin();
$c->smtp('DATA');
$c->send("Subject: across a reload\r\n\r\nfirst half\r\n", raw => 1);
ok(wait_for(sub { my @f = $t->spool('spool', 'tmp'); @f == 1 }),
    'temporary file before the reload');
ok($t->reload(), 'reload');
is(scalar(my @tmp = $t->spool('spool', 'tmp')), 1,
    'temporary file of a running worker kept');
$c->send("second half\r\n.\r\n", raw => 1);
my ($rid) = $c->smtp_reply() =~ /queued as ([0-9A-F]{22})/;
ok($rid, 'queued by the old worker');
$c->smtp('QUIT');
ok(-f "$dir/spool/incoming/$rid", 'in the spool after the reload');
like($idle->getline(), qr/^421 4\.3\.2 mx\.test Service shutting down/,
    'an idle session is closed by the old worker');
ok($idle->at_eof(), 'idle session closed');
unlink "$dir/spool/incoming/$rid";

###############################################################################

# kill -9 right after 250: the message is there after a restart

$c = begin();
$c->smtp('DATA');
$c->send("Subject: durable\r\n\r\nkept\r\n.\r\n", raw => 1);
my ($id) = $c->smtp_reply() =~ /queued as ([0-9A-F]{22})/;
ok($id, 'queued');

ok(wait_for(sub { my @x = $t->workers(); @x == 1 }), 'one worker');
my @w = $t->workers();
kill 'KILL', @w;
ok(wait_for(sub { !-e "/proc/$w[0]" || _zombie($w[0]) }), 'worker killed');

# the old worker of the reload may still be there

ok(-f "$dir/spool/incoming/$id", 'message in the spool after kill -9');

# kill -9 during DATA: nothing in incoming/

ok(wait_for(sub { $t->workers() }), 'worker respawned');

$c = begin();
$c->smtp('DATA');
$c->send("Subject: partial\r\n\r\n" . ("x" x 100 . "\r\n") x 500, raw => 1);
ok(wait_for(sub { my @f = $t->spool('spool', 'tmp'); @f == 1 }),
    'temporary file while DATA is read');
kill 'KILL', $t->workers();
ok($c->at_eof(), 'connection gone with the worker');
is_deeply([ $t->spool('spool') ], [ $id ], 'no partial message visible');

# a restart reads the spool back and removes stale temporary files

$t->restart();

is_deeply([ $t->spool('spool') ], [ $id ], 'message still there after restart');
is_deeply([ $t->spool('spool', 'tmp') ], [], 'stale temporary file removed');
like($t->read_file('error.log'),
    qr/queue spool "\Q$dir\E\/spool": 1 messages incoming, 0 active, [1-9]\d* stale temporary files removed/,
    'spool scanned at start');

# memory stays bounded: a 30 MB message over the 10 MB limit, a 4 MB
# command line

my $worker;
wait_for(sub { ($worker) = $t->workers(); $worker });
my $rss0 = rss($worker);

$c = begin();
$c->smtp('DATA');
my $chunk = ("w" x 1022 . "\r\n") x 64;
for (1 .. 480) {
    $c->send($chunk, raw => 1) or last;
}
$c->send(".\r\n", raw => 1);
like($c->smtp_reply(30), qr/^552 5\.3\.4 /, '30 MB message refused');
$c->send("NOOP " . ("x" x 4_000_000) . "\r\n", raw => 1);
like($c->smtp_reply(30), qr/^500 5\.5\.6 /, '4 MB line refused');
like($c->smtp('NOOP'), qr/^250 /, 'session goes on');
$c->smtp('QUIT');

SKIP: {
    skip "under valgrind the worker's RSS is valgrind's own", 1
        if $MailPlus::Test::VALGRIND;

    my $grown = rss($worker) - $rss0;
    cmp_ok($grown, '<', 4096, "worker memory grew by $grown kB only");
}
is_deeply([ $t->spool('spool', 'tmp') ], [], 'refused message removed');

# a spool that cannot be written: 452, nothing left behind

chmod 0555, "$dir/spool/incoming";
$c = begin();
$c->smtp('DATA');
$c->send("Subject: nowhere to go\r\n\r\nx\r\n.\r\n", raw => 1);
like($c->smtp_reply(), qr/^452 4\.3\.1 /, 'unwritable spool: 452');
like($c->smtp('RCPT TO:<rcpt@example.com>'), qr/^503 /, 'transaction reset');
chmod 0700, "$dir/spool/incoming";
is_deeply([ $t->spool('spool') ], [ $id ], 'unwritable spool: nothing queued');
is_deeply([ $t->spool('spool', 'tmp') ], [],
    'unwritable spool: temporary file removed');
$c->smtp('QUIT');

SKIP: {
    skip 'cannot mount a tmpfs here', 5 unless $tmpfs;

    $t->stop();

    $t->write_file('nginx.conf',
        $t->read_file('nginx.conf') =~ s!/spool;!/full/spool;!r);

    $t->run();

    $c = begin();
    $c->smtp('DATA');
    my $line = ("y" x 998) . "\r\n";
    $c->send("Subject: too big for the disk\r\n\r\n", raw => 1);
    $c->send($line x 1500, raw => 1) or last;
    $c->send(".\r\n", raw => 1);
    like($c->smtp_reply(30), qr/^452 4\.3\.1 /, 'full disk: 452');
    is_deeply([ $t->spool('full/spool') ], [], 'full disk: nothing queued');
    is_deeply([ $t->spool('full/spool', 'tmp') ], [],
        'full disk: temporary file removed');

    $c->smtp('MAIL FROM:<a@remote.example>');
    $c->smtp('RCPT TO:<rcpt@example.com>');
    $c->smtp('DATA');
    $c->send("Subject: small\r\n\r\nfits\r\n.\r\n", raw => 1);
    like($c->smtp_reply(), qr/^250 2\.0\.0 Ok: queued as/,
        'full disk: a small message fits again');
    is(scalar(my @a = $t->spool('full/spool')), 1, 'full disk: one message');
    $c->smtp('QUIT');
}

# the alerts of the killed workers are expected

$t->stop();

my ($alerts, $san) = $t->log_problems();
is(join("\n", grep { !/exited on signal 9|Permission denied|No space left|not committed/ } @$alerts), '', 'no other alerts');
is(join("\n", @$san), '', 'no sanitizer reports');

done_testing();

sub rss {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return 0;
    local $/;
    my ($kb) = <$fh> =~ /^VmRSS:\s+(\d+)/m;
    return $kb || 0;
}

sub _zombie {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    my $s = <$fh>;
    return $s =~ /\)\s+Z/;
}
