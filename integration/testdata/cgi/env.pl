#!/usr/bin/perl
# The environment, one NAME=VALUE line each, sorted; the working directory
# in the X-Cwd header.
use strict;
use warnings;
use Cwd ();

my $cwd = Cwd::getcwd();
print "Content-Type: text/plain\r\nX-Cwd: $cwd\r\n\r\n";
print "$_=$ENV{$_}\n" for sort keys %ENV;
