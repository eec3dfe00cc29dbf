package supervisor

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/internal/testkit"
)

// concurrently runs n requests for q at once and returns the bodies.
func (tp *testPool) concurrently(t *testing.T, n int, q string) []string {
	t.Helper()
	var wg sync.WaitGroup
	bodies := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); bodies[i], errs[i] = tp.get(context.Background(), q) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("request failed: %v", err)
		}
	}
	return bodies
}

func (tp *testPool) recycled(cause string) int64 {
	return tp.Status().Totals.Recycled[cause]
}

func TestOnDemandStartsAtZeroAndStopsIdle(t *testing.T) {
	tp := newTestPool(t, "fcgi", func(c *conf.Pool) {
		c.Scaling, c.MaxWorkers, c.IdleTimeout = conf.OnDemand, 4, 300*time.Millisecond
	})
	if pids := tp.Pids(); len(pids) != 0 {
		t.Fatalf("ondemand pool started with workers %v", pids)
	}
	if _, err := tp.get(context.Background(), "pid"); err != nil {
		t.Fatal(err)
	}
	if n := len(tp.Pids()); n != 1 {
		t.Fatalf("%d workers after one request, want 1", n)
	}
	testkit.Eventually(t, "idle worker stopped", func() bool { return len(tp.Pids()) == 0 && tp.recycled("idle") == 1 })
	// And it comes back for the next request.
	if _, err := tp.get(context.Background(), "pid"); err != nil {
		t.Fatal(err)
	}
}

func TestDynamicGrowsToMaxAndShrinksToFloor(t *testing.T) {
	tp := newTestPool(t, "fcgi", func(c *conf.Pool) {
		c.Scaling, c.Workers, c.MinWorkers, c.MaxWorkers = conf.Dynamic, 1, 1, 6
		c.MinIdle, c.MaxIdle, c.IdleTimeout = 1, 2, 400*time.Millisecond
	})
	if n := len(tp.Pids()); n != 1 {
		t.Fatalf("dynamic pool started with %d workers, want workers = 1", n)
	}
	// 8 slow requests at once: the pool grows to max_workers at once, not
	// one worker per tick, and says it hit the ceiling.
	start := time.Now()
	bodies := tp.concurrently(t, 8, "sleep=600&pid")
	distinct := map[string]bool{}
	for _, b := range bodies {
		distinct[b] = true
	}
	if len(distinct) != 6 {
		t.Fatalf("8 concurrent requests served by %d workers, want max_workers = 6", len(distinct))
	}
	// 8 requests of 600 ms on 6 workers take two rounds; a slow ramp would
	// take longer.
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("took %v", d)
	}
	if st := tp.Status(); st.Totals.MaxWorkersReached == 0 {
		t.Fatal("max_workers reached not counted")
	}
	// Idle again: back to the floor (min_workers 1, min_idle 1).
	testkit.Eventually(t, "shrink to the floor", func() bool { return len(tp.Pids()) == 1 })
	if tp.recycled("idle") != 5 {
		t.Fatalf("recycled idle = %d, want 5", tp.recycled("idle"))
	}
}

func TestMaxRequestsRecyclesWithoutFailures(t *testing.T) {
	tp := newTestPool(t, "fcgi", func(c *conf.Pool) { c.Workers, c.MaxWorkers, c.MaxRequests = 2, 2, 5 })
	var mu sync.Mutex
	served := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 15 {
				body, err := tp.get(context.Background(), "pid")
				if err != nil {
					t.Errorf("request failed: %v", err)
					return
				}
				mu.Lock()
				served[body]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for pid, n := range served {
		if n > 5 {
			t.Fatalf("worker %s served %d requests, max_requests is 5", pid, n)
		}
	}
	if len(served) < 12 {
		t.Fatalf("60 requests served by %d workers", len(served))
	}
	if r := tp.recycled("max_requests"); r < 10 {
		t.Fatalf("recycled max_requests = %d", r)
	}
}

// On fake time, with scripted processes.
func TestMaxLifetimeRecycles(t *testing.T) {
	o := newFakeOS(func(int) script { return script{} })
	inBubble(t, o, func(c *conf.Pool) { c.MaxLifetime = 800 * time.Millisecond }, func(t *testing.T, tp *testPool) {
		first := tp.Pids()[0]
		deadline := time.Now().Add(2500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if _, err := tp.get(context.Background(), "sleep=20"); err != nil {
				t.Fatalf("request failed during recycling: %v", err)
			}
		}
		pids := tp.Pids()
		if len(pids) != 1 || pids[0] == first {
			t.Fatalf("pids %v: the first worker %d was not recycled after max_lifetime", pids, first)
		}
		if tp.recycled("max_lifetime") < 1 {
			t.Fatal("max_lifetime recycling not counted")
		}
	})
}

func TestMaxMemoryRecycles(t *testing.T) {
	tp := newTestPool(t, "fcgi", func(c *conf.Pool) { c.MaxMemory = 48 << 20 })
	first := tp.Pids()[0]
	if _, err := tp.get(context.Background(), "grow"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "worker over max_memory recycled", func() bool {
		p := tp.Pids()
		return len(p) == 1 && p[0] != first
	})
	if tp.recycled("max_memory") != 1 {
		t.Fatalf("recycled max_memory = %d", tp.recycled("max_memory"))
	}
}

func TestStatusShowsBusyWorkerAndRequest(t *testing.T) {
	tp := newTestPool(t, "fcgi", func(c *conf.Pool) { c.Workers, c.MaxWorkers = 2, 2 })
	done := make(chan struct{})
	go func() { defer close(done); tp.get(context.Background(), "sleep=500") }()
	var st Status
	testkit.Eventually(t, "a busy worker", func() bool { st = tp.Status(); return st.BusySlots == 1 })
	if st.IdleSlots != 1 || len(st.Workers) != 2 || st.State != "running" || st.Mode != "static" {
		t.Fatalf("status %+v", st)
	}
	var busy *WorkerStatus
	for i := range st.Workers {
		if st.Workers[i].State == "busy" {
			busy = &st.Workers[i]
		}
		if st.Workers[i].RSSBytes <= 0 {
			t.Fatalf("worker %d RSS %d", st.Workers[i].Pid, st.Workers[i].RSSBytes)
		}
	}
	if busy == nil || busy.Request == nil || busy.Request.URI != "/?sleep=500" {
		t.Fatalf("busy worker %+v does not show its request", busy)
	}
	<-done
	tp.Observe(200)
	st = tp.Status()
	if st.Totals.Accepted != 1 || st.Totals.Responses[200] != 1 || st.Workers[0].Requests+st.Workers[1].Requests != 1 {
		t.Fatalf("totals %+v", st.Totals)
	}
}

// firstSignals is when each process got its first signal (zero: none).
func firstSignals(procs []*fakeProc) []time.Time {
	ts := make([]time.Time, len(procs))
	for i, p := range procs {
		if sigs, _ := p.sigs(); len(sigs) > 0 {
			ts[i] = sigs[0].at
		}
	}
	return ts
}

// On fake time: under a burst of slow requests a dynamic pool grows to
// max_workers at once, not a worker per tick, and counts hitting the
// ceiling. Idle again, the workers above max_idle stop excessIdleAfter
// after they went idle, the next one above min_idle after idle_timeout,
// and min_workers stay.
func TestDynamicScalingOnFakeTime(t *testing.T) {
	o := newFakeOS(func(int) script { return script{} })
	inBubble(t, o, func(c *conf.Pool) {
		c.Scaling, c.Workers, c.MinWorkers, c.MaxWorkers = conf.Dynamic, 1, 1, 6
		c.MinIdle, c.MaxIdle, c.IdleTimeout = 1, 2, 3*time.Second
	}, func(t *testing.T, tp *testPool) {
		t0 := time.Now()
		if n := len(o.started()); n != 1 {
			t.Fatalf("dynamic pool started %d workers, want workers = 1", n)
		}
		var mu sync.Mutex
		var ends []time.Time
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, err := tp.get(context.Background(), "sleep=600"); err != nil {
					t.Error(err)
				}
				mu.Lock()
				ends = append(ends, time.Now())
				mu.Unlock()
			})
		}
		wg.Wait()
		procs := o.started()
		for _, p := range procs {
			if !p.started.Equal(t0) {
				t.Fatalf("workers started at %v, want all 6 at once", since(t0, startTimes(procs)))
			}
		}
		if len(procs) != 6 {
			t.Fatalf("%d workers for 8 concurrent requests, want max_workers = 6", len(procs))
		}
		slices.SortFunc(ends, time.Time.Compare)
		ms := time.Millisecond
		for i, end := range ends {
			if want := 600 * ms * time.Duration(1+i/6); end.Sub(t0) != want {
				t.Fatalf("requests done at %v, want 6 at 600ms and 2 at 1.2s", since(t0, ends))
			}
		}
		if st := tp.Status(); st.Totals.MaxWorkersReached != 2 {
			t.Fatalf("max_workers reached %d, want 2: the requests that waited for a worker to finish", st.Totals.MaxWorkersReached)
		}

		time.Sleep(5 * time.Second)
		stops := firstSignals(procs)
		slices.SortFunc(stops, time.Time.Compare)
		// Four went idle at 600 ms, two at 1.2 s; ticks come every 100 ms.
		in := func(at time.Time, from time.Duration) bool {
			d := at.Sub(t0)
			return d >= from && d <= from+tickEvery
		}
		if !stops[0].IsZero() || stops[1].IsZero() {
			t.Fatalf("stops at %v: want one worker left running", since(t0, stops))
		}
		above := 0
		for _, at := range stops[1:5] {
			if in(at, 600*ms+excessIdleAfter) {
				above++
			}
		}
		if above != 4 || !in(stops[5], 1200*ms+3*time.Second) {
			t.Fatalf("stops at %v: want four 1s after 600ms (above max_idle), one 3s after 1.2s (idle_timeout)", since(t0, stops))
		}
		if n := len(tp.Pids()); n != 1 || tp.recycled("idle") != 5 {
			t.Fatalf("%d workers left, %d recycled idle; want 1 (min_workers) and 5", n, tp.recycled("idle"))
		}
	})
}

// On fake time: an ondemand pool starts no worker until a request queues,
// starts one for it at once, stops it idle_timeout after it went idle, and
// starts another for the next request.
func TestOnDemandOnFakeTime(t *testing.T) {
	o := newFakeOS(func(int) script { return script{} })
	inBubble(t, o, func(c *conf.Pool) {
		c.Scaling, c.MaxWorkers, c.IdleTimeout = conf.OnDemand, 4, 300*time.Millisecond
	}, func(t *testing.T, tp *testPool) {
		t0 := time.Now()
		if n := len(o.started()); n != 0 {
			t.Fatalf("ondemand pool started %d workers", n)
		}
		if _, err := tp.get(context.Background(), "sleep=50"); err != nil {
			t.Fatal(err)
		}
		idle := time.Now()
		procs := o.started()
		if len(procs) != 1 || !procs[0].started.Equal(t0) || idle.Sub(t0) != 50*time.Millisecond {
			t.Fatalf("%d workers started at %v, request done at %v; want one at 0, done at 50ms", len(procs), since(t0, startTimes(procs)), idle.Sub(t0))
		}
		time.Sleep(300*time.Millisecond - time.Millisecond)
		if n := len(tp.Pids()); n != 1 {
			t.Fatalf("%d workers before idle_timeout, want 1", n)
		}
		time.Sleep(tickEvery + time.Millisecond)
		if n := len(tp.Pids()); n != 0 || tp.recycled("idle") != 1 {
			t.Fatalf("%d workers, recycled idle %d, a tick past idle_timeout; want 0 and 1", n, tp.recycled("idle"))
		}
		if _, err := tp.get(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
		if n := len(o.started()); n != 2 {
			t.Fatalf("%d workers started in all, want a second for the next request", n)
		}
	})
}

func startTimes(procs []*fakeProc) []time.Time {
	ts := make([]time.Time, len(procs))
	for i, p := range procs {
		ts[i] = p.started
	}
	return ts
}
