#!/usr/bin/perl

# "nginx -t": a good configuration passes; a missing users file, a bad
# users file line and unknown pools fail with messages that say where.

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

my $dir = $t->testdir();

my $sha512 = crypt('secret', '$6$saltsalt$');

my $good_users = <<"EOF";
# comment line

alice:{PLAIN}secret
bob:{SHA512-CRYPT}$sha512:b
carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=
dave:$sha512:127.0.0.2
EOF

# conf(%o): a configuration; users => file name, rule => the rule's pool,
# default => the default pool, extra => more mail directives

sub conf {
    my (%o) = @_;

    my $users = $o{users} || 'users';
    my $rule = $o{rule} || 'b';
    my $default = $o{default} || 'a';
    my $extra = $o{extra} || '';

    return $t->expand(<<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    router_users  %%TESTDIR%%/$users;

    router_pool a {
        server 127.0.0.1 imap=10143 pop3=10110;
    }

    router_pool b {
        server 127.0.0.2 imap=10143 pop3=10110;
        server 127.0.0.3 imap=10143 pop3=10110 weight=2;
        server 127.0.0.4 imap=10143 pop3=10110 backup;
        auth backend;
    }

    router_rule "^(.+)\@b\\.example\$" pool=$rule login=\$1;
    router_default_pool  $default;
$extra
    auth_http  unix:%%TESTDIR%%/auth.sock:/auth;

    server {
        listen    127.0.0.1:%%PORT_pop3%%;
        protocol  pop3;
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
}

# line_of($text, $re): the number of the first line matching $re

sub line_of {
    my ($text, $re) = @_;

    my @lines = split /\n/, $text;
    for my $i (0 .. $#lines) {
        return $i + 1 if $lines[$i] =~ $re;
    }

    return 0;
}

# check($name, $conf_text, $users_text): nginx -t on them

sub check {
    my ($conf, $users) = @_;

    $t->write_file('users', $users) if defined $users;
    $t->write_file('nginx.conf', $conf);

    return $t->nginx_t('nginx.conf');
}

###############################################################################

# a good configuration

my ($rc, $out) = check(conf(), $good_users);
is($rc, 0, 'good config passes') or diag($out);
like($out, qr/syntax is ok/, 'good config syntax ok');
like($out, qr/test is successful/, 'good config successful');

# missing users file

my $conf = conf(users => 'no-such-users');
($rc, $out) = check($conf);
isnt($rc, 0, 'missing users file fails');
like($out, qr/\[emerg\]/, 'missing users file emerg');
like($out, qr!\Q$dir\E/no-such-users!, 'missing users file named');
like($out, qr!nginx\.conf:${\ line_of($conf, qr/router_users/)}\b!,
    'missing users file: nginx.conf line')
    or diag($out);

# bad users file lines: each names users:line

my @bad = (
    [ 'bad SHA512-CRYPT hash', 'eve:{SHA512-CRYPT}notahash' ],
    [ 'bad SHA256-CRYPT hash', 'eve:{SHA256-CRYPT}$5$' ],
    [ 'bad BLF-CRYPT hash', 'eve:{BLF-CRYPT}$2y$05$short' ],
    [ 'bad SSHA hash', 'eve:{SSHA}!!!not-base64!!!' ],
    [ 'bad SHA hash', 'eve:{SHA}dG9vc2hvcnQ=' ],
    [ 'unknown scheme', 'eve:{ROT13}frperg' ],
    [ 'no password', 'eve' ],
    [ 'empty login', ':{PLAIN}secret' ],
    [ 'unknown target pool', 'eve:{PLAIN}secret:nosuchpool' ],
    [ 'unknown target address', 'eve:{PLAIN}secret:127.0.0.99' ],
);

for my $case (@bad) {
    my ($what, $line) = @$case;

    my $users = $good_users . "\n$line\n";
    my $n = line_of($users, qr/^\Q$line\E$/);

    ($rc, $out) = check(conf(), $users);
    isnt($rc, 0, "$what fails");
    like($out, qr!\Q$dir\E/users:$n\b!, "$what names users:$n")
        or diag($out);
}

like($out, qr/127\.0\.0\.99/, 'unknown target address named');

# a bad line in the middle is found by its number

my $users = "alice:{PLAIN}secret\n\n# comment\nbob:{SHA}xyz\n"
    . "carol:{PLAIN}secret\n";
($rc, $out) = check(conf(), $users);
like($out, qr!\Q$dir\E/users:4\b!, 'bad line 4 of 5') or diag($out);

# unknown pools in the configuration

$conf = conf(rule => 'nosuchpool');
($rc, $out) = check($conf, $good_users);
isnt($rc, 0, 'unknown rule pool fails');
like($out, qr/nosuchpool/, 'unknown rule pool named');
like($out, qr!nginx\.conf:${\ line_of($conf, qr/router_rule/)}\b!,
    'unknown rule pool: nginx.conf line')
    or diag($out);

$conf = conf(default => 'nosuchpool');
($rc, $out) = check($conf, $good_users);
isnt($rc, 0, 'unknown default pool fails');
like($out, qr/nosuchpool/, 'unknown default pool named');
like($out, qr!nginx\.conf:${\ line_of($conf, qr/router_default_pool/)}\b!,
    'unknown default pool: nginx.conf line')
    or diag($out);

# a bad regular expression

$conf = conf(extra => '    router_rule "^(unclosed$" pool=a;');
($rc, $out) = check($conf, $good_users);
isnt($rc, 0, 'bad regex fails');
like($out, qr!nginx\.conf:${\ line_of($conf, qr/unclosed/)}\b!,
    'bad regex: nginx.conf line')
    or diag($out);

# directive values

for my $extra (
    '    router_hash_points 0;',
    '    router_hash_points abc;',
    '    router_auth_delay forever;',
    '    router_pool a { server 127.0.0.9 imap=10143; }',
) {
    $conf = conf(extra => $extra);
    ($rc, $out) = check($conf, $good_users);
    (my $name = $extra) =~ s/^\s+//;
    isnt($rc, 0, "bad: $name") or diag($out);
}

# the good configuration once more, after all the failures

($rc, $out) = check(conf(), $good_users);
is($rc, 0, 'good config passes again') or diag($out);

done_testing();

###############################################################################
