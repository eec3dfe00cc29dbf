#!/bin/sh
# The uid and gid the script runs as.
printf 'Content-Type: text/plain\r\n\r\n%s %s\n' "$(id -u)" "$(id -g)"
