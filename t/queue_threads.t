#!/usr/bin/perl

# The spool's I/O of the delivery runs in the queue's thread pool, never
# in a worker's event loop: the scan of deferred/ (readdir and a stat of
# every file), the claim's reads of the envelope and state, the content
# read for the next hop.  Seen from outside with strace on every thread
# of the worker while deferred/ holds many files not yet due and one
# message is delivered: the worker's main thread (its TID is its PID)
# makes no getdents64, no stat of a deferred/ file and no pread64; the
# pool's threads do.

use warnings;
use strict;

use Test::More;

use POSIX qw/ _exit /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $strace = (grep { -x } map { "$_/strace" } split /:/, $ENV{PATH})[0];

plan(skip_all => 'no strace') unless $strace;
plan(skip_all => 'under valgrind the threads traced are valgrind\'s')
    if $MailPlus::Test::VALGRIND;
plan(skip_all => 'no smtp-sink') unless -x $MailPlus::Test::SMTP_SINK;

my $t = MailPlus::Test->new();

$t->smtp_sink('hop');

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    auth_http  127.0.0.1:%%PORT_http%%/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_scan_interval 100ms;
    queue_relay_host 127.0.0.1:%%PORT_hop%%;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_trusted_networks 127.0.0.0/8;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen  127.0.0.1:%%PORT_http%%;

        location = /auth {
            return 204;
        }
    }
}
EOF

$t->run();

###############################################################################

# deferred/: many messages, due in an hour

my $spool = $t->path('spool');
my ($uid, $gid) = (stat("$spool/deferred"))[4, 5];
my $later = time() + 3600;

for my $i (1 .. 1000) {
    my $id = sprintf('%08X%05X%06X%03X', time(), $i, 0xFFFFF1, $i % 4096);
    my $f = "$spool/deferred/$id";

    open my $fh, '>', $f or die "$f: $!\n";
    print $fh "MAILPLUS-QUEUE 1\r\nid $id\r\narrival " . time() . "\r\n"
        . "sender a\@example.com\r\nrcpt b\@remote.example\r\nend\r\n"
        . "Subject: later\r\n\r\nlater\r\n";
    close $fh;

    chown $uid, $gid, $f;
    utime $later, $later, $f;
}

my ($worker) = $t->workers();
ok($worker, 'the worker');

opendir my $dh, "/proc/$worker/task" or die "no tasks: $!\n";
my @tids = grep { /^\d+$/ } readdir $dh;
closedir $dh;

ok(@tids > 1, 'the worker has threads: ' . scalar(@tids));

# strace every thread for a while, as a message is delivered

my $out = $t->path('strace.out');

my $pid = fork();
die "fork: $!\n" unless defined $pid;

if ($pid == 0) {
    open STDERR, '>', $t->path('strace.err');
    exec($strace, '-f', '-qq', '-e', 'trace=getdents64,newfstatat,pread64',
        '-o', $out, map { ('-p', $_) } @tids) or _exit(127);
}

ok(wait_for(sub { -s $out || $t->read_file('strace.err') =~ /attached/ }, 5),
    'strace attached');

select undef, undef, undef, 0.5;

my $r = $t->submit($t->port('smtp'), 'alice@example.com',
    ['bob@remote.example'],
    "Subject: now\r\n\r\n" . ("n" x 70 . "\r\n") x 2000);
like($r, qr/^250 /, 'a message queued');

ok(wait_for(sub { $t->read_file('hop.log') =~ /^\.$/m
    || !grep { $t->spool('spool', $_) } qw/ incoming active / }, 10),
    'and delivered');

select undef, undef, undef, 1;

kill 'INT', $pid;
waitpid($pid, 0);

my (%main, %thread);

for my $line (split /\n/, $t->read_file('strace.out')) {
    my ($tid, $call, $args) = $line =~ /^(\d+)\s+(\w+)\((.*)$/ or next;

    next if $call eq 'newfstatat' && $args !~ m{/deferred/};

    if ($tid == $worker) {
        $main{$call}++;

    } else {
        $thread{$call}++;
    }
}

my $summary = join(', ', map { "$_=" . ($main{$_} || 0) . '/'
    . ($thread{$_} || 0) } qw/ getdents64 newfstatat pread64 /);

ok(!$main{getdents64}, "no readdir in the event loop ($summary)");
ok(!$main{newfstatat}, 'no stat of a deferred/ file in the event loop');
ok(!$main{pread64}, 'no pread in the event loop');

ok($thread{getdents64}, 'the scan reads directories in the threads');
ok(($thread{newfstatat} || 0) >= 1000, 'and stats deferred/ files there');
ok($thread{pread64}, 'the delivery reads the spool in the threads');

$t->finish();
