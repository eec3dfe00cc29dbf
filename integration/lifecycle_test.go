package integration

// Workers that die, hang, crash or are too few; a stop with requests in
// flight; the environment workers get.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWorkerKilledIsReplaced: a worker killed with SIGKILL is reaped and
// replaced, and no request fails meanwhile.
func TestWorkerKilledIsReplaced(t *testing.T) {
	t.Parallel()
	in := start(t, options{})
	eachLang(t, func(t *testing.T, l lang) {
		// A few rounds: the request right after a death races with
		// fcgivisor noticing it, and must win every time.
		for round := range 3 {
			killAndReplace(t, in, l, round)
		}
	})
}

func killAndReplace(t *testing.T, in *instance, l lang, round int) {
	workers := defaultPool(l).workers
	// Every slot busy at once first, so that fcgivisor holds a kept
	// connection on each: the dead worker's connections are then all
	// stale, the case the retry rule is for.
	fillSlots(t, in, l)
	victim := in.workerPid(t, l)
	p, ok := identify(victim)
	if !ok {
		t.Fatalf("worker %d from ?pid is not running", victim)
	}
	if !in.isChild(victim) {
		t.Fatalf("%v from ?pid is not a child of fcgivisor (pid %d)", p, in.pid)
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Once it is dead (zombie or gone), requests must not notice: they
	// reach the other worker, or wait for the replacement.
	if !waitFor(eventTimeout, func() bool { return !p.alive() }) {
		t.Fatalf("%v survived SIGKILL", p)
	}
	for i := range 2*workers + 2 {
		resp, body := in.get(t, l.path("/after-kill"))
		if resp.StatusCode != http.StatusOK || string(body) != "hello from "+l.name+"\n" {
			t.Fatalf("round %d: request %d after killing worker %d: %d %q", round, i, victim, resp.StatusCode, clip(body))
		}
	}
	// fcgivisor reaps the dead worker (no zombie left) ...
	waitGone(t, p, "fcgivisor did not reap the killed worker")
	// ... and the pool is back to its size without it.
	var ws []procID
	if !waitFor(eventTimeout, func() bool {
		ws = in.poolWorkers(l)
		return len(ws) == workers
	}) {
		t.Fatalf("pool %s has workers %v, want %d", l.name, ws, workers)
	}
	// ?pid eventually shows a worker other than the dead one.
	if !waitFor(eventTimeout, func() bool { return in.workerPid(t, l) != victim }) {
		t.Fatalf("?pid keeps answering the killed pid %d", victim)
	}
}

// fillSlots runs workers×concurrency requests on l's pool at once.
func fillSlots(t *testing.T, in *instance, l lang) {
	t.Helper()
	p := defaultPool(l)
	errs := make(chan error, p.workers*p.concurrency)
	for range p.workers * p.concurrency {
		go func() {
			resp, body, err := in.do(context.Background(), http.MethodGet, l.path("/fill?sleep=100"), nil, nil)
			if err == nil && (resp.StatusCode != http.StatusOK || string(body) != "slept 100\n") {
				err = fmt.Errorf("%d %q", resp.StatusCode, clip(body))
			}
			errs <- err
		}()
	}
	for range p.workers * p.concurrency {
		if err := <-errs; err != nil {
			t.Fatalf("filling the slots: %v", err)
		}
	}
}

// TestEnvIsolation: a worker's environment is exactly the pool's env plus
// inherit_env; nothing else of fcgivisor's environment reaches it.
func TestEnvIsolation(t *testing.T) {
	t.Parallel()
	// A real notify socket, so an fcgivisor that talks sd_notify has
	// someone to talk to; drained and closed at the end.
	notifyDir := shortTempDir(t)
	notifyPath := filepath.Join(notifyDir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 4096)
		for {
			if _, _, err := notify.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { notify.Close(); <-drained })

	path := os.Getenv("PATH") + ":/fcgivisor-path-marker"
	in := start(t, options{
		env: []string{
			"PATH=" + path,
			"FCGIVISOR_SECRET=leak",
			"NOTIFY_SOCKET=" + notifyPath,
			"LISTEN_FDS=0", // systemd's socket activation, addressed to another process
			"LISTEN_PID=1",
			"LISTEN_FDNAMES=none",
		},
		pool: func(l lang, p *poolOpts) {
			p.inheritEnv = []string{"PATH"}
			if p.env == nil {
				p.env = map[string]string{}
			}
			p.env["FOO"] = "bar"
		},
	})
	eachLang(t, func(t *testing.T, l lang) {
		resp, body := in.get(t, l.path("/env?penv"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("?penv: %d %q", resp.StatusCode, clip(body))
		}
		env := parseLines(body)
		want := map[string]string{"FOO": "bar", "PATH": path}
		if l.name == "php" {
			want["PHP_FCGI_MAX_REQUESTS"] = "0"
		}
		for k, v := range want {
			if got := env[k]; !slices.Equal(got, []string{v}) {
				t.Errorf("worker env %s = %q, want %q", k, got, v)
			}
		}
		for k, v := range env {
			if _, ok := want[k]; !ok {
				t.Errorf("worker env has %s=%q; only %v may be passed", k, v, keys(want))
			}
		}
		if t.Failed() {
			t.Logf("worker environment:\n%s", body)
		}
	})
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestGracefulStop: SIGTERM with a request in flight lets it finish,
// stops accepting, then stops every worker and exits 0.
func TestGracefulStop(t *testing.T) {
	t.Parallel()
	eachLang(t, func(t *testing.T, l lang) {
		in := start(t, options{langs: []string{l.name}})
		workers := in.poolWorkers(l)
		if len(workers) != defaultPool(l).workers {
			t.Fatalf("pool %s runs %v, want %d workers", l.name, workers, defaultPool(l).workers)
		}

		type result struct {
			code int
			body string
			err  error
		}
		wrote := make(chan struct{})
		done := make(chan result, 1)
		go func() {
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) },
			})
			resp, body, err := in.do(ctx, http.MethodGet, l.path("/slow?sleep=1500"), nil, nil)
			r := result{body: string(body), err: err}
			if resp != nil {
				r.code = resp.StatusCode
			}
			done <- r
		}()
		select {
		case <-wrote:
		case r := <-done:
			t.Fatalf("the request ended before it was sent: %+v", r)
		case <-time.After(eventTimeout):
			t.Fatal("the request was not sent")
		}
		// No event tells when fcgivisor has handed the request to
		// the worker; 200 ms is ample on a 1500 ms request.
		time.Sleep(200 * time.Millisecond)
		in.snapshot()
		in.signal(syscall.SIGTERM)

		// fcgivisor stops accepting while the request still runs.
		refused := waitFor(eventTimeout, func() bool {
			c, err := net.DialTimeout("tcp", in.base[len("http://"):], time.Second)
			if err != nil {
				return true
			}
			c.Close()
			return false
		})
		var r result
		select {
		case r = <-done:
		case <-time.After(stopTimeout):
			t.Fatal("the in-flight request did not end")
		}
		if !refused {
			t.Errorf("fcgivisor still accepted connections %v after SIGTERM", eventTimeout)
		}
		if r.err != nil || r.code != http.StatusOK || r.body != "slept 1500\n" {
			t.Errorf("in-flight request: %d %q %v, want 200 %q", r.code, r.body, r.err, "slept 1500\n")
		}
		in.checkExit(t)
	})
}

// TestQueueTimeout: with its one slot busy, a pool answers 503 with
// Retry-After once queue_timeout has passed, not when the slot frees.
func TestQueueTimeout(t *testing.T) {
	t.Parallel()
	in := start(t, options{pool: oneSlot(`queue_timeout = "200ms"`)})
	eachLang(t, func(t *testing.T, l lang) {
		type result struct {
			code       int
			body       string
			retryAfter string
			took       time.Duration
			err        error
		}
		// Two at once: one gets the slot, the other waits in the queue.
		results := make(chan result, 2)
		for range 2 {
			go func() {
				t0 := time.Now()
				resp, body, err := in.do(context.Background(), http.MethodGet, l.path("/q?sleep=1000"), nil, nil)
				r := result{body: string(body), err: err, took: time.Since(t0)}
				if resp != nil {
					r.code = resp.StatusCode
					r.retryAfter = resp.Header.Get("Retry-After")
				}
				results <- r
			}()
		}
		var ok, unavailable []result
		for range 2 {
			r := <-results
			switch {
			case r.err != nil:
				t.Errorf("request failed: %v", r.err)
			case r.code == http.StatusOK && r.body == "slept 1000\n":
				ok = append(ok, r)
			case r.code == http.StatusServiceUnavailable:
				unavailable = append(unavailable, r)
			default:
				t.Errorf("unexpected answer %d %q", r.code, clip([]byte(r.body)))
			}
		}
		if len(ok) != 1 || len(unavailable) != 1 {
			t.Fatalf("got %d×200 and %d×503, want one of each: %+v %+v", len(ok), len(unavailable), ok, unavailable)
		}
		u := unavailable[0]
		if u.retryAfter == "" {
			t.Errorf("503 without a Retry-After header")
		}
		if u.took >= 900*time.Millisecond {
			t.Errorf("503 came after %v: the queue waited for the slot instead of queue_timeout (200ms)", u.took)
		}
		// The pool still serves.
		in.expect(t, l.path("/after"), http.StatusOK, "hello from "+l.name+"\n")
	})
}

// TestRequestTimeout: a request running past request_timeout gets 504,
// its worker is killed and replaced, and the pool serves again.
func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	in := start(t, options{pool: oneSlot(`request_timeout = "500ms"`)})
	eachLang(t, func(t *testing.T, l lang) {
		before, _ := identify(in.workerPid(t, l))
		t0 := time.Now()
		resp, body := in.get(t, l.path("/t?sleep=3000"))
		took := time.Since(t0)
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("?sleep=3000 past request_timeout 500ms: %d %q after %v, want 504", resp.StatusCode, clip(body), took)
		}
		if took < 450*time.Millisecond || took > 2500*time.Millisecond {
			t.Errorf("504 after %v, want about request_timeout (500ms)", took)
		}
		in.expect(t, l.path("/after"), http.StatusOK, "hello from "+l.name+"\n")
		if after := in.workerPid(t, l); after == before.pid {
			t.Errorf("the timed-out worker %d still serves", after)
		}
		waitGone(t, before, "the timed-out worker was not killed and reaped")
	})
}

// TestWorkerCrash: a worker that exits mid-request gives 502; fcgivisor
// replaces it and keeps serving.
func TestWorkerCrash(t *testing.T) {
	t.Parallel()
	in := start(t, options{pool: oneSlot()})
	eachLang(t, func(t *testing.T, l lang) {
		before, _ := identify(in.workerPid(t, l))
		resp, body := in.get(t, l.path("/x?exit"))
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("?exit: %d %q, want 502", resp.StatusCode, clip(body))
		}
		for i := range 3 {
			in.expect(t, l.path(fmt.Sprintf("/after-%d", i)), http.StatusOK, "hello from "+l.name+"\n")
		}
		if after := in.workerPid(t, l); after == before.pid {
			t.Errorf("?pid still answers %d, the worker that exited", after)
		}
		waitGone(t, before, "the crashed worker was not reaped")
		// The crash is in the log, with pool and pid.
		in.waitLog(t, fmt.Sprintf("(WARN or ERROR) about pid %d exiting", before.pid), func(r map[string]any) bool {
			pid, _ := r["pid"].(float64)
			return r["pool"] == l.name && int(pid) == before.pid &&
				(r["level"] == "WARN" || r["level"] == "ERROR") && recordMentions(r, "exit")
		})
		// The request crashed one worker, not more: a crash is no proof
		// that the request went unread, even when the worker's exit
		// resets the connection (php-cgi leaves the empty STDIN record
		// unread), so it is not sent again.
		crashes := 0
		for _, r := range records(in.out.String()) {
			if s, _ := r["status"].(string); r["pool"] == l.name && s == "exit status 3" {
				crashes++
			}
		}
		if crashes != 1 {
			t.Errorf("?exit crashed %d workers, want 1: the request was sent again after the crash", crashes)
		}
	})
}

// TestRuntimeDirInUse: a second fcgivisor on the same runtime_dir refuses
// to start and disturbs nothing; so does one whose HTTP port is taken.
func TestRuntimeDirInUse(t *testing.T) {
	t.Parallel()
	first := start(t, options{})
	sockets := func() []string {
		ents, _ := os.ReadDir(filepath.Join(first.runtimeDir, "w"))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	before := sockets()

	t.Run("runtime_dir", func(t *testing.T) {
		o := options{runtimeDir: first.runtimeDir}
		cfg := filepath.Join(t.TempDir(), "second.toml")
		if err := os.WriteFile(cfg, []byte(renderConfig(&o, first.runtimeDir, freePort(t))), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out := runCLI(t, nil, "", "run", "-c", cfg)
		if code != 1 {
			t.Errorf("second fcgivisor on %s: exit %d, want 1; output:\n%s", first.runtimeDir, code, out)
		}
		if !strings.Contains(out, first.runtimeDir) || !strings.Contains(out, "in use") {
			t.Errorf("second fcgivisor: the message does not say runtime_dir %s is in use:\n%s", first.runtimeDir, out)
		}
	})
	t.Run("port", func(t *testing.T) {
		o := options{}
		cfg := filepath.Join(t.TempDir(), "third.toml")
		if err := os.WriteFile(cfg, []byte(renderConfig(&o, shortTempDir(t), first.port)), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out := runCLI(t, nil, "", "run", "-c", cfg)
		if code != 1 {
			t.Errorf("fcgivisor on a taken port: exit %d, want 1; output:\n%s", code, out)
		}
		if !strings.Contains(out, strconv.Itoa(first.port)) || !strings.Contains(out, "address already in use") {
			t.Errorf("fcgivisor on a taken port: the message does not name the address and the reason:\n%s", out)
		}
	})

	// The first instance did not notice.
	if after := sockets(); !slices.Equal(before, after) {
		t.Errorf("worker sockets of the running instance changed: %v, then %v", before, after)
	}
	for _, l := range availableLangs() {
		first.expect(t, l.path("/still"), http.StatusOK, "hello from "+l.name+"\n")
	}
}

// TestStaleRuntimeDir: fcgivisor killed with SIGKILL takes its workers
// along (PDEATHSIG) and leaves sockets behind; a new one starts on the same
// runtime_dir anyway.
func TestStaleRuntimeDir(t *testing.T) {
	t.Parallel()
	runtimeDir := shortTempDir(t)
	first := start(t, options{runtimeDir: runtimeDir})
	var workers []procID
	for _, l := range availableLangs() {
		first.workerPid(t, l)
		workers = append(workers, first.poolWorkers(l)...)
	}
	if len(workers) == 0 {
		t.Fatal("no workers running")
	}
	first.signal(syscall.SIGKILL)
	first.checkExit(t) // waits for the exit and asserts every worker died with it

	stale, _ := filepath.Glob(filepath.Join(runtimeDir, "w", "*.sock"))
	if len(stale) == 0 {
		// Nothing left behind (sockets unlinked once accepted?): leave a
		// dead socket of our own where a worker's would be.
		t.Logf("no worker socket left in %s/w after SIGKILL; adding a stale one", runtimeDir)
		name := filepath.Join(runtimeDir, "w", "go-1.sock")
		l, err := net.Listen("unix", name)
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
		stale = append(stale, name)
	}
	t.Logf("stale sockets: %v", stale)
	second := start(t, options{runtimeDir: runtimeDir})
	for _, l := range availableLangs() {
		second.expect(t, l.path("/again"), http.StatusOK, "hello from "+l.name+"\n")
	}
}
