package MailPlus::Pg;

# A PostgreSQL 15 server of a test or a benchmark: its own cluster in the
# test's directory, run as the "postgres" user (PostgreSQL refuses root),
# on a loopback port the test picks, its unix socket in its directory,
# every statement logged.  Stopped by PID when the test ends.
#
#   my $pg = MailPlus::Pg->new($t);         # initdb, start
#   $pg->psql($sql [, $db]) or die ...;     # as the superuser
#   $pg->stop('INT'); $pg->start();
#   $pg->asked($login);                     # executions with $1 = login

use warnings;
use strict;

use File::Path qw/ make_path /;
use POSIX qw/ _exit WNOHANG /;

use MailPlus::Test qw/ wait_for /;

our $PGBIN = '/usr/lib/postgresql/15/bin';

my @servers;

sub new {
    my ($class, $t, %opts) = @_;

    # PostgreSQL is one of the packages the tests need (Makefile's
    # DEB_PACKAGES): without it the test fails rather than skips

    die "PostgreSQL 15 is not installed ($PGBIN)\n"
        unless -x "$PGBIN/postgres" && -x "$PGBIN/initdb";

    my $user = getpwnam('postgres') ? 'postgres' : 'nobody';
    my ($uid, $gid) = (getpwnam($user))[2, 3];

    my $name = $opts{name} || 'pg';
    my $dir = $t->testdir() . "/$name";

    my $self = bless {
        t => $t,
        user => $user,
        dir => $dir,
        port => $t->port($name),
        log => "$dir.log",
        setup => "$dir.setup.log",
        pids => [],
        conf => $opts{conf} || [],
    }, $class;

    make_path("$dir/data");
    chown $uid, $gid, $dir, "$dir/data";
    chmod 0700, $dir, "$dir/data";

    push @servers, $self;

    $self->_wait("$PGBIN/initdb", '-D', "$dir/data", '-U', 'postgres',
        '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8',
        '--locale=C', '--no-sync')
        or die "initdb failed:\n" . $t->read_file($self->{setup});

    $self->start()
        or die "postgres did not start:\n" . $t->read_file($self->{log});

    return $self;
}

sub port { $_[0]{port} }
sub dir { $_[0]{dir} }
sub log_text { $_[0]{t}->read_file($_[0]{log}) }
sub setup_log { $_[0]{t}->read_file($_[0]{setup}) }

sub _run {
    my ($self, $out, @cmd) = @_;

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out;
        open STDERR, '>>', $out;
        chdir $self->{dir};
        exec('runuser', '-u', $self->{user}, '--', @cmd) or _exit(127);
    }

    return $pid;
}

sub _wait {
    my ($self, @cmd) = @_;

    my $pid = $self->_run($self->{setup}, @cmd);
    waitpid($pid, 0);

    return $? == 0;
}

# psql($sql, $db): the statements run as the superuser in $db ("mail" by
# default); true if they all went through

sub psql {
    my ($self, $sql, $db) = @_;

    my $file = "$self->{dir}.sql";

    $self->{t}->write_file($file, $sql);
    chmod 0644, $file;

    return $self->_wait("$PGBIN/psql", '-X', '-q', '-h', $self->{dir},
        '-p', $self->{port}, '-U', 'postgres', '-d', $db || 'mail',
        '-v', 'ON_ERROR_STOP=1', '-f', $file);
}

# start(): true once the server answers (accepting connections is not
# ready: it may still be starting up)

sub start {
    my ($self) = @_;

    push @{$self->{pids}}, $self->_run($self->{log}, "$PGBIN/postgres",
        '-D', "$self->{dir}/data", '-p', $self->{port}, '-k', $self->{dir},
        '-c', 'listen_addresses=127.0.0.1', '-c', 'log_statement=all',
        '-c', 'fsync=off', '-c', 'shared_buffers=16MB',
        '-c', 'max_connections=20', map { ('-c', $_) } @{$self->{conf}});

    return wait_for(sub {
        -S "$self->{dir}/.s.PGSQL.$self->{port}"
            && system("$PGBIN/pg_isready", '-q', '-h', '127.0.0.1',
                '-p', $self->{port}) == 0
    }, 30);
}

# stop($sig): INT is a fast shutdown (sessions are told 57P01, then
# closed), QUIT an immediate one; true once it is gone

sub stop {
    my ($self, $sig) = @_;

    open my $fh, '<', "$self->{dir}/data/postmaster.pid" or return 1;
    my $pid = <$fh>;
    close $fh;

    chomp $pid;
    kill $sig, $pid if $pid;

    my $gone = wait_for(sub {
        waitpid($_, WNOHANG) for @{$self->{pids}};
        !kill(0, $pid) && !$self->{t}->can_connect("127.0.0.1:$self->{port}")
    }, 20);

    $self->{pids} = [ grep { waitpid($_, WNOHANG) == 0 } @{$self->{pids}} ];

    return $gone;
}

# asked($login): how many times a statement was run with $1 = $login
# (log_statement=all logs each execution's parameters)

sub asked {
    my ($self, $login) = @_;

    (my $q = $login) =~ s/'/''/g;

    my @n = $self->log_text() =~ /parameters: \$1 = '\Q$q\E'$/mg;

    return scalar @n;
}

END {
    local $?;

    # an immediate shutdown, whatever happened

    for my $pg (@servers) {
        $pg->stop('QUIT') if -e "$pg->{dir}/data/postmaster.pid";
    }
}

1;
