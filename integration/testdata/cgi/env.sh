#!/bin/sh
# The environment the script was started with (/proc/$$/environ, not the
# shell's own variables: dash exports PWD), one NAME=VALUE line each, sorted;
# the working directory in the X-Cwd header.
printf 'Content-Type: text/plain\r\nX-Cwd: %s\r\n\r\n' "$(pwd -P)"
tr '\0' '\n' </proc/$$/environ | sort
