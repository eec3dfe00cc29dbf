#!/usr/bin/env bash
# cgi.sh: one-shot CGI, fcgivisor's cgi route against nginx -> fcgiwrap, and
# what FastCGI saves over CGI for the same PHP script. Five stacks, all up at
# once (one fcgivisor, one nginx), each on its own URL:
#
#   fv-cgi       wrk -> fcgivisor cgi route (max_concurrent N)       -> fork+exec hello (C, plain CGI)
#   ng-cgi       wrk -> nginx (1 worker) -> fcgiwrap -c N (Unix sock) -> fork+exec hello
#   fv-php-fcgi  wrk -> fcgivisor -> php pool (static, PHP_WORKERS php-cgi, FastCGI) -> hello.php
#   fv-php-cgi   wrk -> fcgivisor cgi route (max_concurrent N)       -> exec hello.php (#!php-cgi, CGI)
#   ng-php-cgi   wrk -> nginx (1 worker) -> fcgiwrap -c N            -> exec hello.php (#!php-cgi, CGI)
#
# N (CGI_CHILDREN, default 4) is both fcgiwrap's number of children and
# the cgi route's max_concurrent: at most N scripts run at once on either
# side, the rest wait (in fcgiwrap's socket backlog, in fcgivisor's queue).
# hello is bench/cgi/hello.c, built with cc -O2 into the temp dir; hello.php
# is written there with a #!PHP_CGI line and is the same file the pool
# serves (php-cgi skips the #! line in both modes).
#
# After checking that every URL answers 200 with its expected body and a
# 1 s warm-up of each, every round runs wrk -t2 -cCONNS and wrk -t1 -c1
# (DURATION each, --latency) on each stack in the order above, SETTLE
# seconds after every run; ROUNDS rounds. It prints per stack the median
# req/s, p50 and p99, errors summed, and the ratios as the median of the
# per-round ratios (same-run pairs, as for the baseline in bench/README.md):
# fcgivisor CGI / nginx+fcgiwrap (C and PHP; target >= 1.0) and
# FastCGI / CGI for the PHP script under fcgivisor. It also prints the CPU
# time per request of the servers (fcgivisor; nginx + fcgiwrap) from
# /proc/PID/stat around every run: less sensitive than req/s to other work
# on the machine.
#
# Run from anywhere after `make build` (bin/fcgivisor):
#   bench/cgi.sh
# Environment:
#   FCGIVISOR=bin/fcgivisor PHP_CGI=/usr/bin/php-cgi CC=cc   binaries (relative to the repo root)
#   ROUNDS=3 DURATION=10s SETTLE=1 CONNS=32                  the measurement (wrk -t2 -cCONNS and -t1 -c1)
#   CGI_CHILDREN=4                  fcgiwrap -c and the cgi route's max_concurrent
#   PHP_WORKERS=4                   the FastCGI php pool's static workers
#   STACKS="fv-cgi ng-cgi fv-php-fcgi fv-php-cgi ng-php-cgi"  which stacks; without fv-* no fcgivisor is needed
#   LOG_LEVEL=warn                  fcgivisor's log_level
#   KEEP=1                          keep the temp dir (configs, logs, raw wrk output)
# Needs nginx, fcgiwrap, php-cgi, wrk, curl, cc, awk, pgrep (procps), ss (iproute2).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FCGIVISOR=${FCGIVISOR:-bin/fcgivisor}
PHP_CGI=${PHP_CGI:-/usr/bin/php-cgi}
CC=${CC:-cc}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
SETTLE=${SETTLE:-1}
CONNS=${CONNS:-32}
CGI_CHILDREN=${CGI_CHILDREN:-4}
PHP_WORKERS=${PHP_WORKERS:-4}
read -ra STACKS <<<"${STACKS:-fv-cgi ng-cgi fv-php-fcgi fv-php-cgi ng-php-cgi}"
LOG_LEVEL=${LOG_LEVEL:-warn}
KEEP=${KEEP:-}

abs() { case $1 in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
FCGIVISOR=$(abs "$FCGIVISOR")

die() { echo "cgi: $*" >&2; exit 1; }
for tool in nginx fcgiwrap wrk curl "$CC" awk pgrep ss; do
	command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install nginx fcgiwrap wrk curl build-essential procps iproute2)"
done
[[ -x $PHP_CGI ]] || die "$PHP_CGI missing (Debian: apt-get install php-cgi)"
NEED_FV="" NEED_NG=""
for s in "${STACKS[@]}"; do
	case $s in
	fv-cgi | fv-php-fcgi | fv-php-cgi) NEED_FV=1 ;;
	ng-cgi | ng-php-cgi) NEED_NG=1 ;;
	*) die "STACKS: unknown stack $s" ;;
	esac
done
if [[ -n $NEED_FV ]]; then
	[[ -x $FCGIVISOR ]] || die "$FCGIVISOR missing: run 'make build' (or set FCGIVISOR, or STACKS without fv-*)"
fi

TMP=$(mktemp -d /tmp/fv-cgi.XXXXXX) # short: worker socket paths must stay < 108 bytes
RUN_PIDS=()                         # every process started, killed by pid at the end

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh" # stop_stack, cleanup (EXIT trap), free_port, wait_listen, wait_file, to_ms, ...

# --- the scripts -----------------------------------------------------------------
CGI_DIR=$TMP/cgi-bin
mkdir -p "$CGI_DIR"
"$CC" -O2 -Wall -o "$CGI_DIR/hello" "$ROOT/bench/cgi/hello.c"
{
	echo "#!$PHP_CGI"
	# shellcheck disable=SC2016
	printf '%s\n' '<?php echo "hello from php: ", $_SERVER["QUERY_STRING"] ?? "", "\n";'
} >"$CGI_DIR/hello.php"
chmod 755 "$CGI_DIR/hello" "$CGI_DIR/hello.php"

QUERY=bench
declare -A URL WANT NAME
WANT[fv-cgi]="hello from cgi: $QUERY"
WANT[ng-cgi]=${WANT[fv-cgi]}
WANT[fv-php-fcgi]="hello from php: $QUERY"
WANT[fv-php-cgi]=${WANT[fv-php-fcgi]}
WANT[ng-php-cgi]=${WANT[fv-php-fcgi]}
NAME[fv-cgi]="fcgivisor cgi route -> C hello (max_concurrent $CGI_CHILDREN)"
NAME[ng-cgi]="nginx w1 -> fcgiwrap -c $CGI_CHILDREN -> C hello"
NAME[fv-php-fcgi]="fcgivisor -> php-cgi FastCGI pool (static $PHP_WORKERS)"
NAME[fv-php-cgi]="fcgivisor cgi route -> php-cgi as CGI (max_concurrent $CGI_CHILDREN)"
NAME[ng-php-cgi]="nginx w1 -> fcgiwrap -c $CGI_CHILDREN -> php-cgi as CGI"

# check_url STACK PID: wait (10 s at most) until the stack's URL answers 200
# with the expected body; fail loudly otherwise.
check_url() {
	local stack=$1 pid=$2 code=
	for _ in $(seq 100); do
		code=$(curl -s -o "$TMP/check-$stack.body" -w '%{http_code}' "${URL[$stack]}" 2>/dev/null || true)
		if [[ $code == 200 && $(<"$TMP/check-$stack.body") == "${WANT[$stack]}" ]]; then return 0; fi
		kill -0 "$pid" 2>/dev/null || { KEEP=1; die "$stack: the server exited at start; see $TMP"; }
		# A 501 will not change: a fcgivisor without cgi routes.
		[[ $code == 501 ]] && break
		sleep 0.1
	done
	KEEP=1
	echo "cgi: $stack: ${URL[$stack]} answered HTTP ${code:-none} with body:" >&2
	head -c 600 "$TMP/check-$stack.body" >&2 || true
	echo >&2
	[[ $code == 501 ]] && echo "cgi: (501: this fcgivisor does not implement cgi routes; build one that does)" >&2
	die "$stack: expected 200 and \"${WANT[$stack]}\"; see $TMP"
}

# --- nginx -> fcgiwrap -c N ------------------------------------------------------
if [[ -n $NEED_NG ]]; then
	# fcgiwrap hands its own environment to every script; give it what
	# fcgivisor gives its scripts besides the request's variables (PATH).
	env -i PATH=/usr/local/bin:/usr/bin:/bin "$(command -v fcgiwrap)" -c "$CGI_CHILDREN" -s "unix:$TMP/fcgiwrap.sock" >"$TMP/fcgiwrap.log" 2>&1 &
	RUN_PIDS+=($!)
	FCGIWRAP_PID=$!
	wait_file "$TMP/fcgiwrap.sock" fcgiwrap "$!"
	NGINX_PORT=$(free_port)
	start_nginx nginx "$NGINX_PORT" "        location ~ ^/cgi-bin/(?<cgi_script>[^/]+)\$ {
            include /etc/nginx/fastcgi_params;   # REDIRECT_STATUS 200, QUERY_STRING, ...
            fastcgi_param SCRIPT_FILENAME $CGI_DIR/\$cgi_script;
            fastcgi_pass unix:$TMP/fcgiwrap.sock; # fastcgi_keep_conn off, as shipped
        }"
	RUN_PIDS+=("$NGINX_PID")
	wait_listen "$NGINX_PORT" nginx "$NGINX_PID"
	URL[ng-cgi]="http://127.0.0.1:$NGINX_PORT/cgi-bin/hello?$QUERY"
	URL[ng-php-cgi]="http://127.0.0.1:$NGINX_PORT/cgi-bin/hello.php?$QUERY"
fi

# --- fcgivisor: one cgi route, one php pool ----------------------------------------
if [[ -n $NEED_FV ]]; then
	FV_PORT=$(free_port)
	{
		fv_config_head "$TMP/fv" "$LOG_LEVEL" "$FV_PORT" "$CGI_DIR"
		cat <<EOF

[[http.route]]
prefix         = "/cgi-bin/"
cgi            = "$CGI_DIR"
timeout        = "60s"
max_concurrent = $CGI_CHILDREN
user           = "root"   # the bench runs as root; scripts as root by choice

[[http.route]]
prefix = "/fcgi/"
script = "/hello.php"     # the same file the cgi route runs
pool   = "php"

[pool.php]
command = ["$PHP_CGI"]
env     = { PHP_FCGI_MAX_REQUESTS = "0" }
user    = "root"
scaling = "static"
workers = $PHP_WORKERS
EOF
	} >"$TMP/fcgivisor.toml"
	start_fv_run fcgivisor
	wait_listen "$FV_PORT" fcgivisor "$FV_PID"
	URL[fv-cgi]="http://127.0.0.1:$FV_PORT/cgi-bin/hello?$QUERY"
	URL[fv-php-fcgi]="http://127.0.0.1:$FV_PORT/fcgi/?$QUERY"
	URL[fv-php-cgi]="http://127.0.0.1:$FV_PORT/cgi-bin/hello.php?$QUERY"
fi

for stack in "${STACKS[@]}"; do
	case $stack in fv-*) check_url "$stack" "$FV_PID" ;; *) check_url "$stack" "$NGINX_PID" ;; esac
done

# --- measure -------------------------------------------------------------------
# CPU accounting, less sensitive than req/s to a shared machine: the
# server processes' own CPU time (fcgivisor; nginx + fcgiwrap and their
# children), and the programs' (the CGI processes they reaped, counted in
# their cutime/cstime, plus the live php-cgi pool workers).
declare -A SERVER_PIDS
if [[ -n $NEED_NG ]]; then
	SERVER_PIDS[ng]="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')$FCGIWRAP_PID $(pgrep -P "$FCGIWRAP_PID" | tr '\n' ' ')"
fi
[[ -n $NEED_FV ]] && SERVER_PIDS[fv]=$FV_PID
TICK=$(getconf CLK_TCK)
# cpu_ticks STACK: prints "server program" CPU ticks of the stack's processes.
cpu_ticks() {
	local p s=0 c=0 f
	local -a pids workers=()
	read -ra pids <<<"${SERVER_PIDS[${1%%-*}]}"
	if [[ $1 == fv-* ]]; then
		mapfile -t workers < <(pgrep -P "$FV_PID" -f "^$PHP_CGI\$" || true)
	fi
	for p in "${pids[@]}"; do
		# Fields after "pid (comm) ": 12 utime, 13 stime, 14 cutime, 15 cstime.
		read -ra f < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null || echo)
		((${#f[@]} > 14)) || continue
		s=$((s + f[11] + f[12])) c=$((c + f[13] + f[14]))
	done
	for p in "${workers[@]}"; do
		read -ra f < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null || echo)
		((${#f[@]} > 14)) || continue
		c=$((c + f[11] + f[12]))
	done
	echo "$s $c"
}

HI=c$CONNS
# run STACK LOAD ROUND: one wrk run; appends "stack load round rps p50 p99
# errors server_us program_us" to $TMP/results (CPU microseconds per request).
run() {
	local stack=$1 load=$2 round=$3 out args
	out="$TMP/wrk-$stack-$load-$round.txt"
	case $load in
	c1) args=(-t1 -c1) ;;
	*) args=(-t2 "-c$CONNS") ;;
	esac
	local t0 t1
	t0=$(cpu_ticks "$stack")
	wrk "${args[@]}" -d"$DURATION" --latency "${URL[$stack]}" >"$out"
	# Requests wrk gave up on may still run: let them finish before counting.
	sleep "$SETTLE"
	t1=$(cpu_ticks "$stack")
	local cpu
	cpu=$(awk -v a="$t0" -v b="$t1" -v t="$TICK" '/ requests in / { n = $1 } END {
		split(a, x, " "); split(b, y, " ")
		if (n > 0) printf "%.0f %.0f", (y[1] - x[1]) * 1e6 / t / n, (y[2] - x[2]) * 1e6 / t / n; else print "0 0" }' "$out")
	wrk_figures "$out"
	echo "$stack $load $round $RPS $P50 $P99 $ERRS $cpu" >>"$TMP/results"
	printf '  round %d %-11s %-3s %9.0f req/s  p50 %8.3f ms  p99 %8.3f ms  errors %s  CPU us/req server %s program %s\n' \
		"$round" "$stack" "$load" "$RPS" "$P50" "$P99" "$ERRS" "${cpu% *}" "${cpu#* }" >&2
}

# exec_ms PROGRAM N [ENV...]: mean ms of one fork+exec+wait of PROGRAM from
# bash, N times in a row, no server: the floor under any one-shot CGI.
exec_ms() (
	prog=$1 n=$2
	shift 2
	if (($#)); then export "${@?}"; fi
	t0=$EPOCHREALTIME
	for _ in $(seq "$n"); do "$prog" >/dev/null; done
	t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN { printf "%.2f", (b - a) * 1000 / n }'
)

echo "cgi: $(nproc) CPUs, $(uname -r); $(nginx -v 2>&1 | sed 's/^nginx version: //'), fcgiwrap $(dpkg-query -W -f '${Version}' fcgiwrap 2>/dev/null || echo '?'), $("$PHP_CGI" -v | head -1 | awk '{print "php-cgi " $2}'), $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')" >&2
[[ -n $NEED_FV ]] && echo "fcgivisor: $("$FCGIVISOR" version 2>&1 | head -1)" >&2
PHP_ENV=(GATEWAY_INTERFACE=CGI/1.1 REDIRECT_STATUS=200 REQUEST_METHOD=GET "QUERY_STRING=$QUERY"
	"SCRIPT_FILENAME=$CGI_DIR/hello.php" SCRIPT_NAME=/cgi-bin/hello.php)
EXEC_C=$(exec_ms "$CGI_DIR/hello" 500)
EXEC_PHP=$(exec_ms "$CGI_DIR/hello.php" 50 "${PHP_ENV[@]}")
echo "reference, no server: fork+exec+wait from bash: hello $EXEC_C ms, hello.php (php-cgi) $EXEC_PHP ms" >&2

# Warm up every stack (not counted).
for stack in "${STACKS[@]}"; do wrk -t1 -c4 -d1s "${URL[$stack]}" >/dev/null; done
sleep "$SETTLE"

: >"$TMP/results"
for round in $(seq "$ROUNDS"); do
	for load in "$HI" c1; do
		for stack in "${STACKS[@]}"; do
			# run waits SETTLE after wrk: requests abandoned by wrk still sit
			# in the backlogs and queues; they drain before the next run.
			run "$stack" "$load" "$round"
		done
	done
done

# What fcgivisor has left behind: children other than its php-cgi workers
# (CGI processes still running or unreaped) once the last run has drained.
if [[ -n $NEED_FV ]]; then
	ALL_NOW=$(pgrep -c -P "$FV_PID" || true)
	WORKERS_NOW=$(pgrep -c -P "$FV_PID" -f "^$PHP_CGI\$" || true)
	LEFT=$((ALL_NOW - WORKERS_NOW))
fi

# --- report --------------------------------------------------------------------
# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v s="$1" -v l="$2" -v c="$3" '$1 == s && $2 == l { print $c }' "$TMP/results" | median; }
sum() { awk -v s="$1" '$1 == s { n += $7 } END { print n + 0 }' "$TMP/results"; }
has() { local s; for s in "${STACKS[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }
# ratio A B LOAD COL: median over rounds of A's COL / B's COL in the same round.
ratio() {
	awk -v a="$1" -v b="$2" -v l="$3" -v c="$4" '$2 == l && ($1 == a || $1 == b) { r[$3, $1] = $c; rounds[$3] = 1 }
		END { for (i in rounds) if (r[i, b] > 0) print r[i, a] / r[i, b] }' "$TMP/results" | median
}

echo
echo "$ROUNDS rounds of $DURATION per cell, median per cell; errors (socket errors, timeouts, non-2xx) summed"
echo
echo "| stack | req/s $HI | p50 ms | p99 ms | req/s c1 | c1 p50 / p99 ms | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for stack in "${STACKS[@]}"; do
	printf '| %s | %.0f | %.2f | %.2f | %.0f | %.3f / %.2f | %s |\n' "${NAME[$stack]}" \
		"$(col "$stack" "$HI" 4)" "$(col "$stack" "$HI" 5)" "$(col "$stack" "$HI" 6)" \
		"$(col "$stack" c1 4)" "$(col "$stack" c1 5)" "$(col "$stack" c1 6)" "$(sum "$stack")"
done
echo
echo "CPU time per request, microseconds (median of the runs): the servers' own (fcgivisor | nginx + fcgiwrap),"
echo "and the programs' (the CGI processes fcgivisor reaped, or the php-cgi pool workers; fcgiwrap's"
echo "children ignore SIGCHLD, so the CPU of the scripts they run is not accounted: '-')"
echo
echo "| stack | server $HI | server c1 | program $HI | program c1 |"
echo "| --- | ---: | ---: | ---: | ---: |"
for stack in "${STACKS[@]}"; do
	if [[ $stack == ng-* ]]; then
		printf '| %s | %.0f | %.0f | - | - |\n' "${NAME[$stack]}" "$(col "$stack" "$HI" 8)" "$(col "$stack" c1 8)"
	else
		printf '| %s | %.0f | %.0f | %.0f | %.0f |\n' "${NAME[$stack]}" \
			"$(col "$stack" "$HI" 8)" "$(col "$stack" c1 8)" "$(col "$stack" "$HI" 9)" "$(col "$stack" c1 9)"
	fi
done

# pair A B LABEL TARGET: one ratio row (req/s A/B at both loads, c1 p50 B/A).
pair() {
	local a=$1 b=$2 label=$3 target=$4 hi lo lat verdict=""
	has "$a" && has "$b" || return 0
	hi=$(ratio "$a" "$b" "$HI" 4)
	lo=$(ratio "$a" "$b" c1 4)
	lat=$(ratio "$b" "$a" c1 5)
	if [[ -n $target ]]; then
		if awk -v h="$hi" -v l="$lo" -v t="$target" 'BEGIN { exit !(h >= t && l >= t) }'; then
			verdict="met (>= ${target}x)"
		else
			verdict="NOT met (>= ${target}x)"
		fi
	fi
	printf '| %s | **%.2fx** | **%.2fx** | %.2fx | %s |\n' "$label" "$hi" "$lo" "$lat" "$verdict"
}
RATIOS=$(
	pair fv-cgi ng-cgi "CGI, C hello: fcgivisor cgi route / nginx -> fcgiwrap" 1.0
	pair fv-php-cgi ng-php-cgi "CGI, php-cgi: fcgivisor cgi route / nginx -> fcgiwrap" 1.0
	pair fv-php-fcgi fv-php-cgi "PHP under fcgivisor: FastCGI pool / cgi route" ""
)
if [[ -n $RATIOS ]]; then
	echo
	echo "| ratio (median of per-round ratios) | req/s $HI A/B | req/s c1 A/B | c1 p50 B/A | target |"
	echo "| --- | ---: | ---: | ---: | --- |"
	echo "$RATIOS"
fi
echo
echo "reference, no server: fork+exec+wait from bash: hello $EXEC_C ms, hello.php (php-cgi) $EXEC_PHP ms"
if [[ -n $NEED_FV ]]; then
	echo "fcgivisor after the last run: $WORKERS_NOW php-cgi workers; other children (CGI processes left running or unreaped): $LEFT"
	grep -E 'level=(WARN|ERROR)' "$TMP/fcgivisor.log" | sed -E 's/^time=[^ ]+ //' | most_frequent 10 >"$TMP/fv-warnings" || true
	if [[ -s $TMP/fv-warnings ]]; then
		echo "fcgivisor WARN/ERROR log lines (distinct, most frequent first):"
		cat "$TMP/fv-warnings"
	else
		echo "fcgivisor WARN/ERROR log lines: none"
	fi
fi
if [[ -n $NEED_NG && -s $TMP/nginx-error.log ]]; then
	echo "nginx error log ($(wc -l <"$TMP/nginx-error.log") lines), first 5:"
	head -5 "$TMP/nginx-error.log"
fi
