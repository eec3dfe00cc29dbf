#!/usr/bin/env bash
# check-workers.sh: runs the four example workers the way users run FastCGI
# programs without fcgivisor (spawn-fcgi on a Unix socket, nginx in front) and
# checks every endpoint of the test protocol (examples/README.md) in each
# language. It needs go, cc + libfcgi-dev, libfcgi-perl, php-cgi, nginx,
# spawn-fcgi, cgi-fcgi (libfcgi-bin), curl and perl. Everything lives in a
# temporary directory, kept when a check fails.
#
#   examples/check-workers.sh            # builds the Go and C workers itself
#   GO_WORKER=bin/go-worker C_WORKER=bin/c-worker examples/check-workers.sh
#   LANGS="c perl" examples/check-workers.sh
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
LANGS=${LANGS:-go c perl php}
TMP=$(mktemp -d /tmp/fcgivisor-check.XXXXXX)
declare -A PID=()
NGINX_PID=
FAILS=0

cleanup() {
	local p
	if [[ -n $NGINX_PID ]]; then kill "$NGINX_PID" 2>/dev/null || true; fi
	for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ $FAILS -eq 0 ]]; then rm -rf "$TMP"; else echo "logs kept in $TMP" >&2; fi
}
trap cleanup EXIT

pass() { printf '  ok   %s\n' "$*"; }
fail() { printf '  FAIL %s\n' "$*"; FAILS=$((FAILS + 1)); }

# --- workers -------------------------------------------------------------
GO_WORKER=${GO_WORKER:-}
C_WORKER=${C_WORKER:-}
if [[ " $LANGS " == *" go "* && -z $GO_WORKER ]]; then
	GO_WORKER=$TMP/go-worker
	go build -o "$GO_WORKER" ./examples/go-worker
fi
if [[ " $LANGS " == *" c "* && -z $C_WORKER ]]; then
	C_WORKER=$TMP/c-worker
	cc -O2 -Wall -o "$C_WORKER" examples/c-worker/worker.c -lfcgi
fi

declare -A CMD=(
	[go]=$GO_WORKER
	[c]=$C_WORKER
	[perl]="/usr/bin/perl $ROOT/examples/perl-worker/worker.pl"
	[php]=/usr/bin/php-cgi
)
for lang in $LANGS; do
	# spawn-fcgi -n binds the socket and execs the worker with it as fd 0,
	# so $! is the worker's own pid. PHP_FCGI_MAX_REQUESTS=0: php-cgi would
	# exit after 500 requests, and nothing here respawns it.
	# shellcheck disable=SC2086 # CMD is an argv on purpose
	EXAMPLE_MARKER=$lang PHP_FCGI_MAX_REQUESTS=0 \
		spawn-fcgi -n -s "$TMP/$lang.sock" -- ${CMD[$lang]} 2>"$TMP/$lang.log" &
	PID[$lang]=$!
done

# --- nginx -----------------------------------------------------------------
mkdir -p "$TMP/nginx"
start_nginx() {
	local port=$1
	{
		# As root, nginx workers would run as nobody and could not reach
		# the sockets in our 0700 directory.
		[[ $EUID -eq 0 ]] && echo "user $(id -un) $(id -gn);"
		echo "daemon off; worker_processes 1; pid $TMP/nginx.pid; error_log $TMP/nginx-error.log info;"
		echo "events { worker_connections 1024; }"
		echo "http {"
		echo "  access_log off; client_max_body_size 64m;"
		for d in client_body proxy fastcgi uwsgi scgi; do echo "  ${d}_temp_path $TMP/nginx/$d;"; done
		echo "  server {"
		echo "    listen 127.0.0.1:$port;"
		for lang in $LANGS; do
			echo "    location /$lang/ {"
			echo "      include /etc/nginx/fastcgi_params;"
			echo "      fastcgi_param SCRIPT_FILENAME $ROOT/examples/php/index.php;"
			echo "      fastcgi_param REDIRECT_STATUS 200;"
			echo "      fastcgi_param EXAMPLE_PARAM \"a b=c\";"
			echo "      fastcgi_pass unix:$TMP/$lang.sock;"
			echo "    }"
		done
		echo "  }"
		echo "}"
	} >"$TMP/nginx.conf"
	nginx -p "$TMP/nginx" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" &
	NGINX_PID=$!
	for _ in $(seq 50); do
		curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
		kill -0 "$NGINX_PID" 2>/dev/null || { NGINX_PID=; return 1; }
		sleep 0.1
	done
	return 1
}
for try in 1 2 3 4 5; do
	PORT=$((20000 + RANDOM % 20000))
	start_nginx "$PORT" && break
	[[ $try -eq 5 ]] && { echo "nginx did not start:" >&2; cat "$TMP/nginx-error.log" >&2; FAILS=1; exit 1; }
done
for lang in $LANGS; do
	for _ in $(seq 50); do [[ -S $TMP/$lang.sock ]] && break; sleep 0.1; done
done

# --- checks ----------------------------------------------------------------
# req LANG QUERY [curl args...]: response headers in $TMP/h, body in $TMP/b,
# status code in $CODE.
req() {
	local lang=$1 query=$2
	shift 2
	CODE=$(curl -s -D "$TMP/h" -o "$TMP/b" -w '%{http_code}' "$@" "http://127.0.0.1:$PORT/$lang/some/path?$query") || true
}
header() { grep -i "^$1:" "$TMP/h" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
body_is() { printf '%b' "$1" | cmp -s - "$TMP/b"; }
# fcgi_post LANG QUERY FILE: POST FILE straight to the worker's socket with
# cgi-fcgi (which sends its environment as the params); headers in $TMP/h,
# body in $TMP/b.
fcgi_post() {
	local lang=$1 query=$2 file=$3 len
	len=$(stat -c %s "$file")
	timeout 30 env -i REQUEST_METHOD=POST QUERY_STRING="$query" REQUEST_URI="/$lang/?$query" \
		SCRIPT_NAME="/$lang" SCRIPT_FILENAME="$ROOT/examples/php/index.php" REDIRECT_STATUS=200 \
		SERVER_PROTOCOL=HTTP/1.1 CONTENT_TYPE=application/octet-stream CONTENT_LENGTH="$len" \
		cgi-fcgi -bind -connect "$TMP/$lang.sock" <"$file" >"$TMP/raw" || true
	H=$TMP/h perl -0777 -ne 'my ($h, $b) = split /\r?\n\r?\n/, $_, 2;
		open my $fh, ">", $ENV{H} or die; print $fh "$h\n"; print $b // ""' <"$TMP/raw" >"$TMP/b"
}
crc32_of() { perl -MCompress::Zlib -0777 -ne 'printf "%08x", Compress::Zlib::crc32($_)' "$1"; }
sorted_by_name() { cut -d= -f1 "$TMP/b" | LC_ALL=C sort -c 2>/dev/null; }

perl -e 'print pack("N*", map { int(rand(2**32)) } 1 .. 262144)' >"$TMP/random-1MiB"
head -c 32768 "$TMP/random-1MiB" >"$TMP/random-32KiB"
perl -e 'my $c = join("", "a" .. "z") x 2520; my $n = 5242880;
	while ($n > 0) { my $k = $n < length $c ? $n : length $c; print substr($c, 0, $k); $n -= $k }' >"$TMP/size-5MiB"

for lang in $LANGS; do
	echo "$lang (pid ${PID[$lang]}):"

	req "$lang" ""
	if [[ $CODE == 200 ]] && body_is "hello from $lang\n" && [[ $(header Content-Type) == text/plain ]]; then
		pass hello; else fail "hello: $CODE $(header Content-Type) $(head -c 200 "$TMP/b")"; fi

	req "$lang" "vars&x=1" -H 'X-Example: yes'
	if [[ $CODE == 200 ]] && grep -qx 'QUERY_STRING=vars&x=1' "$TMP/b" && grep -qx 'REQUEST_METHOD=GET' "$TMP/b" &&
		grep -qx 'HTTP_X_EXAMPLE=yes' "$TMP/b" && grep -qx 'EXAMPLE_PARAM=a b=c' "$TMP/b" &&
		grep -qx 'SCRIPT_NAME=/'"$lang"'/some/path' "$TMP/b" && sorted_by_name; then
		pass vars; else fail "vars: $CODE $(head -c 3000 "$TMP/b")"; fi

	req "$lang" penv
	if [[ $CODE == 200 ]] && grep -qx "EXAMPLE_MARKER=$lang" "$TMP/b" && ! grep -q '^QUERY_STRING=' "$TMP/b" && sorted_by_name; then
		pass penv; else fail "penv: $CODE $(head -c 3000 "$TMP/b")"; fi

	# 1 MiB straight at the socket: nginx does not read a FastCGI response
	# before it has sent the whole request body, so a worker that echoes as
	# it reads deadlocks with nginx once the socket buffers fill (~200 KiB).
	fcgi_post "$lang" echo "$TMP/random-1MiB"
	if cmp -s "$TMP/b" "$TMP/random-1MiB" && [[ $(header Content-Type) == application/octet-stream ]]; then
		pass "echo 1 MiB (cgi-fcgi)"; else fail "echo 1 MiB: $(stat -c %s "$TMP/b") bytes, $(header Content-Type)"; fi

	req "$lang" echo --data-binary "@$TMP/random-32KiB" -H 'Content-Type: application/octet-stream'
	if [[ $CODE == 200 ]] && cmp -s "$TMP/b" "$TMP/random-32KiB"; then
		pass "echo 32 KiB (nginx)"; else fail "echo 32 KiB: $CODE $(stat -c %s "$TMP/b") bytes"; fi

	req "$lang" crc32 --data-binary "@$TMP/random-1MiB" -H 'Content-Type: application/octet-stream'
	if [[ $CODE == 200 ]] && body_is "1048576 $(crc32_of "$TMP/random-1MiB")\n"; then
		pass "crc32 1 MiB (nginx)"; else fail "crc32 1 MiB: $CODE $(head -c 200 "$TMP/b")"; fi

	req "$lang" echo --data-binary 'a=1&b=2'    # curl's default form content type
	if [[ $CODE == 200 ]] && body_is 'a=1&b=2'; then pass "echo form"; else fail "echo form: $CODE $(head -c 200 "$TMP/b")"; fi

	req "$lang" "size=5242880"
	if [[ $CODE == 200 ]] && cmp -s "$TMP/b" "$TMP/size-5MiB"; then
		pass "size 5 MiB"; else fail "size 5 MiB: $CODE $(stat -c %s "$TMP/b") bytes"; fi
	req "$lang" "size=27"
	if [[ $CODE == 200 ]] && body_is 'abcdefghijklmnopqrstuvwxyza'; then pass "size 27"; else fail "size 27: $(head -c 100 "$TMP/b")"; fi

	req "$lang" "status=418"
	if [[ $CODE == 418 ]] && body_is 'status 418\n'; then
		pass "status 418 ($(head -1 "$TMP/h" | tr -d '\r'))"; else fail "status: $CODE $(head -c 200 "$TMP/b")"; fi

	req "$lang" "location=http%3A%2F%2Fexample.com%2Fx%3Fy%3D1"
	if [[ $CODE == 302 && $(header Location) == 'http://example.com/x?y=1' && ! -s $TMP/b ]]; then
		pass location; else fail "location: $CODE $(header Location) $(head -c 200 "$TMP/b")"; fi

	start=$(date +%s%N)
	req "$lang" "sleep=200"
	ms=$((($(date +%s%N) - start) / 1000000))
	if [[ $CODE == 200 ]] && body_is 'slept 200\n' && ((ms >= 200)); then
		pass "sleep ($ms ms)"; else fail "sleep: $CODE $ms ms $(head -c 200 "$TMP/b")"; fi

	req "$lang" pid
	if [[ $CODE == 200 ]] && body_is "${PID[$lang]}\n"; then pass pid; else fail "pid: $(head -c 100 "$TMP/b") != ${PID[$lang]}"; fi

	req "$lang" "stderr=note+from%20$lang"
	sleep 0.2
	# Go's net/http/fcgi cannot write FCGI_STDERR: its line is in its own stderr.
	if [[ $lang == go ]]; then where=$TMP/go.log; else where=$TMP/nginx-error.log; fi
	if [[ $CODE == 200 ]] && body_is 'ok\n' && grep -q "note from $lang" "$where"; then
		pass "stderr (in $(basename "$where"))"; else fail "stderr: $CODE $(head -c 100 "$TMP/b")"; fi

	if [[ $lang != php ]]; then
		if grep -qx "$lang worker ${PID[$lang]} ready" "$TMP/$lang.log"; then
			pass "ready line"; else fail "ready line: $(head -3 "$TMP/$lang.log")"; fi
	fi

	req "$lang" exit
	for _ in $(seq 50); do kill -0 "${PID[$lang]}" 2>/dev/null || break; sleep 0.1; done
	kill -9 "${PID[$lang]}" 2>/dev/null || true    # still running: the check fails below
	rc=0
	wait "${PID[$lang]}" || rc=$?
	unset "PID[$lang]"
	if [[ $CODE == 502 && $rc == 3 ]]; then pass "exit (502, status 3)"; else fail "exit: HTTP $CODE, exit status $rc"; fi
done

if [[ $FAILS -ne 0 ]]; then
	echo "$FAILS check(s) failed"
	exit 1
fi
echo "all checks passed"
