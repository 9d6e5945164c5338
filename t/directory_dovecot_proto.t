#!/usr/bin/perl

# The "dovecot" directory against a scripted auth server speaking Dovecot's
# auth-client protocol, for what a real Dovecot does not do on demand:
# tab-escaped values (unescaped; a control character left refuses the
# answer), FAIL with "temp" or "code=temp_fail", CONT, a line too long, a
# connection closed with a request on it, a reply that never comes (the
# timeout), requests multiplexed on one connection and answered out of
# order, and a connection reused for the next logins.

use warnings;
use strict;

use Test::More;

use IO::Select;
use IO::Socket::UNIX;
use MIME::Base64 qw/ decode_base64 /;
use POSIX qw/ _exit /;
use Socket qw/ SOCK_STREAM /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $dir = $t->testdir();
my $sock = "$dir/auth-client";

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_auth_delay 0;
    router_zone   z:1m;

    router_directory dovecot {
        auth     unix:$sock;
        timeout  1s;
        connections 1;
    }

    router_directory_valid 0;
    router_directory_invalid 0;

    router_pool back {
        server 127.0.0.2 imap=%%PORT_dead%%;
    }

    auth_http 127.0.0.1:9/auth;

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
        router_proxy on;
    }
}
EOF

###############################################################################

# the scripted server: one process, every connection at once; what it
# answers depends on the login.  It logs its connections and requests.

my $pid = fork();
die "fork: $!\n" unless defined $pid;

if ($pid == 0) {
    eval { server() };
    _exit(0);
}

push @{$t->{daemons}}, $pid;

wait_for(sub { -S $sock }, 10) or die "no scripted server\n";

$t->run();

sub server {
    my $l = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $sock,
        Listen => 16) or die "listen: $!\n";
    chmod 0666, $sock;

    open my $log, '>>', "$dir/server.log" or die "$!\n";
    $log->autoflush(1);

    my $sel = IO::Select->new($l);
    my (%buf, %held, $n);

    while (1) {
        for my $s ($sel->can_read()) {
            if ($s == $l) {
                my $c = $l->accept() or next;
                $c->autoflush(1);
                $sel->add($c);
                $buf{$c} = '';
                print $log "connection " . ++$n . "\n";
                print $c "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\n"
                    . "MECH\tLOGIN\tplaintext\nSPID\t$$\nCUID\t$n\n"
                    . "COOKIE\t0123456789abcdef0123456789abcdef\nDONE\n";
                next;
            }

            my $r = sysread($s, $buf{$s}, 65536, length $buf{$s});

            if (!$r) {
                $sel->remove($s);
                delete $buf{$s};
                close $s;
                next;
            }

            while ($buf{$s} =~ s/^([^\n]*)\n//) {
                my $line = $1;
                next unless $line =~ /^AUTH\t(\d+)\tPLAIN\t(.*)$/;

                my ($id, $params) = ($1, $2);
                my ($resp) = $params =~ /\tresp=(\S+)$/;
                my (undef, $user, $pass) = split /\0/, decode_base64($resp);

                print $log "AUTH $id $user " . ($params =~ s/\tresp=.*//r)
                    . "\n";

                my $reply = answer($id, $user, $pass, $s, \%held);

                if (!defined $reply) {
                    $sel->remove($s);
                    delete $buf{$s};
                    close $s;
                    last;
                }

                print $s $reply;
            }
        }
    }
}

sub answer {
    my ($id, $user, $pass, $s, $held) = @_;

    # "first" waits for "second", which is answered before it

    if ($user eq 'first') {
        $held->{first} = $id;
        return '';
    }

    if ($user eq 'second') {
        return "OK\t$id\tuser=second\tnologin\treason=second\n"
            . "OK\t$held->{first}\tuser=first\tnologin\treason=first\n";
    }

    return '' if $user eq 'silent';
    return undef if $user eq 'close';

    my %replies = (
        ok => "OK\t$id\tuser=ok\tnologin\treason=Moved\001.away",
        ctl => "OK\t$id\tuser=ctl\tnologin\treason=a\001nb",
        raw => "OK\t$id\tuser=raw\tnologin\treason=a\001",
        host => "OK\t$id\tuser=host\tproxy\thost=127.0.0.9",
        wrong => "FAIL\t$id\tuser=wrong",
        temp => "FAIL\t$id\tuser=temp\ttemp",
        code => "FAIL\t$id\tuser=code\tcode=temp_fail",
        cont => "CONT\t$id\t",
        long => "OK\t$id\tuser=long\tx=" . ('x' x 9000),
        unknown => "OK\t999999\tuser=unknown\nFAIL\t$id",
        badid => "OK\tx$id\tuser=badid",
    );

    return ($replies{$user} // "FAIL\t$id") . "\n";
}

###############################################################################

sub imap_login {
    my ($user, $pass) = @_;

    my $c = MailPlus::Test::Client->new($t->port('imap')) or return '';
    $c->getline();
    my $r = $c->imap('a1', "LOGIN $user " . ($pass // 'pw'), 5);
    $c->disconnect();
    return $r // '';
}

sub log_has {
    my ($re) = @_;
    return wait_for(sub { $t->read_file('error.log') =~ $re }, 5);
}

sub connections {
    my @n = $t->read_file('server.log') =~ /^connection/mg;
    return scalar @n;
}

###############################################################################

like(imap_login('ok'), qr/^a1 NO (?!\[UNAVAILABLE)/m, 'nologin');
ok(log_has(qr/login "ok" denied: nologin: Moved\.away/),
    'its reason unescaped ("\\001." a dot)');

like($t->read_file('server.log'),
    qr/^AUTH 1 ok service=imap\tsecured\tno-penalty\trip=127\.0\.0\.1$/m,
    'the request: service, secured, no penalty, the client\'s address');

like(imap_login('ctl'), qr/^a1 NO \[UNAVAILABLE\]/m,
    'an LF once unescaped ("\\001n"): a temporary failure');
ok(log_has(qr/could not answer for "ctl": Dovecot's field "reason" is invalid/),
    'logged');

like(imap_login('raw'), qr/^a1 NO \[UNAVAILABLE\]/m,
    'a \\001 at the end: a temporary failure');

like(imap_login('wrong'), qr/^a1 NO (?!\[UNAVAILABLE)/m, 'FAIL: refused');
ok(log_has(qr/login "wrong" denied: wrong password/), 'as a wrong password');

like(imap_login('temp'), qr/^a1 NO \[UNAVAILABLE\]/m, 'FAIL with temp');
like(imap_login('code'), qr/^a1 NO \[UNAVAILABLE\]/m,
    'FAIL with code=temp_fail');
ok(log_has(qr/could not answer for "code": Dovecot failed temporarily/),
    'logged');

like(imap_login('cont'), qr/^a1 NO \[UNAVAILABLE\]/m, 'CONT');

like(imap_login('host'), qr/^a1 NO \[UNAVAILABLE\]/m,
    'a host that is not ours');

like(imap_login('unknown'), qr/^a1 NO (?!\[UNAVAILABLE)/m,
    'a reply to no request is skipped');

is(connections(), 1, 'one connection for all of them');

# a reply with an id that is not a number, a line too long: the
# connection is closed, its request fails, the next login reconnects

like(imap_login('badid'), qr/^a1 NO \[UNAVAILABLE\]/m, 'a bad id');
ok(log_has(qr/could not answer for "badid": a protocol error/), 'logged');

like(imap_login('long'), qr/^a1 NO \[UNAVAILABLE\]/m, 'a line too long');
ok(log_has(qr/could not answer for "long": a line too long/), 'logged');

like(imap_login('close'), qr/^a1 NO \[UNAVAILABLE\]/m,
    'the connection closed with a request on it');
ok(log_has(qr/could not answer for "close": the connection was closed/),
    'logged');

like(imap_login('wrong'), qr/^a1 NO (?!\[UNAVAILABLE)/m,
    'the next login: a new connection');
is(connections(), 4, 'three connections more');

# no reply: the timeout

like(imap_login('silent'), qr/^a1 NO \[UNAVAILABLE\]/m, 'no reply');
ok(log_has(qr/could not answer for "silent": timed out waiting for a reply/),
    'timed out');
ok(log_has(qr/directory "dovecot" is not reachable: timed out/),
    'the directory is down');

like(imap_login('wrong'), qr/^a1 NO (?!\[UNAVAILABLE)/m, 'answers again');
ok(log_has(qr/directory "dovecot" is reachable again/), 'it is up again');

# two logins at once on one connection, answered in the other order

my @c = map { MailPlus::Test::Client->new($t->port('imap')) } 1 .. 2;
$_->getline() for @c;

$c[0]->send('a1 LOGIN first pw');
ok(wait_for(sub { $t->read_file('server.log') =~ /^AUTH \d+ first/m }, 5),
    'the first asked');
$c[1]->send('a1 LOGIN second pw');

like($c[1]->read_until(qr/^a1 /), qr/^a1 NO/m, 'the second answered');
like($c[0]->read_until(qr/^a1 /), qr/^a1 NO/m, 'the first answered');
ok(log_has(qr/login "first" denied: nologin: first/), 'the first\'s answer');
ok(log_has(qr/login "second" denied: nologin: second/), 'the second\'s');

$_->disconnect() for @c;

###############################################################################

$t->finish();

###############################################################################
