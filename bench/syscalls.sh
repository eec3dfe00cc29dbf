#!/usr/bin/env bash
# syscalls.sh: system calls and CPU per request, fcgivisor against nginx,
# hello on the same C workers. Stacks, each started fresh:
#
#   a  wrk -> fcgivisor HTTP front -> 4 x C libfcgi worker (bin/c-worker, static pool)
#   b  wrk -> nginx (1 worker) -> spawn-fcgi -F 4 (the same worker), fastcgi_keep_conn off (as shipped)
#   c  wrk -> nginx (1 worker) -> fcgivisor public socket (pool listen) -> the same 4 workers;
#      upstream keepalive 8, fastcgi_keep_conn on
#
# Per stack and load (wrk -t2 -c32, then wrk -t1 -c1, DURATION each, after
# a 1 s warm-up), two windows inside the wrk run:
#   1. WINDOW seconds untraced, from LEAD s after wrk starts: requests
#      counted by the stack's own counter (fcgivisor's /status "accepted"
#      over the admin socket for a and c, nginx's stub_status for b),
#      utime+stime from /proc/PID/stat of the front (fcgivisor, or nginx's
#      worker) and of the workers, and `perf stat -a -e context-switches`
#      system-wide (if perf exists). Gives req/s, CPU us/request,
#      context switches/request.
#   2. then STRACE seconds with `strace -c -f -p` on the front (fcgivisor,
#      or nginx's worker), requests counted the same way from the moment
#      strace has attached every thread until it is stopped: system calls per
#      request, in total and for the top 6 calls. strace slows the traced
#      process (every call stops it), so window 2's req/s is not reported;
#      the calls per request barely depend on it (more requests may share
#      one epoll_wait when the process is slower: read those as an upper
#      bound of the batching).
# Counters include what wrk left in flight at the window's edges (at most
# 32 requests of thousands).
#
# Run from anywhere after `make build` (bin/fcgivisor, bin/c-worker):
#   bench/syscalls.sh          # ~1.5 min
# Environment:
#   FCGIVISOR=bin/fcgivisor C_WORKER=bin/c-worker   binaries
#   DURATION=6 LEAD=1 WINDOW=2 STRACE=2 SETTLE=1    seconds (LEAD+WINDOW+STRACE < DURATION)
#   STACKS="a b c"  LOADS="c32 c1"
#   KEEP=1                                          keep the temp dir (configs, logs, raw output)
# Needs nginx (with stub_status), spawn-fcgi, wrk, curl, jq, strace, awk,
# ss; perf (optional) for context switches. Every process started is
# stopped by pid.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FCGIVISOR=${FCGIVISOR:-bin/fcgivisor}
C_WORKER=${C_WORKER:-bin/c-worker}
DURATION=${DURATION:-6}
LEAD=${LEAD:-1}
WINDOW=${WINDOW:-2}
STRACE=${STRACE:-2}
SETTLE=${SETTLE:-1}
read -ra STACKS <<<"${STACKS:-a b c}"
read -ra LOADS <<<"${LOADS:-c32 c1}"
KEEP=${KEEP:-}

abs() { case $1 in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
FCGIVISOR=$(abs "$FCGIVISOR")
C_WORKER=$(abs "$C_WORKER")

die() { echo "syscalls: $*" >&2; exit 1; }
for tool in nginx spawn-fcgi wrk curl jq strace awk ss; do
	command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install nginx spawn-fcgi wrk curl jq strace iproute2)"
done
[[ -x $FCGIVISOR ]] || die "$FCGIVISOR missing: run 'make build' (or set FCGIVISOR)"
[[ -x $C_WORKER ]] || die "$C_WORKER missing: run 'make build' with libfcgi-dev (or set C_WORKER)"
PERF=$(command -v perf || true)
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/fv-sys.XXXXXX) # short: Unix socket paths must stay < 108 bytes
chmod 755 "$TMP"                    # nginx's worker connects in here
RUN_PIDS=()

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh" # stop_stack, cleanup (EXIT trap), free_port, start_nginx, wait_*, ...

# fv_config: a fcgivisor config with pool c (4 x C_WORKER, static); for
# stack c no HTTP front and the pool listening on $TMP/c.sock.
fv_config() {
	if [[ $STACK == a ]]; then
		fv_config_head "$TMP/rt-$STACK" warn "$PORT"
		printf '\n[[http.route]]\nprefix = "/"\npool   = "c"\n'
	else
		printf '[server]\nruntime_dir = "%s"\nlog_level   = "warn"\n\n[http]\nlisten = []\n' "$TMP/rt-$STACK"
	fi
	cat <<TOML

[pool.c]
command = ["$C_WORKER"]
user    = "root"   # the bench runs as root; workers as root by choice
scaling = "static"
workers = 4
TOML
	if [[ $STACK == c ]]; then echo "listen  = \"$TMP/c.sock\""; fi
}

# start_stack STACK: sets PORT, FRONT (the pid traced and measured),
# WORKERS (the workers' pids) and COUNTER (a function printing the
# stack's requests served so far).
start_stack() {
	STACK=$1
	PORT=$(free_port)
	local stub="        location = /nginx_status { stub_status; }"
	case $STACK in
	a | c)
		mkdir -p "$TMP/rt-$STACK"
		fv_config >"$TMP/$STACK.toml"
		start_fv_run "$STACK"
		ADMIN=$TMP/rt-$STACK/admin.sock
		COUNTER=fv_accepted
		;;
	esac
	case $STACK in
	a)
		wait_listen "$PORT" fcgivisor "$FV_PID"
		FRONT=$FV_PID
		;;
	b)
		spawn-fcgi -F 4 -s "$TMP/b.sock" -P "$TMP/spawn-fcgi.pid" -- "$C_WORKER" >/dev/null
		mapfile -t WORKERS < <(grep -o '[0-9]\+' "$TMP/spawn-fcgi.pid")
		RUN_PIDS+=("${WORKERS[@]}")
		start_nginx b-nginx "$PORT" "$(fastcgi_location /hello "$TMP/b.sock")
$stub"
		COUNTER=nginx_requests
		;;
	c)
		wait_file "$TMP/c.sock" fcgivisor "$FV_PID"
		start_nginx c-nginx "$PORT" "        location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME /hello;
            fastcgi_pass fcgi;
            fastcgi_keep_conn on;
        }" "    upstream fcgi {
        server unix:$TMP/c.sock;
        keepalive 8;
    }"
		;;
	esac
	if [[ $STACK == b || $STACK == c ]]; then
		RUN_PIDS+=("$NGINX_PID")
		wait_listen "$PORT" nginx "$NGINX_PID"
		FRONT=$(ps --ppid "$NGINX_PID" -o pid= | tr -d ' ' | head -1) # nginx's one worker
	fi
	check_hello
	if [[ $STACK == a || $STACK == c ]]; then mapfile -t WORKERS < <(ps --ppid "$FV_PID" -o pid= | tr -d ' '); fi
	[[ ${#WORKERS[@]} -eq 4 ]] || die "stack $STACK: ${#WORKERS[@]} workers, want 4"
}

check_hello() {
	local got=""
	for _ in $(seq 100); do
		got=$(curl -s -m 5 "http://127.0.0.1:$PORT/" 2>/dev/null || true)
		if [[ $got == "hello from c" ]]; then return 0; fi
		sleep 0.1
	done
	KEEP=1
	die "stack $STACK answered '$got', not 'hello from c'; see $TMP"
}

# The stack's requests served so far.
fv_accepted() { curl -s --unix-socket "$ADMIN" http://fcgivisor/status | jq '[.pools[] | .totals.accepted] | add'; }
nginx_requests() { curl -s "http://127.0.0.1:$PORT/nginx_status" | awk 'NR == 3 { print $3 }'; }

# ticks PID...: utime+stime of the processes, in clock ticks.
ticks() {
	local p n=0 t
	for p in "$@"; do
		t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
		n=$((n + t))
	done
	echo "$n"
}

# measure LOAD: one wrk run on the current stack with both windows;
# appends "STACK LOAD rps front_us worker_us cs_per_req syscalls_per_req
# top6" to $TMP/results.
measure() {
	local load=$1 args out req0 req1 f0 f1 w0 w1 cs=- st_req0 st_req1 spr top
	case $load in
	c32) args=(-t2 -c32) ;;
	c1) args=(-t1 -c1) ;;
	esac
	out=$TMP/$STACK-$load
	wrk "${args[@]}" -d"${DURATION}s" "http://127.0.0.1:$PORT/" >"$out.wrk" &
	local wrk_pid=$!
	sleep "$LEAD"
	# Window 1: untraced.
	req0=$($COUNTER) f0=$(ticks "$FRONT") w0=$(ticks "${WORKERS[@]}")
	if [[ -n $PERF ]]; then
		"$PERF" stat -a -x, -e context-switches -o "$out.perf" sleep "$WINDOW" 2>/dev/null
	else
		sleep "$WINDOW"
	fi
	req1=$($COUNTER) f1=$(ticks "$FRONT") w1=$(ticks "${WORKERS[@]}")
	# Window 2: strace -c on the front.
	strace -c -f -p "$FRONT" -o "$out.strace" 2>"$out.attach" &
	local strace_pid=$!
	# Count from the moment every thread is traced ("Process N attached
	# with K threads"), not from strace's start: attaching takes a while,
	# and its calls would be missed.
	for _ in $(seq 100); do
		grep -q attached "$out.attach" && break
		sleep 0.02
	done
	st_req0=$($COUNTER)
	sleep "$STRACE"
	st_req1=$($COUNTER)
	kill -INT "$strace_pid"
	wait "$strace_pid" || true
	wait "$wrk_pid"

	local n=$((req1 - req0)) m=$((st_req1 - st_req0))
	((n > 0 && m > 0)) || die "stack $STACK $load: no requests counted ($n, $m); see $TMP"
	if [[ -n $PERF ]]; then
		cs=$(awk -F, -v n="$n" '$3 == "context-switches" { printf "%.2f", $1 / n }' "$out.perf")
	fi
	# strace -c's table: "% time seconds usecs/call calls errors syscall";
	# the errors column may be empty.
	spr=$(awk -v m="$m" '/^-/ { sep++; next } sep == 1 && NF >= 5 { n += $4 } END { printf "%.2f", n / m }' "$out.strace")
	top=$(awk -v m="$m" '/^-/ { sep++; next } sep == 1 && NF >= 5 { print $4, $NF }' "$out.strace" |
		sort -rn | head -6 | awk -v m="$m" '{ printf "%s%s %.2f", (NR > 1 ? ", " : ""), $2, $1 / m }')
	echo "$STACK $load $(awk -v n="$n" -v w="$WINDOW" -v f="$((f1 - f0))" -v k="$((w1 - w0))" -v hz="$CLK_TCK" -v cs="$cs" -v spr="$spr" \
		'BEGIN { printf "%.0f %.1f %.1f %s %s", n / w, f / hz * 1e6 / n, k / hz * 1e6 / n, cs, spr }') $top" >>"$TMP/results"
	printf '  %s %-3s %s\n' "$STACK" "$load" "$(tail -1 "$TMP/results" | cut -d' ' -f3-)" >&2
}

stack_name() {
	case $1 in
	a) echo "a wrk -> fcgivisor front -> C libfcgi x4" ;;
	b) echo "b wrk -> nginx -> spawn-fcgi -F 4 C libfcgi (keep_conn off)" ;;
	c) echo "c wrk -> nginx -> fcgivisor public socket -> C libfcgi x4 (keep_conn on)" ;;
	esac
}

echo "syscalls: $(nproc) CPUs, $(uname -r); $(nginx -v 2>&1 | sed 's/^nginx version: //'); $({ wrk -v 2>&1 || true; } | head -1 | awk '{print "wrk " $2}'); $("$FCGIVISOR" version 2>&1 | head -1); $(strace -V | head -1)${PERF:+; perf $("$PERF" version 2>/dev/null | awk '{print $3}')}" >&2
echo "syscalls: load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
: >"$TMP/results"
for s in "${STACKS[@]}"; do
	start_stack "$s"
	wrk -t2 -c32 -d1s "http://127.0.0.1:$PORT/" >/dev/null # warm-up
	sleep "$SETTLE"
	for load in "${LOADS[@]}"; do
		measure "$load"
		sleep "$SETTLE"
	done
	stop_stack
done

echo
echo "hello, per request: req/s and CPU over ${WINDOW} s untraced; system calls of the front over ${STRACE} s under strace -c -f"
echo "(front: fcgivisor for a, nginx's worker for b and c; workers: the 4 C workers; context switches: system-wide)"
echo
echo "| stack | load | req/s | front CPU µs/req | workers CPU µs/req | ctx switches/req | front syscalls/req | top 6 syscalls/req |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
while read -r s load rps fus wus cs spr top; do
	echo "| $(stack_name "$s") | $load | $rps | $fus | $wus | $cs | $spr | $top |"
done <"$TMP/results"
