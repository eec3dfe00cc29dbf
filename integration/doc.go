// Package integration holds fcgivisor's end-to-end tests: they build the
// fcgivisor binary and the example workers (examples/), start `fcgivisor run`
// on real configs, drive it over HTTP and check what users see — answers,
// logs, exit codes — and that no worker process or file descriptor is left
// behind. The package has no code of its own; run it with
//
//	go test -race -count=1 ./integration/
//
// Set FCGIVISOR_BIN, FCGIVISOR_GO_WORKER or FCGIVISOR_C_WORKER to test
// prebuilt binaries instead of building them.
package integration
