#!/usr/bin/perl

# Every nginx configuration of the operator's guide passes "nginx -t".
#
# The guide's pages (docs/operations*.md) mark each ```nginx block with
# the line before it:
#
#   <!-- nginx-t: examples/NAME.conf -->  the block is that whole file
#                                         of docs/examples/, as it is
#   <!-- nginx-t: SKELETON -->            a fragment, checked inside the
#                                         skeleton of that name (below)
#
# A block without a marker, a marker that names nothing, a file block that
# differs from its file, and a block of another language that holds an
# nginx configuration all fail.  Every docs/examples/*.conf is checked
# too, shown in the guide or not.
#
# The guide reads as a real host does (/etc/nginx/..., /var/spool/...,
# /run/...); here those paths are rewritten into the test's directory,
# and the files nginx -t opens are made by the test: certificates and
# keys with openssl, a users file, a JWKS of the token tests' keys, the
# master password file, mime.types.  The modules are loaded as the
# harness loads them, instead of Debian's modules-enabled/ include.
# nginx -t binds the listen sockets (a port in use is not an error, an
# address the host does not have is): the guide's ports below 1024 need
# root, as the tests have in CI, and its documentation addresses
# (192.0.2.0/24) become loopback ones.

use warnings;
use strict;

use Test::More;

use File::Basename qw/ dirname basename /;
use File::Copy qw/ copy /;
use File::Path qw/ make_path /;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;
use MailPlus::Token;

###############################################################################

my $ROOT = "$FindBin::Bin/..";
my $DOCS = "$ROOT/docs";

# nginx -t binds the guide's ports (25, 110, 143, ...): as root, as the
# tests run in CI

plan(skip_all => 'nginx -t binds ports below 1024: run as root') if $>;

my $t = MailPlus::Test->new();
my $dir = $t->testdir();

# where a fragment goes: FRAGMENT is replaced by the block

my $HEAD = <<'EOF';
include /etc/nginx/modules-enabled/*.conf;

events {
}

EOF

my $MAIL_BASE = <<'EOF';
    router_users         /etc/nginx/mail-users;
    router_zone          mail_router:10m;

    router_pool main {
        server 10.0.0.11 imap=143 pop3=110 lmtp=24;
    }

    auth_http  unix:/run/nginx-mail-plus/auth.sock:/auth;

    ssl_certificate      /etc/letsencrypt/live/mx1.example.com/fullchain.pem;
    ssl_certificate_key  /etc/letsencrypt/live/mx1.example.com/privkey.pem;

    queue_spool       /var/spool/nginx-mail-plus;
    queue_delivery    on;
EOF

my %SKELETON = (

    # top-level configuration: the block brings its own mail{}, http{}

    main => $HEAD . "FRAGMENT\n",

    # router settings in mail{}: the block brings the users, directories
    # and pools; one IMAP server uses them

    mail => $HEAD . <<'EOF',
mail {
FRAGMENT

    auth_http  unix:/run/nginx-mail-plus/auth.sock:/auth;

    server {
        listen        143;
        protocol      imap;
        router_proxy  on;
    }
}
EOF

    # mail{} settings and server{} blocks next to a router and a spool

    'mail-server' => $HEAD . "mail {\n$MAIL_BASE\nFRAGMENT\n}\n",

    # http{} contents, next to the mail{} of the front door

    http => $HEAD . "mail {\n$MAIL_BASE\n" . <<'EOF',
    server {
        listen    25;
        protocol  smtp;
        smtp_store_and_forward  on;
        smtp_local_domains      example.com;
    }
}

http {
FRAGMENT
}
EOF
);

###############################################################################

# the files nginx -t reads, made once: one key and certificate serve
# every ssl_certificate; the token keys of the token tests

make_path("$dir/pki");

system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
    . "-subj /CN=mx1.example.com -keyout $dir/pki/key.pem "
    . "-out $dir/pki/cert.pem 2>$dir/pki/openssl.log") == 0
    or die "openssl req failed: " . $t->read_file("pki/openssl.log") . "\n";

my $tokens = MailPlus::Token->new($t);

my %MAKE = (
    ssl_certificate => sub { copy("$dir/pki/cert.pem", $_[0]) },
    ssl_certificate_key => sub { copy("$dir/pki/key.pem", $_[0]) },
    ssl_trusted_certificate => sub { copy("$dir/pki/cert.pem", $_[0]) },
    queue_tls_trusted_certificate =>
        sub { copy("$dir/pki/cert.pem", $_[0]) },
    router_users => sub {
        $t->write_file($_[0], "alice\@example.com:{PLAIN}secret\n"
            . "bob:{PLAIN}secret::::::pool=main\n")
    },
    router_token_jwks => sub { $tokens->write_jwks($_[0], 'ec1') },
    include => sub {
        copy('/etc/nginx/mime.types', $_[0]) if $_[0] =~ /mime\.types$/;
    },
    auth_basic_user_file => sub {
        $t->write_file($_[0], "ops:{PLAIN}secret\n")
    },
    ssl_session_ticket_key => sub {
        $t->write_file($_[0], 'k' x 80)
    },
);

# real paths into the test directory; the modules as the harness loads
# them

sub localize {
    my ($conf) = @_;

    $conf =~ s{^\s*include\s+/etc/nginx/modules-enabled/\*\.conf;}
        {%%LOAD_MODULES%%}m;
    $conf =~ s{(?<=[\s:=])/(etc|var|run|usr/share/nginx-mail-plus)/}
        {$dir/$1/}g;

    # nginx -t binds the listen addresses: the guide's own addresses
    # (192.0.2.0/24, RFC 5737) become loopback ones

    $conf =~ s{^(\s*listen\s+)192\.0\.2\.(\d+)}{${1}127.0.2.$2}mg;

    return $t->expand($conf);
}

# makes the files and directories a configuration names

sub prepare {
    my ($conf) = @_;

    for my $p ($conf =~ m{(\Q$dir\E/[^\s;:'"]+)}g) {
        make_path(dirname($p));
    }

    while ($conf =~ /^\s*(\w+)\s+([^;{}]*);/mg) {
        my ($name, $args) = ($1, $2);

        my @files = $args =~ m{(\Q$dir\E/[^\s;'"]+)}g;
        next unless @files;

        if ($name eq 'router_pool' || $name eq 'server') {
            next;
        }

        # token_login master USER FILE

        if ($name eq 'token_login' && $args =~ /^master/) {
            $t->write_file($files[-1], "master-secret\n");
            next;
        }

        next unless $MAKE{$name};

        for my $f (@files) {
            next if -e $f;
            $MAKE{$name}->($f);
        }
    }

    # a spool that is there, as the package makes it

    make_path("$dir/var/spool/nginx-mail-plus");
    make_path("$dir/run/nginx-mail-plus");
}

my $n = 0;

# nginx_t_ok($name, $conf): nginx -t on a configuration in the guide's
# form

sub nginx_t_ok {
    my ($name, $conf) = @_;

    my $file = sprintf('conf-%02d.conf', ++$n);
    my $text = localize($conf);

    prepare($text);
    $t->write_file($file, $text);

    my ($rc, $out) = $t->nginx_t($file);

    is($rc, 0, "nginx -t: $name") or diag("$out\n$text");
    unlike($out, qr/\[(?:emerg|alert|crit)\]/, "nginx -t: $name, no errors")
        or diag($out);
}

###############################################################################

# the guide's blocks

my @pages = sort glob("$DOCS/operations*.md");
ok(@pages, 'the guide is there');

my %examples = map { ("examples/" . basename($_)) => $t->read_file($_) }
    glob("$DOCS/examples/*.conf");

my $blocks = 0;

# what gives away an nginx configuration in a block of another language

my $NGINX_BLOCK = qr/^\s*(?:mail|http|events|location\s.*|server)\s*\{\s*$/m;

for my $page (@pages) {
    my $md = $t->read_file($page);
    my $name = basename($page);
    my @lines = split /\n/, $md;

    for (my $i = 0; $i < @lines; $i++) {
        next unless $lines[$i] =~ /^(\s*)```(\S*)\s*$/;

        my ($indent, $lang) = ($1, $2);
        my $start = $i + 1;
        my @body;

        for ($i++; $i < @lines && $lines[$i] !~ /^\s*```\s*$/; $i++) {
            (my $l = $lines[$i]) =~ s/^\Q$indent\E//;
            push @body, $l;
        }

        my $body = join("\n", @body) . "\n";
        my $where = "$name:$start";

        if ($lang ne 'nginx') {
            ok($body !~ $NGINX_BLOCK,
                "$where: a ```$lang block holds no nginx configuration");
            next;
        }

        $blocks++;

        my $k = $start - 2;
        $k-- while $k >= 0 && $lines[$k] =~ /^\s*$/;
        my ($marker) = $k >= 0
            ? $lines[$k] =~ /^\s*<!--\s*nginx-t:\s*(\S+)\s*-->\s*$/ : ();

        if (!defined $marker) {
            fail("$where: the nginx block has an nginx-t marker");
            next;
        }

        if ($marker =~ m{^examples/}) {
            ok(exists $examples{$marker}, "$where: $marker exists")
                or next;
            is($body, $examples{$marker}, "$where: the block is $marker");
            next;
        }

        if (!$SKELETON{$marker}) {
            fail("$where: skeleton \"$marker\" is known");
            next;
        }

        (my $conf = $SKELETON{$marker}) =~ s/FRAGMENT/$body/;
        nginx_t_ok("$where ($marker)", $conf);
    }
}

cmp_ok($blocks, '>=', 10, "the guide has nginx blocks ($blocks)");

# every example configuration, shown or not

for my $f (sort keys %examples) {
    nginx_t_ok($f, $examples{$f});
}

$t->finish();

###############################################################################
