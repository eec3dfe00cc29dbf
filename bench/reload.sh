#!/usr/bin/env bash
# reload.sh: failed requests and latency while the server is reloaded 5
# times under load, fcgivisor (SIGHUP) against PHP-FPM (SIGUSR2). Stacks,
# each started fresh for every run, all with 4 PHP workers:
#
#   fv-env     bench/reload -> fcgivisor run (HTTP front) -> 4 x php-cgi, static;
#              before every SIGHUP the config is rewritten with a new
#              env GEN=<n>, so every reload starts a new generation of
#              workers and drains the old one
#   fpm-usr2   bench/reload -> nginx (1 worker) -> php-fpm pm=static 4, SIGUSR2
#              (default process_control_timeout = 0)
#   fv-same    as fv-env, SIGHUP with the file unchanged (pool kept)
#   fv-none    fcgivisor, no reload (reference)
#   fpm-none   nginx -> php-fpm, no reload (reference)
#
# Endpoints (examples/php/index.php): hello (GET /, "hello from php") and
# sleep (GET /?sleep=10, 10 ms). Every run: start the stack, wait until it
# listens, warm up (CLIENTS clients for WARMUP, no reload), SETTLE seconds,
# then bench/reload: CLIENTS clients, each looping the request over its own
# keep-alive connection for DURATION, every request with its own TIMEOUT,
# while the reload signal is sent RELOADS times evenly spaced (at 1, 3, 5,
# 7, 9 s for 5 in 10 s). A non-200, a wrong body, a connection error or a
# timeout is a failure; no request is retried. DRAIN seconds later the
# stack's workers are counted (the old generations must be gone) and it is
# stopped. ROUNDS rounds; in each, per endpoint, the stacks in the order
# above. The table shows per stack and endpoint the median over rounds of
# req/s, p50, p99 and max, and the failures summed over rounds.
#
# Run from anywhere after `make build` (bin/fcgivisor):
#   bench/reload.sh
# Environment:
#   FCGIVISOR=bin/fcgivisor PHP_CGI=/usr/bin/php-cgi PHP_FPM=(/usr/sbin/php-fpm*)    binaries
#   ROUNDS=3 DURATION=10s RELOADS=5 CLIENTS=32 TIMEOUT=5s WARMUP=1s SETTLE=1 DRAIN=2  the measurement
#   WORKERS=4 SLEEP_MS=10
#   STACKS="fv-env fpm-usr2 fv-same fv-none fpm-none"   ENDPOINTS="hello sleep"
#   LOG_LEVEL=info                  fcgivisor's log_level
#   KEEP=1                          keep the temp dir (configs, logs, per-request CSVs)
# Needs go, nginx, php-cgi, php-fpm, awk, ss (iproute2), timeout. php-fpm
# runs as the invoking user (-R when root) from its own config, pid file and
# log in the temp dir; no system service is touched. Every process started
# is stopped by pid.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FCGIVISOR=${FCGIVISOR:-bin/fcgivisor}
PHP_CGI=${PHP_CGI:-/usr/bin/php-cgi}
PHP_FPM=${PHP_FPM:-$(compgen -G '/usr/sbin/php-fpm*' | sort -V | tail -1 || true)}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
RELOADS=${RELOADS:-5}
CLIENTS=${CLIENTS:-32}
TIMEOUT=${TIMEOUT:-5s}
WARMUP=${WARMUP:-1s}
SETTLE=${SETTLE:-1}
DRAIN=${DRAIN:-2}
WORKERS=${WORKERS:-4}
SLEEP_MS=${SLEEP_MS:-10}
read -ra STACKS <<<"${STACKS:-fv-env fpm-usr2 fv-same fv-none fpm-none}"
read -ra ENDPOINTS <<<"${ENDPOINTS:-hello sleep}"
LOG_LEVEL=${LOG_LEVEL:-info}
KEEP=${KEEP:-}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
DOCROOT=$ROOT/examples/php # index.php

abs() { case $1 in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
FCGIVISOR=$(abs "$FCGIVISOR")

die() { echo "reload: $*" >&2; exit 1; }
for tool in nginx awk ss timeout; do
	command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install nginx iproute2)"
done
[[ -x $GO ]] || die "go not found (set GO)"
[[ -x $PHP_CGI ]] || die "$PHP_CGI missing (Debian: apt-get install php-cgi)"
[[ -n $PHP_FPM && -x $PHP_FPM ]] || die "php-fpm missing (Debian: apt-get install php-fpm; or set PHP_FPM)"
[[ -x $FCGIVISOR ]] || die "$FCGIVISOR missing: run 'make build' (or set FCGIVISOR)"
[[ -f $DOCROOT/index.php ]] || die "$DOCROOT/index.php missing"

TMP=$(mktemp -d /tmp/fv-reload.XXXXXX) # short: worker socket paths must stay < 108 bytes
chmod 755 "$TMP"                       # nginx's worker and php-fpm's children read/connect in here
RUN_PIDS=()                            # the current stack's processes (leaders), killed by pid

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh" # stop_stack, cleanup (EXIT trap), free_port, wait_listen, start_fpm_nginx, ...

# start_fv TAG STACK: fcgivisor with a static php-cgi pool of WORKERS; sets
# PORT, MANAGER (the pid to signal, the workers' parent) and RELOAD_CMD.
# $TMP/TAG.toml.in is the config with @GEN@ for the env's generation; the
# fv-env reload command writes it anew (GEN=1..N from bench/reload) and
# renames it into place before the SIGHUP.
start_fv() {
	local tag=$1 stack=$2
	PORT=$(free_port)
	mkdir -p "$TMP/rt-$tag"
	{
		fv_php_config "$TMP/rt-$tag" "$PORT" "$DOCROOT" /index.php 'GEN = "@GEN@"'
		echo 'scaling = "static"'
		echo "workers = $WORKERS"
	} >"$TMP/$tag.toml.in"
	sed 's/@GEN@/0/' "$TMP/$tag.toml.in" >"$TMP/$tag.toml"
	start_fv_run "$tag"
	MANAGER=$FV_PID
	wait_listen "$PORT" fcgivisor "$FV_PID"
	case $stack in
	fv-env) RELOAD_CMD="sed \"s/@GEN@/\$GEN/\" $TMP/$tag.toml.in >$TMP/$tag.toml.tmp && mv $TMP/$tag.toml.tmp $TMP/$tag.toml && kill -HUP $MANAGER" ;;
	fv-same) RELOAD_CMD="kill -HUP $MANAGER" ;;
	*) RELOAD_CMD="" ;;
	esac
}

# start_fpm TAG STACK: php-fpm pm=static WORKERS (own config, pid, log,
# socket) behind nginx; sets PORT, MANAGER (php-fpm's master) and RELOAD_CMD.
start_fpm() {
	local tag=$1 stack=$2
	PORT=$(free_port)
	cat >"$TMP/$tag-fpm.conf" <<END_FPM
[global]
pid = $TMP/$tag-fpm.pid
error_log = $TMP/$tag-fpm.log
daemonize = no
; process_control_timeout: default (0)

[reload]
listen = $TMP/$tag-fpm.sock
pm = static
pm.max_children = $WORKERS
pm.max_requests = 0
END_FPM
	start_fpm_nginx "$tag" "$PORT" "$DOCROOT/index.php"
	MANAGER=$FPM_PID
	case $stack in
	fpm-usr2) RELOAD_CMD="kill -USR2 $MANAGER" ;;
	*) RELOAD_CMD="" ;;
	esac
}

# run STACK ENDPOINT ROUND: one fresh stack, one measured run; appends
# "STACK ENDPOINT ROUND <load summary> workers_after=N reloaded=N ..." to $TMP/results.
run() {
	local stack=$1 ep=$2 round=$3 tag=$1-$2-$3 path expect line after reloaded=0 notes="" nreloads=$RELOADS extra=""
	case $ep in
	hello) path=/ expect="hello from php" ;;
	sleep) path="/?sleep=$SLEEP_MS" expect="slept $SLEEP_MS" ;;
	*) die "unknown endpoint $ep" ;;
	esac
	case $stack in
	fv-*) start_fv "$tag" "$stack" ;;
	fpm-*) start_fpm "$tag" "$stack" ;;
	*) die "unknown stack $stack" ;;
	esac
	if [[ -z $RELOAD_CMD ]]; then nreloads=0; fi
	local url="http://127.0.0.1:$PORT$path"
	timeout 60 "$TMP/load" -url "$url" -c "$CLIENTS" -d "$WARMUP" -reloads 0 -expect "$expect" -label warmup >/dev/null
	sleep "$SETTLE"
	line=$(timeout 120 "$TMP/load" -url "$url" -c "$CLIENTS" -d "$DURATION" -timeout "$TIMEOUT" -expect "$expect" \
		-reloads "$nreloads" -cmd "$RELOAD_CMD" -label "$stack" -raw "$TMP/$tag.csv")
	sleep "$DRAIN"
	after=$(nworkers "$MANAGER")
	# Did the reloads happen? fcgivisor logs "reloaded" (with what it did),
	# php-fpm "Reloading in progress".
	case $stack in
	fv-*)
		reloaded=$(grep -c 'msg=reloaded' "$TMP/$tag.log" || true)
		extra=" new_generation=$(grep 'msg=reloaded' "$TMP/$tag.log" | grep -c 'new_generation=\[php\]' || true)"
		extra+=" reload_ms=$(grep 'msg=reloaded' "$TMP/$tag.log" | sed -nE 's/.* duration=([0-9.]+)(ms|µs|s).*/\1 \2/p' |
			awk '{ v = $1; if ($2 == "s") v *= 1000; else if ($2 == "µs") v /= 1000; printf "%s%.1f", (NR > 1 ? "," : ""), v }' || true)"
		;;
	fpm-*)
		reloaded=$(grep -c 'Reloading in progress' "$TMP/$tag-fpm.log" || true)
		extra=" nginx_upstream_errors=$(grep -c 'upstream' "$TMP/$tag-nginx-error.log" 2>/dev/null || true)"
		;;
	esac
	stop_stack
	# What the manager logged about itself (worker output aside), verbatim.
	case $stack in
	fv-*)
		notes=$(fv_warnings "$TMP/$tag.log")
		if [[ -n $notes ]]; then sed "s/^/$tag: /" <<<"$notes" >>"$TMP/fv-warnings"; fi
		;;
	fpm-*) notes=$(fpm_warnings "$tag") ;;
	esac
	echo "$stack $ep $round ${line#"$stack" } workers_after=$after reloaded=$reloaded$extra" >>"$TMP/results"
	echo "  round $round $ep ${line} workers_after=$after reloaded=$reloaded$extra" >&2
	if [[ -n $notes ]]; then sed 's/^/      log: /' <<<"$notes" >&2; fi
	sleep 1 # let the stopped stack's CPU settle
}

"$GO" build -o "$TMP/load" ./bench/reload

echo "reload: $(php_stack_versions)" >&2
echo "reload: $CLIENTS clients for $DURATION, $RELOADS reloads, $WORKERS workers, timeout $TIMEOUT, $ROUNDS rounds, fcgivisor log_level=$LOG_LEVEL" >&2

: >"$TMP/results"
for round in $(seq "$ROUNDS"); do
	for ep in "${ENDPOINTS[@]}"; do
		for stack in "${STACKS[@]}"; do
			run "$stack" "$ep" "$round"
		done
	done
done

# --- report --------------------------------------------------------------------
# val STACK EP KEY: that key's value for each round, one per line.
val() { awk -v s="$1" -v e="$2" -v k="$3" '$1 == s && $2 == e { for (i = 4; i <= NF; i++) if (index($i, k "=") == 1) print substr($i, length(k) + 2) }' "$TMP/results"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit }
	print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
sum() { awk '{ n += $1 } END { print n + 0 }'; }
fmtnum() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "-") print v; else printf f "\n", v }'; }
perround() { val "$1" "$2" "$3" | paste -sd ' ' | sed 's/ / \/ /g'; }
name() {
	case $1 in
	fv-env) echo "fcgivisor, SIGHUP, env changed (new generation)" ;;
	fv-same) echo "fcgivisor, SIGHUP, config unchanged" ;;
	fv-none) echo "fcgivisor, no reload" ;;
	fpm-usr2) echo "PHP-FPM (nginx), SIGUSR2" ;;
	fpm-none) echo "PHP-FPM (nginx), no reload" ;;
	esac
}

echo
echo "reload under load: $CLIENTS clients for $DURATION, $RELOADS reloads evenly spaced, $WORKERS PHP workers; median of $ROUNDS runs per cell, failures summed"
echo
echo "| stack | endpoint | req/s | p50 ms | p99 ms | max ms | p99 / max ms around reloads | failures | failures per run | workers after |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
for ep in "${ENDPOINTS[@]}"; do
	for stack in "${STACKS[@]}"; do
		near="-"
		if [[ $(val "$stack" "$ep" reloads | sum) -gt 0 ]]; then
			near="$(fmtnum "$(val "$stack" "$ep" near_p99 | median)" %.1f) / $(fmtnum "$(val "$stack" "$ep" near_max | median)" %.0f)"
		fi
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(name "$stack")" "$ep" \
			"$(fmtnum "$(val "$stack" "$ep" rps | median)" %.0f)" \
			"$(fmtnum "$(val "$stack" "$ep" p50 | median)" %.2f)" "$(fmtnum "$(val "$stack" "$ep" p99 | median)" %.1f)" \
			"$(fmtnum "$(val "$stack" "$ep" max | median)" %.0f)" "$near" \
			"$(val "$stack" "$ep" failures | sum)" "$(perround "$stack" "$ep" failures)" "$(perround "$stack" "$ep" workers_after)"
	done
done
echo
echo "Reloads (per run: signals sent / reloads the manager logged; fcgivisor: reloads that started a new generation, reload durations in ms):"
awk '$1 !~ /-none$/ { r = s = g = d = u = ""
	for (i = 4; i <= NF; i++) { split($i, kv, "=")
		if (kv[1] == "reloads") s = kv[2]; else if (kv[1] == "reloaded") r = kv[2]
		else if (kv[1] == "new_generation") g = " new_generation=" kv[2]; else if (kv[1] == "reload_ms") d = " ms=" kv[2]
		else if (kv[1] == "nginx_upstream_errors") u = " nginx_upstream_errors=" kv[2] }
	printf "  %-9s %-5s round %s: %s/%s%s%s%s\n", $1, $2, $3, s, r, g, d, u }' "$TMP/results"
if grep -q ' failed=' "$TMP/results"; then
	echo
	echo "Failures (kinds; start times in ms of the failed requests; reloads at $(awk '{ for (i = 4; i <= NF; i++) if ($i ~ /^reload_at=/) { print substr($i, 11); exit } }' "$TMP/results") ms):"
	awk '{ f = t = ""; for (i = 4; i <= NF; i++) { if (index($i, "failed=") == 1) f = substr($i, 8); if (index($i, "failed_at_ms=") == 1) t = substr($i, 14) }
		if (f != "") printf "  %s %s round %s: %s at %s\n", $1, $2, $3, f, t }' "$TMP/results"
fi
echo
if [[ -s $TMP/fv-warnings ]]; then
	echo "fcgivisor WARN/ERROR log lines ($(wc -l <"$TMP/fv-warnings")):"
	sed 's/^/  /' "$TMP/fv-warnings"
else
	echo "fcgivisor WARN/ERROR log lines: none"
fi
