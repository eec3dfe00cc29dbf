#!/usr/bin/perl
# selfexit worker (FCGI.pm): exits by itself as gitweb --fastcgi does, after
# every error page (QUERY_STRING "fail": a 404) and after every EXIT_EVERY-th
# response. QUERY_STRING "crash" reads the whole request, then exits without
# answering: the client sees a plain EOF, never a reset. Each answer is the
# worker's pid.
use strict;
use warnings;
use FCGI;
use POSIX ();

my %env;
my $req = FCGI::Request(\*STDIN, \*STDOUT, \*STDERR, \%env, 0, 0);
my $every = $ENV{EXIT_EVERY} || 5;
my $n = 0;
while ($req->Accept() >= 0) {
    my $q = $env{QUERY_STRING} // '';
    { local $/; my $body = <STDIN>; }
    POSIX::_exit(3) if $q eq 'crash';
    my $fail = $q eq 'fail';
    print "Status: " . ($fail ? "404 Not Found" : "200 OK") . "\r\nContent-Type: text/plain\r\n\r\n$$\n";
    $n++;
    if ($fail || $n % $every == 0) {
        $req->Finish();
        exit 0;
    }
}
