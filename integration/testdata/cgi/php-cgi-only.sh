#!/bin/sh
# A pool command that cannot serve FastCGI: with a socket as fd 0 (a pool
# worker) it exits 1 at once, so the pool goes failing; otherwise (one-shot
# CGI: fd 0 a pipe) it runs php-cgi ($PHP_CGI, from the pool's env) as CGI,
# after recording its working directory in $CWD_LOG/cwd.PID when CWD_LOG is
# set (php-cgi changes to the script's directory itself).
case $(readlink /proc/self/fd/0) in
socket:*) exit 1 ;;
esac
[ -S /dev/stdin ] && exit 1
[ -n "$CWD_LOG" ] && pwd -P >"$CWD_LOG/cwd.$$"
exec "${PHP_CGI:-/usr/bin/php-cgi}" "$@"
