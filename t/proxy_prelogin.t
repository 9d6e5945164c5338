#!/usr/bin/perl

# The module's own dialogue before login ("router_proxy on"), attacked
# from the client side, with real Dovecot behind it; the same bytes go to
# Dovecot directly, whose own pre-login behaviour is the bar: literal sizes
# that overflow or pass the bound, long lines, bad base64 in SASL, too many
# errors, commands repeated to grow memory, control bytes in logins and
# passwords (IMAP literals, SASL PLAIN, POP3 USER), and the escaped login
# in the log.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

my $d = $t->dovecot('a', users => { alice => 'secret' });

$t->write_file('users', <<'EOF');
alice:{PLAIN}secret
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
    router_auth_delay    0;

    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;

    router_proxy  on;

    server {
        listen      127.0.0.1:%%PORT_imap%%;
        protocol    imap;
        imap_auth   plain login;
        max_errors  3;
    }

    server {
        listen      127.0.0.1:%%PORT_imap_small%%;
        protocol    imap;
        router_proxy_literal_size  1k;
        router_proxy_command_size  2k;
    }

    server {
        listen      127.0.0.1:%%PORT_pop3%%;
        protocol    pop3;
        max_errors  4;
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

$t->run(log_level => 'info');

my %imap = (nginx => $t->port('imap'), dovecot => $d->{imap});
my %pop3 = (nginx => $t->port('pop3'), dovecot => $d->{pop3});

###############################################################################

# probe($port, @chunks): connects, reads the greeting, sends each chunk
# (raw bytes) and collects what comes back until the server is quiet for
# a second or closes; returns (the reply text, closed)

sub probe {
    my ($port, @chunks) = @_;

    my $s = MailPlus::Test::Client->new($port) or return ('', 0);
    $s->getline();

    my ($r, $closed) = ('', 0);

    for my $chunk (@chunks) {
        $s->send($chunk, raw => 1);

        while (1) {
            my $l = $s->getline(1);
            if (!defined $l) {
                $closed = 1 if !$s->{buf} && eof_now($s);
                last;
            }
            $r .= $l;
        }

        last if $closed;
    }

    return ($r, $closed);
}

sub eof_now {
    my ($s) = @_;

    my $sel = IO::Select->new($s->sock());
    return 0 unless $sel->can_read(0.5);

    my $n = sysread($s->sock(), my $buf, 1);
    return !$n;
}

sub both {
    my ($name, $ports, $check, @chunks) = @_;

    for my $who (qw/ nginx dovecot /) {
        my ($r, $closed) = probe($ports->{$who}, @chunks);
        $check->($r, $closed, "$name ($who)");
    }
}

###############################################################################

# literal sizes: refused before any continuation, never wrapped

both('literal 2^32', \%imap, sub {
    my ($r, $closed, $name) = @_;
    unlike($r, qr/^\+/m, "$name: no continuation");
    like($r, qr/^(a BAD|\* BYE)/m, "$name: refused");
}, "a LOGIN {4294967296}\r\n");

both('literal 2^64+1', \%imap, sub {
    my ($r, $closed, $name) = @_;
    unlike($r, qr/^\+/m, "$name: no continuation");
    like($r, qr/^(a BAD|\* BYE)/m, "$name: refused");
}, "a LOGIN {18446744073709551617}\r\n");

both('literal+ 2^32', \%imap, sub {
    my ($r, $closed, $name) = @_;
    like($r, qr/^(a BAD|\* BYE)/m, "$name: refused at once");
    ok($closed, "$name: closed");
}, "a LOGIN {4294967296+}\r\n");

both('literal+ over the bound', \%imap, sub {
    my ($r, $closed, $name) = @_;
    like($r, qr/^(a BAD|\* BYE)/m, "$name: refused at once");
    ok($closed, "$name: closed");
}, "a LOGIN {100000+}\r\n");

both('literal over the bound', \%imap, sub {
    my ($r, $closed, $name) = @_;
    unlike($r, qr/^\+/m, "$name: no continuation");
    like($r, qr/^(a BAD|\* BYE)/m, "$name: refused");
}, "a LOGIN {100000}\r\n");

# router_proxy_literal_size: up to the bound, and no further

my ($r, $closed) = probe($t->port('imap_small'), "a LOGIN {1024}\r\n");
like($r, qr/^\+ /, 'literal at the bound: continuation');

($r, $closed) = probe($t->port('imap_small'), "a LOGIN {1025}\r\n");
like($r, qr/^a BAD/m, 'literal over the bound: BAD');
unlike($r, qr/^\+/m, 'literal over the bound: no continuation');

($r, $closed) = probe($t->port('imap_small'),
    "a LOGIN {1020}\r\n", 'x' x 1020 . " {1020}\r\n");
like($r, qr/^a BAD/m, 'second literal past the command size: BAD');
unlike($r, qr/\A\+ .*\r\n\+ /s, 'second literal past the command size: '
    . 'no continuation');

# a literal within the bound still logs in, and a synchronizing literal
# refused leaves the session usable

my $s = MailPlus::Test::Client->new($imap{nginx});
$s->getline();
$s->send('b1 LOGIN {100000}');
like($s->getline(), qr/^b1 BAD/, 'literal refused');
like($s->imap('b2', 'LOGIN {5+}' . "\r\n" . 'alice {6+}' . "\r\n" . 'secret'),
    qr/^b2 OK/m, 'login after a refused literal');
$s->imap('b3', 'LOGOUT');

# long lines

both('imap long line', \%imap, sub {
    my ($r, $closed, $name) = @_;
    like($r, qr/^(\* BYE|a BAD)/m, "$name: refused");
    ok($closed, "$name: closed");
}, 'a LOGIN ' . 'x' x 100000 . " secret\r\n");

both('pop3 long line', \%pop3, sub {
    my ($r, $closed, $name) = @_;
    like($r, qr/^-ERR/m, "$name: refused");
    ok($closed, "$name: closed");
}, 'USER ' . 'x' x 100000 . "\r\n");

# bad base64 in SASL: BAD in IMAP (RFC 3501), -ERR in POP3

both('imap bad base64', \%imap, sub {
    my ($r, $closed, $name) = @_;
    like($r, qr/^a BAD/m, "$name: BAD");
}, "a AUTHENTICATE PLAIN !!!notbase64\r\n");

both('imap base64 after padding', \%imap, sub {
    my ($r, $closed, $name) = @_;
    like($r, qr/^a BAD/m, "$name: BAD");
}, "a AUTHENTICATE PLAIN QQ==QQ\r\n");

($r) = probe($imap{nginx}, "a AUTHENTICATE PLAIN\r\n", "!!!bad\r\n");
like($r, qr/^a BAD/m, 'imap bad base64 in a continuation: BAD');

($r) = probe($imap{dovecot}, "a AUTHENTICATE PLAIN\r\n", "!!!bad\r\n");
like($r, qr/^a (BAD|NO)/m, 'imap bad base64 in a continuation (dovecot)');

both('pop3 bad base64', \%pop3, sub {
    my ($r, $closed, $name) = @_;
    like($r, qr/^-ERR/m, "$name: -ERR");
}, "AUTH PLAIN !!!notbase64\r\n");

# too many errors: the connection is closed

both('imap too many errors', \%imap, sub {
    my ($r, $closed, $name) = @_;
    ok($closed, "$name: closed");
}, map { "x$_ FOO\r\n" } 1 .. 10);

both('pop3 too many errors', \%pop3, sub {
    my ($r, $closed, $name) = @_;
    like($r, qr/^-ERR/m, "$name: -ERR");
    ok($closed, "$name: closed");
}, map { "FOO$_\r\n" } 1 .. 10);

###############################################################################

# memory: repeated commands before login do not grow the worker

sub rss {
    my ($pid) = $t->workers();
    open my $fh, '<', "/proc/$pid/status" or return 0;
    local $/;
    my ($kb) = <$fh> =~ /^VmRSS:\s+(\d+)/m;
    return $kb;
}

# pipeline($port, $line, $n, $re, $batch): sends $line $n times, $batch
# at a time (within the stock buffers), waits for the replies of each
# batch; returns the number of replies matching $re and the client

sub pipeline {
    my ($port, $line, $n, $re, $batch) = @_;

    my $s = MailPlus::Test::Client->new($port) or return 0;
    $s->getline();

    my $ok = 0;

    for (my $i = 0; $i < $n; $i += $batch) {
        $s->send($line x $batch, raw => 1);

        while ($ok < $i + $batch) {
            my $l = $s->getline(10);
            last unless defined $l;
            $ok++ if $l =~ $re;
        }

        last if $ok < $i + $batch;
    }

    return ($ok, $s);
}

# under valgrind (make check-valgrind) a twentieth of the commands: it
# looks for memory errors, and RSS is valgrind's own

my $vg = $MailPlus::Test::VALGRIND ? 20 : 1;

my $before = rss();

my $login = 'u' x 100;
my ($n, $c) = pipeline($pop3{nginx}, "USER $login\r\n", 100000 / $vg,
    qr/^\+OK/, 1);
is($n, 100000 / $vg, 'pop3: 100k USER answered') or diag("answered $n");
like($c->pop3('PASS secret'), qr/^-ERR/, 'pop3: the last USER counts');

# AddressSanitizer's quarantine keeps freed memory: RSS means nothing there

my $asan = ($ENV{MAIL_PLUS_PRELOAD} || '') =~ /asan/ || $vg > 1;

my $grown = rss() - $before;

SKIP: {
    skip 'RSS under a sanitizer or valgrind', 1 if $asan;
    cmp_ok($grown, '<', 4096, "pop3: 100k USER, worker grew ${grown} kB");
}

$before = rss();

my $id = 'ID (' . join(' ', map { "\"field$_\" \"" . 'v' x 30 . '"' } 1 .. 50)
    . ")\r\n";
($n, $c) = pipeline($imap{nginx}, "i $id", 5000 / $vg, qr/^i OK/, 1);
is($n, 5000 / $vg, 'imap: 5k ID with 50 fields answered');

$grown = rss() - $before;

SKIP: {
    skip 'RSS under a sanitizer or valgrind', 1 if $asan;
    cmp_ok($grown, '<', 4096, "imap: 5k ID, worker grew ${grown} kB");
}

($n, $c) = pipeline($imap{nginx}, "c CAPABILITY\r\n", 20000 / $vg,
    qr/^c OK/, 100);
is($n, 20000 / $vg, 'imap: 20k CAPABILITY answered');
like($c->imap('l1', 'LOGIN alice secret'), qr/^l1 OK/m,
    'imap: login after 20k commands');
$c->imap('l2', 'LOGOUT');

###############################################################################

# control bytes in logins: refused, and never a raw backend session

# IMAP literal with CRLF in the login

$s = MailPlus::Test::Client->new($imap{nginx});
$s->getline();
my $hostile = "alice\r\nx1 LOGOUTx\"y\\z";
$s->send('s1 LOGIN {' . length($hostile) . '}');
like($s->getline(), qr/^\+ /, 'crlf literal: continuation');
$s->send("$hostile secret");
$r = $s->read_until(qr/^s1 /);
like($r, qr/^s1 NO/m, 'imap: CRLF in a literal login refused');
unlike($r, qr/BYE/, 'imap: nothing after the CRLF was run');
like($s->imap('s2', 'NOOP'), qr/^s2 OK/m, 'imap: still before login');
$s->disconnect();

# SASL PLAIN with CRLF in the login, and a password with a NUL

$s = MailPlus::Test::Client->new($imap{nginx});
$s->getline();
like($s->imap('s1', 'AUTHENTICATE PLAIN '
    . encode_base64("\0alice\r\ns9 LOGOUT\0secret", '')),
    qr/^s1 NO/m, 'imap: CRLF in a SASL PLAIN login refused');
like($s->imap('s2', 'AUTHENTICATE PLAIN '
    . encode_base64("\0alice\0secret\0anything", '')),
    qr/^s2 NO/m, 'imap: secret\\0anything refused');
like($s->imap('s3', 'AUTHENTICATE PLAIN '
    . encode_base64("bob\0alice\0secret", '')),
    qr/^s3 NO/m, 'imap: another authzid refused');
like($s->imap('s4', 'AUTHENTICATE PLAIN '
    . encode_base64("alice\0alice\0secret", '')),
    qr/^s4 OK/m, 'imap: the login as authzid');
$s->disconnect();

# POP3: a SASL login that would be a second command to the backend, a
# password with a NUL; the client stays out of any backend session

$s = MailPlus::Test::Client->new($pop3{nginx});
$s->getline();
like($s->pop3('AUTH PLAIN '
    . encode_base64("\0alice\r\nUSER alice\r\nPASS secret\0secret", '')),
    qr/^-ERR/, 'pop3: CRLF in a SASL PLAIN login refused');
like($s->pop3('STAT'), qr/^-ERR/, 'pop3: no backend session after it');
$s->pop3('USER alice');
like($s->pop3("PASS secret\0anything"), qr/^-ERR/,
    'pop3: secret\\0anything refused');
like($s->pop3('STAT'), qr/^-ERR/, 'pop3: no backend session after it');
$s->pop3("USER alice\x01x");
like($s->pop3('PASS secret'), qr/^-ERR/, 'pop3: control byte in USER refused');

# USER a, USER b pipelined: the last one counts, each is answered

$s->send("USER nobody\r\nUSER alice\r\nPASS secret", raw => 0);
$r = join '', map { $s->getline() // '' } 1 .. 3;
like($r, qr/\A\+OK\r\n\+OK\r\n\+OK/, 'pop3: pipelined USER USER PASS');
like($s->pop3('STAT'), qr/^\+OK 0 /, 'pop3: logged in as alice');
$s->pop3('QUIT');

# the log shows the logins escaped, and no line a client wrote

my $log = $t->read_file('error.log');

like($log, qr/alice\\x0d\\x0ax1 LOGOUTx\\x22y\\x5cz/,
    'log: imap literal login escaped');
like($log, qr/alice\\x0d\\x0aUSER alice\\x0d\\x0aPASS secret/,
    'log: pop3 sasl login escaped');
like($log, qr/alice\\x01x/, 'log: pop3 USER escaped');
unlike($log, qr/^(x1|s9|USER|PASS) /m, 'log: no line starts with client text');
unlike($log, qr/[\x00-\x08\x0b-\x1f]/, 'log: no control bytes');
like($log, qr/mail session: pop3 client=\S+ user="-" .*end="error"/,
    'log: a session ended by its errors');

$t->finish();

###############################################################################
