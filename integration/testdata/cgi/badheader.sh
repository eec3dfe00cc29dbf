#!/bin/sh
# Output that is not a CGI response header block.
echo 'this is not a header line'
echo
echo 'body'
