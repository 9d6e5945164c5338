#!/usr/bin/perl

# A busy thread pool: the queue's pool has one thread and room for one
# waiting task, and it is shared by the commits (fsync), the delivery's
# claims and reads, and the stock of temporary files.  Many SMTP clients
# and HTTP submissions at once: when the pool cannot take a commit, the
# client gets "451 4.3.0" (SMTP) or 503 (HTTP), never a commit done in the
# event loop; a claim or a read it cannot take is tried again later.
# Nothing is lost: every message answered 250 (or 202) reaches bob's
# mailbox exactly once, and none that was refused does.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use MIME::Base64;
use POSIX qw/ _exit /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $db = $t->dovecot('b', users => { 'bob@example.com' => 'pwB',
    'alice@example.com' => 'pwA' });

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:b
bob@example.com:{PLAIN}pwB:b
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

thread_pool busy threads=1 max_queue=1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;

    router_pool b {
        server 127.0.0.1 imap=$db->{imap} pop3=$db->{pop3} lmtp=$db->{lmtp};
    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    queue_spool %%TESTDIR%%/spool;
    queue_thread_pool busy;

    queue_delivery on;
    queue_retry_first 1s;
    queue_retry_max 1s;
    queue_scan_interval 200ms;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen  127.0.0.1:%%PORT_http%%;

        location = /auth {
            mail_router_auth;
        }

        location = /submit {
            mail_plus_submit;
        }
    }
}
EOF

$t->run();

###############################################################################

my $clients = 30;
my $per = 4;
my $body = ('x' x 76 . "\r\n") x 200;

# smtp_client($n): $per messages in one session; "subject reply" lines

sub smtp_client {
    my ($n) = @_;

    my @out;
    my $s = MailPlus::Test::Client->new($t->port('smtp')) or return;
    $s->smtp_reply();
    $s->smtp('EHLO client.test');

    for my $k (1 .. $per) {
        my $subject = "smtp-$n-$k";
        $s->smtp('MAIL FROM:<alice@example.com>');
        $s->smtp('RCPT TO:<bob@example.com>');
        $s->smtp('DATA');
        my $r = $s->smtp("Subject: $subject\r\n\r\n$body.");
        $r = 'none' unless defined $r;
        $r =~ s/\r?\n.*//s;
        push @out, "$subject $r";
    }

    $s->smtp('QUIT');

    return @out;
}

sub http_client {
    my ($n) = @_;

    my @out;
    my $http = HTTP::Tiny->new(timeout => 20);
    my $auth = 'Basic ' . encode_base64('alice@example.com:pwA', '');

    for my $k (1 .. $per) {
        my $subject = "http-$n-$k";
        my $r = $http->request('POST', 'http://127.0.0.1:'
            . $t->port('http') . '/submit?to=bob%40example.com',
            { headers => { Authorization => $auth,
                'Content-Type' => 'message/rfc822' },
              content => "Subject: $subject\r\n\r\n$body" });
        push @out, "$subject $r->{status}";
    }

    return @out;
}

my @kids;

for my $n (1 .. $clients) {
    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        my @out = $n % 3 ? smtp_client($n) : http_client($n);
        $t->write_file("client-$n", join("\n", @out) . "\n");
        _exit(0);
    }

    push @kids, $pid;
}

ok(wait_for(sub {
    @kids = grep { waitpid($_, POSIX::WNOHANG()) == 0 } @kids;
    return !@kids;
}, 60), 'every client is done');

kill 'KILL', @kids;

my (%ok, %refused, @other);

for my $n (1 .. $clients) {
    for my $line (split /\n/, $t->read_file("client-$n")) {
        my ($subject, $reply) = $line =~ /^(\S+) (.*)$/ or next;

        if ($reply =~ /^250 / || $reply eq '202') {
            $ok{$subject} = 1;

        } elsif ($reply =~ /^451 4\.3\.0 / || $reply eq '503') {
            $refused{$subject} = 1;

        } else {
            push @other, $line;
        }
    }
}

my $sent = $clients * $per;

is(keys(%ok) + keys(%refused), $sent, 'every message has an answer');
is(join("\n", @other), '', 'only 250/202 or 451/503');
ok(scalar(grep { /^smtp/ } keys %refused),
    'some SMTP commits refused with 451 4.3.0: '
    . scalar(grep { /^smtp/ } keys %refused));
ok(scalar(keys %ok), 'some accepted: ' . scalar(keys %ok));
diag('HTTP 503: ' . scalar(grep { /^http/ } keys %refused));

sub delivered {
    my %n;
    $n{$_}++ for $t->maildir_text($db, 'bob@example.com')
        =~ /^Subject: (\S+)\r?$/mg;
    return \%n;
}

ok(wait_for(sub {
    my $d = delivered();
    return !grep { !$d->{$_} } keys %ok;
}, 90), 'every accepted message reached bob');

my $d = delivered();

is(join(' ', sort grep { $d->{$_} > 1 } keys %$d), '', 'each once');
is(join(' ', sort grep { $d->{$_} } keys %refused), '',
    'no refused message was delivered');

ok(wait_for(sub {
    !grep { $t->spool('spool', $_) } qw/ incoming active deferred /
}, 20), 'the queue is empty');

like($t->read_file('error.log'),
    qr/\[warn\].*queue thread pool is busy, messages not committed/,
    'the busy pool logged');

$t->finish();
