package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/internal/testkit"
	"github.com/fcgivisor/fcgivisor/internal/testlog"
)

// burst sends n requests for q at once and waits for them all.
func burst(t *testing.T, tp *testPool, n int, q string) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := tp.get(context.Background(), q); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// On fake time, for each scaling mode with a ceiling of 2 workers: 5
// requests of 600 ms at once. 2 are served at once, 3 wait because the pool
// is at its ceiling: max_workers_reached counts each of them once (issue
// 13: it counted scaler passes, 21 for a burst of 6), the queue peaks at
// 3, 2 workers are busy at most, and the histograms count 5 requests with
// the waits and durations fake time makes exact.
func TestMaxWorkersReachedOncePerWaitingRequest(t *testing.T) {
	for _, mode := range []struct {
		name     string
		edit     func(*conf.Pool)
		maxQueue []int64 // the queue's peak depends on when the scaler runs
	}{
		{"static", func(c *conf.Pool) { c.Workers, c.MaxWorkers = 2, 2 }, []int64{3}},
		{"dynamic", func(c *conf.Pool) { c.Scaling, c.Workers, c.MaxWorkers = conf.Dynamic, 1, 2 }, []int64{3, 4}},
		// No worker before a request queues: up to all 5 queue at first.
		{"ondemand", func(c *conf.Pool) { c.Scaling, c.MaxWorkers = conf.OnDemand, 2 }, []int64{3, 4, 5}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			o := newFakeOS(func(int) script { return script{} })
			inBubble(t, o, mode.edit, func(t *testing.T, tp *testPool) {
				burst(t, tp, 5, "sleep=600")
				st := tp.Status()
				if st.Totals.MaxWorkersReached != 3 || !slices.Contains(mode.maxQueue, st.MaxQueue) || st.MaxBusyWorkers != 2 || st.Totals.Accepted != 5 {
					t.Errorf("max_workers_reached %d, max queue %d, max busy %d, accepted %d; want 3, one of %v, 2, 5",
						st.Totals.MaxWorkersReached, st.MaxQueue, st.MaxBusyWorkers, st.Totals.Accepted, mode.maxQueue)
				}
				// Waits: 0, 0, 0.6, 0.6, 1.2 s. Durations: 5 × 0.6 s.
				qw, rd := st.QueueWait, st.RequestDuration
				if qw.Count != 5 || rd.Count != 5 || qw.Sum != 2.4 || rd.Sum != 3 {
					t.Errorf("queue wait %d in %vs, durations %d in %vs; want 5 in 2.4s, 5 in 3s", qw.Count, qw.Sum, rd.Count, rd.Sum)
				}
				if got, want := bucketsOf(qw), map[float64]int64{0.001: 2, 0.5: 2, 1: 4, 2.5: 5}; !subset(want, got) {
					t.Errorf("queue wait buckets %v, want %v", got, want)
				}
				if got, want := bucketsOf(rd), map[float64]int64{0.5: 0, 1: 5}; !subset(want, got) {
					t.Errorf("duration buckets %v, want %v", got, want)
				}
				if st.Queue != 0 || st.BusyWorkers != 0 {
					t.Errorf("after the burst: queue %d, busy workers %d", st.Queue, st.BusyWorkers)
				}
			})
		})
	}
}

func bucketsOf(h Histogram) map[float64]int64 {
	m := map[float64]int64{}
	for i, b := range h.Bounds {
		m[b] = h.Counts[i]
	}
	return m
}

func subset(want, got map[float64]int64) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// TestStatsSharedByGenerations: a pool's generations (a reload that needs
// new workers) count into the same Stats, so its counters go on; each
// generation keeps its own start.
func TestStatsSharedByGenerations(t *testing.T) {
	set := NewStatsSet()
	cfg := testConf("/bin/true", nil, nil)
	env := Env{Stats: set, Getenv: func(string) (string, bool) { return "", false }}
	env.Logger = slog.New(slog.DiscardHandler)
	old := NewPool(cfg, env)
	time.Sleep(2 * time.Millisecond)
	next := NewPool(cfg, env)
	other := NewPool(testConf("/bin/true", nil, func(c *conf.Pool) { c.Name = "u" }), env)
	old.Observe(200)
	next.Observe(200)
	other.Observe(500)
	a, b := old.Status(), next.Status()
	if a.Totals.Responses[200] != 2 || b.Totals.Responses[200] != 2 || other.Status().Totals.Responses[200] != 0 {
		t.Errorf("responses: old %v, next %v, other %v; want 2, 2, 0", a.Totals.Responses, b.Totals.Responses, other.Status().Totals.Responses)
	}
	if !a.StartTime.Equal(b.StartTime) || !b.GenerationStartTime.After(a.GenerationStartTime) {
		t.Errorf("start %v / %v, generation start %v / %v: want one start, two generations", a.StartTime, b.StartTime, a.GenerationStartTime, b.GenerationStartTime)
	}
}

// TestLastRequestCPUAndMemory: a real worker that burns CPU for a request
// shows it: in progress, the CPU so far; finished, as its last request
// with its duration, CPU seconds (its process CPU clock) and
// RSS at the end.
func TestLastRequestCPUAndMemory(t *testing.T) {
	tp := newTestPool(t, "fcgi", nil)
	done := make(chan error, 1)
	go func() { _, err := tp.get(context.Background(), "spin=600"); done <- err }()
	testkit.Eventually(t, "the request in progress using CPU", func() bool {
		w := tp.Status().Workers[0]
		return w.Request != nil && w.Request.CPUSeconds >= 0.1
	})
	if w := tp.Status().Workers[0]; w.Request.Method != "GET" || w.Request.URI != "/?spin=600" || w.State != "busy" {
		t.Errorf("in progress: %+v %+v", w, *w.Request)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	w := tp.Status().Workers[0]
	last := w.LastRequest
	if w.Request != nil || last == nil {
		t.Fatalf("after the request: in progress %+v, last %+v", w.Request, last)
	}
	// The worker spun for 0.6 s of CPU time; /proc counts it in 1/100 s.
	if last.Method != "GET" || last.URI != "/?spin=600" || last.Seconds < 0.59 || last.Seconds > 30 ||
		last.CPUSeconds < 0.58 || last.CPUSeconds > last.Seconds+0.02 || last.RSSBytes <= 0 {
		t.Errorf("last request %+v: want GET /?spin=600, 0.6-30 s, CPU from 0.58 s to its duration, RSS > 0", *last)
	}
	// The next request on the slot starts from the clock read at the end
	// of that one (no second read): its own CPU is small, not the 0.6 s
	// before it.
	if _, err := tp.get(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if next := tp.Status().Workers[0].LastRequest; next == nil || next.URI != "/?" || next.CPUSeconds > 0.1 || next.CPUSeconds < 0 {
		t.Errorf("the request after it: %+v, want GET /? with under 0.1 s of CPU", next)
	}
}

// logRecords returns the log lines with msg.
func logRecords(lb *testlog.Buffer, msg string) []string {
	var out []string
	for _, l := range strings.Split(lb.String(), "\n") {
		if strings.Contains(l, ` msg="`+msg+`"`) || strings.Contains(l, ` msg=`+msg+` `) {
			out = append(out, l)
		}
	}
	return out
}

// On fake time: a request past request_slowlog_timeout is logged once,
// at the timeout, with its worker, method, URI and elapsed time; counted;
// and slowlog_command runs once with {pid} replaced, its output logged
// with the request. A request under the timeout is none of that.
func TestSlowRequestLogOnFakeTime(t *testing.T) {
	o := newFakeOS(func(int) script { return script{} })
	o.cmd = func(argv []string) (string, bool) { return "#0 main () at worker.c:42\n", false }
	inBubble(t, o, func(c *conf.Pool) {
		c.Workers, c.MaxWorkers = 2, 2
		c.RequestSlowlogTimeout, c.SlowlogCommand = time.Second, []string{"cat", "/proc/{pid}/stack", "pid={pid}"}
	}, func(t *testing.T, tp *testPool) {
		t0 := time.Now()
		var wg sync.WaitGroup
		wg.Go(func() { tp.get(context.Background(), "sleep=2500") })
		wg.Go(func() { tp.get(context.Background(), "sleep=900") })
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		slow := logRecords(tp.log, "slow request")
		if len(slow) != 1 {
			t.Fatalf("%d slow-request records a moment past the timeout, want 1:\n%s", len(slow), tp.log)
		}
		pid := busyPid(t, tp, "/?sleep=2500")
		for _, want := range []string{"level=WARN", "pool=t", "pid=" + strconv.Itoa(pid), "method=GET", `uri="/?sleep=2500"`, "elapsed_seconds=1 ", "request_slowlog_timeout=1s"} {
			if !strings.Contains(slow[0]+" ", want) {
				t.Errorf("slow-request record lacks %q: %s", want, slow[0])
			}
		}
		wg.Wait()
		if d := time.Since(t0); d != 2500*time.Millisecond {
			t.Errorf("the slow request took %v, want 2.5s: the log does not end it", d)
		}
		cmds := o.commands()
		p := strconv.Itoa(pid)
		if len(cmds) != 1 || !slices.Equal(cmds[0].argv, []string{"cat", "/proc/" + p + "/stack", "pid=" + p}) {
			t.Fatalf("slowlog_commands run: %v, want one: cat /proc/%s/stack pid=%s", argvs(cmds), p, p)
		}
		out := logRecords(tp.log, "slowlog_command output")
		if len(out) != 1 || !strings.Contains(out[0], `output="#0 main () at worker.c:42\n"`) || !strings.Contains(out[0], `uri="/?sleep=2500"`) ||
			!strings.Contains(out[0], "status=\"exit status 0\"") || !strings.Contains(out[0], "truncated=false") {
			t.Errorf("slowlog_command output records: %q", out)
		}
		if st := tp.Status(); st.Totals.SlowRequests != 1 {
			t.Errorf("slow_requests %d, want 1", st.Totals.SlowRequests)
		}
	})
}

// busyPid is the pid of the worker serving uri.
func busyPid(t *testing.T, tp *testPool, uri string) int {
	t.Helper()
	for _, w := range tp.Status().Workers {
		if w.Request != nil && w.Request.URI == uri {
			return w.Pid
		}
	}
	t.Fatalf("no worker serves %s", uri)
	return 0
}

func argvs(cmds []*fakeCmd) [][]string {
	var out [][]string
	for _, c := range cmds {
		out = append(out, c.argv)
	}
	return out
}

// On fake time: a slowlog_command that hangs is killed (its group) after
// slowlogTimeout and its status logged, while the pool serves on: nothing
// waits for it under the pool's lock. At most maxSlowlogRuns run at once;
// a slow request beyond them says it skipped the command, and is counted
// all the same.
func TestSlowlogCommandBoundedOnFakeTime(t *testing.T) {
	o := newFakeOS(func(int) script { return script{} })
	o.cmd = func([]string) (string, bool) { return "attached\n", true }
	const n = maxSlowlogRuns + 2
	inBubble(t, o, func(c *conf.Pool) {
		c.Workers, c.MaxWorkers, c.RequestTimeout = n+1, n+1, time.Minute
		c.RequestSlowlogTimeout, c.SlowlogCommand = time.Second, []string{"cat", "{pid}"}
	}, func(t *testing.T, tp *testPool) {
		t0 := time.Now()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() { tp.get(context.Background(), "sleep=15000") })
		}
		time.Sleep(2 * time.Second)
		// The commands hang: the pool answers, and serves.
		if st := tp.Status(); st.BusyWorkers != n || st.Totals.SlowRequests != n {
			t.Errorf("with the commands running: %d busy, %d slow; want %d and %d", st.BusyWorkers, st.Totals.SlowRequests, n, n)
		}
		if body, err := tp.get(context.Background(), "sleep=10"); err != nil || !strings.HasPrefix(body, "pid=") {
			t.Errorf("a request while slowlog_commands hang: %q %v", body, err)
		}
		if cmds, skipped := o.commands(), logRecords(tp.log, "slowlog_command skipped: as many runs as allowed are going on"); len(cmds) != maxSlowlogRuns || len(skipped) != n-maxSlowlogRuns {
			t.Errorf("%d commands started, %d skipped; want %d and %d", len(cmds), len(skipped), maxSlowlogRuns, n-maxSlowlogRuns)
		}
		wg.Wait()
		for _, c := range o.commands() {
			sigs, _ := c.sigs()
			if len(sigs) == 0 || sigs[0].sig != syscall.SIGKILL || sigs[0].at.Sub(t0) != time.Second+slowlogTimeout {
				t.Errorf("command %v got %v, want SIGKILL at %v", c.argv, sigs, time.Second+slowlogTimeout)
			}
		}
		out := logRecords(tp.log, "slowlog_command output")
		if len(out) != maxSlowlogRuns || !strings.Contains(out[0], `status="killed by signal killed (killed after 10s)"`) || !strings.Contains(out[0], `output="attached\n"`) {
			t.Errorf("output records %q", out)
		}
	})
}

// TestSlowlogCommandOutputBounded: a real command's stdout and stderr are
// captured together up to slowlogOutput bytes, the rest read and dropped
// (the command is not blocked); a command past its timeout is killed with
// its group, and a process it left behind holding the pipe does not keep
// the pool waiting.
func TestSlowlogCommandOutputBounded(t *testing.T) {
	tp := newTestPool(t, "fcgi", nil)
	out, truncated, status, err := tp.runCommand([]string{"sh", "-c", "echo out; echo err >&2"}, 5*time.Second)
	if err != nil || string(out) != "out\nerr\n" || truncated || status != "exit status 0" {
		t.Errorf("sh echo: %q truncated %v, %q, %v", out, truncated, status, err)
	}
	out, truncated, status, err = tp.runCommand([]string{"sh", "-c", fmt.Sprintf("head -c %d /dev/zero; exit 3", 3*slowlogOutput)}, 5*time.Second)
	if err != nil || len(out) != slowlogOutput || !truncated || status != "exit status 3" {
		t.Errorf("%d bytes: kept %d, truncated %v, %q, %v", 3*slowlogOutput, len(out), truncated, status, err)
	}
	begin := time.Now()
	_, _, status, err = tp.runCommand([]string{"sleep", "30"}, 200*time.Millisecond)
	if err != nil || status != "killed by signal killed (killed after 200ms)" || time.Since(begin) > 5*time.Second {
		t.Errorf("sleep 30 with a 200ms timeout: %q, %v, after %v", status, err, time.Since(begin))
	}
	begin = time.Now()
	out, _, status, err = tp.runCommand([]string{"sh", "-c", "sleep 30 & echo $!"}, 5*time.Second)
	if err != nil || status != "exit status 0" || time.Since(begin) > 3*time.Second {
		t.Fatalf("a command leaving a child holding the pipe: %q, %v, after %v", status, err, time.Since(begin))
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if child <= 0 {
		t.Fatalf("the command printed %q, not its child's pid", out)
	}
	testkit.Eventually(t, "the command's child killed with its group", func() bool {
		return syscall.Kill(child, 0) == syscall.ESRCH || isZombie(child)
	})
}

// isZombie reports whether pid has exited and awaits its reaping.
func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && strings.HasPrefix(string(b[i+1:]), " Z")
}

// On fake time: request_slowlog_timeout and slowlog_command are live. A
// reload's Update turns the log on for the running workers (NeedsRestart
// asks for none), and off again.
func TestSlowlogIsLive(t *testing.T) {
	off := testConf("/bin/true", nil, nil)
	on := *off
	on.RequestSlowlogTimeout, on.SlowlogCommand = 500*time.Millisecond, []string{"cat", "{pid}"}
	if NeedsRestart(off, &on) {
		t.Fatal("setting request_slowlog_timeout and slowlog_command asks for new workers")
	}
	o := newFakeOS(func(int) script { return script{} })
	inBubble(t, o, nil, func(t *testing.T, tp *testPool) {
		tp.get(context.Background(), "sleep=1000")
		cfg := on
		cfg.Command = tp.conf().Command
		tp.Update(&cfg)
		tp.get(context.Background(), "sleep=1000")
		off := *tp.conf()
		off.RequestSlowlogTimeout, off.SlowlogCommand = 0, nil
		tp.Update(&off)
		tp.get(context.Background(), "sleep=1000")
		if n, cmds := len(logRecords(tp.log, "slow request")), len(o.commands()); n != 1 || cmds != 1 || len(o.started()) != 1 {
			t.Errorf("%d slow-request records, %d commands, %d workers started; want 1, 1 (while on) and 1 (kept)", n, cmds, len(o.started()))
		}
	})
}
