#!/usr/bin/perl

# Configuration of SMTP store-and-forward: where the directives may stand
# and which values are refused by "nginx -t".

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $t = MailPlus::Test->new();

sub conf {
    my ($name, $mail) = @_;

    $t->write_file_expand($name, <<"EOF");
%%LOAD_MODULES%%

events {
}

mail {
    auth_http 127.0.0.1:9/auth;
    queue_spool %%TESTDIR%%/spool-$name;

$mail
}
EOF

    return $t->nginx_t($name);
}

my ($rc, $out) = conf('imap.conf', <<'EOF');
    server {
        listen 127.0.0.1:%%PORT_imap%%;
        protocol imap;
        smtp_store_and_forward on;
    }
EOF
isnt($rc, 0, 'refused in an imap server');
like($out, qr/"smtp_store_and_forward" needs "protocol smtp"/, 'error names it');

($rc, $out) = conf('main.conf', <<'EOF');
    smtp_store_and_forward on;
    smtp_local_domains example.com;

    server {
        listen 127.0.0.1:%%PORT_imap%%;
        protocol imap;
    }

    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
    }
EOF
is($rc, 0, 'set in mail{}: applies to smtp servers only') or diag($out);
ok(-d $t->path('spool-main.conf/incoming'), 'spool made by nginx -t');

($rc, $out) = conf('line.conf', <<'EOF');
    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        smtp_store_and_forward on;
        smtp_max_line_length 100;
    }
EOF
like($out, qr/"smtp_max_line_length" must be at least 512/, 'line length');

($rc, $out) = conf('net.conf', <<'EOF');
    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        smtp_store_and_forward on;
        smtp_trusted_networks 10.0.0.300/8;
    }
EOF
like($out, qr/invalid network "10\.0\.0\.300\/8"/, 'trusted network');

($rc, $out) = conf('dup.conf', <<'EOF');
    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        smtp_store_and_forward on;
        smtp_local_domains a.example;
        smtp_local_domains b.example;
    }
EOF
like($out, qr/"smtp_local_domains" directive is duplicate/, 'duplicate');

($rc, $out) = conf('rcpt.conf', <<'EOF');
    server {
        listen 127.0.0.1:%%PORT_smtp%%;
        protocol smtp;
        smtp_store_and_forward on;
        smtp_max_recipients 0;
    }
EOF
isnt($rc, 0, 'zero recipients refused');

done_testing();
