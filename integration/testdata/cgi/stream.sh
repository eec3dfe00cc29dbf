#!/bin/sh
# Sends "first", then waits (10 s at most) until $OUT/stream-go exists
# before it sends "second": the client sees "first" only if the body is
# streamed.
printf 'Content-Type: text/plain\r\n\r\nfirst\n'
i=0
while [ ! -e "$OUT/stream-go" ] && [ "$i" -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
echo second
