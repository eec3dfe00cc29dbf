#!/bin/sh
# The target of location-local.sh.
printf 'Content-Type: text/plain\r\n\r\ntarget method=%s query=%s script=%s\n' "$REQUEST_METHOD" "$QUERY_STRING" "$SCRIPT_NAME"
