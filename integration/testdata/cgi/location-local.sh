#!/bin/sh
# A path-only Location without Status: a local redirect, served by the
# front itself as GET /cgi-bin/target.sh?from=local.
printf 'Location: /cgi-bin/target.sh?from=local\r\n\r\n'
