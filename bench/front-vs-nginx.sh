#!/usr/bin/env bash
# front-vs-nginx.sh: fcgivisor's HTTP front against nginx, same workers.
#
#   A  wrk -> fcgivisor run (HTTP front)       -> 4 x C libfcgi worker (static pool, own Unix sockets)
#   B  wrk -> nginx (1 worker, access_log off)  -> 4 x the same C worker under spawn-fcgi -F 4 (one Unix socket)
#
# With APP=php, PHP instead of C:
#   A  wrk -> fcgivisor run (HTTP front)       -> 4 x php-cgi (static pool; every request to index.php)
#   B  wrk -> nginx (1 worker, access_log off)  -> php-fpm pm=static 4 (fastcgi_keep_conn off, as shipped)
# (PHP_FCGI_MAX_REQUESTS=0, pm.max_requests = 0: no recycling on either side.)
#
# Endpoint `hello` (no query: "hello from c\n"; examples/php/index.php's
# "hello from php" with APP=php). Both stacks are up at once;
# every round runs wrk -t2 -c32 and wrk -t1 -c1 (DURATION each, --latency)
# alternating A, B, with SETTLE seconds between runs, for ROUNDS rounds. It
# prints per stack the median req/s, p50 and p99, and the throughput ratio
# A/B as the median of the per-round ratios: the method of the baseline
# figures in bench/README.md (same-run pairs).
#
# Run from anywhere after `make build` (bin/fcgivisor, bin/c-worker):
#   bench/front-vs-nginx.sh
# Environment:
#   FCGIVISOR=bin/fcgivisor C_WORKER=bin/c-worker   binaries (relative to the repo root)
#   ROUNDS=3 DURATION=5s SETTLE=1                   the measurement
#   APP=c                                           c, or php (PHP_CGI=/usr/bin/php-cgi, PHP_FPM=/usr/sbin/php-fpm*)
#   ONLY=nginx                                      run stack B alone (no fcgivisor needed)
#   KEEP=1                                          keep the temp dir (configs, logs, raw wrk output)
# Needs nginx, spawn-fcgi, wrk, curl, awk, ss (iproute2); php-cgi and php-fpm
# for APP=php.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FCGIVISOR=${FCGIVISOR:-bin/fcgivisor}
C_WORKER=${C_WORKER:-bin/c-worker}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
SETTLE=${SETTLE:-1}
ONLY=${ONLY:-}
KEEP=${KEEP:-}
APP=${APP:-c}
PHP_CGI=${PHP_CGI:-/usr/bin/php-cgi}
PHP_FPM=${PHP_FPM:-$(compgen -G '/usr/sbin/php-fpm*' | sort -V | tail -1 || true)}
LOG_LEVEL=warn

abs() { case $1 in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
FCGIVISOR=$(abs "$FCGIVISOR")
C_WORKER=$(abs "$C_WORKER")

die() { echo "front-vs-nginx: $*" >&2; exit 1; }
for tool in nginx spawn-fcgi wrk curl awk ss; do
	command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install nginx spawn-fcgi wrk curl iproute2)"
done
case $APP in
c)
	[[ -x $C_WORKER ]] || die "$C_WORKER missing: run 'make build' (or set C_WORKER)"
	HELLO="hello from c"
	;;
php)
	[[ -x $PHP_CGI && -n $PHP_FPM && -x $PHP_FPM ]] || die "APP=php needs php-cgi and php-fpm (apt-get install php-cgi php-fpm)"
	HELLO="hello from php"
	SCRIPT=$ROOT/examples/php/index.php
	;;
*) die "APP=$APP: c or php" ;;
esac
case $ONLY in
"") STACKS=(fcgivisor nginx) ;;
nginx) STACKS=(nginx) ;;
*) die "ONLY=$ONLY: only 'nginx' is supported" ;;
esac
if [[ -z $ONLY ]]; then
	[[ -x $FCGIVISOR ]] || die "$FCGIVISOR missing: run 'make build' (or set FCGIVISOR, or ONLY=nginx)"
fi

TMP=$(mktemp -d /tmp/fv-bench.XXXXXX)
RUN_PIDS=()    # everything we started, stopped by pid at the end
declare -A URL # stack -> URL of the hello endpoint
. bench/lib.sh # (cwd is the repo root) stop_stack, cleanup (EXIT trap), free_port, start_nginx, to_ms, ...

# wait_hello URL NAME PID: wait until URL answers the hello body.
wait_hello() {
	local url=$1 name=$2 pid=$3
	for _ in $(seq 100); do
		if [[ $(curl -s "$url" 2>/dev/null) == "$HELLO" ]]; then return 0; fi
		kill -0 "$pid" 2>/dev/null || die "$name exited at start; see $TMP"
		sleep 0.1
	done
	KEEP=1
	die "$name does not answer $url; see $TMP"
}

# --- B: nginx -> spawn-fcgi -F 4 (APP=php: php-fpm pm=static 4) ----------------
NGINX_PORT=$(free_port)
if [[ $APP == c ]]; then
	spawn-fcgi -F 4 -s "$TMP/c.sock" -P "$TMP/spawn-fcgi.pid" -- "$C_WORKER" >/dev/null
	mapfile -t spawned < <(grep -o '[0-9]\+' "$TMP/spawn-fcgi.pid")
	RUN_PIDS+=("${spawned[@]}")
	start_nginx nginx "$NGINX_PORT" "$(fastcgi_location /hello "$TMP/c.sock")"
	RUN_PIDS+=("$NGINX_PID")
else
	cat >"$TMP/fpm-fpm.conf" <<END_FPM
[global]
pid = $TMP/fpm-fpm.pid
error_log = $TMP/fpm-fpm.log
daemonize = no

[www]
listen = $TMP/fpm-fpm.sock
pm = static
pm.max_children = 4
pm.max_requests = 0
END_FPM
	start_fpm_nginx fpm "$NGINX_PORT" "$SCRIPT"
fi
wait_hello "http://127.0.0.1:$NGINX_PORT/" nginx "$NGINX_PID"
URL[nginx]="http://127.0.0.1:$NGINX_PORT/"

# --- A: fcgivisor ------------------------------------------------------------
if [[ -z $ONLY ]]; then
	FV_PORT=$(free_port)
	if [[ $APP == php ]]; then
		{
			fv_php_config "$TMP/fv" "$FV_PORT" "$ROOT/examples/php" /index.php
			printf 'scaling = "static"\nworkers = 4\n'
		} >"$TMP/fcgivisor.toml"
	else {
		fv_config_head "$TMP/fv" warn "$FV_PORT"
		cat <<EOF

[[http.route]]
prefix = "/"
pool   = "c"

[pool.c]
command = ["$C_WORKER"]
user    = "root"   # the bench runs as root; workers as root by choice
scaling = "static"
workers = 4
EOF
	} >"$TMP/fcgivisor.toml"; fi
	start_fv_run fcgivisor
	wait_hello "http://127.0.0.1:$FV_PORT/" fcgivisor "$FV_PID"
	URL[fcgivisor]="http://127.0.0.1:$FV_PORT/"
fi

# --- measure -------------------------------------------------------------------
# run STACK LOAD ROUND: one wrk run; appends "stack load round rps p50 p99 errors" to $TMP/results.
run() {
	local stack=$1 load=$2 round=$3 out args
	out="$TMP/wrk-$stack-$load-$round.txt"
	case $load in
	c32) args=(-t2 -c32) ;;
	c1) args=(-t1 -c1) ;;
	esac
	wrk "${args[@]}" -d"$DURATION" --latency "${URL[$stack]}" >"$out"
	wrk_figures "$out"
	echo "$stack $load $round $RPS $P50 $P99 $ERRS" >>"$TMP/results"
	printf '  round %d %-9s %-3s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  errors %s\n' \
		"$round" "$stack" "$load" "$RPS" "$P50" "$P99" "$ERRS" >&2
}

echo "front-vs-nginx: $(nproc) CPUs, $(uname -r); $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')${ONLY:+; ONLY=$ONLY}" >&2
[[ -z $ONLY ]] && echo "fcgivisor: $("$FCGIVISOR" version 2>&1 | head -1)" >&2
# Warm up both stacks (not counted).
for stack in "${STACKS[@]}"; do wrk -t1 -c4 -d1s "${URL[$stack]}" >/dev/null; done
sleep "$SETTLE"

: >"$TMP/results"
for round in $(seq "$ROUNDS"); do
	for load in c32 c1; do
		for stack in "${STACKS[@]}"; do
			run "$stack" "$load" "$round"
			# Requests abandoned by wrk still sit in the backlogs: let them drain.
			sleep "$SETTLE"
		done
	done
done

# --- report --------------------------------------------------------------------
# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v s="$1" -v l="$2" -v c="$3" '$1 == s && $2 == l { print $c }' "$TMP/results" | median; }
sum() { awk -v s="$1" '$1 == s { n += $7 } END { print n + 0 }' "$TMP/results"; }

echo
echo "hello ($APP), $ROUNDS rounds of $DURATION per cell, median per cell; errors summed"
echo
echo "| stack | req/s c32 | p50 ms | p99 ms | req/s c1 | c1 p50 / p99 ms | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for stack in "${STACKS[@]}"; do
	case $APP-$stack in
	c-fcgivisor) name="fcgivisor front -> C libfcgi x4 (static pool)" ;;
	c-nginx) name="nginx w1 -> C libfcgi x4 (spawn-fcgi)" ;;
	php-fcgivisor) name="fcgivisor front -> php-cgi x4 (static pool)" ;;
	php-nginx) name="nginx w1 -> php-fpm pm=static 4" ;;
	esac
	printf '| %s | %.0f | %.2f | %.2f | %.0f | %.3f / %.2f | %s |\n' "$name" \
		"$(col "$stack" c32 4)" "$(col "$stack" c32 5)" "$(col "$stack" c32 6)" \
		"$(col "$stack" c1 4)" "$(col "$stack" c1 5)" "$(col "$stack" c1 6)" "$(sum "$stack")"
done
if [[ -z $ONLY ]]; then
	# ratio LOAD: median over rounds of fcgivisor rps / nginx rps in the same round.
	ratio() {
		awk -v l="$1" '$2 == l { r[$3, $1] = $4; rounds[$3] = 1 }
			END { for (i in rounds) if (r[i, "nginx"] > 0) print r[i, "fcgivisor"] / r[i, "nginx"] }' "$TMP/results" | median
	}
	echo
	printf 'throughput fcgivisor/nginx (median of per-round ratios): c32 %.2fx, c1 %.2fx\n' "$(ratio c32)" "$(ratio c1)"
fi
