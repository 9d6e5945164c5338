#!/usr/bin/perl

# Group commit: many concurrent sessions in one worker; every message is
# queued under its own ID, and the spool's fsyncs are batched (the debug
# log counts each batch).

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;
use POSIX qw/ _exit /;

###############################################################################

my $t = MailPlus::Test->new();

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
my ($clients, $each) = (25, 4);

my @pids;

for my $n (1 .. $clients) {
    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        my $ok = 0;
        my $c = MailPlus::Test::Client->new($port, timeout => 30);

        if ($c) {
            $c->getline();
            $c->smtp('EHLO c.example');

            for my $m (1 .. $each) {
                $c->send("MAIL FROM:<c$n\@remote.example>\r\n"
                    . "RCPT TO:<r$m\@example.com>\r\nDATA\r\n", raw => 1);
                $c->smtp_reply() for 1 .. 3;
                $c->send("Subject: $n/$m\r\n\r\n" . ("z" x 2000)
                    . "\r\n.\r\n", raw => 1);
                $ok++ if $c->smtp_reply() =~ /^250 2\.0\.0 Ok: queued as/;
            }

            $c->smtp('QUIT');
        }

        _exit($ok == $each ? 0 : 1);
    }

    push @pids, $pid;
}

my $failed = 0;

for my $pid (@pids) {
    waitpid($pid, 0);
    $failed++ if $?;
}

is($failed, 0, 'every client got 250 for every message');

my @ids = $t->spool('spool');
is(scalar @ids, $clients * $each, 'every message in the spool');

my %subjects;
for my $id (@ids) {
    my ($s) = $t->read_file("spool/incoming/$id") =~ /\r\nSubject: (\S+)\r\n/;
    $subjects{$s}++ if defined $s;
}
is(scalar keys %subjects, $clients * $each, 'each message once');

ok(scalar(grep { -z } glob($t->path('spool/tmp') . '/*')),
    'a stock of empty temporary files while running');

$t->stop();

is(scalar(my @left = glob($t->path('spool/tmp') . '/*')), 0,
    'the stock is removed when the worker exits');

my @batches = $t->read_file('error.log') =~ /queue batch: (\d+) messages/g;

SKIP: {
    skip 'nginx without debug log', 2 unless @batches;

    my $sum = 0;
    $sum += $_ for @batches;
    my ($max) = sort { $b <=> $a } @batches;

    is($sum, $clients * $each, 'batches hold every message once');
    cmp_ok($max, '>', 1, "fsyncs batched: " . scalar(@batches)
        . " batches, largest $max");
}

$t->finish();
