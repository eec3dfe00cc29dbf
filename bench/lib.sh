# shellcheck shell=bash
# lib.sh: helpers shared by the bench scripts (burst.sh, reload.sh,
# cgi.sh, front-vs-nginx.sh, public.sh). Source it after setting TMP, RUN_PIDS, KEEP
# and die(); it installs the EXIT trap that stops the current stack and
# removes TMP.

# stop_stack: SIGTERM to every process of the current stack, SIGKILL past
# 10 s; then the workers they had (collected before, by parent pid) if any
# outlived their parent.
stop_stack() {
	local p children=()
	for p in "${RUN_PIDS[@]}"; do
		mapfile -t -O "${#children[@]}" children < <(ps --ppid "$p" -o pid= 2>/dev/null | tr -d ' ' || true)
	done
	for p in "${RUN_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${RUN_PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	for p in "${children[@]}"; do
		if [[ -n $p ]]; then kill -9 "$p" 2>/dev/null || true; fi
	done
	RUN_PIDS=()
}
cleanup() {
	stop_stack
	if [[ -n $KEEP ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a loopback TCP port nobody listens on.
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 30000))
		if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

# wait_until NAME PID FAILURE TEST...: run TEST until it succeeds, 10 s at
# most; die, keeping TMP, with "NAME exited at start" if process PID exits
# first, or with "NAME FAILURE" when the time is up.
wait_until() {
	local name=$1 pid=$2 failure=$3
	shift 3
	for _ in $(seq 100); do
		if "$@"; then return 0; fi
		kill -0 "$pid" 2>/dev/null || { KEEP=1; die "$name exited at start; see $TMP"; }
		sleep 0.1
	done
	KEEP=1
	die "$name $failure; see $TMP"
}

# accepts PORT: whether 127.0.0.1:PORT accepts a TCP connection.
accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_listen PORT NAME PID: wait until 127.0.0.1:PORT accepts a TCP
# connection (nothing is sent: an ondemand pool stays empty).
wait_listen() { wait_until "$2" "$3" "does not listen on $1" accepts "$1"; }

# wait_file PATH NAME PID: wait until the Unix socket PATH exists.
wait_file() { wait_until "$2" "$3" "did not create $1" test -S "$1"; }

# start_nginx NAME PORT LOCATIONS [HTTP]: start nginx in the background on
# 127.0.0.1:PORT serving the location blocks LOCATIONS, the same way for
# every bench: one worker, no access log, unlimited keep-alive, its files
# as $TMP/NAME.conf, $TMP/NAME-error.log, $TMP/NAME.pid and temp dirs in
# $TMP/NAME/. HTTP, if given, goes into the http block before the server
# (upstream blocks). Sets NGINX_PID. The caller waits for it and adds the
# pid to the processes it stops.
start_nginx() {
	local name=$1 port=$2 locations=$3 http=${4:-}
	mkdir -p "$TMP/$name"
	{
		# As root, nginx workers would run as nobody and could not reach
		# sockets in our 0700 directory.
		if [[ $EUID -eq 0 ]]; then echo "user $(id -un) $(id -gn);"; fi
		cat <<NGINX
daemon off;
worker_processes 1;
pid $TMP/$name.pid;
error_log $TMP/$name-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/$name/client_body;
    proxy_temp_path $TMP/$name/proxy;
    fastcgi_temp_path $TMP/$name/fastcgi;
    uwsgi_temp_path $TMP/$name/uwsgi;
    scgi_temp_path $TMP/$name/scgi;
$http
    server {
        listen 127.0.0.1:$port;
$locations
    }
}
NGINX
	} >"$TMP/$name.conf"
	nginx -p "$TMP/$name" -c "$TMP/$name.conf" -e "$TMP/$name-error.log" &
	NGINX_PID=$!
}

# fastcgi_location SCRIPT SOCKET: an nginx location block that passes every
# request to the FastCGI server on the Unix socket SOCKET, as SCRIPT.
fastcgi_location() {
	cat <<LOCATION
        location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $1;
            fastcgi_pass unix:$2;   # fastcgi_keep_conn off, as shipped
        }
LOCATION
}

# start_php_fpm TAG: php-fpm in the foreground from the config the caller
# wrote to $TMP/TAG-fpm.conf (its pool listening on $TMP/TAG-fpm.sock), as
# the invoking user (-R when root: user/group unset, the children run as
# root), output in $TMP/TAG-fpm.out. Waits for its socket; sets FPM_PID
# (the master, the workers' parent) and adds it to RUN_PIDS.
start_php_fpm() {
	local tag=$1
	local fpm_flags=(-F -y "$TMP/$tag-fpm.conf")
	if [[ $EUID -eq 0 ]]; then fpm_flags+=(-R); fi
	"$PHP_FPM" "${fpm_flags[@]}" >"$TMP/$tag-fpm.out" 2>&1 &
	FPM_PID=$!
	RUN_PIDS+=("$FPM_PID")
	wait_file "$TMP/$tag-fpm.sock" php-fpm "$FPM_PID"
}

# start_fpm_nginx TAG PORT SCRIPT: start_php_fpm TAG; then nginx
# (start_nginx TAG-nginx) on 127.0.0.1:PORT passing every request to it as
# SCRIPT. Waits for both; sets FPM_PID.
start_fpm_nginx() {
	local tag=$1 port=$2 script=$3
	start_php_fpm "$tag"

	start_nginx "$tag-nginx" "$port" "$(fastcgi_location "$script" "$TMP/$tag-fpm.sock")"
	RUN_PIDS+=("$NGINX_PID")
	wait_listen "$port" nginx "$NGINX_PID"
}

# most_frequent N: the N most frequent lines of stdin, each once, after its
# count.
most_frequent() { sort | uniq -c | sort -rn | head -"$1"; }

# fpm_warnings TAG: php-fpm's WARNING and ERROR lines in $TMP/TAG-fpm.log,
# without their time stamps, the five most frequent with their counts.
fpm_warnings() {
	grep -E 'WARNING|ERROR' "$TMP/$1-fpm.log" | sed -E 's/^\[[^]]*\] //' | most_frequent 5 || true
}

# fv_warnings LOG: the WARN and ERROR records fcgivisor logged about itself
# in LOG (its workers' output lines aside).
fv_warnings() { grep -E 'level=(WARN|ERROR)' "$1" | grep -v -E ' (stdout|stderr)=' || true; }

# php_stack_versions: the machine and the versions of fcgivisor, php-fpm,
# php-cgi and nginx, for the first line of a PHP bench.
php_stack_versions() {
	echo "$(nproc) CPUs, $(uname -r); $("$FCGIVISOR" version 2>&1 | head -1); $("$PHP_FPM" -v | head -1 | awk '{print "php-fpm " $2}'); $("$PHP_CGI" -v | head -1 | awk '{print "php-cgi " $2}'); $(nginx -v 2>&1 | sed 's/^nginx version: //')"
}

# nworkers PID: how many children process PID has.
nworkers() { { ps --ppid "$1" -o pid= 2>/dev/null || true; } | wc -l; }

# fv_config_head RUNTIME_DIR LOG_LEVEL PORT [DOCUMENT_ROOT]: the [server]
# and [http] tables of a bench's fcgivisor config, serving 127.0.0.1:PORT.
fv_config_head() {
	cat <<TOML
[server]
runtime_dir = "$1"
log_level   = "$2"

[http]
listen        = ["127.0.0.1:$3"]
TOML
	if [[ -n ${4:-} ]]; then echo "document_root = \"$4\""; fi
}

# fv_php_config RUNTIME_DIR PORT DOCUMENT_ROOT SCRIPT [ENV]: a bench's
# fcgivisor config (log_level $LOG_LEVEL) that sends every request to the
# front controller SCRIPT, served by pool php: $PHP_CGI as root, its env
# PHP_FCGI_MAX_REQUESTS = "0" and the inline-table entries ENV if any. The
# caller appends the pool's scaling lines.
fv_php_config() {
	fv_config_head "$1" "$LOG_LEVEL" "$2" "$3"
	cat <<TOML

[[http.route]]
prefix = "/"
script = "$4"
pool   = "php"

[pool.php]
command = ["$PHP_CGI"]
env     = { PHP_FCGI_MAX_REQUESTS = "0"${5:+, $5} }
user    = "root"   # the bench runs as root; workers as root by choice (ignored otherwise)
TOML
}

# start_fv_run NAME: fcgivisor run -c $TMP/NAME.toml in the background,
# output in $TMP/NAME.log; sets FV_PID. The caller waits for it.
start_fv_run() {
	"$FCGIVISOR" run -c "$TMP/$1.toml" >"$TMP/$1.log" 2>&1 &
	FV_PID=$!
	RUN_PIDS+=("$FV_PID")
}

# to_ms converts a wrk latency ("812.00us", "1.05ms", "1.20s") to ms.
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
		printf "%.3f", n }'
}

# wrk_figures FILE: reads wrk --latency output; sets RPS (requests/s), P50
# and P99 (ms) and ERRS (socket errors, timeouts and non-2xx answers).
wrk_figures() {
	RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$1")
	P50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$1")")
	P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$1")")
	ERRS=$(awk '/Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } /Non-2xx/ { n += $NF } END { print n + 0 }' "$1")
}
