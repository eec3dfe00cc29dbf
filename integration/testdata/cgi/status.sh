#!/bin/sh
# A Status header sets the HTTP status; other headers pass.
printf 'Status: 404 Whatever\r\nContent-Type: text/plain\r\nX-Extra: yes\r\n\r\nnot here\n'
