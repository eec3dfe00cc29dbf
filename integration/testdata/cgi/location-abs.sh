#!/bin/sh
# An absolute Location without Status: a 302 to the client.
printf 'Location: http://example.com/elsewhere?x=1\r\n\r\n'
