#!/usr/bin/env bash
# public.sh: nginx in front of fcgivisor's public FastCGI sockets (a pool's
# `listen`), against nginx in front of PHP-FPM and of spawn-fcgi. Stacks,
# each started fresh and stopped after its runs, all with 4 workers:
#
#   A  wrk -> nginx -> fcgivisor public Unix socket -> 4 x php-cgi (static pool);
#      nginx upstream with keepalive 8, fastcgi_keep_conn on
#   B  as A with fastcgi_keep_conn off (a connection per request, no upstream keepalive)
#   C  wrk -> nginx -> php-fpm pm=static 4, fastcgi_keep_conn off (as shipped)
#   D  as C with fastcgi_keep_conn on and upstream keepalive 8
#   E  wrk -> nginx -> fcgivisor public Unix socket -> 4 x C libfcgi worker
#      (bin/c-worker, static pool); keepalive 8, fastcgi_keep_conn on, as A
#   F  wrk -> nginx -> spawn-fcgi -F 4: 4 x the same C worker on one Unix
#      socket, fastcgi_keep_conn off (as shipped)
#   G  as F with bench/relay/relay.c between nginx and the workers: the
#      least a hop can do (one epoll thread copying bytes, a connection
#      upstream per connection accepted), to show what a second socket
#      pair costs on this machine whatever does the relaying
#
# nginx: 1 worker, access_log off (bench/lib.sh start_nginx); fcgivisor:
# `[http] listen = []`, no route, the pool's `listen` only. Endpoints:
# hello (GET /: "hello from php", examples/php/index.php; "hello from c")
# and sleep (GET /?sleep=10: the worker sleeps 10 ms, "slept 10"). Every
# stack: start, check that both endpoints answer their body through nginx,
# warm up (wrk -t2 -c32 for WARMUP on hello, not counted), SETTLE seconds;
# then per endpoint wrk -t2 -c32 and wrk -t1 -c1 for DURATION each
# (--latency), SETTLE seconds after each. One run: the ratios come from the
# same run (2 vCPUs shared by wrk, nginx, the managers and the workers).
# It prints per stack and endpoint req/s, p50, p99 and errors (socket
# errors, timeouts, non-2xx), the c32 runs where some of wrk's connections
# stalled (req/s x mean latency well under 32: wrk's own figures do not
# show it), then the ratios:
#   PHP throughput  A/C, A/D   (target >= 1)
#   C throughput    E/F        (target >= 0.9)
#                   G/F, E/G   (reported: the least hop, and fcgivisor against it)
#   p99             A/B        (target <= 2: keep_conn on costs no tail latency)
#                   D/C        (reported: PHP-FPM with kept connections)
# and what each stack logged at WARN/ERROR (fcgivisor, php-fpm, nginx).
#
# Run from anywhere after `make build` (bin/fcgivisor, bin/c-worker):
#   bench/public.sh       # ~3.2 min
# Environment:
#   FCGIVISOR=bin/fcgivisor C_WORKER=bin/c-worker PHP_CGI=/usr/bin/php-cgi
#   PHP_FPM=(/usr/sbin/php-fpm*)            binaries
#   DURATION=5s WARMUP=1s SETTLE=1          the measurement
#   WORKERS=4 KEEPALIVE=8 SLEEP_MS=10
#   STACKS="A B C D E F G" ENDPOINTS="hello sleep"   (C D F G need no fcgivisor)
#   LOG_LEVEL=info                          fcgivisor's log_level
#   KEEP=1                                  keep the temp dir (configs, logs, raw wrk output)
# Needs nginx, php-cgi, php-fpm, spawn-fcgi, wrk, curl, awk, ss (iproute2);
# a C compiler (cc) for G.
# php-fpm runs as the invoking user (-R when root) from its own config, pid
# file and log in the temp dir; no system service is touched. Every
# process started is stopped by pid.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FCGIVISOR=${FCGIVISOR:-bin/fcgivisor}
C_WORKER=${C_WORKER:-bin/c-worker}
PHP_CGI=${PHP_CGI:-/usr/bin/php-cgi}
PHP_FPM=${PHP_FPM:-$(compgen -G '/usr/sbin/php-fpm*' | sort -V | tail -1 || true)}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
SETTLE=${SETTLE:-1}
WORKERS=${WORKERS:-4}
KEEPALIVE=${KEEPALIVE:-8}
SLEEP_MS=${SLEEP_MS:-10}
read -ra STACKS <<<"${STACKS:-A B C D E F G}"
read -ra ENDPOINTS <<<"${ENDPOINTS:-hello sleep}"
LOG_LEVEL=${LOG_LEVEL:-info}
KEEP=${KEEP:-}
DOCROOT=$ROOT/examples/php # index.php

abs() { case $1 in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
FCGIVISOR=$(abs "$FCGIVISOR")
C_WORKER=$(abs "$C_WORKER")

die() { echo "public: $*" >&2; exit 1; }
for tool in nginx spawn-fcgi wrk curl awk ss; do
	command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install nginx spawn-fcgi wrk curl iproute2)"
done
need_fv="" need_php="" need_c="" need_cc=""
for s in "${STACKS[@]}"; do
	case $s in
	A | B) need_fv=1 need_php=1 ;;
	C | D) need_php=1 ;;
	E) need_fv=1 need_c=1 ;;
	F) need_c=1 ;;
	G) need_c=1 need_cc=1 ;;
	*) die "unknown stack $s (A B C D E F G)" ;;
	esac
done
if [[ -n $need_fv ]]; then [[ -x $FCGIVISOR ]] || die "$FCGIVISOR missing: run 'make build' (or set FCGIVISOR)"; fi
if [[ -n $need_c ]]; then [[ -x $C_WORKER ]] || die "$C_WORKER missing: run 'make build' with libfcgi-dev (or set C_WORKER)"; fi
if [[ -n $need_php ]]; then
	[[ -x $PHP_CGI ]] || die "$PHP_CGI missing (Debian: apt-get install php-cgi)"
	[[ -n $PHP_FPM && -x $PHP_FPM ]] || die "php-fpm missing (Debian: apt-get install php-fpm; or set PHP_FPM)"
	[[ -f $DOCROOT/index.php ]] || die "$DOCROOT/index.php missing"
fi
if [[ -n $need_cc ]]; then command -v cc >/dev/null || die "cc not found (Debian: apt-get install gcc)"; fi

TMP=$(mktemp -d /tmp/fv-public.XXXXXX) # short: Unix socket paths must stay < 108 bytes
chmod 755 "$TMP"                       # nginx's worker and php-fpm's children connect in here
RUN_PIDS=()                            # the current stack's processes, stopped by pid

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh" # stop_stack, cleanup (EXIT trap), free_port, start_nginx, start_php_fpm, wrk_figures, ...

# keep_conn_nginx SCRIPT SOCKET: sets HTTP and LOCATIONS for start_nginx:
# an upstream with KEEPALIVE idle connections kept to the FastCGI server on
# the Unix socket SOCKET, and a location passing every request to it as
# SCRIPT with fastcgi_keep_conn on.
keep_conn_nginx() {
	HTTP="    upstream fcgi {
        server unix:$2;
        keepalive $KEEPALIVE;
    }"
	LOCATIONS="        location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $1;
            fastcgi_pass fcgi;
            fastcgi_keep_conn on;
        }"
}

# fv_public_config POOL COMMAND ENV SOCKET: a fcgivisor config with no HTTP
# front and one static pool of WORKERS running COMMAND (a TOML array) with
# ENV (an inline table), listening on the Unix socket SOCKET.
fv_public_config() {
	cat <<TOML
[server]
runtime_dir = "$TMP/rt-$STACK"
log_level   = "$LOG_LEVEL"

[http]
listen = []   # a pure FastCGI manager: nginx talks to the pool's socket

[pool.$1]
command = $2
env     = $3
user    = "root"   # the bench runs as root; workers as root by choice (ignored otherwise)
scaling = "static"
workers = $WORKERS
listen  = "$4"
TOML
}

# start_fv_public POOL COMMAND ENV: fcgivisor (fv_public_config) with its
# pool's socket at $TMP/STACK.sock; waits for the socket.
start_fv_public() {
	mkdir -p "$TMP/rt-$STACK"
	fv_public_config "$1" "$2" "$3" "$TMP/$STACK.sock" >"$TMP/$STACK.toml"
	start_fv_run "$STACK"
	wait_file "$TMP/$STACK.sock" fcgivisor "$FV_PID"
}

# start_fpm_public: php-fpm pm=static WORKERS, its socket $TMP/STACK-fpm.sock.
start_fpm_public() {
	cat >"$TMP/$STACK-fpm.conf" <<END_FPM
[global]
pid = $TMP/$STACK-fpm.pid
error_log = $TMP/$STACK-fpm.log
daemonize = no

[www]
listen = $TMP/$STACK-fpm.sock
pm = static
pm.max_children = $WORKERS
pm.max_requests = 0
END_FPM
	start_php_fpm "$STACK"
}

# start_spawn_fcgi: spawn-fcgi -F WORKERS x C_WORKER on $TMP/STACK.sock.
start_spawn_fcgi() {
	spawn-fcgi -F "$WORKERS" -s "$TMP/$STACK.sock" -P "$TMP/$STACK-spawn-fcgi.pid" -- "$C_WORKER" >/dev/null
	local spawned
	mapfile -t spawned < <(grep -o '[0-9]\+' "$TMP/$STACK-spawn-fcgi.pid")
	RUN_PIDS+=("${spawned[@]}")
}

# start_stack STACK: the manager and nginx of STACK on a free port; sets
# PORT, HELLO (the hello body) and SERVER_LOG (what to scan afterwards).
start_stack() {
	local script sock keep=""
	STACK=$1
	PORT=$(free_port)
	case $STACK in
	A | B)
		start_fv_public php "[\"$PHP_CGI\"]" '{ PHP_FCGI_MAX_REQUESTS = "0" }'
		script=$DOCROOT/index.php sock=$TMP/$STACK.sock HELLO="hello from php"
		if [[ $STACK == A ]]; then keep=1; fi
		;;
	C | D)
		start_fpm_public
		script=$DOCROOT/index.php sock=$TMP/$STACK-fpm.sock HELLO="hello from php"
		if [[ $STACK == D ]]; then keep=1; fi
		;;
	E)
		start_fv_public c "[\"$C_WORKER\"]" '{}'
		script=/hello sock=$TMP/$STACK.sock HELLO="hello from c" keep=1
		;;
	F)
		start_spawn_fcgi
		script=/hello sock=$TMP/$STACK.sock HELLO="hello from c"
		;;
	G)
		start_spawn_fcgi
		cc -O2 -o "$TMP/relay" "$ROOT/bench/relay/relay.c"
		"$TMP/relay" "$TMP/$STACK-relay.sock" "$TMP/$STACK.sock" &
		RUN_PIDS+=("$!")
		wait_file "$TMP/$STACK-relay.sock" relay "$!"
		script=/hello sock=$TMP/$STACK-relay.sock HELLO="hello from c"
		;;
	esac
	if [[ -n $keep ]]; then
		keep_conn_nginx "$script" "$sock"
	else
		HTTP="" LOCATIONS=$(fastcgi_location "$script" "$sock")
	fi
	start_nginx "$STACK-nginx" "$PORT" "$LOCATIONS" "$HTTP"
	RUN_PIDS+=("$NGINX_PID")
	wait_listen "$PORT" nginx "$NGINX_PID"
}

# check_body PATH WANT: GET PATH through the stack's nginx must answer 200
# with body WANT (the first request may wait for the workers to start).
check_body() {
	local url="http://127.0.0.1:$PORT$1" got=""
	for _ in $(seq 100); do
		got=$(curl -s -m 5 "$url" 2>/dev/null || true)
		if [[ $got == "$2" ]]; then return 0; fi
		sleep 0.1
	done
	KEEP=1
	die "stack $STACK: $url answered '$got', not '$2'; see $TMP"
}

# run ENDPOINT LOAD: one wrk run on the current stack; appends "STACK
# ENDPOINT LOAD rps p50 p99 errors busy" to $TMP/results.
run() {
	local ep=$1 load=$2 out args path busy
	out="$TMP/wrk-$STACK-$ep-$load.txt"
	case $load in
	c32) args=(-t2 -c32) ;;
	c1) args=(-t1 -c1) ;;
	esac
	case $ep in
	hello) path=/ ;;
	sleep) path="/?sleep=$SLEEP_MS" ;;
	esac
	wrk "${args[@]}" -d"$DURATION" --latency "http://127.0.0.1:$PORT$path" >"$out"
	wrk_figures "$out"
	# Little's law: req/s x mean latency = the connections with a request
	# in progress, on average (at most: wrk adds samples to correct long
	# latencies). Well under the connections wrk opened, some stalled: a
	# stalled connection completes nothing, so adds no latency, and wrk
	# counts it as one timeout at most.
	busy=$(awk -v rps="$RPS" -v avg="$(to_ms "$(awk '$1 == "Latency" && NF == 5 { print $2 }' "$out")")" 'BEGIN { printf "%.1f", rps * avg / 1000 }')
	echo "$STACK $ep $load $RPS $P50 $P99 $ERRS $busy" >>"$TMP/results"
	printf '  %s %-5s %-3s %9.0f req/s  p50 %8.3f ms  p99 %8.3f ms  errors %s\n' \
		"$STACK" "$ep" "$load" "$RPS" "$P50" "$P99" "$ERRS" >&2
	if [[ $load == c32 ]] && awk -v b="$busy" 'BEGIN { exit !(b < 24) }'; then
		echo "$STACK $ep: req/s x mean latency = $busy: ~$((32 - ${busy%.*})) of wrk's 32 connections stalled" >>"$TMP/stalls"
		echo "      stalled: req/s x mean latency = $busy connections busy of 32" >&2
	fi
	if [[ $ERRS != 0 ]]; then grep -E 'Socket errors|Non-2xx' "$out" | sed 's/^/      wrk: /' >&2; fi
}

# report_logs: what the stack's processes logged at WARN/ERROR, the five
# most frequent lines with their counts (nginx's without the time stamp).
report_logs() {
	local notes=""
	case $STACK in
	A | B | E) notes=$(fv_warnings "$TMP/$STACK.log" | sed -E 's/^time=[^ ]* //' | most_frequent 5) ;;
	C | D) notes=$(fpm_warnings "$STACK") ;;
	esac
	if [[ -s $TMP/$STACK-nginx-error.log ]]; then
		notes+=$'\n'$(sed -E 's/^[0-9/]+ [0-9:]+ //; s/, client: .*//' "$TMP/$STACK-nginx-error.log" | most_frequent 5)
	fi
	if [[ -n ${notes//[[:space:]]/} ]]; then
		echo "  $STACK logged:" >&2
		echo "$notes" | sed '/^$/d; s/^/    /' >&2
	fi
}

stack_name() {
	case $1 in
	A) echo "A nginx -> fcgivisor public socket -> php-cgi x$WORKERS, keep_conn on + keepalive $KEEPALIVE" ;;
	B) echo "B nginx -> fcgivisor public socket -> php-cgi x$WORKERS, keep_conn off" ;;
	C) echo "C nginx -> PHP-FPM static $WORKERS, keep_conn off" ;;
	D) echo "D nginx -> PHP-FPM static $WORKERS, keep_conn on + keepalive $KEEPALIVE" ;;
	E) echo "E nginx -> fcgivisor public socket -> C libfcgi x$WORKERS, keep_conn on + keepalive $KEEPALIVE" ;;
	F) echo "F nginx -> spawn-fcgi -F $WORKERS C libfcgi, keep_conn off" ;;
	G) echo "G nginx -> relay.c -> spawn-fcgi -F $WORKERS C libfcgi, keep_conn off" ;;
	esac
}

# --- measure -------------------------------------------------------------------
versions="$(nproc) CPUs, $(uname -r); $(nginx -v 2>&1 | sed 's/^nginx version: //'); $({ wrk -v 2>&1 || true; } | head -1 | awk '{print "wrk " $2}')"
[[ -n $need_php ]] && versions+="; $("$PHP_FPM" -v | head -1 | awk '{print "php-fpm " $2}'); $("$PHP_CGI" -v | head -1 | awk '{print "php-cgi " $2}')"
[[ -n $need_fv ]] && versions+="; $("$FCGIVISOR" version 2>&1 | head -1)"
echo "public: $versions" >&2
echo "public: load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

: >"$TMP/results"
for stack in "${STACKS[@]}"; do
	start_stack "$stack"
	check_body / "$HELLO"
	check_body "/?sleep=$SLEEP_MS" "slept $SLEEP_MS"
	wrk -t2 -c32 -d"$WARMUP" "http://127.0.0.1:$PORT/" >"$TMP/wrk-$STACK-warmup.txt"
	sleep "$SETTLE"
	for ep in "${ENDPOINTS[@]}"; do
		for load in c32 c1; do
			run "$ep" "$load"
			# Requests abandoned by wrk still sit in the queues: let them drain.
			sleep "$SETTLE"
		done
	done
	stop_stack
	report_logs
done

echo "public: load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# --- report --------------------------------------------------------------------
# fig STACK ENDPOINT LOAD COLUMN: a figure from $TMP/results ("-" if not run).
fig() { awk -v s="$1" -v e="$2" -v l="$3" -v c="$4" '$1 == s && $2 == e && $3 == l { v = $c } END { print (v == "" ? "-" : v) }' "$TMP/results"; }
errs() { awk -v s="$1" -v e="$2" '$1 == s && $2 == e { n += $7 } END { print n + 0 }' "$TMP/results"; }
num() { if [[ $2 == - ]]; then echo -; else printf "$1" "$2"; fi; }

for ep in "${ENDPOINTS[@]}"; do
	echo
	case $ep in
	hello) echo "hello (GET /), $DURATION per cell" ;;
	sleep) echo "sleep $SLEEP_MS ms (GET /?sleep=$SLEEP_MS), $DURATION per cell" ;;
	esac
	echo
	echo "| stack | req/s c32 | p50 ms | p99 ms | req/s c1 | c1 p50 / p99 ms | errors |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
	for s in "${STACKS[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s / %s | %s |\n' "$(stack_name "$s")" \
			"$(num %.0f "$(fig "$s" "$ep" c32 4)")" "$(num %.2f "$(fig "$s" "$ep" c32 5)")" "$(num %.2f "$(fig "$s" "$ep" c32 6)")" \
			"$(num %.0f "$(fig "$s" "$ep" c1 4)")" "$(num %.3f "$(fig "$s" "$ep" c1 5)")" "$(num %.2f "$(fig "$s" "$ep" c1 6)")" \
			"$(errs "$s" "$ep")"
	done
done

if [[ -s $TMP/stalls ]]; then
	echo
	echo "stalled connections (wrk's req/s and latencies are those of the connections served):"
	sed 's/^/  /' "$TMP/stalls"
fi

# ratio X Y ENDPOINT LOAD COLUMN: X's figure / Y's, "-" if either is missing or 0.
ratio() {
	local x y
	x=$(fig "$1" "$3" "$4" "$5") y=$(fig "$2" "$3" "$4" "$5")
	awk -v x="$x" -v y="$y" 'BEGIN { if (x == "-" || y == "-" || y + 0 == 0) print "-"; else printf "%.2fx", x / y }'
}
# ratio_row LABEL X Y COLUMN TARGET OP LIMIT: one row of the ratio table,
# every endpoint and load; "met" when every ratio is OP LIMIT.
ratio_row() {
	local label=$1 x=$2 y=$3 col=$4 target=$5 op=$6 limit=$7 cells="" verdict=met r any=""
	for ep in "${ENDPOINTS[@]}"; do
		for load in c32 c1; do
			r=$(ratio "$x" "$y" "$ep" "$load" "$col")
			cells+=" $r |"
			if [[ $r == - ]]; then continue; fi
			any=1
			if ! awk -v r="${r%x}" -v l="$limit" -v op="$op" 'BEGIN { exit !(op == ">=" ? r >= l : r <= l) }'; then verdict="not met"; fi
		done
	done
	[[ -z $any ]] && return 0
	[[ $op == none ]] && verdict=reported
	echo "| $label |$cells $target: $verdict |"
}
echo
header="| ratio |" sep="| --- |"
for ep in "${ENDPOINTS[@]}"; do
	for load in c32 c1; do header+=" $ep $load |" sep+=" ---: |"; done
done
echo "$header target |"
echo "$sep --- |"
ratio_row "PHP req/s A/C (fcgivisor keep_conn / PHP-FPM as shipped)" A C 4 "≥ 1" ">=" 1
ratio_row "PHP req/s A/D (fcgivisor keep_conn / PHP-FPM keep_conn)" A D 4 "≥ 1" ">=" 1
ratio_row "C req/s E/F (fcgivisor keep_conn / spawn-fcgi)" E F 4 "≥ 0.9" ">=" 0.9
ratio_row "C req/s G/F (the least hop, relay.c / spawn-fcgi)" G F 4 "-" none 0
ratio_row "C req/s E/G (fcgivisor / the least hop)" E G 4 "-" none 0
ratio_row "p99 A/B (fcgivisor keep_conn on / off)" A B 6 "≤ 2" "<=" 2
ratio_row "p99 D/C (PHP-FPM keep_conn on / off)" D C 6 "-" none 0
