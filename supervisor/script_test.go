package supervisor

// Scripted worker processes, so that a pool's timing (backoff, scaling,
// idle stops, stop sequences) runs on fake time in a testing/synctest
// bubble. Real processes and sockets never block durably, so the bubble's
// clock would not advance around them: these processes are goroutines
// serving FastCGI with net/http/fcgi on in-memory connections (net.Pipe),
// started through Env.Start and reached through Env.Dial. The pool's own
// code (socket path, output pipes, watch, Run) is the real one.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/internal/testlog"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/spawner"
)

// script is how a scripted process behaves.
type script struct {
	// crashAfter > 0: it exits with status 1 this long after it started,
	// answering nothing. (The tests use 1 ms, off the instants of the
	// pool's 100 ms ticks and backoffs, so that the order of events at one
	// instant is not left to the scheduler. A tick between a death and its
	// accounting no longer replaces the worker early: see exitPending and
	// TestExitedWorkerNotReplacedBeforeItsExitIsCounted.)
	crashAfter time.Duration
	ignoreTerm bool          // SIGTERM does nothing (else it exits with status 0)
	loseTerms  int           // the first loseTerms SIGTERMs do nothing (php-cgi before accept)
	killDelay  time.Duration // a SIGKILL takes this long to end it (a process in uninterruptible sleep)
}

// fakeOS starts scripted processes: the nth one started (from 0) follows
// script(n).
type fakeOS struct {
	script func(n int) script
	// cmd scripts a slowlog_command: what it prints, and whether it then
	// hangs until killed (else it exits with status 0). nil: it prints
	// nothing and exits.
	cmd func(argv []string) (out string, hang bool)

	mu     sync.Mutex
	procs  []*fakeProc
	byPath map[string]*fakeProc
	cmds   []*fakeCmd
}

// fakeCmd is a slowlog_command the pool started.
type fakeCmd struct {
	*fakeProc
	argv []string
}

func newFakeOS(script func(n int) script) *fakeOS {
	return &fakeOS{script: script, byPath: make(map[string]*fakeProc)}
}

// fakePidBase is above the kernel's largest pid_max (2^22): a scripted
// pid is never a real process's.
const fakePidBase = 1 << 23

// signalAt is a signal a scripted process got, and when.
type signalAt struct {
	sig syscall.Signal
	at  time.Time
}

type fakeProc struct {
	pid     int
	path    string
	script  script
	started time.Time
	conns   chan net.Conn // dialled connections for its listener
	done    chan struct{}

	mu       sync.Mutex
	status   unix.WaitStatus
	exitedAt time.Time
	exiting  bool
	terms    int
	signals  []signalAt // while it ran
	late     []signalAt // after it had exited: a signal for a process that is gone
	open     []net.Conn // its ends of the connections, closed as it exits
}

// start is Env.Start. A spec without a listener as stdin is a
// slowlog_command: see command.
func (o *fakeOS) start(spec spawner.Spec) (Process, error) {
	if spec.Stdin == nil {
		return o.command(spec)
	}
	o.mu.Lock()
	n := len(o.procs)
	p := &fakeProc{
		pid:     fakePidBase + n,
		path:    spec.Stdin.Name(), // socket.WorkerListener names the file by its path
		script:  o.script(n),
		started: time.Now(),
		conns:   make(chan net.Conn),
		done:    make(chan struct{}),
	}
	o.procs = append(o.procs, p)
	o.byPath[p.path] = p
	o.mu.Unlock()
	if d := p.script.crashAfter; d > 0 {
		time.AfterFunc(d, func() { p.exit(unix.WaitStatus(1 << 8)) }) // exit status 1
		return p, nil
	}
	go fcgi.Serve(fakeListener{p}, p)
	return p, nil
}

// command starts a scripted slowlog_command: it writes its output at
// once (a pipe holds it: the tests print little) and lets go of the pipe,
// so that the pool's reader ends without waiting on real I/O, which would
// keep the bubble's clock still.
func (o *fakeOS) command(spec spawner.Spec) (Process, error) {
	o.mu.Lock()
	c := &fakeCmd{
		fakeProc: &fakeProc{pid: fakePidBase + 1<<20 + len(o.cmds), started: time.Now(), done: make(chan struct{})},
		argv:     slices.Clone(spec.Args),
	}
	o.cmds = append(o.cmds, c)
	o.mu.Unlock()
	out, hang := "", false
	if o.cmd != nil {
		out, hang = o.cmd(spec.Args)
	}
	if _, err := io.WriteString(spec.Stdout, out); err != nil {
		return nil, err
	}
	if !hang {
		c.exit(0)
	}
	return c.fakeProc, nil
}

// commands lists the slowlog_commands started so far.
func (o *fakeOS) commands() []*fakeCmd {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.cmds)
}

// dial is Env.Dial: a connection to the live process listening on path.
func (o *fakeOS) dial(ctx context.Context, path string) (net.Conn, error) {
	o.mu.Lock()
	p := o.byPath[path]
	o.mu.Unlock()
	if p == nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: syscall.ENOENT}
	}
	ours, theirs := net.Pipe()
	p.mu.Lock()
	p.open = append(p.open, theirs)
	p.mu.Unlock()
	select {
	case p.conns <- theirs:
		return ours, nil
	case <-p.done:
	case <-ctx.Done():
	}
	ours.Close()
	theirs.Close()
	return nil, &net.OpError{Op: "dial", Net: "unix", Err: syscall.ECONNREFUSED}
}

// started lists the processes started so far.
func (o *fakeOS) started() []*fakeProc {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.procs)
}

func (p *fakeProc) Pid() int                { return p.pid }
func (p *fakeProc) Done() <-chan struct{}   { return p.done }
func (p *fakeProc) Status() unix.WaitStatus { <-p.done; return p.status }

func (p *fakeProc) SignalGroup(sig syscall.Signal) error {
	p.mu.Lock()
	s := signalAt{sig, time.Now()}
	if exited(p) {
		p.late = append(p.late, s)
		p.mu.Unlock()
		return nil
	}
	p.signals = append(p.signals, s)
	if sig == syscall.SIGTERM {
		p.terms++
	}
	lost := p.terms <= p.script.loseTerms
	p.mu.Unlock()
	switch {
	case sig == syscall.SIGKILL && p.script.killDelay > 0:
		time.AfterFunc(p.script.killDelay, func() { p.exit(unix.WaitStatus(sig)) })
	case sig == syscall.SIGKILL:
		p.exit(unix.WaitStatus(sig))
	case sig == syscall.SIGTERM && !p.script.ignoreTerm && !lost:
		p.exit(0)
	}
	return nil
}

// exit ends the process with status: its connections close, its listener
// stops accepting, and Done is closed.
func (p *fakeProc) exit(status unix.WaitStatus) {
	p.mu.Lock()
	if p.exiting {
		p.mu.Unlock()
		return
	}
	p.exiting = true
	p.status = status
	p.exitedAt = time.Now()
	open := p.open
	p.open = nil
	close(p.done)
	p.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// exitTime is when the process exited (zero: it runs).
func (p *fakeProc) exitTime() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitedAt
}

// sigs is what the process got while it ran, and after it exited.
func (p *fakeProc) sigs() (running, late []signalAt) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.signals), slices.Clone(p.late)
}

// ServeHTTP answers like the real helper worker: ?sleep=MS first, then
// pid=PID.
func (p *fakeProc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ms := r.URL.Query().Get("sleep"); ms != "" {
		n, _ := strconv.Atoi(ms)
		select {
		case <-time.After(time.Duration(n) * time.Millisecond):
		case <-p.done:
			return
		}
	}
	fmt.Fprintf(w, "pid=%d", p.pid)
}

// fakeListener hands the process the connections dialled to it.
type fakeListener struct{ p *fakeProc }

func (l fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.p.conns:
		return c, nil
	case <-l.p.done:
		return nil, net.ErrClosed
	}
}

func (l fakeListener) Close() error   { return nil }
func (l fakeListener) Addr() net.Addr { return &net.UnixAddr{Name: l.p.path, Net: "unix"} }

// inBubble runs test in a synctest bubble against a pool of processes
// scripted by o, configured as newTestPool's and then by edit. The pool is
// Ready when test starts, at the bubble's time zero, and stopped when it
// returns.
func inBubble(t *testing.T, o *fakeOS, edit func(*conf.Pool), test func(t *testing.T, tp *testPool)) {
	synctest.Test(t, func(t *testing.T) {
		dir, err := os.MkdirTemp("", "fvs")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		rt, err := socket.OpenRuntimeDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConf(exe, nil, edit) // resolved, never run
		lb := &testlog.Buffer{}
		tp := runPool(cfg, lb, Env{Runtime: rt, Start: o.start, Dial: o.dial})
		defer func() {
			tp.cancel()
			<-tp.done
			if t.Failed() {
				t.Logf("pool log:\n%s", lb.String())
			}
		}()
		test(t, tp)
	})
}

// since renders each time as its offset from t0 ("never" for zero), for
// messages.
func since(t0 time.Time, ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = "never"
		if !t.IsZero() {
			out[i] = t.Sub(t0).String()
		}
	}
	return out
}
