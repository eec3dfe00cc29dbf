#!/bin/sh
# QUERY_STRING "SECONDS-TAG": creates $OUT/started-TAG, sleeps SECONDS,
# answers "slept SECONDS".
secs=${QUERY_STRING%%-*}
tag=${QUERY_STRING#*-}
case $secs in '' | *[!0-9]*) exit 1 ;; esac
case $tag in '' | *[!a-z0-9]*) exit 1 ;; esac
: >"$OUT/started-$tag"
sleep "$secs"
printf 'Content-Type: text/plain\r\n\r\nslept %s\n' "$secs"
