#!/bin/sh
# Two lines on stderr (logged), an answer on stdout.
echo 'cgi stderr line one' >&2
echo 'cgi stderr line two' >&2
printf 'Content-Type: text/plain\r\n\r\nok\n'
