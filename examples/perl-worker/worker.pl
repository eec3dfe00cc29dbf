#!/usr/bin/perl
# perl-worker: the Perl example FastCGI worker (FCGI.pm, Debian libfcgi-perl).
# It serves the examples' test protocol (examples/README.md) one request at a
# time on the listening socket it inherits as fd 0 (FCGI_LISTENSOCK_FILENO),
# as spawn-fcgi and fcgivisor hand it over.
use strict;
use warnings;
use Compress::Zlib ();
use FCGI;
use POSIX ();
use Time::HiRes ();

# The request's params go to %req_env, so %ENV stays the process environment.
my %req_env;
my $req = FCGI::Request(\*STDIN, \*STDOUT, \*STDERR, \%req_env, 0, 0);
if (!$req->IsFastCGI()) {
    print STDERR "perl worker: fd 0 is not a listening socket; run me under fcgivisor or spawn-fcgi\n";
    exit 1;
}
# Before the first Accept, STDERR is still the process's own stderr.
print STDERR "perl worker $$ ready\n";

my $CHUNK = 'abcdefghijklmnopqrstuvwxyz' x 2520;    # every ?size chunk starts with 'a'

sub text { print "Content-Type: text/plain\r\n\r\n" }

sub unescape {
    my $s = shift;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
    return $s;
}

sub print_sorted {    # "NAME=VALUE" lines, ordered by NAME
    my @pairs = sort { $a->[0] cmp $b->[0] } @_;
    print "$_->[0]=$_->[1]\n" for @pairs;
}

sub handle {
    # The first key decides: "size=5&x" is key "size", value "5".
    my ($first) = split /&/, ($req_env{QUERY_STRING} // ''), 2;
    my ($key, $val) = split /=/, ($first // ''), 2;
    $key //= '';
    $val = unescape($val // '');

    if ($key eq 'vars') {
        text();
        print_sorted(map { [$_, $req_env{$_}] } keys %req_env);
    } elsif ($key eq 'penv') {
        open(my $fh, '<:raw', '/proc/self/environ') or die "/proc/self/environ: $!";
        local $/;
        my $data = <$fh>;
        close $fh;
        text();
        print_sorted(map { [split /=/, $_, 2] } grep { length } split /\0/, $data);
    } elsif ($key eq 'echo') {
        print "Content-Type: application/octet-stream\r\n\r\n";
        my $buf;
        while ((my $n = read(STDIN, $buf, 65536)) > 0) {
            print $buf;
        }
    } elsif ($key eq 'crc32') {
        # The whole body is read before the answer starts.
        my ($crc, $len, $buf) = (0, 0);
        while ((my $n = read(STDIN, $buf, 65536)) > 0) {
            $crc = Compress::Zlib::crc32($buf, $crc);
            $len += $n;
        }
        text();
        printf "%d %08x\n", $len, $crc;
    } elsif ($key eq 'size') {
        my $n = int($val || 0);
        text();
        my $len = length $CHUNK;
        while ($n > 0) {
            my $k = $n < $len ? $n : $len;
            print substr($CHUNK, 0, $k);
            $n -= $k;
        }
    } elsif ($key eq 'status') {
        my $code = int($val || 0);
        $code = 500 if $code < 100 || $code > 999;
        print "Status: $code Custom\r\n";
        text();
        print "status $code\n";
    } elsif ($key eq 'location') {
        print "Status: 302 Found\r\nLocation: $val\r\n\r\n";
    } elsif ($key eq 'sleep') {
        my $ms = int($val || 0);
        Time::HiRes::sleep($ms / 1000);
        text();
        print "slept $ms\n";
    } elsif ($key eq 'pid') {
        text();
        print "$$\n";
    } elsif ($key eq 'stderr') {
        print STDERR "$val\n";    # inside a request, STDERR is the FastCGI error stream
        text();
        print "ok\n";
    } elsif ($key eq 'exit') {
        POSIX::_exit(3);    # a crash mid-request: no answer (exit() would let FCGI finish the request)
    } else {
        text();
        print "hello from perl\n";
    }
}

while ($req->Accept() >= 0) {
    handle();
    $req->Finish();
}
