#!/usr/bin/perl

# SMTP store-and-forward: the seed dialogue line by line, several messages
# per connection, ESMTP extensions, pipelining, BDAT, dot-unstuffing and
# line endings, the Received field, out-of-order commands, relay rules,
# AUTH and every limit.

use warnings;
use strict;

use Test::More;

use MIME::Base64 qw/ encode_base64 /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

my $salt = 'Ab3.Cd4/';

$t->write_file('users', <<"EOF");
alice:{PLAIN}secretA
bob\@example.com:{SHA512-CRYPT}@{[ crypt('secretB', "\$6\$$salt\$") ]}
EOF

$t->write_file_expand('nginx.conf', <<'EOF');
%%LOAD_MODULES%%

worker_processes 1;

events {
}

mail {
    router_users  %%TESTDIR%%/users;
    router_auth_delay 0;

    router_pool a {
        server 127.0.0.1 imap=1 pop3=1;
    }

    router_pool bk {
        server 127.0.0.1 imap=1;
        auth backend;
    }

    router_rule "^(.+)@backend\.example$" pool=bk;
    router_default_pool a;

    auth_http 127.0.0.1:9/auth;

    queue_spool %%TESTDIR%%/spool;

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com backend.example .sub.example;
        smtp_auth_plaintext on;
        smtp_max_message_size 2k;
        smtp_max_recipients 3;
        smtp_max_errors 8;
        smtp_max_line_length 600;
    }

    server {
        listen 127.0.0.1:%%PORT_trusted%%;
        protocol smtp;
        server_name mx.test;

        smtp_store_and_forward on;
        smtp_local_domains example.com;
        smtp_trusted_networks 127.0.0.0/8;
        smtp_command_timeout 2s;
        smtp_data_timeout 1s;
    }
}
EOF

$t->run();

my $port = $t->port('smtp');

sub client {
    my (%o) = @_;
    my $c = MailPlus::Test::Client->new($o{port} || $port)
        or die "no connection\n";
    return $c;
}

sub message_of {
    my ($id) = @_;
    return $t->read_file("spool/incoming/$id");
}

sub content_of {
    my ($id) = @_;
    my $m = message_of($id);
    $m =~ s/^.*?\r\nend\r\n//s;
    return $m;
}

###############################################################################

# the seed dialogue, line by line

my $c = client();

is($c->getline(), "220 mx.test ESMTP ready\r\n", 'greeting');
like($c->smtp('HELO client.example'),
    qr/^250 mx\.test Hello client\.example \[127\.0\.0\.1\], pleased to meet you\r\n$/,
    'HELO');
is($c->smtp('MAIL FROM:<sender@remote.example>'), "250 2.1.0 Ok\r\n",
    'MAIL FROM');
is($c->smtp('RCPT TO:<alice@example.com>'), "250 2.1.5 Ok\r\n", 'RCPT TO');
is($c->smtp('DATA'), "354 End data with <CR><LF>.<CR><LF>\r\n", 'DATA');
$c->send("Subject: first\r\n\r\nHello.\r\n..leading dot\r\n.\r\n", raw => 1);

my $r = $c->smtp_reply();
like($r, qr/^250 2\.0\.0 Ok: queued as ([0-9A-F]{22})\r\n$/, 'queued');
my ($id1) = $r =~ /queued as (\S+)/;

# a second message on the same connection

is($c->smtp('RSET'), "250 2.0.0 Ok\r\n", 'RSET');
is($c->smtp('MAIL FROM:<>'), "250 2.1.0 Ok\r\n", 'null sender');
is($c->smtp('RCPT TO:<alice@example.com>'), "250 2.1.5 Ok\r\n", 'RCPT 2');
is($c->smtp('RCPT TO:<Postmaster>'), "250 2.1.5 Ok\r\n", 'Postmaster');
is($c->smtp('DATA'), "354 End data with <CR><LF>.<CR><LF>\r\n", 'DATA 2');
$c->send("Subject: second\r\n\r\nbare\nLF and bare\rCR\r\n.\r\n", raw => 1);
$r = $c->smtp_reply();
like($r, qr/^250 2\.0\.0 Ok: queued as [0-9A-F]{22}\r\n$/, 'second queued');
my ($id2) = $r =~ /queued as (\S+)/;

# a "." line after a bare LF does not end the message; CRLF . CRLF does

$c->smtp('MAIL FROM:<>');
$c->smtp('RCPT TO:<alice@example.com>');
$c->smtp('DATA');
$c->send("Subject: bare\r\n\r\na\n.\r\n.\r\n", raw => 1);
$r = $c->smtp_reply();
like($r, qr/^250 2\.0\.0 Ok: queued as/, 'bare LF before a dot line');
my ($idb) = $r =~ /queued as (\S+)/;

like($c->smtp('QUIT'), qr/^221 /, 'QUIT');
ok($c->at_eof(), 'closed after QUIT');

like(content_of($idb), qr/\r\n\r\na\r\n\.\r\n$/, 'the dot line is kept');

isnt($id1, $id2, 'distinct queue IDs');
is_deeply([ $t->spool('spool') ], [ sort $id1, $id2, $idb ], 'all in the spool');

my $m1 = message_of($id1);
like($m1, qr/^MAILPLUS-QUEUE 1\r\nid $id1\r\n/, 'envelope header');
like($m1, qr/\r\nsender sender\@remote\.example\r\nrcpt alice\@example\.com\r\nend\r\n/,
    'envelope sender and recipient');
like(content_of($id1),
    qr/^Received: from client\.example \(\[127\.0\.0\.1\]\)\r\n\tby mx\.test \(nginx mail_plus\) with SMTP id $id1\r\n\tfor <alice\@example\.com>;\r\n\t\w{3}, \d+ \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r\n/,
    'Received field');
like(content_of($id1), qr/\r\nSubject: first\r\n\r\nHello\.\r\n\.leading dot\r\n$/,
    'content, dot-unstuffed');
unlike(content_of($id1), qr/Message-ID/, 'no Message-ID added without AUTH');

like(content_of($id2), qr/\r\n\r\nbare\r\nLF and bare\r\nCR\r\n$/,
    'bare LF and bare CR stored as CRLF');
like(message_of($id2), qr/\r\nrcpt alice\@example\.com\r\nrcpt Postmaster\r\n/,
    'two recipients');

like($t->read_file('error.log'),
    qr/queued $id1: from=<sender\@remote\.example>, nrcpt=1, size=\d+, client=127\.0\.0\.1/,
    'log line of the message');
like($t->read_file('error.log'),
    qr/smtp session done: 3 messages queued, 0 errors while/,
    'log line of the session');

###############################################################################

# EHLO

$c = client();
$c->getline();

my $ehlo = $c->smtp('EHLO client.example');
like($ehlo, qr/^250-mx\.test Hello client\.example/, 'EHLO first line');
for my $ext ('SIZE 2048', '8BITMIME', 'PIPELINING', 'ENHANCEDSTATUSCODES',
    'CHUNKING', 'SMTPUTF8', 'AUTH PLAIN LOGIN', 'HELP')
{
    like($ehlo, qr/^250[- ]\Q$ext\E\r$/m, "EHLO advertises $ext");
}
unlike($ehlo, qr/STARTTLS/, 'no STARTTLS without ssl settings');
like($ehlo, qr/^250 \S+\r\n\z/m, 'last EHLO line');

like($c->smtp('NOOP'), qr/^250 2\.0\.0 Ok/, 'NOOP');
like($c->smtp('VRFY alice'), qr/^252 /, 'VRFY');
like($c->smtp('HELP'), qr/^214 /, 'HELP');
like($c->smtp('EXPN list'), qr/^502 5\.5\.1 /, 'EXPN not implemented');

# pipelining: a whole transaction in one write, then the replies

$c->send("MAIL FROM:<p\@remote.example> BODY=8BITMIME SIZE=100\r\n"
    . "RCPT TO:<alice\@example.com>\r\n"
    . "RCPT TO:<bob\@example.com>\r\n"
    . "DATA\r\n", raw => 1);
is($c->smtp_reply(), "250 2.1.0 Ok\r\n", 'pipelined MAIL');
is($c->smtp_reply(), "250 2.1.5 Ok\r\n", 'pipelined RCPT 1');
is($c->smtp_reply(), "250 2.1.5 Ok\r\n", 'pipelined RCPT 2');
like($c->smtp_reply(), qr/^354 /, 'pipelined DATA');
$c->send("Subject: pipelined \xc3\xa9\r\n\r\nbody\r\n.\r\nMAIL FROM:<q\@remote.example>\r\n"
    . "RCPT TO:<nobody\@example.com>\r\nRCPT TO:<x\@sub.example>\r\n"
    . "RCPT TO:<y\@a.sub.example>\r\nRSET\r\n", raw => 1);
$r = $c->smtp_reply();
like($r, qr/^250 2\.0\.0 Ok: queued as [0-9A-F]{22}\r\n$/, 'pipelined message queued');
my ($id3) = $r =~ /queued as (\S+)/;
is($c->smtp_reply(), "250 2.1.0 Ok\r\n", 'pipelined MAIL after the dot');
like($c->smtp_reply(), qr/^550 5\.1\.1 <nobody\@example\.com>: .*User unknown/,
    'unknown local user');
like($c->smtp_reply(), qr/^550 5\.7\.1 /, 'exact domain only');
like($c->smtp_reply(), qr/^550 5\.1\.1 /, 'subdomain of .sub.example is local');
is($c->smtp_reply(), "250 2.0.0 Ok\r\n", 'pipelined RSET');

like(message_of($id3), qr/\r\nbody 8BITMIME\r\n/, 'BODY=8BITMIME kept');
like(message_of($id1), qr/\r\nbody 7BIT    \r\n/, '7BIT without BODY=');

# 8-bit data without BODY=8BITMIME: accepted, bits kept, marked 8BITMIME

$c->smtp('MAIL FROM:<e@remote.example>');
$c->smtp('RCPT TO:<alice@example.com>');
$c->smtp('DATA');
$c->send("Subject: 8bit\r\n\r\ncaf\xc3\xa9 \xff\r\n.\r\n", raw => 1);
($r) = $c->smtp_reply() =~ /queued as (\S+)/;
like(message_of($r), qr/\r\nbody 8BITMIME\r\n/, '8-bit data marked 8BITMIME');
like(content_of($r), qr/\r\ncaf\xc3\xa9 \xff\r\n$/, '8-bit data kept');
like(content_of($id3), qr/with ESMTP id $id3;\r\n/, 'ESMTP, no "for" with two recipients');

# BDAT

is($c->smtp('MAIL FROM:<b@remote.example>'), "250 2.1.0 Ok\r\n", 'MAIL for BDAT');
like($c->smtp('RCPT TO:<any.one@backend.example>'), qr/^450 4\.4\.3 /,
    'auth backend pool without an LMTP or SMTP server: cannot verify');
is($c->smtp('RCPT TO:<alice@example.com>'), "250 2.1.5 Ok\r\n",
    'RCPT for BDAT');
$c->send("BDAT 21\r\nSubject: chunks\r\n\r\nab", raw => 1);
is($c->smtp_reply(), "250 2.0.0 Ok: 21 octets received\r\n", 'BDAT chunk');
$c->send("BDAT 8 LAST\r\nc.\r\n.\r\nd", raw => 1);
$r = $c->smtp_reply();
like($r, qr/^250 2\.0\.0 Ok: queued as [0-9A-F]{22}\r\n$/, 'BDAT LAST');
my ($id4) = $r =~ /queued as (\S+)/;
like(content_of($id4), qr/\r\nSubject: chunks\r\n\r\nabc\.\r\n\.\r\nd\r\n$/,
    'BDAT content is not unstuffed, last line ended');

is($c->smtp('BDAT 5'), '', 'BDAT without MAIL waits for its chunk');
$c->send("12345", raw => 1);
like($c->smtp_reply(), qr/^503 5\.5\.1 /, 'BDAT without MAIL refused after the chunk');

$c->smtp('QUIT');

###############################################################################

# out-of-order commands, syntax errors, unknown commands

$c = client();
$c->getline();

like($c->smtp('MAIL FROM:<a@b.example>'), qr/^503 5\.5\.1 /, 'MAIL before HELO');
like($c->smtp('HELO'), qr/^501 5\.5\.4 /, 'HELO without name');
like($c->smtp('EHLO c.example'), qr/^250 /m, 'EHLO');
like($c->smtp('RCPT TO:<alice@example.com>'), qr/^503 5\.5\.1 /, 'RCPT before MAIL');
like($c->smtp('DATA'), qr/^503 5\.5\.1 /, 'DATA before MAIL');
like($c->smtp('FOO bar'), qr/^500 5\.5\.2 /, 'unknown command');
$c->smtp('RSET');

$c = client();
$c->getline();
$c->smtp('EHLO c.example');

like($c->smtp('MAIL FROM:a@b.example'), qr/^501 5\.5\.4 /, 'MAIL without brackets');
like($c->smtp('MAIL FROM:<a@b.example> FOO=1'), qr/^555 5\.5\.4 /, 'unknown parameter');
like($c->smtp("MAIL FROM:<\xc3\xa9\@b.example>"), qr/^553 5\.6\.7 /,
    'non-ASCII without SMTPUTF8');
is($c->smtp("MAIL FROM:<\xc3\xa9\@b.example> SMTPUTF8"), "250 2.1.0 Ok\r\n",
    'non-ASCII with SMTPUTF8');
like($c->smtp('MAIL FROM:<a@b.example>'), qr/^503 5\.5\.1 .*nested/, 'nested MAIL');
like($c->smtp('DATA'), qr/^503 5\.5\.1 /, 'DATA before RCPT');
like($c->smtp('RCPT TO:<>'), qr/^501 5\.5\.4 /, 'RCPT TO:<>');
like($c->smtp('FOO'), qr/^500 5\.5\.2 /, 'seventh error');
like($c->smtp('BAR'), qr/^500 5\.5\.2 /, 'eighth error');
like($c->getline(), qr/^421 4\.7\.0 mx\.test Error: too many errors/, 'too many errors');
ok($c->at_eof(), 'closed after too many errors');

# non-ASCII in an address must be UTF-8 (RFC 6531): a stray, truncated or
# overlong sequence is a syntax error, in the local part, the domain and a
# quoted string alike

$c = client();
$c->getline();
$c->smtp('EHLO c.example');

for my $bad ("\xff\@b.example", "a\@b\xc3.example", "\xc0\xaf\@b.example",
    "\"q\\\xe9\"\@b.example", "\xe2\x82\@b.example")
{
    my $shown = $bad =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ger;
    like($c->smtp("MAIL FROM:<$bad> SMTPUTF8"), qr/^501 5\.5\.4 /,
        "not UTF-8: $shown");
}

is($c->smtp("MAIL FROM:<\"q\\\xc3\xa9\"\@b.example> SMTPUTF8"),
    "250 2.1.0 Ok\r\n", 'UTF-8 escaped in a quoted string');
like($c->smtp("RCPT TO:<\xe2\x82\xac\@d\xc3\xa9.example>"), qr/^550 5\.7\.1 /,
    'UTF-8 in both parts of a recipient: read, then the relay policy');

# junk commands: after 100, each one counts as an error

$c = client();
$c->getline();
$c->send("NOOP\r\n" x 107, raw => 1);
is(scalar(grep { /^250 2\.0\.0 Ok/ } map { $c->smtp_reply() } 1 .. 107), 107,
    '107 NOOPs answered');
like($c->smtp('NOOP'), qr/^250 /, 'the 108th NOOP');
like($c->getline(), qr/^421 4\.7\.0 /, 'too many junk commands');
ok($c->at_eof(), 'closed after junk commands');

###############################################################################

# relay rules

$c = client();
$c->getline();
$c->smtp('EHLO c.example');
$c->smtp('MAIL FROM:<a@b.example>');
like($c->smtp('RCPT TO:<someone@elsewhere.example>'),
    qr/^550 5\.7\.1 <someone\@elsewhere\.example>: Relay access denied/,
    'no relay without AUTH');
like($c->smtp('DATA'), qr/^554 5\.5\.1 /, 'DATA without valid recipients');
$c->smtp('QUIT');

# a trusted network may relay

$c = client(port => $t->port('trusted'));
$c->getline();
$c->smtp('EHLO c.example');
$c->smtp('MAIL FROM:<a@b.example>');
is($c->smtp('RCPT TO:<someone@elsewhere.example>'), "250 2.1.5 Ok\r\n",
    'relay from a trusted network');
unlike($c->smtp('EHLO c.example'), qr/AUTH/, 'no AUTH without plaintext or TLS');
like($c->smtp('AUTH PLAIN ' . encode_base64("\0alice\0secretA", '')),
    qr/^538 5\.7\.11 /, 'AUTH needs TLS by default');

# the command timeout

like($c->getline(5), qr/^421 4\.4\.2 /, 'timeout');
ok($c->at_eof(), 'closed after timeout');

# the data timeout: the partial message goes away

$c = client(port => $t->port('trusted'));
$c->getline();
$c->smtp('EHLO c.example');
$c->smtp('MAIL FROM:<a@b.example>');
$c->smtp('RCPT TO:<alice@example.com>');
$c->smtp('DATA');
$c->send("Subject: cut\r\n\r\npartial", raw => 1);
like($c->getline(5), qr/^421 4\.4\.2 /, 'data timeout');
ok($c->at_eof(), 'closed after data timeout');
is_deeply([ $t->spool('spool', 'tmp') ], [], 'partial message removed');

###############################################################################

# AUTH, then relay and submission fields

$c = client();
$c->getline();
$c->smtp('EHLO c.example');

like($c->smtp('AUTH PLAIN ' . encode_base64("\0alice\0wrong", '')),
    qr/^535 5\.7\.8 /, 'AUTH PLAIN, wrong password');
like($c->smtp('AUTH PLAIN ' . encode_base64("\0nobody\0x", '')),
    qr/^535 5\.7\.8 /, 'AUTH PLAIN, unknown user');
like($c->smtp('AUTH PLAIN ' . encode_base64("\0x\@backend.example\0x", '')),
    qr/^535 5\.7\.8 /, 'AUTH for an auth backend pool is refused');
like($t->read_file('error.log'),
    qr/client login "x\@backend\.example" failed: the pool's backends check/,
    'AUTH for an auth backend pool: refused by the router, as a failure');
like($c->smtp('AUTH PLAIN ' . encode_base64("\0alice\r\nrcpt x\0secretA", '')),
    qr/^501 5\.5\.2 /, 'control characters in the login');
like($c->smtp('AUTH CRAM-MD5'), qr/^504 5\.5\.4 /, 'unknown mechanism');
like($c->smtp('AUTH PLAIN'), qr/^334 \r\n/, 'AUTH PLAIN without initial response');
like($c->smtp('*'), qr/^501 5\.7\.0 /, 'AUTH cancelled');
like($c->smtp('AUTH PLAIN'), qr/^334 /, 'AUTH PLAIN again');
like($c->smtp('!!!'), qr/^501 5\.5\.2 /, 'invalid base64');

$c = client();
$c->getline();
$c->smtp('EHLO c.example');

like($c->smtp('AUTH LOGIN'), qr/^334 VXNlcm5hbWU6\r\n/, 'AUTH LOGIN');
like($c->smtp(encode_base64('bob@example.com', '')), qr/^334 UGFzc3dvcmQ6\r\n/,
    'AUTH LOGIN username');
like($c->smtp(encode_base64('secretB', '')), qr/^235 2\.7\.0 /,
    'AUTH LOGIN with a crypt hash, checked in a thread');
like($c->smtp('AUTH LOGIN'), qr/^503 5\.5\.1 /, 'AUTH twice');

$c->smtp('MAIL FROM:<bob@example.com>');
is($c->smtp('RCPT TO:<friend@elsewhere.example>'), "250 2.1.5 Ok\r\n",
    'relay after AUTH');
$c->smtp('DATA');
$c->send("Subject: submitted\r\n\r\nhi\r\n.\r\n", raw => 1);
$r = $c->smtp_reply();
my ($id5) = $r =~ /queued as (\S+)/;
ok($id5, 'submission queued');
like(content_of($id5), qr/with ESMTPA id $id5\r\n/, 'ESMTPA');
like(content_of($id5), qr/\r\nSubject: submitted\r\nMessage-ID: <$id5\@mx\.test>\r\nDate: \w{3}, \d+ \w{3} \d{4} [\d:]{8} \+0000\r\n\r\nhi\r\n$/,
    'Message-ID and Date added');
like(message_of($id5), qr/\r\nlogin bob\@example\.com\r\n/, 'login in the envelope');

$c->smtp('MAIL FROM:<bob@example.com>');
$c->smtp('RCPT TO:<friend@elsewhere.example>');
$c->smtp('DATA');
$c->send("Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nmessage-id: <x\@y>\r\n\r\nhi\r\n.\r\n",
    raw => 1);
($r) = $c->smtp_reply() =~ /queued as (\S+)/;
unlike(content_of($r), qr/Message-ID: <$r/, 'Message-ID kept');
like(content_of($r), qr/\r\nDate: Mon, 1 Jan 2024 00:00:00 \+0000\r\nmessage-id: <x\@y>\r\n\r\nhi\r\n$/,
    'fields of the client kept');
$c->smtp('QUIT');

###############################################################################

# limits

$c = client();
$c->getline();
$c->smtp('EHLO c.example');

like($c->smtp('MAIL FROM:<a@b.example> SIZE=4096'), qr/^552 5\.3\.4 /,
    'SIZE above the limit');
$c->smtp('MAIL FROM:<a@b.example> SIZE=100');
$c->smtp("RCPT TO:<alice\@example.com>") for 1 .. 3;
like($c->smtp('RCPT TO:<alice@example.com>'), qr/^452 4\.5\.3 /,
    'too many recipients');
$c->smtp('DATA');
$c->send("Subject: big\r\n\r\n" . ("x" x 70 . "\r\n") x 40 . ".\r\n", raw => 1);
like($c->smtp_reply(), qr/^552 5\.3\.4 /, 'message too large while reading');

like($c->smtp('NOOP ' . 'x' x 700), qr/^500 5\.5\.6 /, 'line too long');
like($c->smtp('NOOP'), qr/^250 /, 'next line is read');

$c->smtp('MAIL FROM:<a@b.example>');
$c->smtp('RCPT TO:<alice@example.com>');
$c->send("BDAT 3000 LAST\r\n" . ("y" x 3000), raw => 1);
like($c->smtp_reply(), qr/^552 5\.3\.4 /, 'BDAT too large');
like($c->smtp('NOOP'), qr/^250 /, 'in sync after a refused chunk');
$c->smtp('QUIT');

# nothing more was queued by the refused messages; no temporary files left

is(scalar(my @a = $t->spool('spool')), 8, 'eight messages queued');
is_deeply([ $t->spool('spool', 'tmp') ], [], 'no temporary files left');

###############################################################################

# real clients: swaks, curl, Python smtplib, Perl Net::SMTP

SKIP: {
    skip 'no swaks', 1 unless -x '/usr/bin/swaks';

    my $out = `swaks --server 127.0.0.1:$port --to alice\@example.com --from s\@remote.example --pipeline --body 'from swaks' 2>&1`;
    like($out, qr/<-\s+250 2\.0\.0 Ok: queued as [0-9A-F]{22}/, 'swaks');
}

SKIP: {
    skip 'no curl', 1 unless -x '/usr/bin/curl';

    $t->write_file('curl.eml', "Subject: curl\r\n\r\nfrom curl\r\n");
    my $out = `curl -sS -v smtp://127.0.0.1:$port/client.example --mail-from s\@remote.example --mail-rcpt alice\@example.com -T ${\ $t->path('curl.eml')} 2>&1`;
    like($out, qr/< 250 2\.0\.0 Ok: queued as/, 'curl');
}

SKIP: {
    skip 'no python3', 1 unless -x '/usr/bin/python3';

    my $out = `python3 - <<'EOF' 2>&1
import smtplib
s = smtplib.SMTP('127.0.0.1', $port)
s.login('alice', 'secretA')
r = s.sendmail('alice\@example.com', ['out\@elsewhere.example'], 'Subject: py\\r\\n\\r\\nfrom python\\r\\n')
print('refused', r)
print(s.noop())
s.quit()
EOF`;
    like($out, qr/refused \{\}/, 'Python smtplib with AUTH');
}

{
    require Net::SMTP;
    my $smtp = Net::SMTP->new('127.0.0.1', Port => $port, Hello => 'perl.example');
    ok($smtp && $smtp->mail('p@remote.example') && $smtp->to('alice@example.com')
        && $smtp->data("Subject: perl\r\n\r\nfrom Net::SMTP\r\n")
        && $smtp->message =~ /queued as/, 'Net::SMTP');
    $smtp->quit if $smtp;
}

is(scalar(my @b = $t->spool('spool')), 12, 'twelve messages queued');

$t->finish();
