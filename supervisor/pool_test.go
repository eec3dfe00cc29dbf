package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/fastcgi"
	"github.com/fcgivisor/fcgivisor/internal/testkit"
	"github.com/fcgivisor/fcgivisor/internal/testlog"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/spawner"
)

// The test binary is the worker: with SUPERVISOR_HELPER set it runs one of
// the workers below on fd 0 instead of the tests.
func TestMain(m *testing.M) {
	if h := os.Getenv("SUPERVISOR_HELPER"); h != "" {
		helperWorker(h)
		os.Exit(0)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "subreaper:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func helperWorker(kind string) {
	fmt.Fprintf(os.Stderr, "helper %s ready\n", kind)
	switch kind {
	case "fcgi":
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
	case "losefirstterm":
		// Like php-cgi when SIGTERM lands just before accept(): the first
		// one is lost.
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, syscall.SIGTERM)
		go func() { <-ch; <-ch; os.Exit(0) }()
	case "crash":
		os.Exit(1)
	case "slowstart":
		time.Sleep(300 * time.Millisecond) // a php-cgi loading its extensions
	case "closer":
		rawWorker(false, 0)
		return
	case "maxreq10":
		rawWorker(true, 10)
		return
	case "garbage":
		garbageWorker()
		return
	case "dropper":
		dropWorker()
		return
	}
	ln, err := net.FileListener(os.Stdin)
	if err != nil {
		os.Exit(2)
	}
	fcgi.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if ms := q.Get("sleep"); ms != "" {
			n, _ := strconv.Atoi(ms)
			time.Sleep(time.Duration(n) * time.Millisecond)
		}
		if ms := q.Get("spin"); ms != "" {
			// Burn MS ms of CPU time, however long that takes on a busy
			// machine: a request whose CPU time shows in status.
			n, _ := strconv.Atoi(ms)
			for start := cpuTime(); cpuTime()-start < time.Duration(n)*time.Millisecond; {
			}
		}
		if q.Has("exit") {
			os.Exit(3)
		}
		if q.Has("grow") {
			b := make([]byte, 64<<20)
			for i := range b {
				b[i] = 1
			}
			hoard = append(hoard, b)
		}
		if q.Has("echo") {
			io.Copy(w, r.Body)
			return
		}
		fmt.Fprintf(w, "pid=%d", os.Getpid())
	}))
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// garbageWorker answers every connection with bytes that are not FastCGI,
// as a worker that prints to its socket (or a hostile one) would.
func garbageWorker() {
	ln, err := net.FileListener(os.Stdin)
	if err != nil {
		os.Exit(2)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(0)
		}
		go func() {
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
			time.Sleep(time.Minute) // hold the connection: the pool must not wait for it
			c.Close()
		}()
	}
}

// hoard keeps what ?grow allocated: a worker whose memory grows.
var hoard [][]byte

// rawWorker is a FastCGI responder written by hand. keep=false answers each
// request and closes the connection whatever FCGI_KEEP_CONN says, as Ruby's
// fcgi does; max>0 exits after that many requests, closing its kept
// connection, as php-cgi does after PHP_FCGI_MAX_REQUESTS.
func rawWorker(keep bool, max int) {
	ln, err := net.FileListener(os.Stdin)
	if err != nil {
		os.Exit(2)
	}
	served := 0
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		br := bufio.NewReader(c)
		var stdin []byte
		for {
			var h [8]byte
			if _, err := io.ReadFull(br, h[:]); err != nil {
				break
			}
			cl, n := int(binary.BigEndian.Uint16(h[4:6])), int(h[6])
			content := make([]byte, cl)
			io.ReadFull(br, content)
			io.CopyN(io.Discard, br, int64(n))
			if h[1] == 5 {
				stdin = append(stdin, content...)
			}
			if h[1] == 9 { // GET_VALUES: an empty GET_VALUES_RESULT
				c.Write([]byte{1, 10, 0, 0, 0, 0, 0, 0})
				continue
			}
			if h[1] != 5 || binary.BigEndian.Uint16(h[4:6]) != 0 {
				continue
			}
			// Empty STDIN: the request is complete.
			body := fmt.Sprintf("Content-Type: text/plain\r\n\r\npid=%d", os.Getpid())
			if len(stdin) > 0 {
				body += " stdin=" + string(stdin)
				stdin = nil
			}
			var out bytes.Buffer
			rec := func(t byte, content []byte) {
				out.Write([]byte{1, t, 0, 1, byte(len(content) >> 8), byte(len(content)), 0, 0})
				out.Write(content)
			}
			rec(6, []byte(body))
			rec(6, nil)
			rec(3, make([]byte, 8))
			c.Write(out.Bytes())
			served++
			if max > 0 && served >= max {
				c.Close()
				os.Exit(0)
			}
			if !keep {
				break
			}
		}
		c.Close()
	}
}

var (
	parentOnce sync.Once
	parent     *spawner.Parent
)

type testPool struct {
	*Pool
	log    *testlog.Buffer
	cancel context.CancelFunc
	done   chan struct{}
}

func newTestPool(t *testing.T, helper string, edit func(*conf.Pool)) *testPool {
	t.Helper()
	parentOnce.Do(func() {
		r, err := spawner.NewParent()
		if err != nil {
			panic(err)
		}
		parent = r
		go r.Run(context.Background())
	})
	dir, err := os.MkdirTemp("", "fvp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt, err := socket.OpenRuntimeDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	exe, _ := os.Executable()
	// The race runtime sleeps 1 s in exit by default: a worker that exits
	// by itself would linger like no real one does.
	cfg := testConf(exe, map[string]string{"SUPERVISOR_HELPER": helper, "GORACE": "atexit_sleep_ms=0"}, edit)
	lb := &testlog.Buffer{}
	tp := runPool(cfg, lb, Env{Parent: parent, Runtime: rt})
	t.Cleanup(func() {
		tp.stop(t)
		if t.Failed() {
			t.Logf("pool log:\n%s", lb.String())
		}
	})
	return tp
}

// testConf is the tests' pool: one static worker running exe with env;
// edit (if not nil) changes it.
func testConf(exe string, env map[string]string, edit func(*conf.Pool)) *conf.Pool {
	cfg := &conf.Pool{
		Name:           "t",
		Command:        []string{exe},
		Env:            env,
		Scaling:        conf.Static,
		Workers:        1,
		MaxWorkers:     1,
		Concurrency:    1,
		RequestTimeout: 10 * time.Second,
		QueueTimeout:   5 * time.Second,
		StopTimeout:    5 * time.Second,
	}
	if edit != nil {
		edit(cfg)
	}
	return cfg
}

// runPool runs a pool of cfg in env, logging to lb, and returns once it
// is ready.
func runPool(cfg *conf.Pool, lb *testlog.Buffer, env Env) *testPool {
	env.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env.Getenv = func(string) (string, bool) { return "", false }
	p := NewPool(cfg, env)
	ctx, cancel := context.WithCancel(context.Background())
	tp := &testPool{Pool: p, log: lb, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(tp.done); p.Run(ctx, context.Background()) }()
	<-p.Ready()
	return tp
}

func (tp *testPool) stop(t *testing.T) {
	tp.cancel()
	select {
	case <-tp.done:
	case <-time.After(20 * time.Second):
		t.Fatal("pool did not stop")
	}
}

// get runs a GET with query q and returns the body.
func (tp *testPool) get(ctx context.Context, q string) (string, error) {
	req := &fastcgi.Request{Params: []fastcgi.Param{
		{Name: "REQUEST_METHOD", Value: "GET"},
		{Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"},
		{Name: "REQUEST_URI", Value: "/?" + q},
		{Name: "QUERY_STRING", Value: q},
		{Name: "CONTENT_LENGTH", Value: "0"},
	}}
	var body string
	err := tp.Serve(ctx, "/?"+q, req, func(resp *fastcgi.Response) error {
		b, err := io.ReadAll(resp)
		if err != nil {
			return err
		}
		_, after, ok := bytes.Cut(b, []byte("\r\n\r\n"))
		if !ok {
			return fmt.Errorf("no header end in %q", b)
		}
		body = string(after)
		return nil
	})
	return body, err
}

func pidOf(t *testing.T, body string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimPrefix(body, "pid="))
	if err != nil {
		t.Fatalf("bad pid body %q", body)
	}
	return pid
}

// within polls cond on a synctest bubble's clock for up to d.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestServeAndReplaceKilledWorker(t *testing.T) {
	tp := newTestPool(t, "fcgi", func(c *conf.Pool) { c.Workers, c.MaxWorkers = 2, 2 })
	body, err := tp.get(context.Background(), "pid")
	if err != nil {
		t.Fatal(err)
	}
	pid := pidOf(t, body)
	pids := tp.Pids()
	if len(pids) != 2 || (pids[0] != pid && pids[1] != pid) {
		t.Fatalf("pids %v do not include the serving pid %d", pids, pid)
	}
	unix.Kill(pid, unix.SIGKILL)
	testkit.Eventually(t, "replacement worker", func() bool {
		p := tp.Pids()
		return len(p) == 2 && p[0] != pid && p[1] != pid
	})
	for range 20 {
		body, err := tp.get(context.Background(), "pid")
		if err != nil {
			t.Fatalf("request after replacement: %v", err)
		}
		if pidOf(t, body) == pid {
			t.Fatal("served by the killed worker")
		}
	}
	if tp.State() != Running {
		t.Fatalf("state %v, want running (a worker that served is not a crash loop)", tp.State())
	}
}

// A worker that answers with bytes that are not FastCGI fails its request
// with fastcgi.ErrProtocol (the front answers 502) and is killed and
// replaced at once, without waiting for it; the pool stays running.
func TestProtocolViolationKillsWorker(t *testing.T) {
	tp := newTestPool(t, "garbage", nil)
	first := tp.Pids()
	if len(first) != 1 {
		t.Fatalf("pids %v, want one worker", first)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := tp.get(ctx, "pid")
	if !errors.Is(err, fastcgi.ErrProtocol) {
		t.Fatalf("request to a worker sending garbage: %v, want fastcgi.ErrProtocol", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the request waited for the worker instead of failing at its first bytes")
	}
	testkit.Eventually(t, "the worker killed and replaced", func() bool {
		p := tp.Pids()
		return len(p) == 1 && p[0] != first[0]
	})
	testkit.Eventually(t, "the killed worker reaped", func() bool { return unix.Kill(first[0], 0) == unix.ESRCH })
	if !strings.Contains(tp.log.String(), "FastCGI protocol violation") {
		t.Errorf("no log line names the protocol violation:\n%s", tp.log)
	}
	if st := tp.State(); st != Running {
		t.Errorf("state %v, want running", st)
	}
}

// On fake time: the scripted process exits with status 1 a millisecond
// after it started.
func TestCrashLoopBacksOffAndFails(t *testing.T) {
	o := newFakeOS(func(int) script { return script{crashAfter: time.Millisecond} })
	inBubble(t, o, nil, func(t *testing.T, tp *testPool) {
		within(t, 10*time.Second, "failing state", func() bool { return tp.State() == Failing })
		// A failing pool answers at once instead of waiting out queue_timeout.
		start := time.Now()
		_, err := tp.get(context.Background(), "")
		if !errors.Is(err, ErrFailing) || time.Since(start) > time.Second {
			t.Fatalf("err %v after %v, want ErrFailing at once", err, time.Since(start))
		}
		if !strings.Contains(err.Error(), "exit status 1") {
			t.Fatalf("error %q does not carry the last exit status", err)
		}
		// Backoff, not spinning: 100+200+400+800 ms leaves room for about 5
		// spawns in 1.5 s; a spinning supervisor would do hundreds.
		time.Sleep(1500 * time.Millisecond)
		spawns := tp.Status().Totals.Spawns
		if spawns > 8 {
			t.Fatalf("%d spawns in ~1.5 s: the crash loop is not backing off", spawns)
		}
	})
}

// Each young death delays the replacement twice as long as the one before,
// from backoffBase up to backoffMax; the third in a row makes the pool
// failing.
func TestCrashLoopBackoffDoubles(t *testing.T) {
	const life = time.Millisecond // each scripted process dies this long after its start
	o := newFakeOS(func(int) script { return script{crashAfter: life} })
	inBubble(t, o, nil, func(t *testing.T, tp *testPool) {
		// Ready came once the first process died, 1 ms after it started.
		time.Sleep(250 * time.Millisecond) // two deaths: at 1 and 102 ms
		if st := tp.State(); st != Running {
			t.Fatalf("state %v after two young deaths, want running", st)
		}
		time.Sleep(100 * time.Millisecond) // the third, at 303 ms
		if st := tp.State(); st != Failing {
			t.Fatalf("state %v after three young deaths, want failing", st)
		}
		time.Sleep(40 * time.Second)
		var starts []time.Time
		for _, p := range o.started() {
			starts = append(starts, p.started)
		}
		var gaps []time.Duration
		for i := 1; i < len(starts); i++ {
			gaps = append(gaps, starts[i].Sub(starts[i-1])-life)
		}
		ms := time.Millisecond
		want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 10000 * ms, 10000 * ms}
		if !slices.Equal(gaps, want) {
			t.Fatalf("workers started at %v, want each %v after the last one's death", since(starts[0], starts), want)
		}
	})
}

// A failing pool runs again once a worker has lived minUptime (seen at the
// next tick), and serves with it.
func TestFailingPoolRecovers(t *testing.T) {
	o := newFakeOS(func(n int) script {
		if n < 3 {
			return script{crashAfter: time.Millisecond}
		}
		return script{}
	})
	inBubble(t, o, nil, func(t *testing.T, tp *testPool) {
		// Deaths at 1, 102 and 303 ms; the fourth process starts at 703 ms.
		time.Sleep(800 * time.Millisecond)
		procs := o.started()
		if len(procs) != 4 {
			t.Fatalf("%d processes started, want 4", len(procs))
		}
		time.Sleep(time.Until(procs[3].started.Add(minUptime - time.Millisecond)))
		if st := tp.State(); st != Failing {
			t.Fatalf("state %v before the fourth worker lived minUptime, want failing", st)
		}
		time.Sleep(tickEvery + time.Millisecond)
		if st := tp.State(); st != Running {
			t.Fatalf("state %v a tick after the fourth worker lived minUptime, want running", st)
		}
		if !strings.Contains(tp.log.String(), "pool recovered") {
			t.Fatal("no log of the recovery")
		}
		body, err := tp.get(context.Background(), "")
		if err != nil || body != fmt.Sprintf("pid=%d", procs[3].pid) {
			t.Fatalf("after recovery: %q, %v; want the fourth process (pid %d) to serve", body, err, procs[3].pid)
		}
	})
}

func TestQueueTimeout(t *testing.T) {
	tp := newTestPool(t, "fcgi", func(c *conf.Pool) { c.QueueTimeout = 100 * time.Millisecond })
	done := make(chan error, 1)
	go func() { _, err := tp.get(context.Background(), "sleep=1000"); done <- err }()
	testkit.Eventually(t, "busy slot", func() bool {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		return len(tp.idle) == 0
	})
	start := time.Now()
	_, err := tp.get(context.Background(), "")
	if !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("err %v, want ErrQueueTimeout", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 900*time.Millisecond {
		t.Fatalf("gave up after %v, want ~100ms", d)
	}
	if err := <-done; err != nil {
		t.Fatalf("the in-flight request failed: %v", err)
	}
}

func TestQueuedRequestGetsFreedSlot(t *testing.T) {
	tp := newTestPool(t, "fcgi", nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); _, err := tp.get(context.Background(), "sleep=20"); errs <- err }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRequestTimeoutKillsWorker(t *testing.T) {
	tp := newTestPool(t, "fcgi", func(c *conf.Pool) { c.RequestTimeout = 300 * time.Millisecond })
	body, err := tp.get(context.Background(), "pid")
	if err != nil {
		t.Fatal(err)
	}
	pid := pidOf(t, body)
	if _, err := tp.get(context.Background(), "sleep=5000"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	testkit.Eventually(t, "hung worker killed", func() bool { return unix.Kill(pid, 0) == unix.ESRCH })
	body, err = tp.get(context.Background(), "pid")
	if err != nil {
		t.Fatal(err)
	}
	if pidOf(t, body) == pid {
		t.Fatal("served by the killed worker")
	}
}

func TestWorkerIgnoringKeepConn(t *testing.T) {
	tp := newTestPool(t, "closer", nil)
	for i := range 200 {
		if _, err := tp.get(context.Background(), ""); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}

func TestKeptConnectionIsReused(t *testing.T) {
	tp := newTestPool(t, "fcgi", nil)
	for range 3 {
		if _, err := tp.get(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if len(tp.idle) != 1 || tp.idle[0].conn == nil {
		t.Fatal("the slot holds no kept connection after a request")
	}
}

func TestClientGoneDuringRequest(t *testing.T) {
	tp := newTestPool(t, "fcgi", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := tp.get(ctx, "sleep=500"); err == nil {
		t.Fatal("request outlived its context")
	}
	// The slot came back; the worker still serves.
	if _, err := tp.get(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	tp := newTestPool(t, "ignoreterm", func(c *conf.Pool) { c.StopTimeout = 200 * time.Millisecond })
	if _, err := tp.get(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	pid := tp.Pids()[0]
	start := time.Now()
	tp.stop(t)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stop took %v", d)
	}
	if err := unix.Kill(pid, 0); err != unix.ESRCH {
		t.Fatalf("worker %d survived the stop: %v", pid, err)
	}
	if !strings.Contains(tp.log.String(), "stop_timeout") {
		t.Fatal("no log of the SIGKILL escalation")
	}
}

func TestWorkerOutputLoggedWithPoolAndPid(t *testing.T) {
	tp := newTestPool(t, "fcgi", nil)
	pid := tp.Pids()[0]
	want := fmt.Sprintf(`msg="helper fcgi ready" pool=t pid=%d stream=stderr`, pid)
	testkit.Eventually(t, "worker stderr in the log", func() bool { return strings.Contains(tp.log.String(), want) })
}

func TestWorkerEnvIsAllowlist(t *testing.T) {
	cfg := &conf.Pool{Env: map[string]string{"B": "2", "A": "1"}, InheritEnv: []string{"PATH", "MISSING"}}
	got := workerEnv(cfg, func(k string) (string, bool) {
		m := map[string]string{"PATH": "/bin", "SECRET": "x"}
		v, ok := m[k]
		return v, ok
	})
	want := "A=1 B=2 PATH=/bin"
	if strings.Join(got, " ") != want {
		t.Fatalf("env %q, want %q", got, want)
	}
}

// A worker that exits by itself after every 10 requests, closing its kept
// connection (php-cgi with PHP_FCGI_MAX_REQUESTS=10), costs no failed
// request under concurrent load: it gets no 11th request.
func TestWorkersExitingByThemselvesLoseNothing(t *testing.T) {
	tp := newTestPool(t, "maxreq10", func(c *conf.Pool) {
		c.Workers, c.MaxWorkers = 3, 3
		c.Env["PHP_FCGI_MAX_REQUESTS"] = "10"
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed, pids := 0, map[string]bool{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				body, err := tp.get(context.Background(), "")
				mu.Lock()
				if err != nil {
					failed++
					t.Log(err)
				}
				pids[body] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		t.Fatalf("%d of 160 requests failed", failed)
	}
	if len(pids) < 160/10 {
		t.Fatalf("only %d distinct workers served 160 requests at 10 each", len(pids))
	}
}

func TestPHPSelfLimit(t *testing.T) {
	for _, tc := range []struct {
		argv0 string
		env   []string
		want  int64
	}{
		{"/usr/bin/php-cgi", nil, 500},
		{"/usr/bin/php-cgi8.2", []string{"PHP_FCGI_MAX_REQUESTS=3"}, 3},
		{"php-cgi", []string{"PHP_FCGI_MAX_REQUESTS=0"}, 0},
		{"/opt/worker", nil, 0},
		{"/opt/worker", []string{"PHP_FCGI_MAX_REQUESTS=7"}, 7},
	} {
		if got := phpSelfLimit(tc.argv0, tc.env); got != tc.want {
			t.Errorf("phpSelfLimit(%q, %q) = %d, want %d", tc.argv0, tc.env, got, tc.want)
		}
	}
}

// A request that crashes its worker after reading it is answered with an
// error, not sent to a second worker to crash that one too.
func TestPoisonRequestIsNotRetried(t *testing.T) {
	tp := newTestPool(t, "fcgi", func(c *conf.Pool) { c.Workers, c.MaxWorkers = 2, 2 })
	before := tp.Pids()
	// Warm both slots' kept connections so the crash happens on a reused one.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); tp.get(context.Background(), "sleep=50") }()
	}
	wg.Wait()
	if _, err := tp.get(context.Background(), "exit"); err == nil {
		t.Fatal("a request whose worker crashed succeeded")
	}
	testkit.Eventually(t, "replacement", func() bool {
		p := tp.Pids()
		return len(p) == 2 && (p[0] != before[0] || p[1] != before[1])
	})
	after := tp.Pids()
	survivors := 0
	for _, a := range after {
		for _, b := range before {
			if a == b {
				survivors++
			}
		}
	}
	if survivors != 1 {
		t.Fatalf("workers before %v, after %v: want exactly one crashed", before, after)
	}
}

// Ready waits until the initial workers serve (answered FCGI_GET_VALUES),
// not just until they were spawned: a reload swaps to a new generation
// only then.
func TestReadyWaitsForWorkersToServe(t *testing.T) {
	start := time.Now()
	tp := newTestPool(t, "slowstart", func(c *conf.Pool) { c.Workers, c.MaxWorkers = 2, 2 })
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("Ready after %v, before the workers could accept (300 ms)", d)
	}
	if strings.Contains(tp.log.String(), "readiness probe") {
		t.Fatalf("probe failed:\n%s", tp.log.String())
	}
}

// A worker that loses the first SIGTERM stops on the repeated one, long
// before stop_timeout.
func TestStopRepeatsSIGTERM(t *testing.T) {
	tp := newTestPool(t, "losefirstterm", func(c *conf.Pool) { c.StopTimeout = 10 * time.Second })
	if _, err := tp.get(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tp.stop(t)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stop took %v: the SIGTERM was not repeated", d)
	}
	if strings.Contains(tp.log.String(), "stop_timeout") {
		t.Fatal("the worker was killed, not stopped by the second SIGTERM")
	}
}

// Recycling (termLocked) repeats SIGTERM too.
func TestRecycleRepeatsSIGTERM(t *testing.T) {
	tp := newTestPool(t, "losefirstterm", func(c *conf.Pool) { c.StopTimeout, c.MaxRequests = 10*time.Second, 1 })
	first := tp.Pids()[0]
	if _, err := tp.get(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(4 * time.Second)
	for unix.Kill(first, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("recycled worker %d still runs after 4 s (stop_timeout 10 s)", first)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// offsets renders signals as "SIGNAL@offset from t0".
func offsets(t0 time.Time, sigs []signalAt) []string {
	var out []string
	for _, s := range sigs {
		out = append(out, fmt.Sprintf("%s@%v", unix.SignalName(s.sig), s.at.Sub(t0)))
	}
	return out
}

// On fake time: a recycled worker gets SIGTERM once idle, again after
// termRepeat, and SIGKILL at stop_timeout, each step only while it still
// runs; nothing is sent once it has exited.
func TestRecycleStopSequenceOnFakeTime(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script script
		want   []string
		killed bool // "did not stop within stop_timeout" logged
	}{
		{"stops on SIGTERM", script{}, []string{"SIGTERM@0s"}, false},
		{"loses the first SIGTERM", script{loseTerms: 1}, []string{"SIGTERM@0s", "SIGTERM@500ms"}, false},
		{"ignores SIGTERM", script{ignoreTerm: true}, []string{"SIGTERM@0s", "SIGTERM@500ms", "SIGKILL@2s"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newFakeOS(func(n int) script {
				if n == 0 {
					return tc.script
				}
				return script{}
			})
			inBubble(t, o, func(c *conf.Pool) { c.MaxRequests, c.StopTimeout = 1, 2*time.Second }, func(t *testing.T, tp *testPool) {
				if _, err := tp.get(context.Background(), "sleep=10"); err != nil {
					t.Fatal(err)
				}
				recycled := time.Now()
				time.Sleep(10 * time.Second)
				first := o.started()[0]
				got, late := first.sigs()
				if !slices.Equal(offsets(recycled, got), tc.want) || len(late) > 0 {
					t.Fatalf("signals %v, after exit %v; want %v and none after", offsets(recycled, got), offsets(recycled, late), tc.want)
				}
				if killed := strings.Contains(tp.log.String(), "did not stop within stop_timeout"); killed != tc.killed {
					t.Fatalf("stop_timeout kill logged: %v, want %v", killed, tc.killed)
				}
			})
		})
	}
}

// On fake time: a kill ends a stop sequence. A retiring worker whose last
// request ran past request_timeout gets SIGTERM as it goes idle and SIGKILL
// at once; the pending SIGTERM repeat, and the SIGKILL at stop_timeout, are
// not sent while the killed process takes its time to die.
func TestKillEndsStopSequence(t *testing.T) {
	o := newFakeOS(func(n int) script {
		if n == 0 {
			return script{ignoreTerm: true, killDelay: 2 * time.Second}
		}
		return script{}
	})
	inBubble(t, o, func(c *conf.Pool) { c.RequestTimeout = time.Second }, func(t *testing.T, tp *testPool) {
		t0 := time.Now()
		errc := make(chan error, 1)
		go func() { _, err := tp.get(context.Background(), "sleep=60000"); errc <- err }()
		time.Sleep(100 * time.Millisecond)
		tp.Roll() // retiring, busy: stopped once its request ends
		if err := <-errc; !errors.Is(err, ErrTimeout) {
			t.Fatalf("err %v, want ErrTimeout", err)
		}
		time.Sleep(10 * time.Second)
		first := o.started()[0]
		got, late := first.sigs()
		want := []string{"SIGTERM@1s", "SIGKILL@1s"}
		if !slices.Equal(offsets(t0, got), want) || len(late) > 0 {
			t.Fatalf("signals %v, after exit %v; want %v and none after", offsets(t0, got), offsets(t0, late), want)
		}
		if at := first.exitTime(); !at.Equal(t0.Add(3 * time.Second)) {
			t.Fatalf("exited at %v, want 3s (SIGKILL at 1s + 2s)", at.Sub(t0))
		}
		if strings.Contains(tp.log.String(), "did not stop within stop_timeout") {
			t.Fatal("the stop sequence went on after the kill")
		}
	})
}

// A worker that died by itself keeps its place among the live workers
// until the owner has accounted for its exit (onExit decides the
// crash-loop backoff): a scaling decision taken in between (a tick, a
// poke) must not replace it at once. watch is held in that window here by
// an owner that does not read p.exits yet.
func TestExitedWorkerNotReplacedBeforeItsExitIsCounted(t *testing.T) {
	o := newFakeOS(func(int) script { return script{} })
	cfg := testConf("/bin/true", nil, nil)
	p := NewPool(cfg, Env{Logger: slog.New(slog.DiscardHandler), Getenv: func(string) (string, bool) { return "", false }, Start: o.start, Dial: o.dial})
	sock, err := os.Create(filepath.Join(t.TempDir(), "w-1.sock")) // the fake takes only its name
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	proc, err := o.start(spawner.Spec{Stdin: sock})
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{proc: proc, path: sock.Name(), started: time.Now(), log: p.log, outDone: make(chan struct{})}
	close(w.outDone)
	p.mu.Lock()
	p.workers[w] = struct{}{}
	p.mu.Unlock()
	go p.watch(w)
	proc.(*fakeProc).exit(unix.WaitStatus(1 << 8))

	testkit.Eventually(t, "watch to see the exit", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return w.gone
	})
	p.mu.Lock()
	spawn := p.wantLocked(cfg, false)
	p.mu.Unlock()
	if spawn != 0 {
		t.Errorf("between the exit and its accounting the scaler wants %d new workers, want 0 (the backoff decides)", spawn)
	}
	if got := <-p.exits; got != w {
		t.Fatal("watch reported another worker")
	}
	if delay := p.onExit(w); delay <= 0 {
		t.Errorf("young death: backoff %v, want > 0", delay)
	}
	p.mu.Lock()
	spawn = p.wantLocked(cfg, false)
	p.mu.Unlock()
	if spawn != 1 {
		t.Errorf("after the exit was counted the scaler wants %d new workers, want 1", spawn)
	}
}

// TestNeedsRestartIgnoresPublicSocket: a pool's public socket settings
// are the daemon's, not the workers': changing them keeps the workers;
// changing the command does not.
func TestNeedsRestartIgnoresPublicSocket(t *testing.T) {
	old := &conf.Pool{Name: "p", Command: []string{"/bin/worker"}}
	moved := *old
	moved.Listen, moved.ListenMode, moved.ListenOwner, moved.ListenGroup = "unix:/run/p.sock", 0o640, "www-data", "www-data"
	moved.AllowedClients = []string{"10.0.0.0/8"}
	if NeedsRestart(old, &moved) {
		t.Errorf("changing listen, listen_mode/owner/group and allowed_clients asks for new workers")
	}
	changed := moved
	changed.Command = []string{"/bin/other"}
	if !NeedsRestart(old, &changed) {
		t.Errorf("a new command does not ask for new workers")
	}
}
