package supervisor

// One attempt of a request on a worker, as status and the slow-request
// log see it (issue 13): the worker's CPU time at its start and end
// (its process CPU clock), its RSS at the end, and a timer of
// request_slowlog_timeout. When the timer fires before the attempt ends,
// the request is slow: one WARN record, the pool's slow_requests count,
// then slowlog_command (argv with "{pid}" replaced) runs for the worker,
// bounded in time and output, and what it printed is logged with the
// request. The timer is a time.AfterFunc stopped when the attempt ends,
// so a request that is not slow costs a timer start and stop. Nothing
// here holds p.mu while it logs, reads /proc or runs the command.

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/spawner"
)

// slowlogTimeout bounds a slowlog_command run: past it its process group
// is killed (a debugger stuck on a process in uninterruptible sleep).
const slowlogTimeout = 10 * time.Second

// slowlogOutput bounds what of a slowlog_command's output is kept and
// logged; the rest is read and dropped, so the command never blocks.
const slowlogOutput = 64 << 10

// maxSlowlogRuns bounds the slowlog_command runs of a pool at once, so
// that a stall that makes every request slow does not start a debugger per
// request.
const maxSlowlogRuns = 4

// defaultPath is the PATH of a slowlog_command when fcgivisor has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// attempt is one request's stay on one worker slot.
type attempt struct {
	s     *slot
	rq    *request
	began time.Time
	slow  *time.Timer // request_slowlog_timeout; nil when off
}

// rssReuse is how old a worker's RSS reading may be and still stand for
// its RSS at the end of a request: reading statm is a system call that
// cost about 5 % of the front's CPU when every request read it
// (bench/README.md); a worker serving more than 10 requests a second gets
// its RSS read about 10 times a second.
const rssReuse = 100 * time.Millisecond

// begin starts the attempt of rq on s: it takes the worker's CPU time
// (the clock read at the end of the slot's last request, when there was
// one: the worker sat waiting since, and reading it again would cost a
// system call) and arms the slow-request timer, unless rq was found slow
// already (on another worker: once per request).
func (p *Pool) begin(s *slot, rq *request, cfg *conf.Pool) *attempt {
	a := &attempt{s: s, rq: rq, began: time.Now()}
	cpu0 := int64(-1) // unknown
	if s.cpuEnd > 0 {
		cpu0 = s.cpuEnd
	} else if t, err := s.w.cpuNanos(); err == nil {
		cpu0 = t
	}
	s.cpuStart.Store(cpu0)
	if limit := cfg.RequestSlowlogTimeout; limit > 0 && !rq.slow.Load() {
		a.slow = time.AfterFunc(limit, func() { p.slowRequest(a, cfg) })
	}
	return a
}

// end stops the slow-request timer and returns the attempt as its
// worker's last request: duration, CPU seconds, RSS at the end (or read
// less than rssReuse before).
func (a *attempt) end() *RequestStatus {
	if a.slow != nil {
		a.slow.Stop()
	}
	now := time.Now()
	last := &RequestStatus{Method: a.rq.method, URI: a.rq.uri, Seconds: now.Sub(a.began).Seconds()}
	t, err := a.s.w.cpuNanos()
	a.s.cpuEnd = max(t, 0) // 0 on error: the next request reads the clock
	if cpu0 := a.s.cpuStart.Load(); err == nil && cpu0 >= 0 {
		last.CPUSeconds = nanosToSeconds(t - cpu0)
	}
	last.RSSBytes = a.s.w.recentRSS(now)
	return last
}

// recentRSS is w's RSS at now, or as read less than rssReuse before; 0
// when it cannot be read.
func (w *worker) recentRSS(now time.Time) int64 {
	at := int64(now.Sub(w.started))
	if read := w.rssRead.Load(); read > 0 && at-read < int64(rssReuse) {
		return w.rssLast.Load()
	}
	n, err := w.rss()
	if err != nil {
		return 0
	}
	w.rssLast.Store(n)
	w.rssRead.Store(max(at, 1))
	return n
}

// slowRequest is the slow-request timer of a: it logs the request once,
// counts it, and runs slowlog_command for its worker. It runs on the
// timer's goroutine, which Run waits for (bg).
func (p *Pool) slowRequest(a *attempt, cfg *conf.Pool) {
	if !a.rq.slow.CompareAndSwap(false, true) || !p.startBackground() {
		return
	}
	defer p.bg.Done()
	p.stats.slow.Add(1)
	elapsed := time.Since(a.began)
	log := a.s.w.log.With("method", a.rq.method, "uri", a.rq.uri)
	log.Warn("slow request", "elapsed_seconds", seconds(elapsed), "request_slowlog_timeout", cfg.RequestSlowlogTimeout.String())
	if len(cfg.SlowlogCommand) == 0 {
		return
	}
	if p.slowRun.Add(1) > maxSlowlogRuns {
		p.slowRun.Add(-1)
		log.Warn("slowlog_command skipped: as many runs as allowed are going on", "running", maxSlowlogRuns)
		return
	}
	defer p.slowRun.Add(-1)
	argv := slowlogArgv(cfg.SlowlogCommand, a.s.w.proc.Pid())
	out, truncated, status, err := p.runCommand(argv, slowlogTimeout)
	if err != nil {
		log.Error("slowlog_command did not start", "command", argv, "err", err)
		return
	}
	log.Warn("slowlog_command output", "command", argv, "status", status, "output", string(out), "truncated", truncated)
}

// seconds is d in seconds, to the millisecond, for log records: the
// same number in text and JSON logs (slog writes a time.Duration to JSON
// in nanoseconds).
func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

// slowlogArgv is argv with every "{pid}" replaced by pid.
func slowlogArgv(argv []string, pid int) []string {
	out := make([]string, len(argv))
	for i, arg := range argv {
		out[i] = strings.ReplaceAll(arg, "{pid}", strconv.Itoa(pid))
	}
	return out
}

// ResolveSlowlogCommand finds the executable of cfg's slowlog_command[0]
// as a slow request would run it: a full path as it is, a bare name in
// fcgivisor's PATH (getenv, as the pool's Env.Getenv). "" when the pool
// has none.
func ResolveSlowlogCommand(cfg *conf.Pool, getenv func(string) (string, bool)) (string, error) {
	if len(cfg.SlowlogCommand) == 0 {
		return "", nil
	}
	exe, _, err := resolveCommand(cfg.SlowlogCommand[0], getenv)
	return exe, err
}

// resolveCommand finds argv0 for a slowlog_command, and returns the PATH
// it runs with: fcgivisor's, or defaultPath.
func resolveCommand(argv0 string, getenv func(string) (string, bool)) (exe, path string, err error) {
	path, ok := getenv("PATH")
	if !ok || path == "" {
		path = defaultPath
	}
	exe, err = spawner.Resolve(argv0, "/", nil, path)
	return exe, path, err
}

// startBackground reports whether slow-request handling may start: Run
// has not returned. It then counts in bg.
func (p *Pool) startBackground() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bgClosed {
		return false
	}
	p.bg.Add(1)
	return true
}

// closeBackground, as Run returns, lets no more slow-request handling
// start, kills the slowlog_command runs going on and waits for them.
func (p *Pool) closeBackground() {
	p.mu.Lock()
	p.bgClosed = true
	p.mu.Unlock()
	close(p.quit)
	p.bg.Wait()
}

// runCommand runs argv as fcgivisor's own user, with PATH as its only
// environment, in /, stdin from /dev/null, its stdout and stderr into one
// pipe. It returns what the command wrote, at most slowlogOutput bytes
// (truncated: there was more), and how it ended. Past timeout, or when
// the pool's Run returns, its process group is killed.
func (p *Pool) runCommand(argv []string, timeout time.Duration) (out []byte, truncated bool, status string, err error) {
	exe, path, err := resolveCommand(argv[0], p.env.Getenv)
	if err != nil {
		return nil, false, "", err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, false, "", err
	}
	proc, err := p.env.Start(spawner.Spec{Path: exe, Args: argv, Dir: "/", Env: []string{"PATH=" + path}, Stdout: w, Stderr: w})
	w.Close()
	if err != nil {
		r.Close()
		return nil, false, "", err
	}
	var buf bytes.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		io.Copy(&buf, io.LimitReader(r, slowlogOutput))
		n, _ := io.Copy(io.Discard, r)
		truncated = n > 0
	}()
	status = p.awaitCommand(proc, timeout)
	// A process it forked may hold the pipe open: stop reading a second
	// after its exit, as for a worker's output.
	t := time.AfterFunc(time.Second, func() { r.Close() })
	<-read
	t.Stop()
	r.Close()
	return buf.Bytes(), truncated, status, nil
}

// awaitCommand waits for proc's exit, killing its group past timeout or
// when the pool's Run returns, and says how it ended.
func (p *Pool) awaitCommand(proc Process, timeout time.Duration) string {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var fx effects
	why := ""
	select {
	case <-proc.Done():
	case <-timer.C:
		why = " (killed after " + timeout.String() + ")"
		fx.signalProcess(proc, syscall.SIGKILL)
	case <-p.quit:
		why = " (killed: the pool stopped)"
		fx.signalProcess(proc, syscall.SIGKILL)
	}
	fx.run()
	<-proc.Done()
	// Whatever it left in its group goes too.
	fx.signalProcess(proc, syscall.SIGKILL)
	fx.run()
	return spawner.Describe(proc.Status()) + why
}
