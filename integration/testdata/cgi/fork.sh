#!/bin/sh
# Forks a child that would outlive the script, records both pids in $OUT,
# and hangs without answering: only a kill of the whole process group ends
# it.
sleep 300 &
echo $! >"$OUT/child.pid.tmp" && mv "$OUT/child.pid.tmp" "$OUT/child.pid"
echo $$ >"$OUT/script.pid.tmp" && mv "$OUT/script.pid.tmp" "$OUT/script.pid"
sleep 300
