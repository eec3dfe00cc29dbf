# fcgivisor: `make run` builds and serves the quickstart; `make test` runs every test.
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# make install: where things go. DESTDIR is prepended to every path.
# Configuration and logrotate go to /etc whatever PREFIX is: fcgivisor and
# logrotate read them there. The units' ExecStart names $(BINDIR)/fcgivisor.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
UNITDIR     ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
SYSCONFDIR  ?= /etc
LOGDIR      ?= /var/log/fcgivisor
UNITS       := fcgivisor.service fcgivisor.socket fcgivisor-php.socket

# make deb: nfpm, pinned (the module proxy serves it; the first run
# downloads and builds it). The package's version is VERSION in Debian's
# syntax: v1.2.3 → 1.2.3, v1.2.3-4-gabc → 1.2.3+4.gabc, an untagged abc
# (a commit, whatever its first character) → 0.0.0+git.abc.
NFPM        ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
DEB_VERSION ?= $(shell echo '$(VERSION)' | sed -E '/^v?[0-9]+\.[0-9]/!s/^/0.0.0+git./; s/^v//; s/-/+/; s/-/./g')
DEB_ROOT    := $(BIN)/deb-root

.PHONY: all build workers share run setup test test-unprivileged fuzz lint bench install uninstall deb clean

all: build

build: $(BIN)/fcgivisor workers

# Static (CGO_ENABLED=0): it runs on any Linux of its architecture, and
# os/user reads /etc/passwd and /etc/group itself (no NSS: users and groups
# from LDAP or sssd are not found). The version is stamped in.
# urfave_cli_no_docs leaves out urfave/cli's Markdown and man page writer
# and the two modules it needs (fcgivisor(1) is rendered by cmd/fcgivisor).
# nethttpomithttp2 leaves out net/http's HTTP/2: fcgivisor serves no TLS,
# so no client could negotiate it, and its code cost 0.5 MB of resident
# memory (bench/README.md, issue 14).
$(BIN)/fcgivisor: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -tags urfave_cli_no_docs,nethttpomithttp2 -ldflags '$(LDFLAGS)' -o $@ ./cmd/fcgivisor

# What make install and make deb ship besides the binary: the man pages,
# fcgivisor(1) from the CLI's command tree and fcgivisor.toml(5) from
# docs/configuration.md, and the shell completion scripts.
share: $(BIN)/fcgivisor
	@mkdir -p $(BIN)/man $(BIN)/completion
	$(BIN)/fcgivisor manpage > $(BIN)/man/fcgivisor.1
	$(GO) run ./hack/mdman -name fcgivisor.toml -section 5 -version '$(VERSION)' \
		-summary 'configuration file of fcgivisor(1)' -see 'fcgivisor(1)' docs/configuration.md > $(BIN)/man/fcgivisor.toml.5
	gzip -9nf -k $(BIN)/man/fcgivisor.1 $(BIN)/man/fcgivisor.toml.5
	$(BIN)/fcgivisor completion bash > $(BIN)/completion/fcgivisor.bash
	$(BIN)/fcgivisor completion zsh > $(BIN)/completion/_fcgivisor
	$(BIN)/fcgivisor completion fish > $(BIN)/completion/fcgivisor.fish

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

# make test: sets the machine up (hack/setup.sh: once), then vet, lint,
# every test with -race, the integration tests again against the static
# binary and the socket packages without -race, the fuzz targets and, as
# root, the tests again as nobody; it
# ends with the count of tests (subtests included) and the ones skipped,
# with the reason each gave, recorded in $(TESTS_RECORD) by hack/testsum.
TESTS_RECORD := tmp/tests.jsonl
# The run with -race tests a fcgivisor built with -race (which needs cgo),
# and under -race internal/rawio makes its socket calls through the
# syscall package. So the integration tests run again against
# bin/fcgivisor as make builds it (static: os/user without cgo; rawio's
# raw system calls), and the packages whose sockets rawio wraps run
# again without -race.
RAW_PKGS     := ./internal/rawio ./fastcgi ./public ./front ./supervisor
# A failed step still ends with the summary, then make test fails.
TESTS_FAILED  = { $(BIN)/testsum -summary $(TESTS_RECORD); exit 1; }
test: setup build lint $(BIN)/testsum
	@mkdir -p tmp && rm -f $(TESTS_RECORD)
	@echo "$(GO) test -race -count=1 -timeout 10m ./..."
	@$(GO) test -json -race -count=1 -timeout 10m ./... | $(BIN)/testsum -record $(TESTS_RECORD) || $(TESTS_FAILED)
	@echo "FCGIVISOR_BIN=$(BIN)/fcgivisor $(GO) test -count=1 ./integration $(RAW_PKGS)"
	@FCGIVISOR_BIN=$(CURDIR)/$(BIN)/fcgivisor $(GO) test -json -count=1 -timeout 10m ./integration $(RAW_PKGS) | \
		$(BIN)/testsum -record $(TESTS_RECORD) -label "(no -race)" || $(TESTS_FAILED)
	@$(MAKE) --no-print-directory fuzz
	@TESTS_RECORD=$(CURDIR)/$(TESTS_RECORD) TESTSUM=$(CURDIR)/$(BIN)/testsum $(MAKE) --no-print-directory test-unprivileged || $(TESTS_FAILED)
	@$(BIN)/testsum -summary $(TESTS_RECORD)

# Installs the packages the tests need, once (hack/setup.sh).
setup:
	@hack/setup.sh

$(BIN)/testsum: FORCE
	@$(GO) build -o $@ ./hack/testsum

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
# with a longer -fuzzminimizetime to shrink it). The budget is a count of
# inputs, not a duration: with a duration, Go 1.26's fuzz coordinator can
# report its own end-of-time deadline as "context deadline exceeded" and fail
# a target that found nothing (seen in CI on FuzzConfig); a count has no
# deadline to race. 30000 inputs take 1 to 5 s per target here.
FUZZTIME ?= 30000x
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

# make install [PREFIX=/usr/local] [DESTDIR=...]: the binary, man pages,
# completions, systemd units (ExecStart=$(BINDIR)/fcgivisor), logrotate,
# the log directory, and /etc/fcgivisor/fcgivisor.toml: installed only where
# none exists; otherwise as fcgivisor.toml.example beside it.
install: $(BIN)/fcgivisor share
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSCONFDIR)/logrotate.d $(DESTDIR)$(SYSCONFDIR)/fcgivisor
	install -d -m 0750 $(DESTDIR)$(LOGDIR)
	install -m 0755 $(BIN)/fcgivisor $(DESTDIR)$(BINDIR)/fcgivisor
	install -m 0644 $(BIN)/man/fcgivisor.1.gz $(DESTDIR)$(MANDIR)/man1/fcgivisor.1.gz
	install -m 0644 $(BIN)/man/fcgivisor.toml.5.gz $(DESTDIR)$(MANDIR)/man5/fcgivisor.toml.5.gz
	install -m 0644 $(BIN)/completion/fcgivisor.bash $(DESTDIR)$(BASHCOMPDIR)/fcgivisor
	install -m 0644 $(BIN)/completion/_fcgivisor $(DESTDIR)$(ZSHCOMPDIR)/_fcgivisor
	install -m 0644 $(BIN)/completion/fcgivisor.fish $(DESTDIR)$(FISHCOMPDIR)/fcgivisor.fish
	for u in $(UNITS); do \
		sed 's|/usr/local/bin/fcgivisor|$(BINDIR)/fcgivisor|g' contrib/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -m 0644 contrib/logrotate/fcgivisor $(DESTDIR)$(SYSCONFDIR)/logrotate.d/fcgivisor
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/fcgivisor/fcgivisor.toml ]; then \
		echo "install -m 0644 contrib/fcgivisor.toml $(DESTDIR)$(SYSCONFDIR)/fcgivisor/fcgivisor.toml.example (fcgivisor.toml exists: kept)"; \
		install -m 0644 contrib/fcgivisor.toml $(DESTDIR)$(SYSCONFDIR)/fcgivisor/fcgivisor.toml.example; \
	else \
		echo "install -m 0644 contrib/fcgivisor.toml $(DESTDIR)$(SYSCONFDIR)/fcgivisor/fcgivisor.toml"; \
		install -m 0644 contrib/fcgivisor.toml $(DESTDIR)$(SYSCONFDIR)/fcgivisor/fcgivisor.toml; \
	fi

# The files make install put there, except the configuration (and the
# directories, which may hold other files).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/fcgivisor $(DESTDIR)$(MANDIR)/man1/fcgivisor.1.gz $(DESTDIR)$(MANDIR)/man5/fcgivisor.toml.5.gz \
		$(DESTDIR)$(BASHCOMPDIR)/fcgivisor $(DESTDIR)$(ZSHCOMPDIR)/_fcgivisor $(DESTDIR)$(FISHCOMPDIR)/fcgivisor.fish \
		$(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS)) $(DESTDIR)$(SYSCONFDIR)/logrotate.d/fcgivisor

# make deb: dist/fcgivisor_$(DEB_VERSION)_ARCH.deb, laid out by make install
# with PREFIX=/usr (binary in /usr/bin, units in /lib/systemd/system) in
# $(DEB_ROOT), packaged as packaging/nfpm.yaml says.
deb:
	rm -rf $(DEB_ROOT) dist/fcgivisor_*.deb
	@$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(DEB_ROOT) PREFIX=/usr \
		ZSHCOMPDIR=/usr/share/zsh/vendor-completions
	@mkdir -p dist
	DEB_VERSION='$(DEB_VERSION)' ARCH=$$($(GO) env GOARCH) $(NFPM) package -f packaging/nfpm.yaml -p deb -t dist/
	@ls dist/fcgivisor_*.deb

bench: build
	bench/front-vs-nginx.sh

clean:
	rm -rf $(BIN) tmp dist

FORCE:
