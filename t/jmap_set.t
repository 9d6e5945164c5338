#!/usr/bin/perl

# Changing mail over JMAP (RFC 8621) against a real Dovecot through the
# module, each change checked over IMAP: Email/set's keywords (whole,
# patched, cleared, refused), a move (the old id gone, the new one
# found), destroy, ifInState, maxObjectsInSet; Email/changes after a flag
# change, a new message, an expunge, with maxChanges, and from a state
# whose mailbox was re-created; Mailbox/set's create, rename and destroy
# with children and messages, non-ASCII and hostile names, roles;
# Mailbox/query's filters, sorts and window.

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5_hex /;
use Encode qw/ encode_utf8 /;
use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw/ encode_base64 /;
use Mail::IMAPClient;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my $da = $t->dovecot('a', users => { 'alice@example.com' => 'pwA' });

$t->seed($da, 'alice@example.com', subject => "one") for 1 .. 4;
$t->maildir($da, 'alice@example.com', 'Archive');
$t->seed($da, 'alice@example.com', folder => 'Archive', subject => 'old');

$t->write_file('users', <<'EOF');
alice@example.com:{PLAIN}pwA:a
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;

    router_pool a {
        server 127.0.0.1 imap=$da->{imap};
    }

    auth_http  127.0.0.1:%%PORT_http%%/auth;

    server {
        listen     127.0.0.1:%%PORT_imap%%;
        protocol   imap;
    }
}

http {
%%HTTP_GLOBALS%%

    server {
        listen       127.0.0.1:%%PORT_http%%;
        server_name  jmap.test;

        location = /auth {
            mail_router_auth;
        }

        location /jmap/ {
            mail_plus_jmap;
        }

        location /small/ {
            mail_plus_jmap;
            mail_plus_jmap_max_objects_in_set 2;
        }
    }
}
EOF

$t->run();

###############################################################################

my $http = HTTP::Tiny->new(timeout => 30);
my $base = 'http://127.0.0.1:' . $t->port('http');
my $json = JSON::PP->new->utf8->canonical(1);
my $auth = 'Basic ' . encode_base64('alice@example.com:pwA', '');

my $s = $http->get("$base/jmap/session",
    { headers => { Authorization => $auth } });
is($s->{status}, 200, 'session');
$s = eval { decode_json($s->{content}) } || {};

my ($account) = keys %{$s->{accounts} || {}};
is($s->{capabilities}{'urn:ietf:params:jmap:core'}{maxObjectsInSet}, 500,
    'session: maxObjectsInSet');

# one request of calls: the responses, [name, args, id] each

sub jmap {
    my (@calls) = @_;
    my $path = '/jmap/api';
    $path = shift @calls unless ref $calls[0];
    my $i = 0;
    my $req = { using => [ 'urn:ietf:params:jmap:core',
            'urn:ietf:params:jmap:mail' ],
        methodCalls => [ map { [ $_->[0], { accountId => $account,
            %{$_->[1]} }, 'c' . $i++ ] } @calls ] };
    my $r = $http->request('POST', "$base$path", { headers => {
        Authorization => $auth, 'Content-Type' => 'application/json' },
        content => $json->encode($req) });
    diag("$r->{status} $r->{content}") unless $r->{status} == 200;
    my $d = eval { decode_json($r->{content}) } || {};
    return @{$d->{methodResponses} || []};
}

sub call { my @r = jmap(@_); return $r[0][1] || {} }

sub mbid { 'M' . substr(md5_hex(encode_utf8($_[0])), 0, 16) }

my $imap = Mail::IMAPClient->new(Server => '127.0.0.1', Port => $da->{imap},
    User => 'alice@example.com', Password => 'pwA', Uid => 1)
    or die "imap: $@\n";

sub uids {
    my ($folder) = @_;
    $imap->examine($folder) or return [];
    return [ sort { $a <=> $b } @{$imap->search('ALL') || []} ];
}

sub eid {
    my ($folder, $uid) = @_;
    $imap->examine($folder);
    return 'E' . substr(mbid($folder), 1) . '-' . $imap->uidvalidity($folder)
        . "-$uid";
}

sub flags {
    my ($folder, $uid) = @_;
    $imap->examine($folder);
    return join ' ', sort grep { $_ ne '\\Recent' }
        @{$imap->flags($uid) || []};
}

my @in = @{uids('INBOX')};
is(scalar @in, 4, 'four messages in INBOX');
my @id = map { eid('INBOX', $_) } @in;

###############################################################################

# Email/set: keywords

my $r = call([ 'Email/set', { update => { $id[0] => { keywords =>
    { '$seen' => JSON::PP::true, '$Flagged' => JSON::PP::true,
      'Custom' => JSON::PP::true } } } } ]);
ok(exists $r->{updated}{$id[0]}, 'keywords: updated');
is(flags('INBOX', $in[0]), '\\Flagged \\Seen custom', 'keywords: set');
ok($r->{oldState} && $r->{newState} && $r->{oldState} ne $r->{newState},
    'keywords: the state changed');
my $state = $r->{newState};

$r = call([ 'Email/set', { update => { $id[0] => {
    'keywords/$flagged' => undef, 'keywords/$answered' => JSON::PP::true } },
    ifInState => $state } ]);
ok(exists $r->{updated}{$id[0]}, 'keywords patched: updated');
is(flags('INBOX', $in[0]), '\\Answered \\Seen custom', 'keywords: patched');

$r = call([ 'Email/set', { update => { $id[0] => { keywords => {} } } } ]);
is(flags('INBOX', $in[0]), '', 'keywords: cleared');

$r = call([ 'Email/set', { update => {
    $id[1] => { 'keywords/bad(kw' => JSON::PP::true },
    $id[2] => { keywords => { '$seen' => JSON::PP::false } },
    $id[3] => { subject => 'x' } } } ]);
is($r->{notUpdated}{$id[1]}{type}, 'invalidProperties', 'keyword not atom');
is($r->{notUpdated}{$id[2]}{type}, 'invalidProperties', 'keyword false');
is($r->{notUpdated}{$id[3]}{type}, 'invalidProperties', 'subject refused');

my @resp = jmap([ 'Email/set', { update => { $id[1] => { 'keywords/$seen' =>
    JSON::PP::true } }, ifInState => 'Sbogus' } ]);
is($resp[0][0], 'error', 'ifInState: error');
is($resp[0][1]{type}, 'stateMismatch', 'ifInState: stateMismatch');
is(flags('INBOX', $in[1]), '', 'ifInState: nothing changed');

# the same change for two messages: one STORE (seen in the result)

$r = call([ 'Email/set', { update => {
    $id[1] => { 'keywords/$seen' => JSON::PP::true },
    $id[2] => { 'keywords/$seen' => JSON::PP::true } } } ]);
is(scalar keys %{$r->{updated}}, 2, 'two updated');
is(flags('INBOX', $in[2]), '\\Seen', 'second seen');

# moves: to Archive; the old id gone, the new one there

my $archive = mbid('Archive');
my @arch0 = @{uids('Archive')};

$r = call([ 'Email/set', { update => { $id[1] => { mailboxIds =>
    { $archive => JSON::PP::true } } } } ]);
my $new = $r->{updated}{$id[1]}{id};
ok($new && $new ne $id[1], 'move: a new id');
my @arch1 = @{uids('Archive')};
is(scalar @arch1, @arch0 + 1, 'move: in Archive');
is($new, eid('Archive', $arch1[-1]), 'move: the new id is its UID');
ok(!grep({ $_ == $in[1] } @{uids('INBOX')}), 'move: gone from INBOX');
is(flags('Archive', $arch1[-1]), '\\Seen', 'move: keywords kept');

$r = call([ 'Email/set', { update => { $id[1] => { 'keywords/$seen' =>
    undef } } } ]);
is($r->{notUpdated}{$id[1]}{type}, 'notFound', 'move: old id not found');

$r = call([ 'Email/set', { update => { $new => {
    "mailboxIds/" . mbid('INBOX') => JSON::PP::true } } } ]);
is($r->{notUpdated}{$new}{type}, 'invalidProperties',
    'two mailboxes: invalidProperties');
like($r->{notUpdated}{$new}{description} || '', qr/one mailbox/,
    'two mailboxes: described');

$r = call([ 'Email/set', { update => { $new => {
    "mailboxIds/" . mbid('INBOX') => JSON::PP::true,
    "mailboxIds/$archive" => undef } } } ]);
ok($r->{updated}{$new}{id}, 'moved back by patches');

# destroy

$r = call([ 'Email/set', { destroy => [ $id[3], 'Enothing', $id[3] ] } ]);
is_deeply($r->{destroyed}, [ $id[3] ], 'destroy: destroyed');
is($r->{notDestroyed}{Enothing}{type}, 'notFound', 'destroy: not ours');
ok(!grep({ $_ == $in[3] } @{uids('INBOX')}), 'destroy: expunged');

$r = call([ 'Email/set', { destroy => [ $id[3] ] } ]);
is($r->{notDestroyed}{$id[3]}{type}, 'notFound', 'destroy: gone');

# create (the compose part's) first, then an update of what it made

$r = call([ 'Email/set', { create => { k => {
        mailboxIds => { $archive => JSON::PP::true },
        from => [ { email => 'alice@example.com' } ],
        subject => 'made here',
        bodyValues => { t => { value => "text\n" } },
        textBody => [ { partId => 't', type => 'text/plain' } ] } },
    update => { '#k' => { 'keywords/$flagged' => JSON::PP::true } } } ]);
my $made = $r->{created}{k}{id};
like($made // '', qr/^E/, 'create: made') or diag(explain $r);
ok($made && exists $r->{updated}{$made},
    'create: then updated by its creation id');
my ($madeuid) = ($made // '') =~ /-(\d+)$/;
like(flags('Archive', $madeuid || 0), qr/\\Flagged/, 'create: flagged');

@resp = jmap('/small/api', [ 'Email/set', { destroy => [ 'a', 'b', 'c' ] } ]);
is($resp[0][1]{type}, 'requestTooLarge', 'maxObjectsInSet');

###############################################################################

# Email/changes

$state = call([ 'Email/set', {} ])->{newState};
ok($state, 'a state');

$imap->select('INBOX');
$imap->set_flag('\\Flagged', $in[0]);

$r = call([ 'Email/changes', { sinceState => $state } ]);
is_deeply($r->{updated}, [ $id[0] ], 'changes: a flag change');
is_deeply($r->{created}, [], 'changes: none created');
ok(!$r->{hasMoreChanges}, 'changes: no more');
$state = $r->{newState};

$imap->append_string('INBOX', "From: a\@example.com\r\nSubject: new\r\n\r\n"
    . "new\r\n") or diag($imap->LastError);
my $newuid = uids('INBOX')->[-1];

$r = call([ 'Email/changes', { sinceState => $state } ]);
is_deeply($r->{created}, [ eid('INBOX', $newuid) ], 'changes: created');
$state = $r->{newState};

$imap->select('INBOX');
$imap->delete_message($in[2]);
$imap->expunge;

$r = call([ 'Email/changes', { sinceState => $state } ]);
is_deeply($r->{destroyed}, [ $id[2] ], 'changes: destroyed (vanished)');
$state = $r->{newState};

$r = call([ 'Email/changes', { sinceState => $state } ]);
ok(!@{$r->{created}} && !@{$r->{updated}} && !@{$r->{destroyed}},
    'changes: none');
is($r->{newState}, $state, 'changes: same state');

# maxChanges: one mailbox at a time

$imap->select('INBOX');
$imap->set_flag('\\Seen', $newuid);
$imap->select('Archive');
$imap->set_flag('\\Flagged', $arch0[0]);

$r = call([ 'Email/changes', { sinceState => $state, maxChanges => 1 } ]);
is(scalar(@{$r->{updated}}), 1, 'maxChanges: one');
ok($r->{hasMoreChanges}, 'maxChanges: more');
$r = call([ 'Email/changes', { sinceState => $r->{newState},
    maxChanges => 1 } ]);
is(scalar(@{$r->{updated}}), 1, 'maxChanges: the other');
ok(!$r->{hasMoreChanges}, 'maxChanges: no more');

@resp = jmap([ 'Email/changes', { sinceState => 'garbage' } ]);
is($resp[0][1]{type}, 'cannotCalculateChanges', 'changes: a bad state');

# a mailbox re-created: its UIDVALIDITY differs

$imap->create('Scratch');
$t->seed($da, 'alice@example.com', folder => 'Scratch', subject => 's');
$state = call([ 'Email/set', {} ])->{newState};

$r = call([ 'Email/changes', { sinceState => $state } ]);
is_deeply($r->{created}, [], 'changes: nothing new yet');

$imap->delete('Scratch');
sleep 1;
$imap->create('Scratch');

@resp = jmap([ 'Email/changes', { sinceState => $state } ]);
is($resp[0][1]{type}, 'cannotCalculateChanges', 'changes: re-created');

###############################################################################

# Mailbox/set

my $t1 = JSON::PP::true;

$r = call([ 'Mailbox/set', { create => {
    a1 => { name => 'Projects', isSubscribed => $t1 },
    b1 => { name => '2026', parentId => '#a1' } } } ]);
is($r->{created}{a1}{id}, mbid('Projects'), 'create: id');
is($r->{created}{b1}{id}, mbid('Projects.2026'), 'create: child id');
ok($imap->exists('Projects.2026'), 'create: child over IMAP');
ok((grep { $_ eq 'Projects' } @{$imap->subscribed || []}),
    'create: subscribed');
ok($r->{oldState} ne $r->{newState}, 'create: new state');

$r = call([ 'Mailbox/set', { update => { mbid('Projects') =>
    { name => 'Work' } } } ]);
is($r->{updated}{mbid('Projects')}{id}, mbid('Work'), 'rename: new id');
ok($imap->exists('Work.2026') && !$imap->exists('Projects'),
    'rename: over IMAP');

$r = call([ 'Mailbox/set', { destroy => [ mbid('Work') ] } ]);
is($r->{notDestroyed}{mbid('Work')}{type}, 'mailboxHasChild',
    'destroy: has child');

$imap->append_string('Work.2026', "Subject: w\r\n\r\nw\r\n");

$r = call([ 'Mailbox/set', { destroy => [ mbid('Work.2026') ] } ]);
is($r->{notDestroyed}{mbid('Work.2026')}{type}, 'mailboxHasEmail',
    'destroy: has email');

$r = call([ 'Mailbox/set', { destroy => [ mbid('Work'), mbid('Work.2026') ],
    onDestroyRemoveEmails => $t1 } ]);
is_deeply([ sort @{$r->{destroyed}} ],
    [ sort(mbid('Work'), mbid('Work.2026')) ], 'destroy: both');
ok(!$imap->exists('Work.2026') && !$imap->exists('Work'),
    'destroy: over IMAP');

# names

$r = call([ 'Mailbox/set', { create => { u => { name => "Caf\x{e9} \x{1f389}" }
    } } ]);
ok($r->{created}{u}{id}, 'create: non-ASCII');
ok($imap->exists('Caf&AOk- &2DzfiQ-'), 'non-ASCII: modified UTF-7');
is($r->{created}{u}{id}, mbid("Caf\x{e9} \x{1f389}"), 'non-ASCII: id');

$r = call([ 'Mailbox/set', { create => {
    d => { name => 'a.b' },
    c => { name => "x\r\nA1 DELETE INBOX" },
    l => { name => 'x' x 2000 },
    e => { name => '' },
    r => { name => 'Trash2', role => 'trash' },
    p => { name => 'orphan', parentId => 'Mnothing' } } } ]);
is($r->{notCreated}{$_}{type}, 'invalidProperties', "hostile name $_")
    for qw/ d c l e r p /;
ok($imap->exists('INBOX'), 'INBOX still there');

$r = call([ 'Mailbox/set', { update => { mbid('INBOX') =>
    { role => 'trash' } }, destroy => [ mbid('INBOX') ] } ]);
is($r->{notUpdated}{mbid('INBOX')}{type}, 'invalidProperties',
    'role change refused');
ok($r->{notDestroyed}{mbid('INBOX')}, 'INBOX not destroyed');

@resp = jmap([ 'Mailbox/set', { ifInState => 'Sxx', create => {
    z => { name => 'Z' } } } ]);
is($resp[0][1]{type}, 'stateMismatch', 'mailbox ifInState');
ok(!$imap->exists('Z'), 'mailbox ifInState: not created');

###############################################################################

# Mailbox/query

call([ 'Mailbox/set', { create => { q => { name => 'Queries' },
    q2 => { name => 'sub', parentId => '#q', isSubscribed => $t1 } } } ]);

$r = call([ 'Mailbox/query', { filter => { name => 'ARCH' } } ]);
is_deeply($r->{ids}, [ $archive ], 'query: name');

$r = call([ 'Mailbox/query', { filter => { parentId => mbid('Queries') } } ]);
is_deeply($r->{ids}, [ mbid('Queries.sub') ], 'query: parentId');

$r = call([ 'Mailbox/query', { filter => { role => 'inbox' } } ]);
is_deeply($r->{ids}, [ mbid('INBOX') ], 'query: role');

$r = call([ 'Mailbox/query', { filter => { isSubscribed => $t1 } } ]);
ok(grep({ $_ eq mbid('Queries.sub') } @{$r->{ids}}), 'query: subscribed');

$r = call([ 'Mailbox/query', { filter => { operator => 'AND',
    conditions => [ { hasAnyRole => JSON::PP::false },
        { parentId => undef } ] },
    sort => [ { property => 'name', isAscending => JSON::PP::false } ],
    calculateTotal => $t1 } ]);
my @names = ('Scratch', 'Queries', "Caf\x{e9} \x{1f389}", 'Archive');
is_deeply($r->{ids}, [ map { mbid($_) } @names ], 'query: sorted, AND');
is($r->{total}, 4, 'query: total');
ok($r->{queryState}, 'query: state');

$r = call([ 'Mailbox/query', { filter => { parentId => undef,
    hasAnyRole => JSON::PP::false }, sort => [ { property => 'name' } ],
    position => 1, limit => 2 } ]);
is_deeply($r->{ids}, [ map { mbid($_) } "Caf\x{e9} \x{1f389}", 'Queries' ],
    'query: position, limit');
is($r->{position}, 1, 'query: position');

@resp = jmap([ 'Mailbox/query', { sortAsTree => $t1 } ],
    [ 'Mailbox/query', { filter => { color => 'red' } } ],
    [ 'Mailbox/queryChanges', { sinceQueryState => 'x' } ]);
is($resp[0][1]{type}, 'unsupportedSort', 'query: sortAsTree');
is($resp[1][1]{type}, 'unsupportedFilter', 'query: unknown filter');
is($resp[2][1]{type}, 'cannotCalculateChanges', 'queryChanges');

# creation ids are Ids: a CR, LF or space in one, or an empty one, is
# refused before anything is made

for my $key ("a\r\nb", '', 'a b', 'x' x 256) {
    my $name = 'creation id ' . $json->encode($key) =~ s/\\[rn]/~/gr;
    @resp = jmap(['Mailbox/set', { create => { $key => { name => 'Bad' } } }],
        ['Email/set', { create => { $key => { mailboxIds => {} } } }]);
    is($resp[0][1]{type}, 'invalidArguments', "Mailbox/set: $name refused");
    is($resp[1][1]{type}, 'invalidArguments', "Email/set: $name refused");
}

###############################################################################

$imap->logout;

$t->finish();

###############################################################################
