# shellcheck shell=bash
# lib.sh: helpers shared by the bench scripts that start stacks one after
# another (burst.sh, reload.sh). Source it after setting TMP, RUN_PIDS,
# KEEP and die(); it installs the EXIT trap that stops the current stack
# and removes TMP.

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

# wait_listen PORT NAME PID: wait until 127.0.0.1:PORT accepts a TCP
# connection (nothing is sent: an ondemand pool stays empty).
wait_listen() {
	local port=$1 name=$2 pid=$3
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		kill -0 "$pid" 2>/dev/null || { KEEP=1; die "$name exited at start; see $TMP"; }
		sleep 0.1
	done
	KEEP=1
	die "$name does not listen on $port; see $TMP"
}

# wait_file PATH NAME PID
wait_file() {
	for _ in $(seq 100); do
		[[ -S $1 ]] && return 0
		kill -0 "$3" 2>/dev/null || { KEEP=1; die "$2 exited at start; see $TMP"; }
		sleep 0.1
	done
	KEEP=1
	die "$2 did not create $1; see $TMP"
}

# start_nginx NAME PORT LOCATIONS: start nginx in the background on
# 127.0.0.1:PORT serving the location blocks LOCATIONS, the same way for
# every bench: one worker, no access log, unlimited keep-alive, its files
# as $TMP/NAME.conf, $TMP/NAME-error.log, $TMP/NAME.pid and temp dirs in
# $TMP/NAME/. Sets NGINX_PID. The caller waits for it and adds the pid
# to the processes it stops.
start_nginx() {
	local name=$1 port=$2 locations=$3
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
