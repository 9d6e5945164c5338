#!/usr/bin/perl

# The next page of a listing read ahead (mail_plus_jmap_read_ahead) against
# Dovecot: a mailbox listed page by page (Email/query, Email/get of its ids
# by reference, body values) gives the same answers with the read-ahead as
# without it, up and down, to a last short page; the pages read ahead are
# taken (the debug log says so, where nginx has it); a flag set, a message
# added and one expunged by another session between two pages, or other
# arguments, make the next page come from the backend, right; a client that
# goes away while a page is read ahead leaves nginx well; nothing is read
# ahead on a connection closed after its request, or for a session that
# is not kept.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use Mail::IMAPClient;
use MIME::Base64 qw/ encode_base64 /;
use Digest::MD5 qw/ md5_hex /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $user = 'alice@example.com';
my $da = $t->dovecot('a', users => { $user => 'pwA' });

$t->write_file('users', "$user:{PLAIN}pwA:a\n");

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_health_check off;

    router_pool a {
        server 127.0.0.1 imap=$da->{imap};
    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;
}

http {
%%HTTP_GLOBALS%%

    server {
        listen       127.0.0.1:%%PORT_http%%;

        location /jmap/ {
            mail_plus_jmap;
        }

        location /plain/ {
            mail_plus_jmap;
            mail_plus_jmap_read_ahead 0;
        }

        location /nokeep/ {
            mail_plus_jmap;
            mail_plus_jmap_imap_keepalive 0;
        }
    }
}
EOF

# 23 messages, each its own body; INTERNALDATE an hour apart

for my $i (1 .. 23) {
    $t->seed($da, $user, subject => "page test $i",
        body => join('', map { "message $i, line $_ \"quoted\"\n" }
            1 .. 3 + $i % 5));
}

my $md = $t->maildir($da, $user);
my @f = sort { ($a =~ /Q(\d+)/)[0] <=> ($b =~ /Q(\d+)/)[0] }
    glob("$md/new/*");
my $n = 0;
utime 1793000000 + 3600 * $n, 1793000000 + 3600 * $n++, $_ for @f;

$t->run(log_level => 'debug');

my $debug = `$MailPlus::Test::NGINX -V 2>&1` =~ /--with-debug/;

###############################################################################

my $port = $t->port('http');
my $json = JSON::PP->new->utf8->canonical(1);
my $auth = 'Basic ' . encode_base64("$user:pwA", '');

# one keep-alive connection for each location, as a client has

my %http = map { $_ => HTTP::Tiny->new(timeout => 60, keep_alive => 1) }
    qw/ jmap plain nokeep /;

sub api {
    my ($where, $calls) = @_;
    my $r = $http{$where}->request('POST', "http://127.0.0.1:$port/$where/api",
        { headers => { 'Content-Type' => 'application/json',
            Authorization => $auth },
        content => $json->encode({ using => ['urn:ietf:params:jmap:core',
            'urn:ietf:params:jmap:mail'], methodCalls => $calls }) });
    my $d = eval { decode_json($r->{content}) };
    diag("$r->{status} $r->{content}") unless $d;
    return $d;
}

my $inbox = 'M' . substr(md5_hex('INBOX'), 0, 16);
my $s = decode_json($http{jmap}->request('GET',
    "http://127.0.0.1:$port/jmap/session",
    { headers => { Authorization => $auth } })->{content});
my $acc = (keys %{$s->{accounts}})[0];

my @props = ('id', 'subject', 'keywords', 'textBody', 'bodyValues');

# a page: the query's ids, and the objects by id

sub page {
    my ($where, $position, %o) = @_;
    my $d = api($where, [
        ['Email/query', { accountId => $acc,
            filter => { inMailbox => $inbox }, position => $position,
            limit => $o{limit} || 5,
            sort => [{ property => 'receivedAt',
                isAscending => $o{up} ? JSON::PP::true : JSON::PP::false }]
            }, 'q'],
        ['Email/get', { accountId => $acc,
            '#ids' => { resultOf => 'q', name => 'Email/query',
                path => '/ids' },
            properties => $o{props} || \@props,
            fetchTextBodyValues => JSON::PP::true }, 'g']]);
    my $r = $d->{methodResponses};
    return { ids => $r->[0][1]{ids},
        list => { map { $_->{id} => $_ } @{ $r->[1][1]{list} || [] } },
        notFound => $r->[1][1]{notFound}, state => $r->[1][1]{state} };
}

sub taken {
    my @l = $t->read_file('error.log') =~ /http jmap ahead: \d+ objects taken/g;
    return scalar @l;
}

# the whole mailbox, down then up, both ways

for my $up (0, 1) {
    my $before = taken();
    my (@a, @b);

    for (my $p = 0; $p < 23; $p += 5) {
        push @a, page('plain', $p, up => $up);
    }

    is(taken(), $before, "up $up: nothing taken without the read-ahead");

    for (my $p = 0; $p < 23; $p += 5) {
        push @b, page('jmap', $p, up => $up);
    }

    is(scalar @b, 5, "up $up: five pages");
    is(scalar @{ $b[4]{ids} }, 3, "up $up: the last one short");
    is_deeply(\@b, \@a, "up $up: the same pages with the read-ahead");
    is(scalar(map { keys %{ $_->{list} } } @b), 23, "up $up: every object");
    ok(!grep({ @{ $_->{notFound} } } @b), "up $up: none not found");

    like($b[1]{list}{ $b[1]{ids}[0] }{bodyValues}{1}{value},
        qr/^message \d+, line 1 "quoted"\n/, "up $up: a body value");

    SKIP: {
        skip 'nginx without --with-debug', 1 unless $debug;
        is(taken() - $before, 4, "up $up: four pages taken as read ahead");
    }
}

# another session sets a flag on a message of the page read ahead

my $imap = Mail::IMAPClient->new(Server => '127.0.0.1', Port => $da->{imap},
    User => $user, Password => 'pwA', Timeout => 20, Uid => 1)
    or die "IMAP: $@\n";
$imap->select('INBOX') or die "SELECT: " . $imap->LastError . "\n";

my $p1 = page('jmap', 0);
my $before = taken();
my ($uid) = $p1->{ids}[0] =~ /-(\d+)$/;
$imap->set_flag('\\Flagged', $uid - 5) or die $imap->LastError;

my $p2 = page('jmap', 5);
my ($flagged) = grep { /-(\d+)$/ && $1 == $uid - 5 } @{ $p2->{ids} };
ok($flagged && $p2->{list}{$flagged}{keywords}{'$flagged'},
    'a flag set meanwhile: the page shows it');
is_deeply($p2, page('plain', 5), 'a flag set meanwhile: the page is right');
SKIP: {
    skip 'nginx without --with-debug', 1 unless $debug;
    is(taken(), $before, 'a flag set meanwhile: the page was not taken');
}

# a message added: the pages move down by one

page('jmap', 0);
$before = taken();

$imap->append_string('INBOX', "From: new\@example.com\r\nTo: $user\r\n"
    . "Subject: arrived meanwhile\r\n\r\nnew\r\n") or die $imap->LastError;

$p2 = page('jmap', 5);
is_deeply($p2, page('plain', 5), 'a message added meanwhile: the page');
is(scalar @{ $p2->{ids} }, 5, 'a message added meanwhile: five');
SKIP: {
    skip 'nginx without --with-debug', 1 unless $debug;
    is(taken(), $before, 'a message added meanwhile: not taken');
}

# one of the page read ahead expunged

$p1 = page('jmap', 0);
$before = taken();
($uid) = $p1->{ids}[4] =~ /-(\d+)$/;
my @next = sort { $a <=> $b } map { /-(\d+)$/ ? $1 : () }
    @{ page('plain', 5)->{ids} };

$imap->delete_message($next[2]) or die $imap->LastError;
$imap->expunge('INBOX') or die $imap->LastError;

$p2 = page('jmap', 5);
is_deeply($p2, page('plain', 5), 'a message expunged meanwhile: the page');
ok(!grep({ /-$next[2]$/ } @{ $p2->{ids} }),
    'a message expunged meanwhile: gone from it');
SKIP: {
    skip 'nginx without --with-debug', 1 unless $debug;
    is(taken(), $before, 'a message expunged meanwhile: not taken');
}

# other properties asked for the next page: from the backend

page('jmap', 0);
$before = taken();
$p2 = page('jmap', 5, props => ['id', 'subject']);
is_deeply($p2, page('plain', 5, props => ['id', 'subject']),
    'other properties: the page');
ok(!exists $p2->{list}{ $p2->{ids}[0] }{bodyValues},
    'other properties: no body values');
SKIP: {
    skip 'nginx without --with-debug', 1 unless $debug;
    is(taken(), $before, 'other properties: not taken');
}

# a client that goes while the next page is read ahead

my $body = $json->encode({ using => ['urn:ietf:params:jmap:core',
    'urn:ietf:params:jmap:mail'], methodCalls => [
    ['Email/query', { accountId => $acc, filter => { inMailbox => $inbox },
        position => 0, limit => 5 }, 'q'],
    ['Email/get', { accountId => $acc, '#ids' => { resultOf => 'q',
        name => 'Email/query', path => '/ids' }, properties => \@props,
        fetchTextBodyValues => JSON::PP::true }, 'g']] });

for (1 .. 3) {
    my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
        Timeout => 10) or die "connect: $!\n";
    print $c "POST /jmap/api HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: $auth\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n" . $body;
    my $got = '';
    while ($got !~ /\r\n\r\n/ || length($got) < 100) {
        my $n = sysread($c, $got, 65536, length $got);
        last unless $n;
    }
    close $c;
}

is(scalar @{ page('jmap', 0)->{ids} }, 5, 'clients gone: nginx answers');

# a connection not kept alive: nothing read ahead, closed at once

sub started {
    my @l = $t->read_file('error.log') =~ /http jmap ahead: started/g;
    return scalar @l;
}

$before = started();

my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 10)
    or die "connect: $!\n";
print $c "POST /jmap/api HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    . "Authorization: $auth\r\nContent-Type: application/json\r\n"
    . "Content-Length: " . length($body) . "\r\n\r\n" . $body;
my $all = '';
eval {
    local $SIG{ALRM} = sub { die "timeout\n" };
    alarm 20;
    while (sysread($c, $all, 65536, length $all)) { }
    alarm 0;
};
close $c;
like($all, qr/^HTTP\/1.1 200 .*"methodResponses"/s,
    'connection: close: answered, then closed');
SKIP: {
    skip 'nginx without --with-debug', 1 unless $debug;
    is(started(), $before, 'connection: close: nothing read ahead');
}

# no session kept: nothing read ahead (it would go with the session)

$before = started();
is_deeply(page('nokeep', 5), page('plain', 5), 'no session kept: the page');
SKIP: {
    skip 'nginx without --with-debug', 1 unless $debug;
    is(started(), $before, 'no session kept: nothing read ahead');
}
is_deeply(page('jmap', 5), page('plain', 5), 'clients gone: pages right');

$imap->logout();

$t->finish();
