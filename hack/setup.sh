#!/usr/bin/env bash
# Sets a Debian or Ubuntu machine up for `make test`, which runs it first:
# installs, with apt-get (through sudo when not root), the packages the
# tests drive, so that none of them is skipped for a missing tool. Once:
# .setup-done records the package list it installed, and a later run with
# the same list does nothing (delete the file to run it again). Where every
# package is installed already it records that without apt-get.
#
# Without apt-get, root or sudo, or when apt-get fails, it says so and
# exits 0: `make test` goes on, and its closing summary names the tests
# skipped for what is missing.
set -uo pipefail
cd "$(dirname "$0")/.."

# What the tests use: the workers' runtimes (php-cgi; libfcgi-dev and
# build-essential for the C worker; libfcgi-perl), the web servers they
# start in front of fcgivisor with configs of their own (nginx, apache2,
# caddy, lighttpd; none is started here), the tools they drive (spawn-fcgi,
# fcgiwrap, cgi-fcgi from libfcgi-bin, wrk, curl, systemd's
# systemd-analyze and systemd-socket-activate), and what the packaging
# tests check the shipped files with (man-db, zsh, fish, logrotate).
packages=(
	php-cgi libfcgi-dev libfcgi-perl libfcgi-bin build-essential
	nginx apache2 caddy lighttpd
	spawn-fcgi fcgiwrap wrk curl ca-certificates systemd
	man-db zsh fish logrotate
)
# DokuWiki (TestPHPAppDokuWiki) in a second apt-get, once php-cgi is in:
# its "php" dependency is then met by php-cgi instead of pulling in
# Apache's PHP module.
late=(dokuwiki)

stamp=.setup-done
key="${packages[*]} + ${late[*]}"
if [[ -f $stamp && "$(cat "$stamp")" == "$key" ]]; then
	exit 0
fi

installed() {
	command -v dpkg-query >/dev/null || return 1
	local p
	for p in "$@"; do
		[[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || return 1
	done
}
if installed "${packages[@]}" "${late[@]}"; then
	echo "$key" >"$stamp"
	exit 0
fi

skip() {
	echo "setup: $*: going on without; the tests that need a missing package will be skipped (see the summary at the end)" >&2
	exit 0
}
command -v apt-get >/dev/null || skip "no apt-get (not Debian or Ubuntu)"
sudo=()
if [[ $EUID -ne 0 ]]; then
	command -v sudo >/dev/null || skip "not root, and no sudo"
	sudo=(sudo)
	[[ -t 0 ]] || sudo+=(-n) # no terminal to ask a password on: fail instead
fi

# policy-rc.d exit 101 (honoured by invoke-rc.d and deb-systemd-invoke):
# installing nginx, apache2, caddy or lighttpd must not start its service;
# the tests run their own.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null &&
		"${sudo[@]}" chmod +x /usr/sbin/policy-rc.d &&
		trap '"${sudo[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
fi

apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o=Dpkg::Use-Pty=0)
echo "setup: apt-get install ${packages[*]} ${late[*]}"
"${apt[@]}" update >/dev/null || skip "apt-get update failed"
"${apt[@]}" install --no-install-recommends "${packages[@]}" >/dev/null || skip "apt-get install failed"
"${apt[@]}" install --no-install-recommends "${late[@]}" >/dev/null || skip "apt-get install ${late[*]} failed"
echo "$key" >"$stamp"
echo "setup: done (recorded in $stamp)"
