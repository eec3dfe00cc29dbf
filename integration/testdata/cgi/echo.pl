#!/usr/bin/perl
# The request body back, byte for byte: CONTENT_LENGTH bytes of stdin, as
# RFC 3875 says a script reads it.
use strict;
use warnings;

binmode STDIN;
binmode STDOUT;
my $len = $ENV{CONTENT_LENGTH} || 0;
my $body = '';
while (length($body) < $len) {
    my $n = read(STDIN, $body, $len - length($body), length($body));
    die "echo.pl: read: $!\n" unless defined $n;
    last if $n == 0;
}
print "Content-Type: application/octet-stream\r\nX-Content-Length: $len\r\n\r\n", $body;
