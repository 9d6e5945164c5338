#!/usr/bin/perl

# Slow clients of a store-and-forward SMTP server: a byte does not buy
# time.  A command must be complete within smtp_command_timeout of the
# last reply, message data within smtp_data_timeout of the 354 plus a
# second for every smtp_data_min_rate bytes; a client that trickles a byte
# every half second is closed with 421 all the same.  A message sent at a
# fair rate, longer than smtp_data_timeout, is accepted.

use warnings;
use strict;

use Test::More;

use IO::Socket::INET;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

$t->write_file_expand('nginx.conf', <<'EOF');
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_pool a {
        server 127.0.0.1 imap=1;
        auth backend;
    }

    auth_http 127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward  on;
        smtp_local_domains      example.com;
        smtp_verify_recipients  off;
        smtp_command_timeout    2s;
        smtp_data_timeout       2s;
        smtp_data_min_rate      1k;
    }
}
EOF

$t->run();

my $port = $t->port('smtp');

# sends one byte of $text every $pause seconds until the server closes;
# returns how long that took and what the server said last

sub trickle {
    my ($s, $text, $pause, $limit) = @_;

    my $start = time();
    my $said = '';

    $s->blocking(0);

    for my $ch (split //, $text x 100) {
        last if time() - $start > $limit;

        my $n = $s->syswrite($ch);
        last unless defined $n && $n == 1;

        my $end = time() + $pause;
        my $closed;

        while (time() < $end) {
            my $buf;
            my $r = $s->sysread($buf, 4096);

            if (defined $r && $r == 0) {
                $closed = 1;
                last;
            }

            $said .= $buf if $r;
            sleep(0.05);
        }

        return (time() - $start, $said) if $closed;
    }

    return (undef, $said);
}

sub session {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
        Timeout => 10) or die "connect: $!";
    $s->autoflush(1);

    my $greeting = <$s>;
    return $s;
}

# a command line trickled a byte every half second

my $s = session();
my ($took, $said) = trickle($s, 'EHLO slow.example.org', 0.5, 15);

ok(defined $took, 'slow command: the server closed the connection');
cmp_ok($took // 99, '<', 5, 'slow command: within its deadline');
like($said, qr/^421 4\.4\.2 /m, 'slow command: 421 timeout');

# message data trickled after the 354

$s = session();
print $s "EHLO client.example.org\r\n";
1 while (<$s> // '') =~ /^250-/;
print $s "MAIL FROM:<a\@example.org>\r\n";
<$s>;
print $s "RCPT TO:<bob\@example.com>\r\n";
<$s>;
print $s "DATA\r\n";
like(<$s> // '', qr/^354 /, 'slow data: 354');

($took, $said) = trickle($s, 'Subject: slow', 0.5, 15);

ok(defined $took, 'slow data: the server closed the connection');
cmp_ok($took // 99, '<', 5, 'slow data: within its deadline');
like($said, qr/^421 4\.4\.2 /m, 'slow data: 421 timeout');

# a message that takes longer than smtp_data_timeout at a fair rate
# (4 KB every half second, 8 KB/s, above the 1 KB/s minimum)

$s = session();
print $s "EHLO client.example.org\r\n";
1 while (<$s> // '') =~ /^250-/;
print $s "MAIL FROM:<a\@example.org>\r\n";
<$s>;
print $s "RCPT TO:<bob\@example.com>\r\n";
<$s>;
print $s "DATA\r\n";
<$s>;

print $s "Subject: steady\r\n\r\n";

my $start = time();
my $line = ('x' x 1022) . "\r\n";

while (time() - $start < 3.5) {
    print $s $line x 4;
    sleep(0.5);
}

print $s ".\r\n";
like(<$s> // '', qr/^250 /, 'steady data past smtp_data_timeout: accepted');
print $s "QUIT\r\n";

$t->finish();

###############################################################################
