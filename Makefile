# fcgivisor: `make run` builds and serves the quickstart; `make test` runs every test.
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build workers run test test-unprivileged fuzz lint bench clean

all: build

build: $(BIN)/fcgivisor workers

$(BIN)/fcgivisor: FORCE
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/fcgivisor

# The example workers: Go always; C only where libfcgi-dev is installed.
workers: $(BIN)/go-worker
	@if [ -f /usr/include/fcgiapp.h ]; then $(MAKE) --no-print-directory $(BIN)/c-worker; \
	else echo "libfcgi-dev not installed: skipping the C worker"; fi

$(BIN)/go-worker: FORCE
	$(GO) build -o $@ ./examples/go-worker

$(BIN)/c-worker: examples/c-worker/worker.c
	@mkdir -p $(BIN)
	$(CC) -O2 -Wall -o $@ $< -lfcgi

run: build
	$(BIN)/fcgivisor run -c examples/quickstart.toml

test: build lint
	$(GO) test -race -count=1 -timeout 10m ./...
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory test-unprivileged

# As root (the CI), the tests of the packages that run processes run again
# as nobody, integration's privilege-dependent ones among them, so that each
# proves both its contracts. Skipped, with a line that says so, as another
# user or without runuser.
test-unprivileged:
	@if [ "$$(id -u)" != 0 ]; then echo "test-unprivileged: not root, so the tests above ran unprivileged already"; \
	elif ! command -v runuser >/dev/null; then echo "test-unprivileged: skipped, no runuser"; \
	elif ! id -u "$${TEST_USER:-nobody}" >/dev/null 2>&1; then echo "test-unprivileged: skipped, no user $${TEST_USER:-nobody}"; \
	else hack/test-unprivileged.sh; fi

# Every fuzz target (a func FuzzX in a _test.go file) for FUZZTIME each, as
# -fuzz takes one target per run. Minimizing each new input could take the
# whole run, so it gets one try: a failing input is kept as found (rerun
# with a longer -fuzzminimizetime to shrink it).
FUZZTIME ?= 3s
fuzz:
	@grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed -e 's|^\./||' -e 's|/[^/]*:func | |' | sort -u | \
	while read -r pkg fn; do \
		echo "fuzz $$fn ./$$pkg for $(FUZZTIME)"; \
		out=$$($(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=1x ./$$pkg 2>&1) || \
			{ echo "$$out"; exit 1; }; \
	done

lint:
	$(GO) vet ./...
	@$(GO) run ./hack/funclen -n 0 -max 80 || { echo "a production function is over 80 lines: split it"; exit 1; }
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

bench: build
	bench/front-vs-nginx.sh

clean:
	rm -rf $(BIN) tmp

FORCE:
