package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rewrite replaces the instance's config file with one built from o (same
// runtime dir and port).
func (in *instance) rewrite(t *testing.T, o options) {
	t.Helper()
	if err := os.WriteFile(in.configPath, []byte(renderConfig(&o, in.runtimeDir, in.port)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// editConfig rewrites the instance's config file with each old string
// replaced once by its new one, in order (pairs as for
// strings.NewReplacer), and returns the file as it was. It fails t when an
// old string is not in the file.
func (in *instance) editConfig(t *testing.T, oldnew ...string) []byte {
	t.Helper()
	good, err := os.ReadFile(in.configPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(good)
	for i := 0; i+1 < len(oldnew); i += 2 {
		if !strings.Contains(cfg, oldnew[i]) {
			t.Fatalf("could not rewrite the config: no %q in\n%s", oldnew[i], cfg)
		}
		cfg = strings.Replace(cfg, oldnew[i], oldnew[i+1], 1)
	}
	if err := os.WriteFile(in.configPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return good
}

// reloadCmd runs `fcgivisor reload` and returns its output and error.
func (in *instance) reloadCmd() (string, error) {
	out, err := exec.Command(fcgivisorBin, "reload", "-c", in.configPath).CombinedOutput()
	return string(out), err
}

// reload runs `fcgivisor reload` and fails t unless it succeeds.
func (in *instance) reload(t *testing.T) {
	t.Helper()
	if out, err := in.reloadCmd(); err != nil {
		t.Fatalf("reload: %v %q", err, out)
	}
}

// keptServing asserts what a refused reload leaves: l's pool answers five
// requests in a row, and every worker of before still runs.
func (in *instance) keptServing(t *testing.T, l lang, before map[int]bool) {
	t.Helper()
	for range 5 {
		if resp, _, err := in.do(context.Background(), http.MethodGet, l.path("/x"), nil, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("serving after a refused reload: %v %v", err, resp)
		}
	}
	keptAll(t, before, pidSet(in.poolWorkers(l)), "a refused reload replaced worker %d")
}

// keptAll fails t when a pid of before is not in after; msg has a %d for
// the pid.
func keptAll(t *testing.T, before, after map[int]bool, msg string) {
	t.Helper()
	for pid := range before {
		if !after[pid] {
			t.Fatalf(msg, pid)
		}
	}
}

func pidSet(ws []procID) map[int]bool {
	m := map[int]bool{}
	for _, w := range ws {
		m[w.pid] = true
	}
	return m
}

func TestReloadRollsOnlyTheChangedPool(t *testing.T) {
	c, goLang := lang{"c"}, lang{"go"}
	c.need(t)
	t.Parallel()
	o := options{langs: []string{"c", "go"}, pool: func(l lang, p *poolOpts) {
		if l.name == "c" {
			p.env = map[string]string{"GEN": "1"}
		}
	}}
	in := start(t, o)
	cBefore, goBefore := pidSet(in.poolWorkers(c)), pidSet(in.poolWorkers(goLang))
	o.pool = func(l lang, p *poolOpts) {
		if l.name == "c" {
			p.env = map[string]string{"GEN": "2"}
		}
	}
	in.rewrite(t, o)
	if out, err := in.reloadCmd(); err != nil || strings.TrimSpace(out) != "reloaded" {
		t.Fatalf("fcgivisor reload: %v %q", err, out)
	}
	resp, body, err := in.do(context.Background(), http.MethodGet, c.path("/x?penv"), nil, nil)
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), "GEN=2") {
		t.Fatalf("c pool after reload: %v %v %q", err, resp, body)
	}
	if !waitFor(10*time.Second, func() bool {
		now := pidSet(in.poolWorkers(c))
		for pid := range now {
			if cBefore[pid] {
				return false
			}
		}
		return len(now) == len(cBefore)
	}) {
		t.Fatalf("c workers %v after the reload, before %v: want all new", pidSet(in.poolWorkers(c)), cBefore)
	}
	goAfter := pidSet(in.poolWorkers(goLang))
	if len(goAfter) != len(goBefore) {
		t.Fatalf("go workers changed: %v -> %v", goBefore, goAfter)
	}
	keptAll(t, goBefore, goAfter, "unchanged go pool lost worker %d in the reload")
}

func TestInvalidReloadChangesNothing(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"c"}})
	before := pidSet(in.poolWorkers(c))
	in.editConfig(t, "[pool.c]", "[pool.c]\nworkerz = 3")
	out, err := in.reloadCmd()
	if err == nil || !strings.Contains(out, "workerz") || !strings.Contains(out, "unknown key") {
		t.Fatalf("fcgivisor reload of an invalid file: %v %q; want exit 1 naming the key", err, out)
	}
	// SIGHUP with the same file: refused and logged, still serving.
	in.signal(syscall.SIGHUP)
	if !waitFor(5*time.Second, func() bool { return strings.Count(in.out.String(), "reload refused") >= 2 }) {
		t.Fatal("SIGHUP with an invalid file was not logged as refused")
	}
	in.keptServing(t, c, before)
}

func TestReloadAddsAndRemovesPoolsAndRoutes(t *testing.T) {
	c, goLang := lang{"c"}, lang{"go"}
	c.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"c"}})
	if resp, _, _ := in.do(context.Background(), http.MethodGet, goLang.path("/x"), nil, nil); resp == nil || resp.StatusCode != 404 {
		t.Fatalf("go route before it exists: %v", resp)
	}
	in.rewrite(t, options{langs: []string{"c", "go"}})
	in.reload(t)
	resp, body, err := in.do(context.Background(), http.MethodGet, goLang.path("/x"), nil, nil)
	if err != nil || resp.StatusCode != 200 || string(body) != "hello from go\n" {
		t.Fatalf("added go pool: %v %v %q", err, resp, body)
	}
	cWorkers := in.poolWorkers(c)
	in.rewrite(t, options{langs: []string{"go"}})
	in.reload(t)
	if resp, _, _ := in.do(context.Background(), http.MethodGet, c.path("/x"), nil, nil); resp == nil || resp.StatusCode != 404 {
		t.Fatalf("removed c route: %v", resp)
	}
	if !waitFor(10*time.Second, func() bool { return len(in.poolWorkers(c)) == 0 }) {
		t.Fatalf("removed pool's workers %v still running (were %v)", in.poolWorkers(c), cWorkers)
	}
}

// 20 reloads, SIGHUP and `fcgivisor reload` mixed, each giving the C pool
// a new generation, while 8 clients send 5 ms requests: none fails.
func TestReloadUnderLoadLosesNothing(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	gen := 0
	o := func() options {
		g := strconv.Itoa(gen)
		return options{langs: []string{"c"}, pool: func(l lang, p *poolOpts) {
			p.workers = 4
			p.env = map[string]string{"GEN": g}
		}}
	}
	in := start(t, o())
	load := startLoad(t, in, 8, c.path("/x?sleep=5"))
	// 20 reloads, one every 500 ms: the count this test requires, checked
	// against the log below.
	for i := range 20 {
		time.Sleep(500 * time.Millisecond)
		gen++
		in.rewrite(t, o())
		if i%2 == 0 {
			in.signal(syscall.SIGHUP)
		} else if out, err := in.reloadCmd(); err != nil {
			t.Errorf("reload %d: %v %q", i, err, out)
		}
	}
	time.Sleep(250 * time.Millisecond)
	ok, failed := load.stop()
	t.Logf("%d requests ok, %d failed during 20 reloads", ok, failed)
	if failed != 0 {
		t.Fatalf("%d requests failed during reloads", failed)
	}
	waitFor(5*time.Second, func() bool { return strings.Count(in.out.String(), `"msg":"reloaded"`) >= 20 })
	if n := strings.Count(in.out.String(), `"msg":"reloaded"`); n != 20 {
		t.Fatalf("%d reloads logged, want 20", n)
	}
}

// A reload whose new generation dies at start is refused: the running
// workers are kept and keep serving.
func TestReloadToBrokenCommandKeepsRunningWorkers(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"c"}})
	before := pidSet(in.poolWorkers(c))
	in.editConfig(t, "command = "+tomlStrings(c.command()), `command = ["/bin/false"]`)
	out, err := in.reloadCmd()
	if err == nil || !strings.Contains(out, "died at start") {
		t.Fatalf("fcgivisor reload to /bin/false: %v %q; want refused", err, out)
	}
	in.keptServing(t, c, before)
}

// Settings that only affect scaling and timeouts apply without new
// workers; listen addresses added by a reload open, removed ones close,
// and the address that stays keeps serving.
func TestReloadLiveSettingsAndListeners(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"c"}})
	before := pidSet(in.poolWorkers(c))
	extra := freePort(t)
	listen := fmt.Sprintf("listen = [%q]", fmt.Sprintf("127.0.0.1:%d", in.port))
	both := fmt.Sprintf("listen = [%q, %q]", fmt.Sprintf("127.0.0.1:%d", in.port), fmt.Sprintf("127.0.0.1:%d", extra))
	good := in.editConfig(t, listen, both, "[pool.c]", "[pool.c]\nrequest_timeout = \"7s\"\nmax_requests = 100000")
	in.reload(t)
	// The log line comes through a pipe: it may follow the reload's answer.
	if !waitFor(5*time.Second, func() bool { return strings.Contains(in.out.String(), `"updated":["c"]`) }) {
		t.Fatal("the timeout change was not applied live (updated=[c])")
	}
	after := pidSet(in.poolWorkers(c))
	keptAll(t, before, after, "a live-settings reload replaced worker %d")
	// New connections each time: a removed address stops accepting, while
	// connections it already had may finish (drain).
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(port int) error {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/c/x", port))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(extra); err != nil {
		t.Fatalf("added listen address: %v", err)
	}
	os.WriteFile(in.configPath, good, 0o644)
	in.reload(t)
	if err := get(extra); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("removed listen address still answers: %v", err)
	}
	if err := get(in.port); err != nil {
		t.Fatalf("the address that stayed: %v", err)
	}
}
