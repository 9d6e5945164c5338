package MailPlus::Bench;

# What the benchmarks under bench/ share: parallel clients running POP3 or
# IMAP sessions back to back (connect, log in, read one message, log out),
# a process's CPU time, ratios.

use warnings;
use strict;

use Exporter qw/ import /;
use IO::Socket::INET;
use POSIX qw/ _exit /;
use Socket qw/ IPPROTO_TCP TCP_NODELAY /;
use Time::HiRes qw/ time /;

our @EXPORT_OK = qw/ run_sessions session cpu ratio /;

# run_sessions($port, $proto, $seconds, \@users, $password): one process
# per user, each running sessions back to back for $seconds as that user
# ($password may be a hash of each user's); returns sessions per second
# and the median session time in ms

sub run_sessions {
    my ($port, $proto, $seconds, $users, $password) = @_;

    my @kids;

    for my $user (@$users) {
        pipe(my $r, my $w) or die "pipe: $!\n";
        my $pid = fork();
        die "fork: $!\n" unless defined $pid;

        if ($pid == 0) {
            close $r;
            my @times;
            my $end = time() + $seconds;
            while (time() < $end) {
                my $start = time();
                session($port, $proto, $user,
                        ref $password ? $password->{$user} : $password)
                    or next;
                push @times, time() - $start;
            }
            print $w join(' ', @times), "\n";
            close $w;
            _exit(0);
        }

        close $w;
        push @kids, [ $pid, $r ];
    }

    my @all;

    for my $k (@kids) {
        my $fh = $k->[1];
        my $line = <$fh>;
        push @all, split ' ', $line if defined $line;
        waitpid($k->[0], 0);
    }

    @all = sort { $a <=> $b } @all;

    return (@all / $seconds, @all ? 1000 * $all[int(@all / 2)] : 0);
}

sub ratio {
    my ($x, $y) = @_;
    return $x && $y ? $x / $y : 0;
}

# CPU time of a process so far, in milliseconds

sub cpu {
    my ($pid) = @_;

    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh>;
    close $fh;

    my @f = split ' ', (split /\) /, $stat)[1];

    return ($f[11] + $f[12]) * 1000 / 100;
}

# session($port, $proto, $user, $password): one session, 1 if it went
# through: "imap" and "pop3" log in, read one message and log out,
# "imap-login" only logs in and out; "imap-token" is "imap" logged in
# with AUTHENTICATE XOAUTH2, $password its initial response in base64

sub session {
    my ($port, $proto, $user, $password) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
        Proto => 'tcp') or return 0;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);

    my $buf = '';

    my $line = sub {
        while ($buf !~ /\n/) {
            my $n = sysread($s, $buf, 65536, length $buf);
            return undef unless $n;
        }
        $buf =~ s/^(.*?\n)//s;
        return $1;
    };

    my $until = sub {
        my ($re) = @_;
        while (defined(my $l = $line->())) {
            return $l if $l =~ $re;
        }
        return undef;
    };

    my $send = sub { syswrite($s, "$_[0]\r\n") };

    if ($proto eq 'imap-login') {
        $line->() // return 0;
        $send->("a LOGIN $user $password");
        ($until->(qr/^a /) // '') =~ /^a OK/ or return 0;
        $send->("b LOGOUT");
        $until->(qr/^b /) // return 0;

    } elsif ($proto eq 'imap' || $proto eq 'imap-token') {
        $line->() // return 0;
        $send->($proto eq 'imap' ? "a LOGIN $user $password"
                                 : "a AUTHENTICATE XOAUTH2 $password");
        ($until->(qr/^a /) // '') =~ /^a OK/ or return 0;
        $send->("b SELECT INBOX");
        $until->(qr/^b /) // return 0;
        $send->("c FETCH 1 BODY[]");
        my $l = $line->() // return 0;
        my ($n) = $l =~ /\{(\d+)\}\r\n$/ or return 0;
        while (length $buf < $n) {
            sysread($s, $buf, 65536, length $buf) or return 0;
        }
        substr($buf, 0, $n, '');
        $until->(qr/^c /) // return 0;
        $send->("d LOGOUT");
        $until->(qr/^d /) // return 0;

    } else {
        $line->() // return 0;
        $send->("USER $user");
        $line->() // return 0;
        $send->("PASS $password");
        ($line->() // '') =~ /^\+OK/ or return 0;
        $send->("STAT");
        $line->() // return 0;
        $send->("RETR 1");
        $until->(qr/^\.\r\n$/) // return 0;
        $send->("QUIT");
        $line->() // return 0;
    }

    close $s;

    return 1;
}

1;
