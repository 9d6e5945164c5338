package MailPlus::Test;

# Test harness for ngx_mail_plus_module.
#
# One object per test file: it owns a temporary directory under t/tmp/,
# picks free loopback ports, writes nginx.conf from a template, starts
# nginx and Dovecot instances, and stops every process it started (by
# PID: TERM, then KILL after a bounded wait) when it goes away.
#
# Environment:
#   MAIL_PLUS_MODULE   path of the module .so (default build/ in the repo)
#   MAIL_PLUS_PRELOAD  LD_PRELOAD for nginx (sanitizer runs)
#   MAIL_PLUS_NGINX    nginx binary (default /usr/sbin/nginx)
#   MAIL_PLUS_MAIL_MODULE  the stock mail module .so of that binary
#   MAIL_PLUS_LEAVE    keep the test directory
#   MAIL_PLUS_VERBOSE  print nginx's error.log at the end
#   MAIL_PLUS_VALGRIND run nginx under valgrind's memcheck (make
#                      check-valgrind): waits are MAIL_PLUS_TIME_SCALE
#                      (default 5) times longer, and a test fails on any
#                      memory error or definite leak in valgrind.PID.log

use warnings;
use strict;

use Cwd qw/ abs_path /;
use Errno qw/ EINTR /;
use Exporter qw/ import /;
use File::Basename qw/ dirname /;
use File::Path qw/ make_path rmtree /;
use File::Spec;
use File::Temp qw/ tempdir /;
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX qw/ WNOHANG _exit /;
use Socket qw/ CRLF /;
use Test::More qw//;
use Time::HiRes qw/ time sleep /;

our @EXPORT_OK = qw/ wait_for /;

our $ROOT = abs_path(dirname(__FILE__) . '/../../..');
our $NGINX = $ENV{MAIL_PLUS_NGINX} || '/usr/sbin/nginx';
our $DOVECOT = '/usr/sbin/dovecot';
our $SMTP_SINK = '/usr/sbin/smtp-sink';
our $MAIL_MODULE = $ENV{MAIL_PLUS_MAIL_MODULE}
    || '/usr/lib/nginx/modules/ngx_mail_module.so';
our $MODULE = $ENV{MAIL_PLUS_MODULE}
    || "$ROOT/build/ngx_mail_plus_module.so";

# Polling interval and default deadline of every readiness loop.  Under
# valgrind nginx runs 20-50 times slower: every deadline and client timeout
# of the harness is multiplied by $SCALE (deadlines only; what a test
# asserts stays the same).

our $VALGRIND = $ENV{MAIL_PLUS_VALGRIND} ? 1 : 0;
our $SCALE = $VALGRIND ? ($ENV{MAIL_PLUS_TIME_SCALE} || 5) : 1;
our $POLL = 0.05;
our $DEADLINE = 20 * $SCALE;
our $VALGRIND_SUPP = "$ROOT/t/valgrind.supp";

my %instances;
my %ports_taken;

###############################################################################

sub new {
    my ($class, %opts) = @_;

    my $need = exists $opts{module} ? $opts{module} : 1;

    if ($need && !-f $MODULE) {
        Test::More::plan(skip_all => "module $MODULE not built (run make)");
    }

    for my $bin ($NGINX, $DOVECOT) {
        Test::More::plan(skip_all => "$bin not found") unless -x $bin;
    }

    die "MAIL_PLUS_VALGRIND and MAIL_PLUS_PRELOAD (a sanitizer) exclude "
        . "each other\n" if $VALGRIND && $ENV{MAIL_PLUS_PRELOAD};

    # below t/tmp/ when every directory above it lets others through,
    # else (a checkout in /root, say) below the system's temporary directory

    my $base = "$ROOT/t/tmp";
    my $path = '';

    for my $part (grep { length } split m{/}, $ROOT) {
        $path .= "/$part";
        my @st = stat($path) or next;
        if (!($st[2] & 0001)) {
            $base = File::Spec->tmpdir() . '/mail-plus-tests';
            last;
        }
    }

    make_path($base);

    my $dir = tempdir('mp-XXXXXXXX', DIR => $base);

    # Dovecot's login and mail processes (dovenull, nobody) and nginx's
    # workers must reach files below the test directory.

    chmod 0755, $base, $dir;

    my $self = bless {
        dir => $dir,
        owner => $$,
        ports => {},
        daemons => [],
        nginx => undef,
        log_level => 'debug',
    }, $class;

    $instances{"$self"} = $self;

    return $self;
}

sub testdir { $_[0]{dir} }

sub module { $MODULE }

###############################################################################

# port('name') returns a free loopback TCP port, the same one for the same
# name within a test.  Ports are taken below the ephemeral range so that
# outgoing connections never hold them.

sub port {
    my ($self, $name, $addr) = @_;

    return $self->{ports}{$name} if defined $self->{ports}{$name};

    $addr ||= '127.0.0.1';

    for (1 .. 500) {
        my $port = 20000 + int(rand(12000));
        next if $ports_taken{$port};

        my $s = IO::Socket::INET->new(
            Proto => 'tcp',
            LocalAddr => "$addr:$port",
            Listen => 1,
            ReuseAddr => 1,
        ) or next;
        close $s;

        $ports_taken{$port} = 1;
        return $self->{ports}{$name} = $port;
    }

    die "no free port found\n";
}

###############################################################################

sub path {
    my ($self, $name) = @_;
    return $name =~ m!^/! ? $name : "$self->{dir}/$name";
}

sub write_file {
    my ($self, $name, $content) = @_;

    my $path = $self->path($name);
    make_path(dirname($path));

    open my $fh, '>', "$path.tmp" or die "can't create $path: $!\n";
    binmode $fh;
    print $fh $content;
    close $fh or die "can't write $path: $!\n";
    rename "$path.tmp", $path or die "can't rename $path: $!\n";
    chmod 0644, $path;

    return $self;
}

sub read_file {
    my ($self, $name) = @_;

    open my $fh, '<', $self->path($name) or return '';
    local $/;
    my $content = <$fh>;
    close $fh;

    return defined $content ? $content : '';
}

# Placeholders:
#   %%TESTDIR%%       the test directory
#   %%MODULE%%        the module .so
#   %%LOAD_MODULES%%  load_module lines for the stock mail module and ours
#   %%HTTP_GLOBALS%%  temp paths and access_log for the http block
#   %%PORT_name%%     port('name')

sub expand {
    my ($self, $content) = @_;

    my $dir = $self->{dir};

    my $load = "load_module $MAIL_MODULE;\n"
        . "load_module $MODULE;\n";

    my $http = join '', map { "    ${_}_temp_path $dir/${_}_temp;\n" }
        qw/ client_body proxy fastcgi uwsgi scgi /;
    $http .= "    access_log $dir/access.log;\n";

    $content =~ s/%%LOAD_MODULES%%/$load/g;
    $content =~ s/%%HTTP_GLOBALS%%/$http/g;
    $content =~ s/%%TESTDIR%%/$dir/g;
    $content =~ s/%%MAIL_MODULE%%/$MAIL_MODULE/g;
    $content =~ s/%%MODULE%%/$MODULE/g;
    $content =~ s/%%PORT_(\w+)%%/$self->port($1)/ge;

    return $content;
}

sub write_file_expand {
    my ($self, $name, $content) = @_;
    return $self->write_file($name, $self->expand($content));
}

###############################################################################

# wait_for(sub { ... }, $seconds) polls until the sub returns true, at most
# $seconds; returns the sub's last value.

sub wait_for {
    my ($cond, $timeout) = @_;

    my $end = time() + ($timeout ? $timeout * $SCALE : $DEADLINE);

    while (1) {
        my $r = $cond->();
        return $r if $r;
        return $r if time() > $end;
        sleep($POLL);
    }
}

sub can_connect {
    my ($self, $addr) = @_;

    my $s;

    if ($addr =~ m!^unix:(.+)!) {
        $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $1);
    } else {
        $s = IO::Socket::INET->new(PeerAddr => $addr, Proto => 'tcp',
            Timeout => 2);
    }

    return 0 unless $s;
    close $s;
    return 1;
}

# waits until a TCP (host:port) or unix (unix:path) address accepts a
# connection and, with $re, until the peer's first line matches it.

sub waitforsocket {
    my ($self, $addr, $re, $timeout) = @_;

    return wait_for(sub {
        return $self->can_connect($addr) unless $re;

        my $c = MailPlus::Test::Client->new($addr, timeout => 2,
            quiet => 1) or return 0;
        my $line = $c->getline();
        return defined $line && $line =~ $re;
    }, $timeout);
}

###############################################################################

# nginx

sub _nginx_args {
    my ($self, $conf) = @_;

    my $dir = $self->{dir};

    return ('-p', "$dir/", '-c', $self->path($conf), '-e', "$dir/error.log");
}

sub _nginx_globals {
    my ($self) = @_;

    my $dir = $self->{dir};

    return ('-g', "daemon off; master_process on; pid $dir/nginx.pid; "
        . "error_log $dir/error.log $self->{log_level};");
}

# the command that runs nginx: under valgrind, memcheck with one log per
# process in the test directory

sub _valgrind {
    my ($self) = @_;

    return () unless $VALGRIND;

    return ('valgrind', '--tool=memcheck', '--trace-children=yes',
        '--leak-check=full', '--show-leak-kinds=definite',
        '--errors-for-leak-kinds=definite', '--error-exitcode=99',
        '--num-callers=30', '--keep-debuginfo=yes',
        "--suppressions=$VALGRIND_SUPP",
        "--log-file=$self->{dir}/valgrind.%p.log");
}

sub _exec_env {
    if ($ENV{MAIL_PLUS_PRELOAD}) {
        $ENV{LD_PRELOAD} = $ENV{MAIL_PLUS_PRELOAD};
        $ENV{ASAN_OPTIONS} ||= 'detect_leaks=0:abort_on_error=1';
    }
}

# run(conf => 'nginx.conf', log_level => 'debug'): starts nginx in the
# foreground (its master is our child) and waits for its pid file and for
# every listen address of the configuration to accept connections.

sub run {
    my ($self, %opts) = @_;

    die "nginx already running\n" if $self->{nginx};

    my $conf = $opts{conf} || $self->{conf} || 'nginx.conf';
    $self->{conf} = $conf;
    $self->{log_level} = $opts{log_level} if $opts{log_level};

    my $dir = $self->{dir};
    unlink "$dir/nginx.pid";

    my @cmd = ($self->_valgrind(), $NGINX, $self->_nginx_args($conf),
        $self->_nginx_globals());

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        _exec_env();
        open STDOUT, '>>', "$dir/nginx.stderr";
        open STDERR, '>>', "$dir/nginx.stderr";
        exec(@cmd) or _exit(127);
    }

    $self->{nginx} = $pid;

    my $exited;
    my $ok = wait_for(sub {
        if (waitpid($pid, WNOHANG) == $pid) {
            $exited = $?;
            return 1;
        }
        my $p = $self->read_file('nginx.pid');
        return $p =~ /^\s*$pid\s*$/;
    });

    if (defined $exited || !$ok) {
        $self->{nginx} = undef;
        kill 'KILL', $pid unless defined $exited;
        waitpid($pid, 0) unless defined $exited;
        die "nginx did not start: " . $self->startup_errors() . "\n";
    }

    my $text = $self->read_file($conf);

    my @addrs = $text =~ /^\s*listen\s+([^\s;]+)/mg;

    for my $addr (@addrs) {
        $addr = "127.0.0.1:$addr" if $addr =~ /^\d+$/;
        $self->waitforsocket($addr)
            or die "nginx does not listen on $addr\n";
    }

    return $self;
}

sub startup_errors {
    my ($self) = @_;

    my $log = $self->read_file('error.log') . $self->read_file('nginx.stderr');
    my @lines = grep { /\[(emerg|alert|crit)\]|Sanitizer|nginx:/ }
        split /\n/, $log;

    return join("\n", @lines[-(@lines > 10 ? 10 : @lines) .. -1]);
}

sub nginx_pid { $_[0]{nginx} }

sub children {
    my ($self, $ppid) = @_;

    my @pids;

    opendir my $dh, '/proc' or return ();

    for my $p (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $stat = <$fh>;
        close $fh;
        next unless defined $stat;

        # pid (comm) state ppid ...
        push @pids, $p if $stat =~ /\)\s+\S+\s+(\d+)/ && $1 == $ppid;
    }

    closedir $dh;

    return @pids;
}

# reload(): HUP to the master, then wait until a new worker runs and every
# old one has gone or is shutting down (it keeps its open sessions but no
# longer accepts).  Returns true when the new configuration is live.

sub reload {
    my ($self, $timeout) = @_;

    my $pid = $self->{nginx} or die "nginx not running\n";
    my %old = map { $_ => 1 } $self->children($pid);

    kill 'HUP', $pid;

    return wait_for(sub {
        my @now = $self->children($pid);
        return 0 unless grep { !$old{$_} } @now;

        for my $p (grep { $old{$_} } @now) {
            return 0 unless $self->_shutting_down($p);
        }

        return 1;
    }, $timeout);
}

# under valgrind a process title is not seen in /proc: the worker's notice
# "gracefully shutting down" in error.log tells instead

sub _shutting_down {
    my ($self, $pid) = @_;

    return _cmdline($pid) =~ /shutting down/ unless $VALGRIND;

    return !-e "/proc/$pid"
        || $self->read_file('error.log') =~ /\b$pid#\d+: gracefully shutting/;
}

sub _cmdline {
    my ($pid) = @_;

    open my $fh, '<', "/proc/$pid/cmdline" or return 'gone, shutting down';
    local $/;
    my $cmd = <$fh>;
    close $fh;

    return defined $cmd ? $cmd : '';
}

sub _stop_pid {
    my ($self, $pid, $sig, $timeout) = @_;

    return unless $pid;

    my @kids = $self->children($pid);

    kill $sig, $pid;

    my $gone = wait_for(sub { waitpid($pid, WNOHANG) != 0 },
        $timeout || 10);

    if (!$gone) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }

    # processes the killed master left behind

    for my $k (@kids) {
        kill 'KILL', $k if -e "/proc/$k" && !$gone;
    }
}

sub stop {
    my ($self) = @_;

    my $pid = $self->{nginx} or return $self;
    $self->{nginx} = undef;

    $self->_valgrind_stop_workers($pid) if $VALGRIND;
    $self->_stop_pid($pid, 'TERM', 10);

    return $self;
}

# Under valgrind a worker's exit (its leak check) takes seconds, and a
# master told to stop sends SIGKILL to workers still running after about
# 1.5 s, which loses their reports: the master is stopped (SIGSTOP) while
# its workers get TERM and exit as they would on the master's TERM, then
# it gets TERM and SIGCONT (it reaps them and exits; terminating, it
# starts no new ones).

sub _valgrind_stop_workers {
    my ($self, $pid) = @_;

    my @kids = $self->children($pid);

    kill 'STOP', $pid;
    kill 'TERM', @kids;

    wait_for(sub { !grep { _running($_) } @kids }, 10);

    kill 'TERM', $pid;
    kill 'CONT', $pid;
}

# a process that exists and is not a zombie

sub _running {
    my ($pid) = @_;

    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh>;
    close $fh;

    return defined $stat && $stat !~ /\)\s+Z\s/;
}

sub restart {
    my ($self, %opts) = @_;
    $self->stop();
    return $self->run(%opts);
}

# nginx_t($conf): runs "nginx -t" on a configuration file of the test
# directory; returns (exit code, output).

sub nginx_t {
    my ($self, $conf) = @_;

    my $dir = $self->{dir};
    my @cmd = ($self->_valgrind(), $NGINX, '-t',
        $self->_nginx_args($conf || 'nginx.conf'),
        '-g', "pid $dir/nginx-t.pid;");

    my $pid = open my $fh, '-|';
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        _exec_env();
        open STDERR, '>&', \*STDOUT;
        exec(@cmd) or _exit(127);
    }

    local $/;
    my $out = <$fh>;
    close $fh;

    return ($? >> 8, defined $out ? $out : '');
}

###############################################################################

# Dovecot

# dovecot('a', users => { alice => 'secret' }): starts a Dovecot instance
# with imap, pop3 and lmtp listeners on ports port('a_imap') etc.; returns
# a hash: name, addr, dir, imap, pop3, lmtp, pid, users.
#
# Options: addr => '127.0.0.2' (listen address, default 127.0.0.1);
# any_password => 1 (Dovecot accepts any password: only the router
# checks them); login_processes => N (N imap-login and pop3-login
# processes kept running, each for many connections, so that a greeting
# never waits for a new process: for frequent health checks with a short
# timeout on a busy machine); haproxy => 1 (extra imap and pop3 listeners on ports
# port('a_imap_pp') and port('a_pop3_pp') that take a PROXY protocol
# header from loopback: imap_pp and pop3_pp in the hash); extra => text
# appended to dovecot.conf.

sub dovecot {
    my ($self, $name, %opts) = @_;

    my $dir = "$self->{dir}/dovecot-$name";
    make_path("$dir/run", "$dir/state", "$dir/home");
    chmod 0755, $dir, "$dir/home";

    my $addr = $opts{addr} || '127.0.0.1';

    my %d = (
        name => $name,
        addr => $addr,
        dir => $dir,
        imap => $self->port("${name}_imap", $addr),
        pop3 => $self->port("${name}_pop3", $addr),
        lmtp => $self->port("${name}_lmtp", $addr),
        users => { %{$opts{users} || {}} },
    );

    my $passdb = $opts{any_password}
        ? "driver = static\n  args = nopassword=y"
        : "driver = passwd-file\n  args = scheme=PLAIN username_format=%u "
            . "$dir/passwd";

    my ($pp_imap, $pp_pop3, $pp_trusted) = ('', '', '');

    if ($opts{haproxy}) {
        $d{imap_pp} = $self->port("${name}_imap_pp", $addr);
        $d{pop3_pp} = $self->port("${name}_pop3_pp", $addr);
        $pp_trusted = "haproxy_trusted_networks = 127.0.0.0/8\n";
        $pp_imap = "  inet_listener imap_pp {\n    address = $addr\n"
            . "    port = $d{imap_pp}\n    haproxy = yes\n  }\n";
        $pp_pop3 = "  inet_listener pop3_pp {\n    address = $addr\n"
            . "    port = $d{pop3_pp}\n    haproxy = yes\n  }\n";
    }

    my $passwd = '';
    for my $u (sort keys %{$d{users}}) {
        $passwd .= "$u:{PLAIN}$d{users}{$u}::::::\n";
    }
    $self->write_file("$dir/passwd", $passwd);

    my $login = $opts{login_processes}
        ? "  service_count = 0\n"
            . "  process_min_avail = $opts{login_processes}\n"
        : '';

    $self->write_file("$dir/dovecot.conf", <<"EOF");
base_dir = $dir/run
state_dir = $dir/state
instance_name = mailplus-$name
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
debug_log_path = $dir/dovecot.log
protocols = imap pop3 lmtp
listen = $addr
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
login_trusted_networks = 127.0.0.0/8
${pp_trusted}default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
imap_idle_notify_interval = 1 mins
mailbox_idle_check_interval = 1 secs

passdb {
  $passdb
}

userdb {
  driver = passwd-file
  args = username_format=%u $dir/passwd
  default_fields = uid=nobody gid=nogroup home=$dir/home/%u
}

service imap-login {
${login}  inet_listener imap {
    address = $addr
    port = $d{imap}
  }
  inet_listener imaps {
    port = 0
  }
$pp_imap}

service pop3-login {
${login}  inet_listener pop3 {
    address = $addr
    port = $d{pop3}
  }
  inet_listener pop3s {
    port = 0
  }
$pp_pop3}

service lmtp {
  inet_listener lmtp {
    address = $addr
    port = $d{lmtp}
  }
}

protocol lmtp {
  postmaster_address = postmaster\@example.com
}
@{[ $opts{extra} || '' ]}
EOF

    for my $u (keys %{$d{users}}) {
        $self->maildir(\%d, $u);
    }

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDOUT, '>>', "$dir/dovecot.stderr";
        open STDERR, '>>', "$dir/dovecot.stderr";
        exec($DOVECOT, '-F', '-c', "$dir/dovecot.conf") or _exit(127);
    }

    $d{pid} = $pid;
    push @{$self->{daemons}}, $pid;

    for my $p (qw/ imap pop3 /) {
        my $re = $p eq 'imap' ? qr/^\* OK/ : qr/^\+OK/;

        next if $self->waitforsocket("$addr:$d{$p}", $re);

        my $log = $self->read_file("$dir/dovecot.log")
            . $self->read_file("$dir/dovecot.stderr");
        die "dovecot $name: no $p banner on port $d{$p}\n$log\n";
    }

    $self->waitforsocket("$addr:$d{lmtp}")
        or die "dovecot $name: no lmtp listener\n";

    return \%d;
}

# stop_dovecot($dovecot): stops one Dovecot instance started by dovecot()
# (TERM to its master by PID, KILL after a bounded wait) and waits, at
# most $timeout seconds, until its IMAP and POP3 ports refuse connections.
# Returns true when they do.  dovecot() with the same name and options
# starts it again on the same ports, with the same mailboxes.

sub stop_dovecot {
    my ($self, $d, $timeout) = @_;

    my $pid = delete $d->{pid} or return 1;

    $self->{daemons} = [ grep { $_ != $pid } @{$self->{daemons}} ];
    $self->_stop_pid($pid, 'TERM', 10);

    for my $p (qw/ imap pop3 /) {
        wait_for(sub { !$self->can_connect("$d->{addr}:$d->{$p}") },
            $timeout) or return 0;
    }

    return 1;
}

# smtp_sink($name, @options): Postfix's smtp-sink on 127.0.0.1, port
# port($name), with its verbose log in $name.log of the test directory
# (the options are smtp-sink's, e.g. '-N' for no DSN); returns its PID
# once it accepts connections.  It is stopped with the other daemons.

sub smtp_sink {
    my ($self, $name, @opts) = @_;

    my $port = $self->port($name);
    my $log = $self->path("$name.log");

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDOUT, '>>', $log;
        open STDERR, '>>', $log;
        exec($SMTP_SINK, '-v', '-u', 'nobody', @opts, "127.0.0.1:$port",
            100) or _exit(127);
    }

    push @{$self->{daemons}}, $pid;
    $self->waitforsocket("127.0.0.1:$port") or die "no $name\n";

    return $pid;
}

# maildir($dovecot, $user, $folder): creates (if needed) and returns the
# Maildir of a user (or of a folder of it), owned by nobody:nogroup.

sub maildir {
    my ($self, $d, $user, $folder) = @_;

    my ($uid, $gid) = (getpwnam('nobody'))[2, 3];

    my $home = "$d->{dir}/home/$user";
    my $md = "$home/Maildir";
    my @dirs = ($home, $md, map { "$md/$_" } qw/ cur new tmp /);

    if (defined $folder && $folder ne 'INBOX') {
        $md .= "/.$folder";
        push @dirs, $md, map { "$md/$_" } qw/ cur new tmp /;
    }

    for my $p (@dirs) {
        next if -d $p;
        mkdir $p, 0700 or die "mkdir $p: $!\n";
        chown $uid, $gid, $p;
    }

    return $md;
}

# maildir_count($dovecot, $user): how many messages the user's INBOX has;
# maildir_text($dovecot, $user): all of them, in the order of their names,
# each followed by a line "=====".

sub _maildir_files {
    my ($d, $user) = @_;
    my $md = "$d->{dir}/home/$user/Maildir";
    return sort(glob("$md/new/*"), glob("$md/cur/*"));
}

sub maildir_count {
    my ($self, $d, $user) = @_;
    my @f = _maildir_files($d, $user);
    return scalar @f;
}

sub maildir_text {
    my ($self, $d, $user) = @_;
    return join '', map { $self->read_file($_) . "\n=====\n" }
        _maildir_files($d, $user);
}

my $seq = 0;

# seed($dovecot, $user, %opts): drops one message into the user's Maildir
# (folder => name for a subfolder); subject, from, body and to may be
# given, or a whole message as text.  Returns the message text.

sub seed {
    my ($self, $d, $user, %opts) = @_;

    my $md = $self->maildir($d, $user, $opts{folder});
    my ($uid, $gid) = (getpwnam('nobody'))[2, 3];

    my $text = $opts{text};

    if (!defined $text) {
        my $subject = $opts{subject} || "message " . ($seq + 1);
        my $body = defined $opts{body} ? $opts{body} : "Hello $user.\n";
        my $from = $opts{from} || 'sender@example.com';
        my $to = $opts{to} || "$user\@example.com";

        $text = "From: $from\nTo: $to\nSubject: $subject\n"
            . "Date: Mon, 30 Nov 2026 10:00:00 +0000\n"
            . "Message-ID: <seed-$$-$seq\@example.com>\n\n$body";
    }

    $text =~ s/\r?\n/\n/g;

    my $file = sprintf("%d.M%dP%dQ%d.mailplus", time(), $seq, $$, $seq);
    $seq++;

    $self->write_file("$md/tmp/$file", $text);
    chown $uid, $gid, "$md/tmp/$file";
    chmod 0600, "$md/tmp/$file";
    rename "$md/tmp/$file", "$md/new/$file" or die "rename: $!\n";

    return $text;
}

sub dovecot_log {
    my ($self, $d) = @_;
    return $self->read_file("$d->{dir}/dovecot.log");
}

###############################################################################

# SMTP store-and-forward helpers

# spool($dir): the queue IDs in a subdirectory of a spool ('incoming' by
# default), sorted; empty files (a worker's stock of temporary files) are
# not listed.

sub spool {
    my ($self, $spool, $sub) = @_;

    return map { (split m{/})[-1] } $self->spool_files($spool, $sub);
}

# spool_files($spool, $sub): the same, as paths relative to the test's
# directory; deferred/ holds its messages in buckets, deferred/<bucket>/<ID>
# (docs/spool.md), and a file right in deferred/ is listed too.

sub spool_files {
    my ($self, $spool, $sub) = @_;

    $sub ||= 'incoming';

    my @dirs = ("$spool/$sub");

    if ($sub eq 'deferred') {
        my $d = $self->path("$spool/deferred");
        opendir my $dh, $d or return ();
        push @dirs, map { "$spool/deferred/$_" }
            grep { /^[0-9a-f]{8}\.[0-9a-f]{8}\.[0-9a-f]{8}$/ && -d "$d/$_" }
            readdir $dh;
        closedir $dh;
    }

    my @files;

    for my $rel (@dirs) {
        my $d = $self->path($rel);
        opendir my $dh, $d or next;
        push @files, map { "$rel/$_" }
            grep { !/^\./ && -f "$d/$_" && -s "$d/$_" } readdir $dh;
        closedir $dh;
    }

    return sort { (split m{/}, $a)[-1] cmp (split m{/}, $b)[-1] } @files;
}

# pop3_retr($port, $user, $pass, $i): message $i of a mailbox over POP3
# (USER/PASS, RETR, QUIT), or the reply that failed.

sub pop3_retr {
    my ($self, $port, $user, $pass, $i) = @_;

    my $s = MailPlus::Test::Client->new($port) or return 'connect';
    $s->getline();
    $s->pop3("USER $user");

    my $r = $s->pop3("PASS $pass");
    return $r unless defined $r && $r =~ /^\+OK/;

    $r = $s->pop3("RETR $i", multi => 1);
    $s->pop3('QUIT');

    return $r;
}

# imap_fetch($port, $user, $pass, $i): BODY.PEEK[] of message $i of the
# INBOX over IMAP, or the reply that failed.

sub imap_fetch {
    my ($self, $port, $user, $pass, $i) = @_;

    my $s = MailPlus::Test::Client->new($port) or return 'connect';
    $s->getline();

    my $r = $s->imap('a1', "LOGIN \"$user\" \"$pass\"");
    return $r unless $r =~ /^a1 OK/m;

    $s->imap('a2', 'SELECT INBOX');
    $r = $s->imap('a3', "FETCH $i BODY.PEEK[]");
    $s->imap('a4', 'LOGOUT');

    return $r;
}

# submit($port, $from, \@rcpts, $data, auth => base64): one message over
# SMTP (EHLO, AUTH PLAIN if asked, MAIL, RCPT, DATA, QUIT); $data is sent
# as is, dot-stuffed by the caller, without the final dot.  Returns the
# reply to the end of the data.

sub submit {
    my ($self, $port, $from, $rcpts, $data, %opts) = @_;

    my $s = MailPlus::Test::Client->new($port) or return 'connect';
    $s->smtp_reply();
    $s->smtp('EHLO client.test');
    $s->smtp("AUTH PLAIN $opts{auth}") if $opts{auth};
    $s->smtp("MAIL FROM:<$from>");
    $s->smtp("RCPT TO:<$_>") for @$rcpts;
    $s->smtp('DATA');

    my $r = $s->smtp("$data.");
    $s->smtp('QUIT');

    return $r;
}

# inject($spool, $sender, $lines, $content): puts a queue file made by hand
# (docs/spool.md) into incoming/, with envelope lines after the sender
# (rcpt, and others); returns its queue ID.

my $inject_seq = 0;

sub inject {
    my ($self, $spool, $sender, $lines, $content) = @_;

    my $now = int(time());
    my $id = sprintf('%08X%05X%06X%03X', $now, $inject_seq, 0xFFFFF0,
        $inject_seq);
    $inject_seq++;

    $content = "Subject: injected\r\n\r\nbody\r\n" unless defined $content;

    $self->write_file("$spool/tmp/$id", "MAILPLUS-QUEUE 1\r\nid $id\r\n"
        . "arrival $now\r\nclient 127.0.0.1\r\nhelo test\r\n"
        . "login \r\nbody 7BIT    \r\nsmtputf8 no\r\nsender $sender\r\n"
        . $lines . "end\r\n" . $content);

    # owned like the spool: the workers set its mtime when they defer it

    my ($uid, $gid) = (stat($self->path("$spool/incoming")))[4, 5];
    chown $uid, $gid, $self->path("$spool/tmp/$id");

    rename($self->path("$spool/tmp/$id"), $self->path("$spool/incoming/$id"))
        or die "rename: $!\n";

    return $id;
}

# workers(): the PIDs of nginx's worker processes.

sub workers {
    my ($self) = @_;
    my $pid = $self->{nginx} or return ();

    # under valgrind every process shows valgrind's command line: the
    # master's children that are not shutting down are its workers

    return grep { !$self->_shutting_down($_) } $self->children($pid)
        if $VALGRIND;

    return grep { _cmdline($_) =~ /worker process/ } $self->children($pid);
}

###############################################################################

# error log checks, as nginx-tests does them: no alerts, no sanitizer
# reports.  finish() stops nginx first so shutdown problems show too.

sub log_problems {
    my ($self) = @_;

    my $log = $self->read_file('error.log') . $self->read_file('nginx.stderr');

    my @alerts = $log =~ /^.*\[(?:alert|crit)\].*$/mg;
    @alerts = grep { !/$self->{ignore_alerts}/ } @alerts
        if $self->{ignore_alerts};
    my @san = $log =~ /^.*(?:Sanitizer|runtime error:).*$/mg;

    return (\@alerts, \@san);
}

# valgrind_problems(): the memory errors and definite leaks reported in
# the valgrind logs of the processes that have ended since the last call,
# as text (empty when there are none): for each log with problems, its
# name, error summary and every error or leak record with its stack.

sub valgrind_problems {
    my ($self) = @_;

    return '' unless $VALGRIND;

    my @out;

    for my $f (sort glob("$self->{dir}/valgrind.*.log")) {
        my ($pid) = $f =~ /valgrind\.(\d+)\.log$/;
        next if $self->{valgrind_seen}{$f} || ($pid && -e "/proc/$pid");
        $self->{valgrind_seen}{$f} = 1;

        my $text = $self->read_file($f);
        my @found;

        # records are separated by "==PID== " lines; an error or a leak
        # record is a message followed by its stack ("at 0x", "by 0x")

        my @records = split /^==\d+==\s*\n/m, $text;

        for my $r (@records) {
            next unless $r =~ /^==\d+==\s+(?:at|by) 0x/m;
            next if $r =~ /^==\d+== Warning: noted but unhandled ioctl/m;
            push @found, $r;
        }

        my ($errors) = $text =~ /ERROR SUMMARY: (\d+) errors/;
        my ($lost) = $text =~ /definitely lost: ([\d,]+) bytes/;
        $lost =~ s/,//g if defined $lost;

        next unless @found || $errors || $lost;

        my @summary = $text
            =~ /^(==\d+== (?:ERROR SUMMARY|\s+definitely).*\n)/mg;

        push @out, "$f:\n" . join('', @found, @summary);
    }

    return join("\n", @out);
}

sub finish {
    my ($self) = @_;

    $self->stop();

    my ($alerts, $san) = $self->log_problems();

    Test::More::is(join("\n", @$alerts), '', 'no alerts in error.log');
    Test::More::is(join("\n", @$san), '', 'no sanitizer reports');

    if ($VALGRIND) {
        Test::More::is($self->valgrind_problems(), '',
            'no valgrind errors, no definite leaks');
    }

    Test::More::done_testing();
}

sub cleanup {
    my ($self) = @_;

    return if $self->{owner} != $$ || $self->{cleaned}++;

    $self->stop();

    for my $pid (reverse @{$self->{daemons}}) {
        $self->_stop_pid($pid, 'TERM', 10);
    }
    $self->{daemons} = [];

    # a test that does not call finish() is checked here, and fails on a
    # problem even after done_testing() (one test more than planned)

    if ($VALGRIND) {
        wait_for(sub { !grep { -e "/proc/$_" } map { /\.(\d+)\.log$/ }
            glob("$self->{dir}/valgrind.*.log") });

        my $p = $self->valgrind_problems();

        Test::More::is($p, '', 'no valgrind errors, no definite leaks')
            if $p ne '';
    }

    if ($ENV{MAIL_PLUS_VERBOSE}) {
        print STDERR $self->read_file('error.log');
    }

    if ($ENV{MAIL_PLUS_LEAVE}) {
        Test::More::diag("test directory left: $self->{dir}");
    } else {
        rmtree($self->{dir});
    }

    delete $instances{"$self"};
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->cleanup();
}

END {
    local $?;
    $_->cleanup() for values %instances;
}

$SIG{INT} = $SIG{TERM} = sub { exit 1 };
$SIG{PIPE} = 'IGNORE';

###############################################################################

# A line client: raw TCP (or unix) socket with bounded reads.  trace => sub
# gets every line sent ("C: ") and received ("S: "); local => '127.0.0.2'
# binds the client's end to that address.

package MailPlus::Test::Client;

use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Socket qw/ SOCK_STREAM /;
use Time::HiRes qw/ time /;

sub new {
    my ($class, $addr, %opts) = @_;

    $addr = "127.0.0.1:$addr" if $addr =~ /^\d+$/;

    my $s;

    if ($addr =~ m!^unix:(.+)!) {
        $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $1);
    } else {
        $s = IO::Socket::INET->new(PeerAddr => $addr, Proto => 'tcp',
            Timeout => ($opts{timeout} || 10) * $MailPlus::Test::SCALE,
            $opts{local} ? (LocalAddr => $opts{local}) : ());
    }

    if (!$s) {
        Test::More::diag("connect $addr: $!") unless $opts{quiet};
        return undef;
    }

    $s->autoflush(1);
    binmode $s;

    return bless {
        s => $s,
        buf => '',
        timeout => $opts{timeout} || 10,
        scale => $MailPlus::Test::SCALE,
        trace => $opts{trace},
        log => [],
    }, $class;
}

sub sock { $_[0]{s} }

sub send {
    my ($self, $data, %opts) = @_;

    $data .= "\r\n" unless $opts{raw};

    $self->{trace}->("C: $_") for $self->{trace} ? split /\r\n/, $data : ();

    my $s = $self->{s};
    local $SIG{PIPE} = 'IGNORE';
    my $n = syswrite($s, $data);
    return defined $n && $n == length $data;
}

# getline($timeout): the next line (with its CRLF), or undef on timeout or
# end of stream.

sub getline {
    my ($self, $timeout) = @_;

    my $end = time()
        + (defined $timeout ? $timeout : $self->{timeout}) * $self->{scale};
    my $sel = IO::Select->new($self->{s});

    while ($self->{buf} !~ /\n/) {
        my $left = $end - time();
        return undef if $left <= 0;
        next unless $sel->can_read($left);

        my $n = sysread($self->{s}, $self->{buf}, 65536,
            length $self->{buf});
        next if !defined $n && $!{EINTR};
        return undef unless $n;
    }

    $self->{buf} =~ s/^(.*?\n)//s;
    my $line = $1;

    push @{$self->{log}}, $line;
    if ($self->{trace}) {
        (my $l = $line) =~ s/\r?\n$//;
        $self->{trace}->("S: $l");
    }

    return $line;
}

# read_bytes($n): exactly $n bytes (IMAP literals).

sub read_bytes {
    my ($self, $n, $timeout) = @_;

    my $end = time()
        + (defined $timeout ? $timeout : $self->{timeout}) * $self->{scale};
    my $sel = IO::Select->new($self->{s});

    while (length $self->{buf} < $n) {
        my $left = $end - time();
        return undef if $left <= 0;
        next unless $sel->can_read($left);
        my $r = sysread($self->{s}, $self->{buf}, 65536, length $self->{buf});
        return undef unless $r;
    }

    return substr($self->{buf}, 0, $n, '');
}

# read_until(qr/.../): lines up to and including the first matching one;
# in scalar context all of them joined.  Stops early on timeout or EOF.

sub read_until {
    my ($self, $re, $timeout) = @_;

    my @lines;

    while (defined(my $line = $self->getline($timeout))) {
        push @lines, $line;
        last if $line =~ $re;
    }

    return wantarray ? @lines : join('', @lines);
}

# IMAP: sends "TAG command", returns everything up to the tagged reply.

sub imap {
    my ($self, $tag, $cmd, $timeout) = @_;
    $self->send("$tag $cmd");
    return scalar $self->read_until(qr/^\Q$tag\E (OK|NO|BAD)/, $timeout);
}

# POP3: sends a command, returns its first line; with multi => 1 the whole
# multi-line answer up to the terminating ".".

sub pop3 {
    my ($self, $cmd, %opts) = @_;

    $self->send($cmd);

    my $first = $self->getline();
    return $first unless $opts{multi} && defined $first && $first =~ /^\+OK/;

    return $first . $self->read_until(qr/^\.\r?\n$/);
}

sub at_eof {
    my ($self, $timeout) = @_;

    my $line = $self->getline(defined $timeout ? $timeout : 5);
    return !defined $line;
}

# SMTP: sends a command (unless undef), returns the whole reply (every
# line up to the one with a space after the code).

sub smtp {
    my ($self, $cmd, $timeout) = @_;
    $self->send($cmd) if defined $cmd;
    return $self->smtp_reply($timeout);
}

sub smtp_reply {
    my ($self, $timeout) = @_;
    return scalar $self->read_until(qr/^\d{3}(?: |\r?\n)/, $timeout);
}

sub disconnect {
    my ($self) = @_;
    CORE::close($self->{s}) if $self->{s};
    $self->{s} = undef;
}

1;
