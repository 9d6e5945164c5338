#!/usr/bin/perl

# The queue operations of the HTTP JSON API (mail_plus_queue_api): list,
# show, hold, release, delete.  Messages to carol wait in deferred/: her
# pool's LMTP port is closed (and the next attempt is a minute away, so
# they stay there while the test runs).  One is held, one deleted; after
# a reload that points carol's pool at a running Dovecot a new message is
# delivered while the held one stays in hold/, and it is delivered once
# released.
# A claim in active/ (a file by hand, with a running worker's pid) gives
# 409.  Bad IDs, unknown IDs and wrong methods get JSON errors and touch
# no file.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $da = $t->dovecot('a', users => { 'alice@example.com' => 'pwA',
    'carol@example.com' => 'pwC' });

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
carol@example.com:{PLAIN}pwC:c
EOF

my $closed = $t->port('closed');

my $conf = <<"EOF";
%%LOAD_MODULES%%

worker_processes 2;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;

    router_pool a {
        server 127.0.0.1 imap=$da->{imap} pop3=$da->{pop3} lmtp=$da->{lmtp};
    }

    router_pool c {
        server 127.0.0.1 lmtp=CAROL;
    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    queue_spool %%TESTDIR%%/spool;

    queue_delivery on;
    queue_retry_first 60s;
    queue_retry_max 60s;
    queue_scan_interval 300ms;
    queue_connect_timeout 2s;
    queue_helo_name mx.test;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_auth_plaintext on;
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

        location /queue/ {
            mail_plus_queue_api;
        }
    }
}
EOF

(my $down = $conf) =~ s/CAROL/$closed/;
(my $up = $conf) =~ s/CAROL/$da->{lmtp}/;

$t->write_file_expand('nginx.conf', $down);
$t->run();

###############################################################################

my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 10);
my $base = 'http://127.0.0.1:' . $t->port('http') . '/queue';
my $spool = $t->path('spool');

# api($method, $path): [ status, decoded JSON or undef, raw response ]

sub api {
    my ($method, $path) = @_;

    my $r = $http->request($method, "$base$path");
    my $j = eval { decode_json($r->{content}) };

    return [ $r->{status}, $j, $r ];
}

sub submit {
    my ($rcpts, $subject) = @_;

    my $r = $t->submit($t->port('smtp'), 'alice@example.com', $rcpts,
        "From: alice\@example.com\r\nTo: carol\@example.com\r\n"
        . "Subject: $subject\r\n\r\nHello.\r\n",
        auth => encode_base64("\0alice\@example.com\0pwA", ''));

    return $r =~ /queued as ([0-9A-F]{22})/ ? $1 : undef;
}

# the messages of the spool with their sizes, and the state files; the
# delivery's own moves (incoming, active, deferred) and its state updates
# are not told apart

sub tree {
    my @f;
    for my $d (qw/ incoming active deferred hold corrupt state /) {
        for my $rel ($t->spool_files('spool', $d)) {
            my $n = (split m{/}, $rel)[-1];
            my $id = substr($n, 0, 22);
            my $where = $d =~ /^(hold|corrupt)$/ ? "$d/$n" : "queued/$id";
            push @f, $d eq 'state' ? "state/$id"
                : "$where:" . -s $t->path($rel);
        }
    }
    return join ' ', sort @f;
}

# a deferred message is in a bucket of deferred/ (docs/spool.md)

sub deferred_path {
    my ($id) = @_;
    my ($rel) = grep { m{/\Q$id\E$} } $t->spool_files('spool', 'deferred');
    return defined $rel ? $t->path($rel) : "$spool/deferred/$id";
}

sub in_dir {
    return $_[1] eq 'deferred' ? -e deferred_path($_[0])
                               : -e "$spool/$_[1]/$_[0]";
}

sub subjects {
    return $t->maildir_text($da, 'carol@example.com');
}

my $m1 = submit([ 'alice@example.com', 'carol@example.com' ], 'one');
my $m2 = submit([ 'carol@example.com' ], 'two');
my $m3 = submit([ 'carol@example.com' ], 'three');

ok($m1 && $m2 && $m3, 'three messages queued');

ok(wait_for(sub {
    in_dir($m1, 'deferred') && in_dir($m2, 'deferred')
        && in_dir($m3, 'deferred')
}, 15), 'all three deferred, carol is down');

ok(wait_for(sub { $t->maildir_count($da, 'alice@example.com') == 1 }, 10),
    'alice got hers');

# list

my $r = api('GET', '/messages');
is($r->[0], 200, 'list: 200');
like($r->[2]{headers}{'content-type'}, qr{^application/json}, 'list: JSON');

my %by = map { $_->{id} => $_ } @{$r->[1]{messages} || []};
is_deeply([ sort keys %by ], [ sort $m1, $m2, $m3 ], 'list: the three IDs');
is($by{$m1}{queue}, 'deferred', 'list: where');
is($by{$m1}{sender}, 'alice@example.com', 'list: sender');
is($by{$m1}{recipients}, 2, 'list: two recipients');
is($by{$m2}{recipients}, 1, 'list: one recipient');
is($by{$m2}{size}, -s deferred_path($m2), 'list: size');
cmp_ok(abs($by{$m2}{arrival} - time()), '<', 60, 'list: arrival');
is($by{$m2}{next_attempt}, (stat(deferred_path($m2)))[9],
    'list: next attempt is the mtime');
is($r->[1]{total}, 3, 'list: total');
ok(!$r->[1]{truncated}, 'list: not truncated');

$r = api('GET', '/messages?limit=2');
is(scalar @{$r->[1]{messages}}, 2, 'limit=2: two listed');
is($r->[1]{total}, 3, 'limit=2: three in all');
ok($r->[1]{truncated}, 'limit=2: truncated');

is(api('GET', '/messages?limit=x')->[0], 400, 'limit=x: 400');
is(api('GET', '/messages?limit=99999999')->[1]{limit}, 10000,
    'limit capped at 10000');

# show

$r = api('GET', "/messages/$m1");
is($r->[0], 200, 'show: 200');
is($r->[1]{id}, $m1, 'show: id');
is($r->[1]{queue}, 'deferred', 'show: where');
my $env = $r->[1]{envelope} || {};
is($env->{sender}, 'alice@example.com', 'show: sender');
is($env->{helo}, 'client.test', 'show: helo');
is($env->{body}, '7BIT', 'show: body, without padding');
is_deeply([ map { "$_->{address}=$_->{state}" } @{$env->{recipients}} ],
    [ 'alice@example.com=done', 'carol@example.com=pending' ],
    'show: recipients with their state');
cmp_ok($r->[1]{attempts}, '>=', 1, 'show: attempts');

# hold

my $before = tree();
$r = api('POST', "/messages/$m1/hold");
is($r->[0], 200, 'hold: 200');
is($r->[1]{from}, 'deferred', 'hold: from deferred');
ok(in_dir($m1, 'hold') && !in_dir($m1, 'deferred'), 'hold: moved to hold/');

is(api('GET', "/messages/$m1")->[1]{queue}, 'hold', 'show: in hold');
is(api('POST', "/messages/$m1/hold")->[0], 409, 'hold twice: 409');
is(api('POST', "/messages/$m2/release")->[0], 409,
    'release of a deferred message: 409');

my $s = decode_json($http->get('http://127.0.0.1:' . $t->port('http')
    . '/status')->{content});
is($s->{queue}{hold}, 1, 'status counts hold/');

# delete

ok(-e "$spool/state/$m3", 'a state file before delete');
$r = api('DELETE', "/messages/$m3");
is($r->[0], 200, 'delete: 200');
ok(!in_dir($m3, 'deferred') && !-e "$spool/state/$m3",
    'delete: file and state gone');
is(api('DELETE', "/messages/$m3")->[0], 404, 'delete twice: 404');
is(api('GET', "/messages/$m3")->[0], 404, 'show deleted: 404');

# an active claim: 409, left alone

my ($worker) = $t->workers();
my $fake = '00000001000000FFFFF001';
$t->write_file("spool/active/$fake.$worker", "MAILPLUS-QUEUE 1\r\n");

$r = api('DELETE', "/messages/$fake");
is($r->[0], 409, 'delete of an active claim: 409');
is($r->[1]{queue}, 'active', 'delete of an active claim: where');
is(api('POST', "/messages/$fake/hold")->[0], 409,
    'hold of an active claim: 409');
ok(-e "$spool/active/$fake.$worker", 'the claim is still there');
unlink "$spool/active/$fake.$worker";

# a corrupt file: listed without envelope, deleted

my $bad = '00000002000000FFFFF002';
$t->write_file("spool/corrupt/$bad", "garbage\r\n");
$r = api('GET', '/messages');
($by{$bad}) = grep { $_->{id} eq $bad } @{$r->[1]{messages}};
is($by{$bad}{queue}, 'corrupt', 'list: corrupt/');
is($by{$bad}{sender}, undef, 'list: corrupt/ has no sender');
is(api('GET', "/messages/$bad")->[1]{envelope}, undef,
    'show: corrupt/ has no envelope');
is(api('DELETE', "/messages/$bad")->[0], 200, 'delete from corrupt/');
ok(!-e "$spool/corrupt/$bad", 'gone from corrupt/');

# a file set aside for what its envelope holds is shown as it is: the
# recipient the delivery refused, an envid over the limit

my $odd = '00000002000000FFFFF003';
my $envid = 'E' x 120;
$t->write_file("spool/corrupt/$odd", "MAILPLUS-QUEUE 1\r\nid $odd\r\n"
    . "arrival 1700000000\r\nsender a\@example.com\r\n"
    . "envid $envid\r\nrcpt b\@example.com\r\nrcpt bad rcpt\@example.com\r\n"
    . "end\r\nSubject: odd\r\n\r\nodd\r\n");
$env = api('GET', "/messages/$odd")->[1]{envelope} || {};
is_deeply([ map { $_->{address} } @{$env->{recipients} || []} ],
    [ 'b@example.com', 'bad rcpt@example.com' ],
    'show: corrupt/, every recipient as written');
is($env->{envid}, $envid, 'show: corrupt/, the envid as written');
is(api('DELETE', "/messages/$odd")->[0], 200, 'delete from corrupt/');

# bad IDs and methods touch nothing

$before = tree();

my %bad = (
    '/messages/..%2Fstate' => [ 400, 404 ],
    '/messages/../incoming' => [ 400, 404 ],
    '/messages/abc' => [ 400 ],
    '/messages/' . ('A' x 23) => [ 400 ],
    '/messages/' . lc($m2) => [ 400 ],
    '/messages/' . $m2 . '%00' => [ 400 ],
    '/nothing' => [ 404 ],
);

for my $p (sort keys %bad) {
    for my $m (qw/ GET DELETE /) {
        $r = api($m, $p);
        ok(grep({ $_ == $r->[0] } @{$bad{$p}}), "$m $p: $r->[0]");
        next if $p =~ /%00/;    # refused by nginx before the module
        ok($r->[1] && $r->[1]{error}, "$m $p: a JSON error");
    }
}

is(api('GET', '/messages/FFFFFFFFFFFFFFFFFFFFFF')->[0], 404,
    'unknown ID: 404');
is(api('POST', '/messages/FFFFFFFFFFFFFFFFFFFFFF/release')->[0], 404,
    'release unknown ID: 404');
is(api('POST', "/messages/$m2/frobnicate")->[0], 404, 'unknown action: 404');

$r = api('POST', '/messages');
is($r->[0], 405, 'POST list: 405');
ok($r->[1]{error}, '405 in JSON');
is(api('GET', "/messages/$m2/hold")->[0], 405, 'GET hold: 405');
is(api('POST', "/messages/$m2")->[0], 405, 'POST show: 405');
is(api('PUT', "/messages/$m2/release")->[0], 405, 'PUT release: 405');

is(tree(), $before, 'bad requests touched no file');

# carol comes up: a new message goes, the held m1 stays

$t->write_file_expand('nginx.conf', $up);
ok($t->reload(), 'reload, carol up');

my $m4 = submit([ 'carol@example.com' ], 'four');
ok(wait_for(sub { subjects() =~ /Subject: four/ }, 15), 'm4 delivered');
ok(wait_for(sub { !in_dir($m4, 'incoming') && !in_dir($m4, 'deferred') },
    5), 'm4 left the queue');
ok(in_dir($m1, 'hold'), 'm1 still held');
like($t->read_file('error.log'), qr/files in corrupt\/, 1 messages held/,
    'the start line counts hold/');
unlike(subjects(), qr/Subject: one/, 'm1 not delivered while held');

$r = api('POST', "/messages/$m1/release");
is($r->[0], 200, 'release: 200');
is($r->[1]{queue}, 'incoming', 'release: to incoming');

ok(wait_for(sub { subjects() =~ /Subject: one/ }, 15),
    'm1 delivered after release');
ok(wait_for(sub { !in_dir($m1, 'hold') && !in_dir($m1, 'incoming')
    && !in_dir($m1, 'deferred') }, 5), 'm1 left the queue');
is(() = subjects() =~ /Subject: one/g, 1, 'm1 delivered once');
unlike(subjects(), qr/Subject: three/, 'the deleted m3 never delivered');

like($t->read_file('error.log'), qr/queue api: hold of message $m1/,
    'a log line for the hold');

$t->finish();

###############################################################################
