#!/usr/bin/perl

# The read side of email over JMAP (RFC 8621 section 4) against Dovecot:
# Email/get of messages built here (plain, multipart/alternative with
# HTML, an attachment, quoted-printable ISO-8859-1, base64 UTF-8, encoded
# words in several charsets, a message/rfc822 attachment, a broken one),
# their properties and body values byte for byte; Email/query with each
# filter, sorting and paging; Thread/get; hostile arguments answered with
# RFC 8620 errors; 200 messages in one Email/get.

use warnings;
use strict;

use Test::More;

use HTTP::Tiny;
use JSON::PP;
use Digest::MD5 qw/ md5_hex /;
use MIME::Base64 qw/ encode_base64 /;
use Encode qw/ encode decode /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test qw/ wait_for /;

###############################################################################

my $t = MailPlus::Test->new();

my %users = ('alice@example.com' => 'pwA');
my $da = $t->dovecot('a', users => \%users);

$t->write_file('users', "alice\@example.com:{PLAIN}pwA:a\n");

$t->write_file_expand('nginx.conf', <<"EOF");
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;
    router_auth_max_delay 1s;
    router_zone   throttle:1m;
    router_health_check off;

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

        location = /auth {
            mail_router_auth;
        }

        location /jmap/ {
            mail_plus_jmap;
            mail_plus_jmap_max_query_limit 5;
        }

        location /big/ {
            mail_plus_jmap;
        }
    }
}
EOF

# the messages: INTERNALDATE from the file's time, an hour apart

my $u8 = sub { encode('UTF-8', $_[0]) };
my @msgs;

push @msgs, "From: Alice Example <alice\@example.com>\n"
    . "To: bob\@example.com, \"Doe, Jane\" <jane\@example.com>\n"
    . "Cc: team: carl\@example.com, dora\@example.com;\n"
    . "Subject: plain one\nDate: Mon, 30 Nov 2026 10:00:00 +0100\n"
    . "Message-ID: <m1\@example.com>\nIn-Reply-To: <m0\@example.com>\n"
    . "References: <a\@example.com>\n <m0\@example.com>\n"
    . "List-Post: <mailto:list\@example.com>\n"
    . "Content-Type: text/plain; charset=us-ascii\n\nHello plain.\n";

push @msgs, "From: bob\@example.com\nTo: alice\@example.com\n"
    . "Subject: alternative\nMessage-ID: <m2\@example.com>\n"
    . "MIME-Version: 1.0\n"
    . "Content-Type: multipart/alternative; boundary=\"b2\"\n\n"
    . "--b2\nContent-Type: text/plain; charset=utf-8\n\nText part.\n"
    . "--b2\nContent-Type: text/html; charset=utf-8\n\n"
    . "<p>HTML part.</p>\n--b2--\n";

push @msgs, "From: carl\@example.com\nTo: alice\@example.com\n"
    . "Subject: with attachment\nMessage-ID: <m3\@example.com>\n"
    . "MIME-Version: 1.0\n"
    . "Content-Type: multipart/mixed; boundary=\"b3\"\n\n"
    . "--b3\nContent-Type: text/plain; charset=utf-8\n\nSee attached.\n"
    . "--b3\nContent-Type: application/pdf; name=\"report.pdf\"\n"
    . "Content-Disposition: attachment; filename=\"report.pdf\"\n"
    . "Content-Transfer-Encoding: base64\n\n"
    . encode_base64("%PDF-1.4 fake\n") . "--b3--\n";

push @msgs, "From: dora\@example.com\nTo: alice\@example.com\n"
    . "Subject: latin1\nMessage-ID: <m4\@example.com>\nMIME-Version: 1.0\n"
    . "Content-Type: text/plain; charset=iso-8859-1\n"
    . "Content-Transfer-Encoding: quoted-printable\n\n"
    . "Gr=FC=DFe aus M=FCnchen, =\nsoft break.\n";

push @msgs, "From: erin\@example.com\nTo: alice\@example.com\n"
    . "Subject: utf8 base64\nMessage-ID: <m5\@example.com>\n"
    . "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
    . "Content-Transfer-Encoding: base64\n\n"
    . encode_base64($u8->("\x{dc}n\x{ef}c\x{f6}d\x{e9} \x{2713} ok\n"));

push @msgs, "From: =?iso-8859-1?q?J=F6rg_M=FCller?= <joerg\@example.com>\n"
    . "To: =?koi8-r?B?8NLJ18XU?= <privet\@example.com>\n"
    . "Subject: =?utf-8?B?w6TDtsO8?= =?utf-8?B?IOKckw==?=\n"
    . " =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= end\n"
    . "Message-ID: <m6\@example.com>\n\nwords\n";

push @msgs, "From: fwd\@example.com\nTo: alice\@example.com\n"
    . "Subject: forwarded\nMessage-ID: <m7\@example.com>\nMIME-Version: 1.0\n"
    . "Content-Type: multipart/mixed; boundary=\"b7\"\n\n"
    . "--b7\nContent-Type: text/plain\n\nForwarded below.\n"
    . "--b7\nContent-Type: message/rfc822\n\n"
    . "From: inner\@example.com\nSubject: inner\n\nInner body.\n"
    . "--b7--\n";

push @msgs, "From: broken\@example.com\nTo: alice\@example.com\n"
    . "Subject: broken \xff\xfe bytes\nMessage-ID: <m8\@example.com>\n"
    . "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
    . "Content-Transfer-Encoding: x-unknown\n\n"
    . "bad \xff\xfe bytes\n";

$t->seed($da, 'alice@example.com', text => $_) for @msgs;
$t->seed($da, 'alice@example.com', folder => 'Sent', subject => 'in sent',
    body => "Sent body.\n");
$t->seed($da, 'alice@example.com', folder => 'Bulk', subject => "bulk $_")
    for 1 .. 200;

# bytes JSON must escape, for the body values at the end

my $odd_text = "quote \" backslash \\ slash / ctl \x01\x08\x0c\x1b\x1f"
    . " del \x7f tab\tend\nlone \r CR\n"
    . $u8->("\x{e9}\x{20ac}\x{1f600}\x{2028}") . "\n";

$t->seed($da, 'alice@example.com', folder => 'Odd', text =>
    "From: odd\@example.com\nTo: alice\@example.com\nSubject: odd bytes\n"
    . "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
    . "Content-Transfer-Encoding: 8bit\n\n" . $odd_text);

sub set_times {
    my ($folder, $base) = @_;
    my $md = $t->maildir($da, 'alice@example.com', $folder);
    my @f = sort { ($a =~ /Q(\d+)/)[0] <=> ($b =~ /Q(\d+)/)[0] }
        glob("$md/new/*");
    my $i = 0;
    utime $base + 3600 * $i, $base + 3600 * $i++, $_ for @f;
}

my $base = 1793000000;             # 2026-10-26T...Z
set_times(undef, $base);
set_times('Sent', $base + 1800);
set_times('Bulk', $base - 86400 * 30);

$t->run();

###############################################################################

my $http = HTTP::Tiny->new(timeout => 60);
my $port = $t->port('http');
my $json = JSON::PP->new->utf8->canonical(1);
my $auth = 'Basic ' . encode_base64('alice@example.com:pwA', '');

sub api {
    my ($calls, $path) = @_;
    my $r = $http->request('POST', "http://127.0.0.1:$port"
        . ($path || '/jmap/') . 'api', {
        headers => { 'Content-Type' => 'application/json',
            Authorization => $auth },
        content => $json->encode({ using => ['urn:ietf:params:jmap:core',
            'urn:ietf:params:jmap:mail'], methodCalls => $calls }) });
    my $d = eval { decode_json($r->{content}) };
    diag("$r->{status} $r->{content}") unless $d;
    return $d;
}

sub call1 {
    my ($name, $args, $path) = @_;
    my $d = api([[$name, $args, 'c']], $path);
    return $d->{methodResponses}[0];
}

sub mid { 'M' . substr(md5_hex($_[0]), 0, 16) }

my $s = decode_json($http->request('GET', "http://127.0.0.1:$port/jmap/session",
    { headers => { Authorization => $auth } })->{content});
my $acc = (keys %{$s->{accounts}})[0];
my ($inbox, $sent, $bulk) = map { mid($_) } qw/ INBOX Sent Bulk /;

# Email/query: the inbox, newest first, limited to 5 by the directive

my $q = call1('Email/query', { accountId => $acc,
    filter => { inMailbox => $inbox }, calculateTotal => JSON::PP::true });
is($q->[0], 'Email/query', 'query: answered');
is($q->[1]{total}, 8, 'query: total');
is(scalar @{$q->[1]{ids}}, 5, 'query: capped at max_query_limit');
ok(!$q->[1]{canCalculateChanges}, 'query: canCalculateChanges false');
like($q->[1]{queryState}, qr/^S/, 'query: queryState');

$q = call1('Email/query', { accountId => $acc,
    filter => { inMailbox => $inbox }, limit => 100,
    sort => [{ property => 'receivedAt', isAscending => JSON::PP::true }] });
is($q->[1]{limit}, 5, 'query: limit over the cap answered');

my $first = call1('Email/query', { accountId => $acc,
    filter => { inMailbox => $inbox }, limit => 5, position => 0,
    sort => [{ property => 'receivedAt', isAscending => JSON::PP::true }] });
diag($json->encode($first)) unless $first->[1]{ids};
my @asc = @{$first->[1]{ids}};
push @asc, @{call1('Email/query', { accountId => $acc,
    filter => { inMailbox => $inbox }, limit => 5, position => 5,
    sort => [{ property => 'receivedAt', isAscending => JSON::PP::true }] }
    )->[1]{ids}};
is(scalar @asc, 8, 'query: two pages');
like($asc[0], qr/^E[0-9a-f]{16}-\d+-1$/, 'query: the first id');

my @desc = @{call1('Email/query', { accountId => $acc,
    filter => { inMailbox => $inbox }, limit => 3, position => -3 }
    )->[1]{ids}};
is_deeply(\@desc, [reverse @asc[0 .. 2]], 'query: negative position');

my $a = call1('Email/query', { accountId => $acc,
    filter => { inMailbox => $inbox }, anchor => $asc[4], anchorOffset => -1,
    limit => 2, sort => [{ property => 'receivedAt',
        isAscending => JSON::PP::true }] });
is_deeply($a->[1]{ids}, [@asc[3, 4]], 'query: anchor and anchorOffset');
is($a->[1]{position}, 3, 'query: anchor position');

$a = call1('Email/query', { accountId => $acc, anchor => 'Enothing' });
is($a->[1]{type}, 'anchorNotFound', 'query: anchorNotFound');

# every mailbox, merged by receivedAt: the Sent message between

my $all = call1('Email/query', { accountId => $acc,
    filter => { inMailboxOtherThan => [$bulk, mid('Odd')] }, calculateTotal =>
    JSON::PP::true, sort => [{ property => 'receivedAt',
        isAscending => JSON::PP::true }] }, '/big/');
is($all->[1]{total}, 9, 'query all: total');
like($all->[1]{ids}[1], qr/^E\Q${\ substr($sent, 1)}\E-/,
    'query all: merged by receivedAt');

# filters

sub count {
    my ($filter) = @_;
    my $r = call1('Email/query', { accountId => $acc, filter => $filter,
        calculateTotal => JSON::PP::true }, '/big/');
    diag($json->encode($r)) unless defined $r->[1]{total};
    return $r->[1]{total};
}

my $in = { inMailbox => $inbox };
is(count({ %$in, subject => 'plain' }), 1, 'filter: subject');
is(count({ %$in, from => 'bob@example.com' }), 1, 'filter: from');
is(count({ %$in, to => 'jane@example.com' }), 1, 'filter: to');
is(count({ %$in, cc => 'carl@example.com' }), 1, 'filter: cc');
is(count({ %$in, bcc => 'nobody@example.com' }), 0, 'filter: bcc');
is(count({ %$in, body => 'attached' }), 1, 'filter: body');
is(count({ %$in, text => 'HTML part' }), 1, 'filter: text');
is(count({ %$in, header => ['Message-ID', '<m4@example.com>'] }), 1,
    'filter: header');
is(count({ %$in, header => ['List-Post'] }), 1, 'filter: header exists');
my @sizes = map { length($_) + tr/\n// } @msgs;
is(count({ %$in, minSize => $sizes[2] }), scalar(grep { $_ >= $sizes[2] }
    @sizes), 'filter: minSize');
is(count({ %$in, maxSize => $sizes[2] }), scalar(grep { $_ < $sizes[2] }
    @sizes), 'filter: maxSize exact');
is(count({ %$in, maxSize => 1 }), 0, 'filter: maxSize');
is(count({ %$in, hasKeyword => '$seen' }), 0, 'filter: hasKeyword');
is(count({ %$in, notKeyword => '$seen' }), 8, 'filter: notKeyword');
is(count({ %$in, someInThreadHaveKeyword => 'work' }), 0,
    'filter: someInThreadHaveKeyword');
is(count({ %$in, before => '2026-10-26T00:00:00Z' }), 0, 'filter: before');
is(count({ %$in, before => '2026-10-26T08:33:20Z' }), 1,
    'filter: before, exact');
is(count({ %$in, after => '2026-10-26T07:00:00Z' }), 8, 'filter: after');
is(count({ %$in, after => '2026-10-26T12:33:20Z' }), 3,
    'filter: after, exact');
is(count({ operator => 'OR', conditions => [
    { subject => 'latin1' }, { subject => 'alternative' }] }), 2,
    'filter: OR');
is(count({ operator => 'AND', conditions => [ $in,
    { operator => 'NOT', conditions => [{ subject => 'plain' }] }] }), 7,
    'filter: NOT');
is(count({ inMailbox => $sent }), 1, 'filter: inMailbox Sent');

# hostile input

my $deep = { subject => 'x' };
$deep = { operator => 'AND', conditions => [$deep] } for 1 .. 20;
is(call1('Email/query', { accountId => $acc, filter => $deep })->[1]{type},
    'unsupportedFilter', 'filter: too deep');
is(call1('Email/query', { accountId => $acc,
    filter => { hasKeyword => 5 } })->[1]{type}, 'invalidArguments',
    'filter: a keyword not a string');
is(call1('Email/query', { accountId => $acc,
    filter => { hasKeyword => 'a b' } })->[1]{type}, 'invalidArguments',
    'filter: a keyword with a space');
is(call1('Email/query', { accountId => $acc,
    filter => { hasAttachment => JSON::PP::true } })->[1]{type},
    'unsupportedFilter', 'filter: hasAttachment');
is(call1('Email/query', { accountId => $acc,
    filter => { operator => 'XOR', conditions => [] } })->[1]{type},
    'invalidArguments', 'filter: unknown operator');
is(call1('Email/query', { accountId => $acc,
    sort => [{ property => 'subject' }] })->[1]{type}, 'unsupportedSort',
    'sort: subject');
is(call1('Email/query', { accountId => $acc, limit => -1 })->[1]{type},
    'invalidArguments', 'query: negative limit');
is(call1('Email/query', { accountId => 'nope' })->[1]{type},
    'accountNotFound', 'query: accountNotFound');
is(count({ %$in, subject => "quote\" and \\ \x{e9}" }), 0,
    'filter: a string with quotes');

# Email/get: every default property

my %id;
for my $e (@asc) {
    my $g = call1('Email/get', { accountId => $acc, ids => [$e],
        properties => ['messageId'] });
    $id{$g->[1]{list}[0]{messageId}[0]} = $e;
}

my $g = call1('Email/get', { accountId => $acc,
    ids => [$id{'m1@example.com'}], fetchTextBodyValues => JSON::PP::true });
my $m = $g->[1]{list}[0];
is($g->[0], 'Email/get', 'get: answered');
like($g->[1]{state}, qr/^S/, 'get: state');
is($m->{subject}, 'plain one', 'get: subject');
is_deeply($m->{from}, [{ name => 'Alice Example',
    email => 'alice@example.com' }], 'get: from');
is_deeply($m->{to}, [{ name => undef, email => 'bob@example.com' },
    { name => 'Doe, Jane', email => 'jane@example.com' }], 'get: to');
is_deeply($m->{messageId}, ['m1@example.com'], 'get: messageId');
is_deeply($m->{inReplyTo}, ['m0@example.com'], 'get: inReplyTo');
is_deeply($m->{references}, ['a@example.com', 'm0@example.com'],
    'get: references');
is($m->{sentAt}, '2026-11-30T10:00:00+01:00', 'get: sentAt');
is($m->{receivedAt}, '2026-10-26T07:33:20Z', 'get: receivedAt UTC');
is_deeply($m->{mailboxIds}, { $inbox => JSON::PP::true }, 'get: mailboxIds');
is_deeply($m->{keywords}, {}, 'get: keywords');
is($m->{threadId}, 'T' . substr($m->{id}, 1), 'get: threadId');
is($m->{blobId}, 'B' . substr($m->{id}, 1), 'get: blobId');
ok($m->{size} > 300, 'get: size');
ok(!$m->{hasAttachment}, 'get: hasAttachment false');
is($m->{preview}, 'Hello plain.', 'get: preview');
is($m->{textBody}[0]{partId}, '1', 'get: textBody partId');
is($m->{textBody}[0]{type}, 'text/plain', 'get: textBody type');
is($m->{bodyValues}{1}{value}, "Hello plain.\n",
    'get: body value, its CRLF a LF');
ok(!$m->{bodyValues}{1}{isTruncated}, 'get: not truncated');
is_deeply($m->{htmlBody}, $m->{textBody}, 'get: htmlBody is the text');

$g = call1('Email/get', { accountId => $acc, ids => [$id{'m1@example.com'}],
    properties => ['cc', 'header:Cc:asGroupedAddresses',
        'header:List-Post:asURLs',
        'header:References:asRaw', 'header:X-None', 'header:To:all',
        'headers'] });
$m = $g->[1]{list}[0];
is_deeply($m->{'header:Cc:asGroupedAddresses'}, [{ name => 'team',
    addresses => [{ name => undef, email => 'carl@example.com' },
        { name => undef, email => 'dora@example.com' }] }],
    'get: asGroupedAddresses');
is_deeply($m->{'header:List-Post:asURLs'}, ['mailto:list@example.com'],
    'get: asURLs');
is($m->{'header:References:asRaw'}, " <a\@example.com>\r\n <m0\@example.com>",
    'get: asRaw');
is($m->{'header:X-None'}, undef, 'get: absent header null');
is(scalar @{$m->{'header:To:all'}}, 1, 'get: header :all');
is($m->{headers}[0]{name}, 'From', 'get: headers');

$g = call1('Email/get', { accountId => $acc, ids => [$id{'m2@example.com'}],
    fetchAllBodyValues => JSON::PP::true, properties => ['textBody',
        'htmlBody', 'bodyValues', 'bodyStructure', 'attachments'] });
$m = $g->[1]{list}[0];
is($m->{textBody}[0]{partId}, '1', 'alternative: textBody');
is($m->{htmlBody}[0]{partId}, '2', 'alternative: htmlBody');
is($m->{bodyValues}{2}{value}, "<p>HTML part.</p>",
    'alternative: html value');
is($m->{bodyStructure}{type}, 'multipart/alternative',
    'alternative: bodyStructure');
is($m->{bodyStructure}{partId}, undef, 'alternative: multipart partId null');
is(scalar @{$m->{bodyStructure}{subParts}}, 2, 'alternative: subParts');
is_deeply($m->{attachments}, [], 'alternative: no attachments');

$g = call1('Email/get', { accountId => $acc, ids => [$id{'m3@example.com'}],
    properties => ['attachments', 'hasAttachment'],
    bodyProperties => ['partId', 'blobId', 'name', 'type', 'disposition'] });
$m = $g->[1]{list}[0];
ok($m->{hasAttachment}, 'attachment: hasAttachment');
is($m->{attachments}[0]{name}, 'report.pdf', 'attachment: name');
is($m->{attachments}[0]{type}, 'application/pdf', 'attachment: type');
is($m->{attachments}[0]{disposition}, 'attachment', 'attachment: disposition');
is($m->{attachments}[0]{blobId},
    'P' . substr($id{'m3@example.com'}, 1) . '-2', 'attachment: blobId');
ok(!exists $m->{attachments}[0]{size}, 'attachment: bodyProperties');

$g = call1('Email/get', { accountId => $acc, ids => [$id{'m4@example.com'}],
    properties => ['bodyValues', 'textBody'],
    fetchTextBodyValues => JSON::PP::true });
$m = $g->[1]{list}[0];
is($m->{bodyValues}{1}{value},
    decode('UTF-8', $u8->("Gr\x{fc}\x{df}e aus M\x{fc}nchen, soft break.\n")),
    'qp latin1: decoded');
is($m->{textBody}[0]{charset}, 'iso-8859-1', 'qp latin1: charset');

$g = call1('Email/get', { accountId => $acc, ids => [$id{'m5@example.com'}],
    properties => ['bodyValues', 'preview'],
    fetchTextBodyValues => JSON::PP::true, maxBodyValueBytes => 4 });
$m = $g->[1]{list}[0];
is($m->{bodyValues}{1}{value}, "\x{dc}n", 'base64: cut on a character');
ok($m->{bodyValues}{1}{isTruncated}, 'base64: isTruncated');
is($m->{preview}, "\x{dc}n\x{ef}c\x{f6}d\x{e9} \x{2713} ok", 'base64: preview');

$g = call1('Email/get', { accountId => $acc, ids => [$id{'m6@example.com'}],
    properties => ['subject', 'from', 'to'] });
$m = $g->[1]{list}[0];
is($m->{subject}, "\x{e4}\x{f6}\x{fc} \x{2713}\x{30c6}\x{30b9}\x{30c8} end",
    'words: subject in utf-8 and iso-2022-jp');
is($m->{from}[0]{name}, "J\x{f6}rg M\x{fc}ller", 'words: iso-8859-1 name');
is($m->{to}[0]{name}, "\x{41f}\x{440}\x{438}\x{432}\x{435}\x{442}",
    'words: koi8-r name');

$g = call1('Email/get', { accountId => $acc, ids => [$id{'m7@example.com'}],
    properties => ['attachments', 'textBody'] });
$m = $g->[1]{list}[0];
is($m->{attachments}[0]{type}, 'message/rfc822', 'rfc822: attachment');
is($m->{attachments}[0]{partId}, '2', 'rfc822: partId');
is($m->{textBody}[0]{charset}, 'us-ascii', 'rfc822: default charset');

$g = call1('Email/get', { accountId => $acc, ids => [$id{'m8@example.com'}],
    properties => ['subject', 'bodyValues'],
    fetchTextBodyValues => JSON::PP::true });
$m = $g->[1]{list}[0];
is($m->{subject}, "broken \x{fffd}\x{fffd} bytes", 'broken: subject');
is($m->{bodyValues}{1}{value}, "bad \x{fffd}\x{fffd} bytes\n",
    'broken: body value replaced');
ok($m->{bodyValues}{1}{isEncodingProblem}, 'broken: isEncodingProblem');

# ids not ours, a creation id, a duplicate; maxObjectsInGet

my $bad = substr($asc[0], 0, -1) . '999';
$g = call1('Email/get', { accountId => $acc, ids => [$asc[0], $asc[0],
    'nope', '#k1', $bad, 'E0123456789abcdef-1-1'], properties => ['id'] });
is(scalar @{$g->[1]{list}}, 1, 'get: a duplicate once');
is_deeply([sort @{$g->[1]{notFound}}], [sort('nope', '#k1', $bad,
    'E0123456789abcdef-1-1')], 'get: notFound');
my ($mb, $uv) = $asc[0] =~ /^E(\w+)-(\d+)-/;
$g = call1('Email/get', { accountId => $acc,
    ids => ["E$mb-" . ($uv + 1) . "-1"] });
is(scalar @{$g->[1]{notFound}}, 1, 'get: another UIDVALIDITY notFound');
is(call1('Email/get', { accountId => $acc, ids => [('x') x 501] })->[1]{type},
    'requestTooLarge', 'get: over maxObjectsInGet');
is(call1('Email/get', { accountId => $acc, ids => [5] })->[1]{type},
    'invalidArguments', 'get: an id not a string');
is(call1('Email/get', { accountId => $acc, ids => [$asc[0]],
    properties => ['nothing'] })->[1]{type}, 'invalidArguments',
    'get: an unknown property');

# Thread/get

my $th = call1('Thread/get', { accountId => $acc,
    ids => ['T' . substr($asc[0], 1), 'Tnope'] });
is_deeply($th->[1]{list}, [{ id => 'T' . substr($asc[0], 1),
    emailIds => [$asc[0]] }], 'thread: one email');
is_deeply($th->[1]{notFound}, ['Tnope'], 'thread: notFound');

# 200 in one Email/get, by result reference from a query

my $d = api([['Email/query', { accountId => $acc,
    filter => { inMailbox => $bulk }, limit => 200 }, 'q'],
    ['Email/get', { accountId => $acc, '#ids' => { resultOf => 'q',
        name => 'Email/query', path => '/ids' },
        properties => ['subject', 'receivedAt', 'preview'] }, 'g']], '/big/');
my $list = $d->{methodResponses}[1][1]{list};
is(scalar @$list, 200, 'bulk: 200 in one get');
is(scalar(grep { $_->{subject} =~ /^bulk \d+$/ } @$list), 200,
    'bulk: every subject');

# the objects written as their messages come (no later call refers to
# the answer) are the ones a referred-to answer holds whole

my @ids = map { $_->{id} } @$list;
my $get = { accountId => $acc, ids => [@ids[0 .. 59], 'Mnope'],
    properties => ['id', 'subject', 'textBody', 'bodyValues', 'threadId'],
    fetchTextBodyValues => JSON::PP::true };

my $alone = api([['Email/get', $get, 'g']], '/big/');
my $referred = api([['Email/get', $get, 'g'],
    ['Thread/get', { accountId => $acc, '#ids' => { resultOf => 'g',
        name => 'Email/get', path => '/list/*/threadId' } }, 't']], '/big/');

my %by_id = map { $_->{id} => $_ } @{ $alone->{methodResponses}[0][1]{list} };
is(scalar keys %by_id, 60, 'written as they come: 60 objects');
is_deeply($alone->{methodResponses}[0][1]{notFound}, ['Mnope'],
    'written as they come: notFound');
is($alone->{methodResponses}[0][1]{accountId}, $acc,
    'written as they come: accountId');
sub text_of {
    my ($e) = @_;
    return join('', map { $e->{bodyValues}{$_->{partId}}{value} }
        @{ $e->{textBody} });
}

is(scalar(grep { text_of($_) =~ /\S/ } values %by_id), 60,
    'written as they come: every text body');
is_deeply({ map { $_->{id} => $_ }
    @{ $referred->{methodResponses}[0][1]{list} } },
    \%by_id, 'the same objects when a later call refers to the answer');
is(scalar @{ $referred->{methodResponses}[1][1]{list} }, 60,
    'the later call saw the whole list');
is_deeply([ map { $_->[2] } @{ $referred->{methodResponses} } ], ['g', 't'],
    'two responses');

# body values written by the module's own writer (the streamed answer)
# and by jansson (a referred-to answer) alike: every byte JSON must
# escape, lone CRs, DEL, characters of 2 to 4 bytes, a cut inside one

my $odd = call1('Email/query', { accountId => $acc,
    filter => { inMailbox => mid('Odd') } }, '/big/');
is(scalar @{ $odd->[1]{ids} || [] }, 1, 'odd bytes: the message found');

# where the cut falls: inside the euro sign (3 bytes, after 2 of e-acute)

my $cut = index($odd_text, $u8->("\x{20ac}")) + 1;

for my $max (0, $cut) {
    my $args = { accountId => $acc, ids => $odd->[1]{ids},
        properties => ['id', 'textBody', 'bodyValues', 'threadId'],
        fetchTextBodyValues => JSON::PP::true,
        $max ? (maxBodyValueBytes => $max) : () };

    my $streamed = api([['Email/get', $args, 'g']], '/big/');
    my $whole = api([['Email/get', $args, 'g'],
        ['Thread/get', { accountId => $acc, '#ids' => { resultOf => 'g',
            name => 'Email/get', path => '/list/*/threadId' } }, 't']],
        '/big/');

    my $v = $streamed->{methodResponses}[0][1]{list}[0]{bodyValues}{1};
    my $want = decode('UTF-8', $max ? substr($odd_text, 0, $cut - 1)
        : $odd_text);

    is($v->{value}, $want, "odd bytes, max $max: the value");
    is($v->{isTruncated} ? 1 : 0, $max ? 1 : 0,
        "odd bytes, max $max: isTruncated");
    ok(defined $v->{isEncodingProblem} && !$v->{isEncodingProblem},
        "odd bytes, max $max: no encoding problem");
    is_deeply($whole->{methodResponses}[0][1]{list},
        $streamed->{methodResponses}[0][1]{list},
        "odd bytes, max $max: the same object from jansson");
}

$t->stop();

done_testing();
