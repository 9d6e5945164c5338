package MailPlus::Slapd;

# An OpenLDAP slapd of a test or a benchmark: an mdb database in the
# test's directory with the core, cosine, inetorgperson and nis schemas,
# loaded from an LDIF with slapadd, listening on a loopback port the test
# picks.  Stopped by PID when the test ends (it is one of the test's
# daemons).
#
#   my $ldap = MailPlus::Slapd->new($t, suffix => 'dc=example,dc=org',
#       ldif => $ldif, acl => $acl);
#   $ldap->kill(); $ldap->start();
#   MailPlus::Slapd::ssha($password)        # {SSHA}..., as slappasswd

use warnings;
use strict;

use POSIX qw/ _exit /;

use MailPlus::Test qw/ wait_for /;

our $SLAPD = '/usr/sbin/slapd';
our $SLAPADD = '/usr/sbin/slapadd';
our $SCHEMA = '/etc/ldap/schema';

sub new {
    my ($class, $t, %opts) = @_;

    # slapd is one of the packages the tests need (Makefile's
    # DEB_PACKAGES): without it the test fails rather than skips

    die "slapd is not installed\n"
        unless -x $SLAPD && -x $SLAPADD && -f "$SCHEMA/inetorgperson.schema";

    my $name = $opts{name} || 'ldap';
    my $dir = $t->testdir();
    my $acl = $opts{acl} || "access to *\n    by * read\n";

    my $self = bless {
        t => $t,
        dir => $dir,
        name => $name,
        port => $t->port($name),
    }, $class;

    mkdir "$dir/$name-db" or die "mkdir: $!\n";

    $t->write_file("$name.ldif", $opts{ldif});

    $t->write_file("$name.conf", <<"CONF");
include $SCHEMA/core.schema
include $SCHEMA/cosine.schema
include $SCHEMA/inetorgperson.schema
include $SCHEMA/nis.schema
pidfile $dir/$name.pid
argsfile $dir/$name.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 104857600
suffix "$opts{suffix}"
rootdn "cn=admin,$opts{suffix}"
rootpw adminpw
directory $dir/$name-db
$acl
CONF

    system("$SLAPADD -f $dir/$name.conf -l $dir/$name.ldif "
        . ">$dir/$name.slapadd.log 2>&1") == 0
        or die "slapadd failed:\n" . $t->read_file("$name.slapadd.log");

    $self->start();

    return $self;
}

sub port { $_[0]{port} }
sub pid { $_[0]{pid} }
sub log_text { $_[0]{t}->read_file("$_[0]{name}.log") }

sub start {
    my ($self) = @_;

    my $t = $self->{t};
    my $base = "$self->{dir}/$self->{name}";

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDOUT, '>>', "$base.log";
        open STDERR, '>>', "$base.log";
        exec($SLAPD, '-d', '0', '-f', "$base.conf",
            '-h', "ldap://127.0.0.1:$self->{port}/") or _exit(127);
    }

    push @{$t->{daemons}}, $pid;

    $t->waitforsocket("127.0.0.1:$self->{port}")
        or die "slapd: no listener\n" . $self->log_text();

    $self->{pid} = $pid;
}

# kill(): gone at once, and no longer listening

sub kill {
    my ($self) = @_;

    CORE::kill('KILL', $self->{pid});
    waitpid($self->{pid}, 0);

    wait_for(sub { !$self->{t}->can_connect("127.0.0.1:$self->{port}") },
        10);
}

# a password as OpenLDAP stores it

sub ssha {
    my ($pw) = @_;

    my $h = `/usr/sbin/slappasswd -h '{SSHA}' -s '$pw'`;
    chomp $h;

    die "slappasswd failed\n" unless $h =~ /^\{SSHA\}/;

    return $h;
}

1;
