#!/usr/bin/env bash
# Runs the tests again as an unprivileged user (nobody by default), so that
# every privilege-dependent test proves both of its contracts: the root one
# in `make test` itself, the other one here (user and group ignored with a
# warning, sockets owned by the running user, files judged by its rights).
#
# Tests keep TMPDIR=/tmp: socket paths must stay short.
#
# Run as root from the repository: the test binaries, fcgivisor and the
# example workers are built here as root, copied with the repository into a
# directory the user can read, and run there as that user (the integration
# harness finds the repository from its working directory).
#
#   hack/test-unprivileged.sh            # every package that runs processes
#                                        # (integration: INTEGRATION_RUN)
#   TEST_USER=daemon RUN=TestCheck hack/test-unprivileged.sh integration
set -euo pipefail

user=${TEST_USER:-nobody}
run=${RUN:-.}
# integration: the tests whose contract depends on who runs fcgivisor (the
# rest run the same either way, and run as root in make test).
integration_run=${INTEGRATION_RUN:-User|Privilege|Check|Perm|Listen|Static|PHPApp|Scripts|Fallback|EnvIsolation|Admin|Security|WebServer}
# packaging: the shipped config checked as the user runs it, and the .deb
# built and checked (dpkg refuses to install it); they run make (bin/,
# dist/), so packaging runs last, on a copy of the tree the user owns.
packaging_run=${PACKAGING_RUN:-TestShippedConfig|TestDeb}
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(integration daemon supervisor spawner front socket conf packaging)
if [ "$(id -u)" != 0 ]; then
	echo "test-unprivileged: run as root (it runs the tests as $user)" >&2
	exit 1
fi
top=$(git rev-parse --show-toplevel)
cd "$top"
work=$(mktemp -d /tmp/fcgivisor-unprivileged.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/home"
# The tree as it is (committed or not), without build outputs.
tar -C "$top" --exclude=./bin --exclude=./tmp --exclude=./.git -cf - . | tar -C "$work" --one-top-level=repo -xf -

go build -race -o "$work/bin/fcgivisor" ./cmd/fcgivisor
go build -o "$work/bin/go-worker" ./examples/go-worker
c_worker=
if [ -f /usr/include/fcgiapp.h ]; then
	${CC:-cc} -O2 -Wall -o "$work/bin/c-worker" examples/c-worker/worker.c -lfcgi
	c_worker=$work/bin/c-worker
fi
for p in "${pkgs[@]}"; do
	go test -c -race -o "$work/bin/$p.test" "./$p"
done
chmod -R a+rX "$work"
chmod 1777 "$work/home"

# With TESTS_RECORD and TESTSUM (make test), each run goes through
# test2json and hack/testsum, which prints it as go test does and records
# every test's result, skips with their reason, for make test's summary.
as_user() {
	local p=$1
	shift
	(cd "$work/repo/$p" && runuser -u "$user" -- env -i PATH="$PATH" HOME="$work/home" TMPDIR=/tmp \
		FCGIVISOR_BIN="$work/bin/fcgivisor" FCGIVISOR_GO_WORKER="$work/bin/go-worker" FCGIVISOR_C_WORKER="$c_worker" \
		"$work/bin/$p.test" -test.count=1 -test.timeout=10m "$@")
}
status=0
for p in "${pkgs[@]}"; do
	[ -x "$work/bin/$p.test" ] || continue # a package without tests
	echo "== $p as $user"
	r=$run
	if [ "$p" = integration ] && [ "$run" = . ]; then r=$integration_run; fi
	if [ "$p" = packaging ]; then
		[ "$run" = . ] && r=$packaging_run
		chown -R "$user" "$work/repo"
	fi
	if [ -n "${TESTS_RECORD:-}" ] && [ -n "${TESTSUM:-}" ]; then
		as_user "$p" -test.v=test2json -test.run "$r" 2>&1 | go tool test2json -t -p "$p" |
			"$TESTSUM" -record "$TESTS_RECORD" -label "as $user" || status=1
	elif ! as_user "$p" -test.run "$r"; then
		status=1
	fi
done
exit $status
