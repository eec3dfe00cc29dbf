package integration

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Scaling pools by load and recycling workers, with real C libfcgi
// workers.

func TestOnDemandStartsWithZeroWorkers(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"c"}, pool: func(l lang, p *poolOpts) {
		p.extra = append(p.extra, `scaling = "ondemand"`, `max_workers = 4`, `idle_timeout = "500ms"`)
	}})
	if ws := in.poolWorkers(c); len(ws) != 0 {
		t.Fatalf("ondemand pool has workers before any request: %v", ws)
	}
	resp, body, err := in.do(context.Background(), http.MethodGet, c.path("/x?pid"), nil, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v %v %q", err, resp, body)
	}
	if ws := in.poolWorkers(c); len(ws) != 1 {
		t.Fatalf("%d workers after the first request, want 1", len(ws))
	}
	if !waitFor(10*time.Second, func() bool { return len(in.poolWorkers(c)) == 0 }) {
		t.Fatalf("idle worker not stopped after idle_timeout: %v", in.poolWorkers(c))
	}
}

func TestDynamicGrowsUnderLoadAndShrinks(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"c"}, pool: func(l lang, p *poolOpts) {
		p.workers = 1
		p.extra = append(p.extra, `scaling = "dynamic"`, `min_workers = 1`, `max_workers = 8`,
			`min_idle = 1`, `max_idle = 2`, `idle_timeout = "1s"`)
	}})
	if n := len(in.poolWorkers(c)); n != 1 {
		t.Fatalf("dynamic pool starts with %d workers, want workers = 1", n)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body, err := in.do(context.Background(), http.MethodGet, c.path("/x?sleep=500"), nil, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("request: %v %v %q", err, resp, body)
			}
		}()
	}
	// While the 16 are in flight the pool is at max_workers.
	if !waitFor(5*time.Second, func() bool { return len(in.poolWorkers(c)) == 8 }) {
		t.Fatalf("pool did not grow to max_workers 8: %d workers", len(in.poolWorkers(c)))
	}
	wg.Wait()
	if !waitFor(10*time.Second, func() bool { return len(in.poolWorkers(c)) == 1 }) {
		t.Fatalf("pool did not shrink to its floor after idle_timeout: %d workers", len(in.poolWorkers(c)))
	}
}

func TestMaxRequestsRecyclesWithoutFailedRequests(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"c"}, pool: func(l lang, p *poolOpts) {
		p.workers = 2
		p.extra = append(p.extra, `max_requests = 5`)
	}})
	var failed, ok atomic.Int64
	var mu sync.Mutex
	perPid := map[string]int{}
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				resp, body, err := in.do(context.Background(), http.MethodGet, c.path("/x?pid"), nil, nil)
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				ok.Add(1)
				mu.Lock()
				perPid[string(body)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d ok, %d failed, %d workers", ok.Load(), failed.Load(), len(perPid))
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed while workers were recycled", failed.Load())
	}
	for pid, n := range perPid {
		if n > 5 {
			t.Fatalf("worker %s served %d requests; max_requests is 5", strings.TrimSpace(pid), n)
		}
	}
	if int64(len(perPid)) < ok.Load()/5 {
		t.Fatalf("%d requests by %d workers", ok.Load(), len(perPid))
	}
}

// A command that exits at once does not make fcgivisor spin: it backs off,
// marks the pool failing, and answers its requests 503 at once.
func TestCrashingCommandBacksOff(t *testing.T) {
	lang{"c"}.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"c"}, routes: `[[http.route]]
prefix = "/crash/"
pool = "crash"

[pool.crash]
command = ["/bin/false"]
user = "root"
queue_timeout = "3s"
`})
	start := time.Now()
	var fast bool
	for time.Since(start) < 5*time.Second {
		t0 := time.Now()
		resp, _, err := in.do(context.Background(), http.MethodGet, "/crash/x", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch resp.StatusCode {
		case http.StatusServiceUnavailable:
		case http.StatusBadGateway:
			// Before the pool is known to be failing, a request may reach a
			// worker in the instant it dies.
			if time.Since(start) > time.Second {
				t.Fatalf("502 from the crashing pool after %v", time.Since(start))
			}
		default:
			t.Fatalf("status %d from a pool that cannot start, want 503", resp.StatusCode)
		}
		if resp.StatusCode == http.StatusServiceUnavailable && time.Since(t0) < 200*time.Millisecond {
			fast = true
			break
		}
	}
	if !fast {
		t.Fatal("no fast 503 from the failing pool")
	}
	time.Sleep(1500 * time.Millisecond)
	exits := 0
	for _, r := range records(in.out.String()) {
		if r["pool"] == "crash" && r["msg"] == "worker exited unexpectedly" {
			exits++
		}
	}
	t.Logf("%d exits of the crashing worker in %v", exits, time.Since(start).Round(time.Millisecond))
	if exits < 3 || exits > 12 {
		t.Fatalf("%d exits in ~%v: want a few (backoff), not a spin", exits, time.Since(start).Round(time.Second))
	}
	if !strings.Contains(in.out.String(), "pool failing") {
		t.Fatal("no log of the pool failing")
	}
	// The healthy pool is unaffected.
	if resp, _, err := in.do(context.Background(), http.MethodGet, "/c/", nil, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthy pool: %v %v", err, resp)
	}
}

// max_memory: a worker whose RSS grows past it is recycled (replacement
// first), without failing the request that made it grow or the next ones.
func TestMaxMemoryRecyclesGrowingWorker(t *testing.T) {
	goLang := lang{"go"}
	goLang.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"go"}, pool: func(l lang, p *poolOpts) {
		p.extra = append(p.extra, `max_memory = "64MiB"`)
	}})
	_, body, err := in.do(context.Background(), http.MethodGet, goLang.path("/x?pid"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := strings.TrimSpace(string(body))
	resp, body, err := in.do(context.Background(), http.MethodGet, goLang.path("/x?grow=96"), nil, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("grow: %v %v %q", err, resp, body)
	}
	if !waitFor(10*time.Second, func() bool {
		_, body, err := in.do(context.Background(), http.MethodGet, goLang.path("/x?pid"), nil, nil)
		return err == nil && strings.TrimSpace(string(body)) != first
	}) {
		t.Fatalf("worker %s over max_memory was not replaced", first)
	}
	if !strings.Contains(in.out.String(), `"cause":"max_memory"`) {
		t.Fatal("no max_memory recycling in the log")
	}
}
