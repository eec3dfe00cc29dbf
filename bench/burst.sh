#!/usr/bin/env bash
# burst.sh: a burst from idle to 64 clients against a php-cgi/php-fpm pool of
# at most 16 workers; how soon the pool has 16 workers serving, and what the
# clients see meanwhile. Four stacks, each started fresh for every run:
#
#   fv-dynamic    bench/burst -> fcgivisor run (HTTP front) -> php-cgi, scaling = "dynamic"
#   fpm-dynamic   bench/burst -> nginx (1 worker) -> php-fpm pm = dynamic
#   fv-ondemand   bench/burst -> fcgivisor run (HTTP front) -> php-cgi, scaling = "ondemand"
#   fpm-ondemand  bench/burst -> nginx (1 worker) -> php-fpm pm = ondemand
#
# Same limits everywhere: at most 16 workers; dynamic starts 2 and keeps 1..3
# spare (fcgivisor workers/min_idle/max_idle, php-fpm start_servers/
# min_spare_servers/max_spare_servers); ondemand starts none and stops a
# worker idle for 10 s. PHP_FCGI_MAX_REQUESTS=0 / pm.max_requests=0.
#
# Every run: start the stack, wait until it listens (no request is sent, so
# ondemand pools stay empty), SETTLE seconds, then bench/burst: CLIENTS
# clients at once, each looping GET /?sleep=SLEEP_MS&pid for DURATION, every
# request with its own TIMEOUT (a timeout, error or non-200 is a failure).
# Requests, req/s, latencies and failures are over the requests started in
# those DURATION; if MAX_WORKERS workers have not all served by then, the
# clients go on (MAX_RUN in all at most) so that tN still gets a figure. Then
# the stack is stopped. ROUNDS rounds, the four stacks in the order
# above in each; the table shows the median over rounds per stack, and the
# t16 ratios against the targets set for this benchmark (median of
# per-round ratios). Before
# the rounds, a reference: MAX_WORKERS php-cgi cold starts at once with no
# load (the floor for any manager that must exec php-cgi).
#
# Run from anywhere after `make build` (bin/fcgivisor):
#   bench/burst.sh
# Environment:
#   FCGIVISOR=bin/fcgivisor PHP_CGI=/usr/bin/php-cgi PHP_FPM=(/usr/sbin/php-fpm*)   binaries
#   ROUNDS=3 DURATION=5s SETTLE=2 CLIENTS=64 SLEEP_MS=10 TIMEOUT=5s MAX_WORKERS=16 the measurement
#   MAX_RUN=30s                     how long a burst may go on past DURATION waiting for tN
#   STACKS="fv-dynamic fpm-dynamic fv-ondemand fpm-ondemand"                       which stacks, in this order
#   LOG_LEVEL=info                  fcgivisor's log_level (debug for a diagnostic run)
#   KEEP=1                          keep the temp dir (configs, logs, per-request CSVs)
# Needs go, nginx, php-cgi, php-fpm, awk, ss (iproute2). php-fpm runs as the
# invoking user (-R when root) from its own config in the temp dir; no system
# service is touched.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FCGIVISOR=${FCGIVISOR:-bin/fcgivisor}
PHP_CGI=${PHP_CGI:-/usr/bin/php-cgi}
PHP_FPM=${PHP_FPM:-$(compgen -G '/usr/sbin/php-fpm*' | sort -V | tail -1 || true)}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
SETTLE=${SETTLE:-2}
CLIENTS=${CLIENTS:-64}
SLEEP_MS=${SLEEP_MS:-10}
TIMEOUT=${TIMEOUT:-5s}
MAX_RUN=${MAX_RUN:-30s}
MAX_WORKERS=${MAX_WORKERS:-16}
read -ra STACKS <<<"${STACKS:-fv-dynamic fpm-dynamic fv-ondemand fpm-ondemand}"
LOG_LEVEL=${LOG_LEVEL:-info}
KEEP=${KEEP:-}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
SCRIPT_DIR=$ROOT/bench/burst # document root; the script is burst.php

abs() { case $1 in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
FCGIVISOR=$(abs "$FCGIVISOR")

die() { echo "burst: $*" >&2; exit 1; }
for tool in nginx awk ss getconf; do
	command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install nginx iproute2)"
done
[[ -x $GO ]] || die "go not found (set GO)"
[[ -x $PHP_CGI ]] || die "$PHP_CGI missing (Debian: apt-get install php-cgi)"
[[ -n $PHP_FPM && -x $PHP_FPM ]] || die "php-fpm missing (Debian: apt-get install php-fpm; or set PHP_FPM)"
[[ -x $FCGIVISOR ]] || die "$FCGIVISOR missing: run 'make build' (or set FCGIVISOR)"

TMP=$(mktemp -d /tmp/fv-burst.XXXXXX) # short: worker socket paths must stay < 108 bytes
chmod 755 "$TMP"                      # nginx's worker and php-fpm's children read/connect in here
RUN_PIDS=()                           # the current stack's processes (leaders), killed by pid

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh" # stop_stack, cleanup (EXIT trap), free_port, wait_listen, start_fpm_nginx, ...

# start_fv MODE TAG: fcgivisor with a php-cgi pool; sets PORT and WORKER_PARENT.
start_fv() {
	local mode=$1 tag=$2 scaling
	PORT=$(free_port)
	case $mode in
	dynamic) scaling="scaling      = \"dynamic\"
workers      = 2
min_idle     = 1
max_idle     = 3" ;;
	ondemand) scaling='scaling      = "ondemand"' ;;
	esac
	mkdir -p "$TMP/rt-$tag"
	{
		fv_php_config "$TMP/rt-$tag" "$PORT" "$SCRIPT_DIR" /burst.php
		cat <<EOF
$scaling
max_workers  = $MAX_WORKERS
idle_timeout = "10s"
EOF
	} >"$TMP/$tag.toml"
	start_fv_run "$tag"
	WORKER_PARENT=$FV_PID
	wait_listen "$PORT" fcgivisor "$FV_PID"
}

# start_fpm MODE TAG: php-fpm (own config, pid, log, socket) behind nginx; sets PORT and WORKER_PARENT.
start_fpm() {
	local mode=$1 tag=$2 pm
	PORT=$(free_port)
	case $mode in
	dynamic) pm="pm = dynamic
pm.start_servers = 2
pm.min_spare_servers = 1
pm.max_spare_servers = 3" ;;
	ondemand) pm="pm = ondemand
pm.process_idle_timeout = 10s" ;;
	esac
	cat >"$TMP/$tag-fpm.conf" <<EOF
[global]
pid = $TMP/$tag-fpm.pid
error_log = $TMP/$tag-fpm.log
daemonize = no

[burst]
listen = $TMP/$tag-fpm.sock
$pm
pm.max_children = $MAX_WORKERS
pm.max_requests = 0
EOF
	start_fpm_nginx "$tag" "$PORT" "$SCRIPT_DIR/burst.php"
	WORKER_PARENT=$FPM_PID
}

# run STACK ROUND: one fresh stack, one burst; appends
# "STACK ROUND before=N after=N <burst summary>" to $TMP/results.
run() {
	local stack=$1 round=$2 tag=$1-$2 line before after notes=""
	case $stack in
	fv-*) start_fv "${stack#fv-}" "$tag" ;;
	fpm-*) start_fpm "${stack#fpm-}" "$tag" ;;
	*) die "unknown stack $stack" ;;
	esac
	sleep "$SETTLE"
	before=$(nworkers "$WORKER_PARENT")
	line=$("$TMP/burst" -url "http://127.0.0.1:$PORT/?sleep=$SLEEP_MS&pid" -c "$CLIENTS" -d "$DURATION" -max "$MAX_RUN" \
		-timeout "$TIMEOUT" -workers "$MAX_WORKERS" -hz "$(getconf CLK_TCK)" -label "$stack" -raw "$TMP/$tag.csv")
	after=$(nworkers "$WORKER_PARENT")
	stop_stack
	# What the manager logged about itself (worker output lines aside).
	case $stack in
	fv-*) notes=$(fv_warnings "$TMP/$tag.log" | sed -E 's/^time=[^ ]+ //' | most_frequent 5 || true) ;;
	fpm-*) notes=$(fpm_warnings "$tag") ;;
	esac
	echo "$stack $round before=$before after=$after ${line#"$stack" }" >>"$TMP/results"
	echo "  round $round ${line} (workers before=$before after=$after)" >&2
	if [[ -n $notes ]]; then sed 's/^/      log: /' <<<"$notes" >&2; fi
	sleep 1 # let the stopped stack's CPU settle
}

"$GO" build -o "$TMP/burst" ./bench/burst

echo "burst: $(php_stack_versions)" >&2
echo "burst: $CLIENTS clients x GET /?sleep=$SLEEP_MS&pid for $DURATION from idle (settle ${SETTLE}s), timeout $TIMEOUT, max $MAX_WORKERS workers, $ROUNDS rounds, fcgivisor log_level=$LOG_LEVEL" >&2
# The floor of exec-based spawning on this machine: MAX_WORKERS php-cgi cold
# starts at once (each runs an empty script and exits), wall time, median of 5.
echo '<?php' >"$TMP/empty.php"
floor=$(for _ in 1 2 3 4 5; do
	t=$(date +%s%N)
	(
		for _ in $(seq "$MAX_WORKERS"); do "$PHP_CGI" -q "$TMP/empty.php" >/dev/null & done
		wait
	)
	echo $((($(date +%s%N) - t) / 1000000))
done | sort -n | paste -sd ' ')
FLOOR_MS=$(awk '{ print $3 }' <<<"$floor")
echo "burst: $MAX_WORKERS php-cgi cold starts in parallel (no load): median $FLOOR_MS ms ($floor)" >&2

: >"$TMP/results"
for round in $(seq "$ROUNDS"); do
	for stack in "${STACKS[@]}"; do
		run "$stack" "$round"
	done
done

# --- report --------------------------------------------------------------------
N=$MAX_WORKERS
# val STACK KEY: that key's value for each round of STACK, one per line.
val() { awk -v s="$1" -v k="$2" '$1 == s { for (i = 3; i <= NF; i++) if (index($i, k "=") == 1) print substr($i, length(k) + 2) }' "$TMP/results"; }
# median of the numbers on stdin ("never" sorts last).
median() { awk '{ print ($1 == "never" ? 1e18 : $1) }' | sort -g | awk '{ v[NR] = $1 } END {
	if (NR == 0) { print "-"; exit }
	m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
	print (m >= 1e17 ? "never" : m) }'; }
sum() { awk '{ n += $1 } END { print n + 0 }'; }
# failures STACK: the sum over rounds, and those after the window if any.
failures() {
	local n after
	n=$(val "$1" failures | sum)
	after=$(val "$1" failures_after | sum)
	if [[ $after -gt 0 ]]; then echo "$n (+$after after ${DURATION})"; else echo "$n"; fi
}
fmtnum() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "never" || v == "-") print v; else printf f "\n", v }'; }

echo
echo "burst from idle: $CLIENTS clients, GET /?sleep=$SLEEP_MS for $DURATION, max $MAX_WORKERS workers; median of $ROUNDS runs per stack (failures: sum)"
echo
echo "| stack | t$N ms | spawn$N ms | requests | req/s | p50 ms | p99 ms | max ms | failures | t$N per round ms |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for stack in "${STACKS[@]}"; do
	case $stack in
	fv-dynamic) name='fcgivisor dynamic (php-cgi)' ;;
	fpm-dynamic) name='PHP-FPM pm=dynamic (nginx)' ;;
	fv-ondemand) name='fcgivisor ondemand (php-cgi)' ;;
	fpm-ondemand) name='PHP-FPM pm=ondemand (nginx)' ;;
	esac
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" \
		"$(fmtnum "$(val "$stack" "t$N" | median)" %.0f)" "$(fmtnum "$(val "$stack" "spawn$N" | median)" %.0f)" \
		"$(fmtnum "$(val "$stack" requests | median)" %.0f)" "$(fmtnum "$(val "$stack" rps | median)" %.0f)" \
		"$(fmtnum "$(val "$stack" p50 | median)" %.1f)" "$(fmtnum "$(val "$stack" p99 | median)" %.1f)" \
		"$(fmtnum "$(val "$stack" max | median)" %.0f)" "$(failures "$stack")" \
		"$(val "$stack" "t$N" | awk '{ printf "%s%s", (NR > 1 ? " / " : ""), ($1 == "never" ? $1 : int($1 + 0.5)) }')"
done
echo
echo "Ramp: distinct workers that had served by 50, 100, 200, 500 ms, 1, 2, 3, 4, 5, 10 s (each round)"
for stack in "${STACKS[@]}"; do
	printf '  %-13s %s\n' "$stack" "$(val "$stack" ramp | paste -sd ' ' | sed 's/ / | /g')"
done
if grep -q 'failed=' "$TMP/results"; then
	echo
	echo "Failures:"
	awk '{ for (i = 3; i <= NF; i++) if (index($i, "failed=") == 1) print "  " $1 " round " $2 ": " substr($i, 8) }' "$TMP/results"
fi

# ratio A B: median over rounds of tN(A)/tN(B) in the same round.
ratio() {
	awk -v a="$1" -v b="$2" -v k="t$N=" '{ for (i = 3; i <= NF; i++) if (index($i, k) == 1) t[$2, $1] = substr($i, length(k) + 1); r[$2] = 1 }
		END { for (i in r) { x = t[i, a]; y = t[i, b]; if (x == "" || y == "") continue
			if (x == "never" || y == "never") print "never"; else if (y + 0 > 0) print x / y } }' "$TMP/results" | median
}
have() { [[ " ${STACKS[*]} " == *" $1 "* ]]; }
echo
if have fpm-dynamic && have fv-dynamic; then
	printf 't%s PHP-FPM dynamic / fcgivisor dynamic (median of per-round ratios): %s (target >= 5x)\n' "$N" "$(fmtnum "$(ratio fpm-dynamic fv-dynamic)" %.1fx)"
fi
if have fv-ondemand && have fpm-ondemand; then
	printf 't%s fcgivisor ondemand / PHP-FPM ondemand (median of per-round ratios): %s (target <= 2x)\n' "$N" "$(fmtnum "$(ratio fv-ondemand fpm-ondemand)" %.2fx)"
fi
echo "reference: $MAX_WORKERS php-cgi cold starts in parallel, no load: median $FLOOR_MS ms ($floor)"
