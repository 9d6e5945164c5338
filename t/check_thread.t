#!/usr/bin/perl

# Password checks in the router's thread pool (ngx_mail_plus_check.c).
#
# A crypt check that outlives its session: a SHA512-CRYPT hash with a huge
# rounds= count takes seconds; POP3 clients of a router_proxy server send
# the password and go away at once, their sessions time out (1s) while the
# thread still works, and the check, when done, must touch neither the
# session's log nor its connection (it logs through its own log; run this
# under the sanitizer build, or nginx under valgrind, to see a stale one).
#
# A thread pool that cannot take a check (threads=1 max_queue=1, two slow
# checks in it): the login fails temporarily at once, never checked in the
# event loop: "-ERR [SYS/TEMP]" from the module's POP3 session and, through
# the auth_http endpoint, from stock POP3; "454 4.7.0" from stock SMTP;
# 503 from the HTTP submission; each counted as a temporary failure.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw/ encode_base64 /;
use Time::HiRes qw/ time sleep /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $d = $t->dovecot('a', users => { 'slow@example.com' => 'pwS',
    'quick@example.com' => 'pwQ', 'alice@example.com' => 'pwA' });

# about 2 s and 0.5 s of crypt each on this kind of machine

my $slow = crypt('pwS', '$6$rounds=12000000$saltsalt$');
my $quick = crypt('pwQ', '$6$rounds=1000000$saltsalt$');

$t->write_file('users', <<"EOF");
slow\@example.com:{SHA512-CRYPT}$slow
quick\@example.com:{SHA512-CRYPT}$quick
alice\@example.com:{PLAIN}pwA
EOF

sub conf {
    my ($queue) = @_;

    return <<"EOF";
%%LOAD_MODULES%%

worker_processes 1;

thread_pool tp threads=1 max_queue=$queue;

events {
}

mail {
    router_users        %%TESTDIR%%/users;
    router_zone         z:1m;
    router_thread_pool  tp;
    router_auth_delay   1s;
    router_auth_max_delay  1s;
    router_login_fails     1000;
    router_address_fails   1000;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3} smtp=9;
    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    queue_spool %%TESTDIR%%/spool;

    server {
        listen        127.0.0.1:%%PORT_pop3p%%;
        protocol      pop3;
        router_proxy  on;
        timeout       1s;
    }

    server {
        listen     127.0.0.1:%%PORT_pop3%%;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:%%PORT_smtp%%;
        protocol   smtp;
        smtp_auth  plain;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen  127.0.0.1:%%PORT_http%%;

        location = /auth {
            mail_router_auth;
        }

        location = /status {
            mail_plus_status;
        }

        location = /submit {
            mail_plus_submit;
        }
    }
}
EOF
}

$t->write_file_expand('nginx.conf', conf(1));
$t->run();

###############################################################################

my $http = HTTP::Tiny->new(timeout => 20);
my $base = 'http://127.0.0.1:' . $t->port('http');

sub logins {
    my $r = $http->get("$base/status");
    my $s = eval { decode_json($r->{content}) } || {};
    return $s->{logins} || {};
}

# USER and PASS to a POP3 server, then gone: the session stays until its
# timeout, the check in the thread

sub pass_and_go {
    my ($port, $user, $pass) = @_;

    my $c = MailPlus::Test::Client->new($t->port($port)) or return 0;
    $c->getline() =~ /^\+OK/ or return 0;
    $c->pop3("USER $user") =~ /^\+OK/ or return 0;
    $c->send("PASS $pass");
    $c->disconnect();

    return 1;
}

sub pop3_login {
    my ($port, $user, $pass) = @_;

    my $c = MailPlus::Test::Client->new($t->port($port)) or return '';
    $c->getline();
    $c->pop3("USER $user");
    return $c->pop3("PASS $pass") // '';
}

sub gone {
    my () = @_;
    return () = $t->read_file('error.log')
        =~ /mail plus check \S+ done in its thread, its caller is gone/g;
}

# under make check-valgrind every phase below is a matter of timing that
# valgrind's pace upsets (a check of seconds takes minutes there); what
# valgrind is there to see is a check that outlives its session: the
# scenario of the last phase, with the harness's own valgrind, which fails
# the test on any report

if ($MailPlus::Test::VALGRIND) {
    $t->stop();

    my $vquick = crypt('pwQ', '$6$rounds=200000$saltsalt$');
    $t->write_file('users', "quick\@example.com:{SHA512-CRYPT}$vquick\n");
    $t->write_file_expand('nginx.conf', conf(64));
    $t->run();

    pass_and_go('pop3p', 'quick@example.com', "w$_") for 1 .. 2;

    ok(wait_for(sub { (() = $t->read_file('error.log')
        =~ /client timed out/g) >= 2 }, 60), 'valgrind: the sessions closed');

    my $c = MailPlus::Test::Client->new($t->port('pop3'), timeout => 300);
    $c->getline();
    $c->pop3('USER quick@example.com');
    like($c->pop3('PASS pwQ') // '', qr/^\+OK/,
        'valgrind: a login checked after theirs');

    $t->finish();
    exit 0;
}

# two slow checks: one in the thread, one in the queue

ok(pass_and_go('pop3p', 'slow@example.com', 'wrong'), 'a slow check, gone');
ok(pass_and_go('pop3p', 'slow@example.com', 'pwS'), 'another, gone');

ok(wait_for(sub { $t->read_file('error.log') =~ /in a thread.*\n(?s:.*)(?#
    )in a thread/ }, 5), 'both checks taken by the thread pool');

my $temp = logins()->{tempfail} // 0;

# the thread pool is busy: temporary failures, at once

my $t0 = time();

like(pop3_login('pop3p', 'slow@example.com', 'pwS'),
    qr/^-ERR \[SYS\/TEMP\] /, 'busy: router_proxy POP3, -ERR [SYS/TEMP]');

like(pop3_login('pop3', 'slow@example.com', 'pwS'),
    qr/^-ERR \[SYS\/TEMP\] /, 'busy: stock POP3 through the endpoint');

my $c = MailPlus::Test::Client->new($t->port('smtp'));
$c->getline();
$c->smtp('EHLO client.example');
like($c->smtp('AUTH PLAIN ' . encode_base64("\0slow\@example.com\0pwS", '')),
    qr/^454 4\.7\.0 /, 'busy: stock SMTP through the endpoint, 454 4.7.0');

my $r = $http->request('POST', "$base/submit?to=alice\@example.com", {
    headers => { 'Content-Type' => 'message/rfc822', Authorization =>
        'Basic ' . encode_base64('slow@example.com:pwS', '') },
    content => "Subject: x\r\n\r\nx\r\n" });
is($r->{status}, 503, 'busy: HTTP submission, 503');

cmp_ok(time() - $t0, '<', 1.5, 'busy: none of them waited for a check');
is(logins()->{tempfail}, $temp + 4, 'busy: counted as temporary failures');

like($t->read_file('error.log'),
    qr/\[warn\].*router thread pool is busy, the login fails temporarily/,
    'busy: logged');

# the sessions timed out while their checks were in the thread

ok(wait_for(sub { gone() >= 2 }, 15),
    'both checks done after their sessions closed');
like($t->read_file('error.log'), qr/client timed out/,
    'the sessions closed by their timeout');

# nginx goes on: a slow check with a session that waits for it (the
# stock server's timeout is longer than the check)

like(pop3_login('pop3', 'slow@example.com', 'pwS'), qr/^\+OK/,
    'a slow check, waited for: logged in');
like(pop3_login('pop3p', 'alice@example.com', 'pwA'), qr/^\+OK/,
    'alice logs in');

# many at once, a longer queue: each session gone before its check is done

$t->stop();
$t->write_file_expand('nginx.conf', conf(64));
$t->run();

my $n = 12;

my $started = 0;
$started += pass_and_go('pop3p', 'quick@example.com', "w$_") for 1 .. $n;
is($started, $n, "$n quick checks, their clients gone at once");

ok(wait_for(sub { $t->read_file('error.log') =~ /(?:done in its thread.*\n(?#
    )(?s:.*)){$n}/ }, 40), "all $n checks done");
cmp_ok(gone(), '>=', $n / 2, 'most after their sessions closed');

like(pop3_login('pop3', 'quick@example.com', 'pwQ'), qr/^\+OK/,
    'quick logs in afterwards');

# the same under valgrind's memcheck, which sees what the sanitizer cannot
# (the check's pool freed by nginx's own, uninstrumented, code, logging
# through the log it was given): two sessions gone before their checks are
# done, then a login whose check comes after theirs in the one thread

SKIP: {
    skip 'no valgrind, or a sanitizer build', 3
        if !-x '/usr/bin/valgrind' || $ENV{MAIL_PLUS_PRELOAD};

    $t->stop();

    my $vg = $t->path('valgrind');
    $t->write_file('nginx-valgrind', "#!/bin/sh\nexec valgrind --quiet "
        . "--log-file=$vg.%p $MailPlus::Test::NGINX \"\$@\"\n");
    chmod 0755, $t->path('nginx-valgrind');

    local $MailPlus::Test::NGINX = $t->path('nginx-valgrind');

    my $vquick = crypt('pwQ', '$6$rounds=200000$saltsalt$');
    $t->write_file('users', "quick\@example.com:{SHA512-CRYPT}$vquick\n");
    $t->write_file_expand('nginx.conf', conf(64));
    $t->run();

    pass_and_go('pop3p', 'quick@example.com', "w$_") for 1 .. 2;

    ok(wait_for(sub { (() = $t->read_file('error.log')
        =~ /client timed out/g) >= 2 }, 60), 'valgrind: the sessions closed');

    my $c = MailPlus::Test::Client->new($t->port('pop3'), timeout => 60);
    $c->getline();
    $c->pop3('USER quick@example.com');
    like($c->pop3('PASS pwQ') // '', qr/^\+OK/,
        'valgrind: a login checked after theirs');

    $t->stop();

    my $report = join '', map { $t->read_file($_) } glob("$vg.*");
    my @bad = $report =~ /^(==\d+== (?:Invalid|Use of uninit|Conditional).*)$/mg;
    is(join("\n", @bad[0 .. ($#bad > 3 ? 3 : $#bad)]), '',
        'valgrind: no invalid access');
}

$t->finish();

###############################################################################
