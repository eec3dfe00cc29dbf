#!/bin/sh
# The request body back, byte for byte (read to EOF); CONTENT_LENGTH in a
# header.
printf 'Content-Type: application/octet-stream\r\nX-Content-Length: %s\r\n\r\n' "$CONTENT_LENGTH"
exec cat
