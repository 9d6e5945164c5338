#!/usr/bin/perl

# The Debian package (make deb, debian/): built (or taken from
# MAIL_PLUS_DEB), checked with lintian when the machine has it, installed
# with apt-get on this machine, then nginx -t and a running nginx with the
# module loaded through /etc/nginx/modules-enabled/ as Debian's nginx.conf
# does, one POP3 session to Dovecot and one SMTP session into the package's
# spool; an upgrade keeps the spool and respects dpkg-statoverride, a remove
# keeps it, a purge keeps it while it holds mail and says so, a purge of an
# empty spool removes it.  At the end the package is purged and nothing of
# it is left, even when a check failed.
#
# It installs into the real /usr and /var: it runs as root only, and skips
# when the package or its spool is already on the machine, or when dpkg is
# busy.  MAIL_PLUS_DEB=path/to/libnginx-mod-mail-plus_*.deb skips the build.

use warnings;
use strict;

use Test::More;

use POSIX ();

use FindBin;
use lib "$FindBin::Bin/lib";
use MailPlus::Test;

###############################################################################

my $PKG = 'libnginx-mod-mail-plus';
my $SPOOL = '/var/spool/nginx-mail-plus';
my $ENABLED = '/etc/nginx/modules-enabled';
my $AVAILABLE = '/usr/share/nginx/modules-available';
my $SO = '/usr/lib/nginx/modules/ngx_mail_plus_module.so';

$ENV{DEBIAN_FRONTEND} = 'noninteractive';

plan(skip_all => 'needs root: installs the package with apt-get') if $> != 0;

for my $bin (qw{ /usr/bin/apt-get /usr/bin/dpkg /usr/bin/dpkg-deb
                 /usr/bin/dpkg-query /usr/sbin/nginx })
{
    plan(skip_all => "$bin not found") unless -x $bin;
}

plan(skip_all => 'libnginx-mod-mail is not installed (apt-get would '
    . 'install it, and the machine would not be left as it was)')
    unless installed('libnginx-mod-mail');

plan(skip_all => "$PKG is already on this machine (its state would be lost)")
    if package_state() ne 'absent';

plan(skip_all => "$SPOOL exists already (its content would be at risk)")
    if -e $SPOOL;

plan(skip_all => 'dpkg is locked by another process')
    if dpkg_locked();

my $had_run = -e '/run/nginx-mail-plus';

my $t = MailPlus::Test->new(module => 0);
my $dir = $t->testdir();

my $override;

END {
    # whatever happened: nginx stopped, the package purged, the spool and
    # the statoverride of this test gone

    local $?;

    if (defined $t && $t->{owner} == $$) {
        $t->stop();

        if (package_state() ne 'absent') {
            cmd(apt_get('purge', $PKG));
        }

        cmd('dpkg-statoverride', '--remove', $SPOOL) if $override;
        cmd('rm', '-rf', $SPOOL) if -e $SPOOL;
    }
}

###############################################################################

# the package

my $deb = $ENV{MAIL_PLUS_DEB};

if ($deb) {
    give_up("MAIL_PLUS_DEB=$deb: no such file") unless -f $deb;

} else {
    plan(skip_all => 'dpkg-buildpackage or dh_nginx not found (make deps)')
        unless -x '/usr/bin/dpkg-buildpackage' && -x '/usr/bin/dh_nginx';

    my ($rc, $out) = cmd('make', '-C', $MailPlus::Test::ROOT,
        'deb', "DEB_DIR=$dir/deb");

    if ($rc != 0) {
        my @lines = split /\n/, $out;
        diag(join("\n", @lines > 30 ? @lines[-30 .. -1] : @lines));
        give_up('make deb');
    }

    ($deb) = $out =~ /^package: (\S+\.deb)$/m;
    $deb = "$MailPlus::Test::ROOT/$deb" if $deb && $deb !~ m{^/};

    give_up('make deb named no package') unless $deb && -f $deb;
}

# lintian, clean but for the overrides of debian/

SKIP: {
    skip 'lintian not installed', 1 unless -x '/usr/bin/lintian';

    my ($rc, $out) = cmd('lintian', '--pedantic', '-I', '--fail-on',
        'error,warning,info,pedantic', $deb);
    $out =~ s/^running with root privileges is not recommended!\n//mg;

    ok($rc == 0 && $out eq '', 'lintian: no tags') or diag($out);
}

# the dependencies: dh_nginx's nginx ABI, the stock mail module

my ($abi) = read_text('/usr/share/nginx/src/debian/libnginx-mod.abisubstvars')
    =~ /^nginx:abi=(\S+)/m;

my (undef, $depends) = cmd('dpkg-deb', '-f', $deb, 'Depends');

like($depends, qr/(?:^|, )\Q$abi\E(?:,|$)/m, "depends on $abi");
like($depends, qr/(?:^|, )libnginx-mod-mail(?:,|$)/m,
    'depends on libnginx-mod-mail');

###############################################################################

# installed

my ($rc, $out) = cmd(apt_get('install', $deb));
is($rc, 0, 'apt-get install') or diag($out);
is(package_state(), 'installed', 'package installed');

my (undef, $list) = cmd('dpkg', '-L', $PKG);
my %files = map { $_ => 1 } split /\n/, $list;

for my $f ($SO, "$AVAILABLE/mod-mail-plus.conf",
    '/usr/sbin/nginx-mailq', '/usr/share/man/man8/nginx-mailq.8.gz',
    "/usr/share/doc/$PKG/copyright", "/usr/share/doc/$PKG/spool.md.gz",
    (map { "/usr/share/nginx-mail-plus/webmail/$_" }
        qw/ index.html webmail.css webmail.js /))
{
    ok($files{$f} && -e $f, "installs $f");
}

ok(-x '/usr/sbin/nginx-mailq', 'nginx-mailq is executable');

# the tree's docs/*.md and docs/examples/ (compressed or not, as dh_compress
# decides)

my $root = $MailPlus::Test::ROOT;
my @docs = map { substr($_, length("$root/docs/")) }
    glob("$root/docs/*.md"), find_files("$root/docs/examples");

is(join(' ', grep { !$files{"/usr/share/doc/$PKG/$_"}
                    && !$files{"/usr/share/doc/$PKG/$_.gz"} } @docs),
    '', 'installs docs/*.md and docs/examples/');
ok(!grep({ m{^/var/spool} } keys %files), 'the spool is not a packaged file');

is(read_text("$AVAILABLE/mod-mail-plus.conf"),
    "load_module modules/ngx_mail_plus_module.so;\n", 'mod-mail-plus.conf');

is(readlink("$ENABLED/70-mod-mail-plus.conf"),
    "$AVAILABLE/mod-mail-plus.conf", 'enabled as 70-mod-mail-plus.conf');

my @order = grep { /mod-mail/ } sort map { (split m{/})[-1] }
    glob("$ENABLED/*.conf");
is("@order", '50-mod-mail.conf 70-mod-mail-plus.conf',
    'loaded after the stock mail module');

my ($uid, $gid) = (getpwnam('www-data'))[2, 3];

is_deeply([ spool_stat() ], [ $uid, $gid, 0750 ],
    'spool www-data:www-data 0750');

ok($files{'/usr/lib/tmpfiles.d/libnginx-mod-mail-plus.conf'},
    'installs the sockets\' directory as a tmpfiles.d file');

SKIP: {
    skip 'no systemd-tmpfiles', 1 unless -x '/usr/bin/systemd-tmpfiles';

    my @st = stat('/run/nginx-mail-plus');
    is_deeply(@st ? [ $st[4], $st[5], $st[2] & 07777 ] : [],
        [ 0, $gid, 0750 ], '/run/nginx-mail-plus root:www-data 0750');
}

###############################################################################

# nginx with the packaged module, as Debian's nginx.conf loads modules; the
# modules' relative paths resolve against the test's prefix

symlink('/usr/lib/nginx/modules', "$dir/modules") or die "symlink: $!\n";

my $d = $t->dovecot('a', users => { alice => 'secret' });

$t->write_file('users', <<'EOF');
alice:{PLAIN}secret
bob@example.com:{PLAIN}secret
EOF

$t->write_file_expand('nginx.conf', <<"EOF");
user  www-data;
worker_processes  1;

include  $ENABLED/*.conf;

events {
}

mail {
    router_users  %%TESTDIR%%/users;

    router_pool a {
        server 127.0.0.1 imap=$d->{imap} pop3=$d->{pop3};
    }

    router_default_pool  a;

    auth_http  127.0.0.1:9/unused;


    server {
        listen        127.0.0.1:%%PORT_pop3%%;
        protocol      pop3;
        router_proxy  on;
    }

    server {
        listen                  127.0.0.1:%%PORT_smtp%%;
        protocol                smtp;
        server_name             mx.test;
        smtp_store_and_forward  on;
        smtp_local_domains      example.com;
    }
}
EOF

($rc, $out) = $t->nginx_t('nginx.conf');
is($rc, 0, 'nginx -t with the packaged module') or diag($out);

$t->seed($d, 'alice', subject => 'through the package');
$t->run();

like($t->pop3_retr($t->port('pop3'), 'alice', 'secret', 1),
    qr/^\+OK.*^Subject: through the package\r$/ms, 'pop3 session');

my $reply = $t->submit($t->port('smtp'), 'a@remote.example',
    [ 'bob@example.com' ], "Subject: queued\r\n\r\nbody\r\n");
my ($id) = $reply =~ /queued as ([0-9A-F]{22})/;

ok($id && -f "$SPOOL/incoming/$id", 'smtp session: queued in the spool')
    or diag($reply);

$t->stop();

$id ||= 'none';

###############################################################################

# an upgrade keeps the spool and its mail; a dpkg-statoverride wins

my $up = "$dir/upgrade.deb";

cmd('dpkg-deb', '-R', $deb, "$dir/repack");
my $control = read_text("$dir/repack/DEBIAN/control");
$control =~ s/^Version: (\S+)$/Version: $1+t1/m;
$t->write_file("$dir/repack/DEBIAN/control", $control);
($rc, $out) = cmd('dpkg-deb', '-b', "$dir/repack", $up);
is($rc, 0, 'a later version made') or diag($out);

$override = 1;
cmd('dpkg-statoverride', '--add', 'www-data', 'www-data', '0700', $SPOOL);

($rc, $out) = cmd(apt_get('install', $up));
is($rc, 0, 'upgrade') or diag($out);
like(installed($PKG) || '', qr/\+t1$/, 'the later version installed');

ok(-f "$SPOOL/incoming/$id", 'upgrade: the queued message is kept');
is_deeply([ spool_stat() ], [ $uid, $gid, 0700 ],
    'upgrade: the statoverride applied');
ok(-l "$ENABLED/70-mod-mail-plus.conf", 'upgrade: still enabled');

cmd('dpkg-statoverride', '--remove', $SPOOL);
$override = 0;

# remove: the module goes, its link is parked as Debian's modules do, the
# spool stays

($rc, $out) = cmd(apt_get('remove', $PKG));
is($rc, 0, 'remove') or diag($out);

ok(!-e $SO, 'remove: the module is gone');
ok(!-e "$ENABLED/70-mod-mail-plus.conf", 'remove: not enabled');
ok(-f "$SPOOL/incoming/$id", 'remove: the queued message is kept');

# purge with mail in the spool: kept, and said so

($rc, $out) = cmd(apt_get('purge', $PKG));
is($rc, 0, 'purge') or diag($out);
is(package_state(), 'absent', 'purged');

like($out, qr/\Q$SPOOL\E holds queued mail and is kept/,
    'purge: says the spool is kept');
ok(-f "$SPOOL/incoming/$id", 'purge: the queued message is kept');
ok(!-e "$ENABLED/70-mod-mail-plus.conf.removed", 'purge: the link is gone');

# the message delivered (here: deleted), installed again (enabled again,
# the spool as it is), then a purge of the empty spool removes it

unlink "$SPOOL/incoming/$id";

($rc, $out) = cmd(apt_get('install', $deb));
is($rc, 0, 'install again') or diag($out);
ok(-l "$ENABLED/70-mod-mail-plus.conf", 'enabled again');

($rc, $out) = cmd(apt_get('purge', $PKG));
is($rc, 0, 'purge again') or diag($out);
unlike($out, qr/queued mail/, 'purge of an empty spool: no message');
ok(!-e $SPOOL, 'purge of an empty spool removes it');

# the machine as it was

is(package_state(), 'absent', 'not installed');
ok(!-e $SO, "no $SO");
ok(!-e "$AVAILABLE/mod-mail-plus.conf", 'nothing in modules-available');
is(join(' ', glob("$ENABLED/*mail-plus*")), '', 'nothing in modules-enabled');
ok(!-e '/usr/share/nginx-mail-plus', 'no web mail files');
ok(!-e '/usr/sbin/nginx-mailq', 'no nginx-mailq');
ok($had_run || !-e '/run/nginx-mail-plus', 'no sockets\' directory');

$t->finish();

###############################################################################

# give_up($what): a failure that ends the test (the END block cleans up)

sub give_up {
    my ($what) = @_;

    fail($what);
    done_testing();
    exit 1;
}

# cmd(@argv): runs a command, returns its exit code and its output
# (standard output and standard error)

sub cmd {
    my @argv = @_;

    my $pid = open my $fh, '-|';
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec(@argv) or POSIX::_exit(127);
    }

    local $/;
    my $out = <$fh>;
    close $fh;

    return ($? >> 8, defined $out ? $out : '');
}

sub apt_get {
    my ($op, @args) = @_;

    return ('apt-get', '-y', '-q', '-o', 'DPkg::Lock::Timeout=120', $op,
        @args);
}

sub read_text {
    my ($path) = @_;

    open my $fh, '<', $path or return '';
    local $/;
    my $text = <$fh>;
    close $fh;

    return defined $text ? $text : '';
}

# installed($pkg): its version when it is installed, else undef

sub installed {
    my ($pkg) = @_;

    my ($rc, $out) = cmd('dpkg-query', '-W', '-f',
        '${db:Status-Status} ${Version}', $pkg);

    return $rc == 0 && $out =~ /^installed (\S+)/ ? $1 : undef;
}

# package_state(): installed, absent (not installed, no conffiles or
# maintainer scripts left) or what dpkg says

sub package_state {
    my ($rc, $out) = cmd('dpkg-query', '-W', '-f', '${db:Status-Status}',
        $PKG);

    return 'absent' if $rc != 0 || $out eq 'not-installed';
    return $out;
}

# find_files($dir): the files below a directory, recursively

sub find_files {
    my ($dir) = @_;

    opendir my $dh, $dir or return ();
    my @names = grep { !/^\./ } readdir $dh;
    closedir $dh;

    return map { -d "$dir/$_" ? find_files("$dir/$_") : "$dir/$_" } @names;
}

sub spool_stat {
    my @st = stat($SPOOL) or return ();
    return ($st[4], $st[5], $st[2] & 07777);
}

# dpkg's locks (fcntl locks) held by another process

sub dpkg_locked {
    return 0 unless -x '/usr/bin/python3';

    for my $lock (qw{ /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock }) {
        next unless -e $lock;

        my ($rc) = cmd('python3', '-c', 'import fcntl, sys; '
            . 'fcntl.lockf(open(sys.argv[1], "r+"), '
            . 'fcntl.LOCK_EX | fcntl.LOCK_NB)', $lock);

        return 1 if $rc != 0;
    }

    return 0;
}

###############################################################################
