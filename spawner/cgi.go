package spawner

// This file runs one-shot CGI programs (RFC 3875): a CGIRunner starts a
// program with pipes as its fds 0, 1 and 2, kills its process group at the
// run's timeout or when the caller's context is done, logs its stderr, and
// keeps the set of programs not yet reaped so that Shutdown can kill them.
// The caller speaks the protocol: it writes the request body to Stdin and
// reads the response from the CGI (its stdout); starting, killing and
// waiting stay together here.
//
// A run, and who moves it on:
//
//	  Start
//	    │
//	    ▼            timeout, or ctx until Detach: SIGKILL to the group,
//	 running ◄────── the pipes' deadlines expired (for good);
//	    │            Shutdown's deadline: SIGKILL to the group
//	    │
//	    │ Wait: the program has exited and was reaped; timeout and ctx
//	    ▼ disarmed, out of the set Shutdown kills
//	 reaped
//	    │
//	    │ Close: stderr read to its end, pipes closed, a non-zero exit
//	    ▼ logged, OnEnd run
//	  ended
//
// Detach hands Wait and Close to a goroutine of the runner, which
// Shutdown joins: the caller has its answer without waiting for the exit.

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrCGITimeout is what CGI.Err reports once the run's timeout killed the
// program.
var ErrCGITimeout = errors.New("cgi program timed out")

// errCGIShutdown: Start after Shutdown.
var errCGIShutdown = errors.New("cgi programs are being shut down: not starting another")

// stderrGrace is how long Close reads stderr after the program exited, in
// case something it forked holds the pipe.
const stderrGrace = time.Second

// CGIRunner starts one-shot CGI programs and owns each run until it has
// ended (CGI.Close): its timer, its context watch, its stderr reader and,
// after Detach, the goroutine that waits for its exit. Shutdown joins
// them all. The zero value is not usable: see NewCGIRunner.
type CGIRunner struct {
	parent *Parent

	mu     sync.Mutex
	runs   map[*CGI]struct{} // not yet reaped (Wait): what Shutdown kills; guarded by mu
	closed bool              // Shutdown was called: Start refuses; guarded by mu
	ended  sync.WaitGroup    // runs from Start to the end of Close; Add only under mu, while !closed
}

// NewCGIRunner returns a runner that starts its programs through r.
func NewCGIRunner(r *Parent) *CGIRunner {
	return &CGIRunner{parent: r, runs: make(map[*CGI]struct{})}
}

// CGIOptions are what a run needs besides its Spec.
type CGIOptions struct {
	// Timeout, when positive, bounds the run: once it has elapsed, the
	// program's process group is killed unless Wait has seen its exit.
	// That also ends a response that something the program forked still
	// holds open after the program itself exited.
	Timeout time.Duration
	// Log gets the program's stderr line by line, the timeout and a
	// non-zero exit status, each with the program's pid. nil: discarded.
	Log *slog.Logger
	// OnEnd, when set, runs at the end of Close, once the program has
	// exited and was reaped and its pipes are closed (a concurrency
	// place to give back). Shutdown waits for it. It does not run when
	// Start fails.
	OnEnd func()
}

// CGI is a running one-shot CGI program, started by CGIRunner.Start. It
// reads as the program's stdout. Its owner (the caller of Start) writes
// the request body to Stdin and closes it, reads the response, and then
// either calls Close (after Wait, if it has more to do once the program
// exited) or Detach.
type CGI struct {
	*Process
	// Stdin is the write end of the program's fd 0. The caller closes
	// it; Wait expires its write deadline (see there).
	Stdin *os.File

	stdout  *os.File // read through Read; its deadline belongs to the kill once killed
	stderr  *os.File // read by the logger goroutine, closed by Close
	runner  *CGIRunner
	log     *slog.Logger
	onEnd   func()
	timer   *time.Timer   // nil without a timeout
	stopCtx func() bool   // stops the context watch (context.AfterFunc)
	logged  chan struct{} // closed when the stderr logger is done
	waited  sync.Once
	closed  sync.Once

	mu        sync.Mutex // guards the fields below; taken by the timer and context callbacks
	armed     bool       // the timeout may kill: from Start until Wait saw the exit
	watching  bool       // ctx may kill: from Start until Detach or Wait
	killed    bool       // the timeout or ctx killed the program: the pipes' deadlines stay expired
	timedOut  bool
	cancelErr error // ctx's error, when ctx killed the program
}

// Start starts spec as a CGI program with fresh pipes as fds 0, 1 and 2
// (spec's own Stdin, Stdout and Stderr are ignored), as the leader of its
// own process group. Until Wait has seen the program exit, the group gets
// SIGKILL when opts.Timeout elapses or, until Detach, when ctx is done; a
// kill also expires the deadlines of Stdin and of the stdout Read, so that
// the caller is not blocked by something that escaped the group and still
// holds the pipes. Start fails after Shutdown.
func (cr *CGIRunner) Start(ctx context.Context, spec Spec, opts CGIOptions) (*CGI, error) {
	cr.mu.Lock()
	if cr.closed {
		cr.mu.Unlock()
		return nil, errCGIShutdown
	}
	cr.ended.Add(1) // under mu, before Shutdown can Wait
	cr.mu.Unlock()
	p, pipes, err := cr.parent.startCGI(spec)
	if err != nil {
		cr.ended.Done()
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &CGI{
		Process: p, Stdin: pipes[0], stdout: pipes[1], stderr: pipes[2],
		runner: cr, log: log.With("pid", p.Pid), onEnd: opts.OnEnd,
		logged: make(chan struct{}), armed: true, watching: true,
	}
	cr.mu.Lock()
	cr.runs[c] = struct{}{}
	cr.mu.Unlock()
	go func() {
		defer close(c.logged)
		LogLines(c.stderr, c.log, "stderr", nil)
	}()
	if opts.Timeout > 0 {
		c.timer = time.AfterFunc(opts.Timeout, func() { c.expire(opts.Timeout) })
	}
	c.stopCtx = context.AfterFunc(ctx, func() { c.cancel(ctx) })
	return c, nil
}

// expire is the timer's callback: it kills the program unless Wait has
// disarmed the timeout since the timer fired.
func (c *CGI) expire(timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed {
		return
	}
	c.timedOut = true
	c.log.Warn("cgi program timed out: killing its process group", "timeout", timeout)
	c.killLocked()
}

// cancel is the context watch's callback: it kills the program unless
// Detach or Wait has stopped the watch since ctx was done.
func (c *CGI) cancel(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.watching {
		return
	}
	c.cancelErr = ctx.Err()
	c.killLocked()
}

// killLocked kills the program's process group and expires the deadlines
// of our pipe ends, so that our reads and writes return even if something
// that escaped the group still holds the other ends.
func (c *CGI) killLocked() {
	c.killed = true
	c.SignalGroup(syscall.SIGKILL)
	c.stdout.SetReadDeadline(time.Now())
	c.Stdin.SetWriteDeadline(time.Now())
}

// Read reads the program's stdout.
func (c *CGI) Read(p []byte) (int, error) { return c.stdout.Read(p) }

// SetReadDeadline sets the deadline of Read, as os.File's does. Once the
// timeout or ctx has killed the program it does nothing: the kill's
// deadline, already past, stays, so that no Read blocks again.
func (c *CGI) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.killed {
		return nil
	}
	return c.stdout.SetReadDeadline(t)
}

// Err reports why the run killed the program: ctx's error if ctx did,
// else ErrCGITimeout if the timeout did, else nil. When both did, ctx's
// error wins: whoever cancelled it waits for no answer.
func (c *CGI) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.cancelErr != nil:
		return c.cancelErr
	case c.timedOut:
		return ErrCGITimeout
	}
	return nil
}

// Wait closes the program's stdout (call it once the response has been
// read, or given up) and waits until the program has exited and was
// reaped: the timeout, and ctx unless Detach stopped it, still kill it
// meanwhile. Then it disarms both, takes the program out of the set
// Shutdown kills, and expires Stdin's write deadline, so that a write
// that something the program forked holds unread returns. A second call
// does nothing.
func (c *CGI) Wait() {
	c.waited.Do(func() {
		c.stdout.Close()
		<-c.Done()
		c.mu.Lock()
		c.armed, c.watching = false, false
		c.mu.Unlock()
		if c.timer != nil {
			c.timer.Stop()
		}
		c.stopCtx()
		c.runner.mu.Lock()
		delete(c.runner.runs, c)
		c.runner.mu.Unlock()
		c.Stdin.SetWriteDeadline(time.Now())
	})
}

// Close ends the run: it calls Wait (if the caller has not), reads stderr
// to its end (up to stderrGrace more, in case something the program
// forked holds it), closes the pipes, logs a non-zero exit status and
// runs OnEnd. The caller must be done with Stdin. A second call does
// nothing.
func (c *CGI) Close() {
	c.closed.Do(func() {
		defer c.runner.ended.Done()
		c.Wait()
		grace := time.AfterFunc(stderrGrace, func() { c.stderr.SetReadDeadline(time.Now()) })
		<-c.logged
		grace.Stop()
		c.stderr.Close()
		c.Stdin.Close() // the caller's already, normally
		if st := c.Status(); st.Exited() && st.ExitStatus() != 0 {
			c.log.Info("cgi program exited", "status", st.ExitStatus())
		}
		if c.onEnd != nil {
			c.onEnd()
		}
	})
}

// Detach ends the caller's part: it has read the response and is done
// with Stdin. The program is no longer killed when ctx is done (the
// timeout still applies), and the runner waits for its exit and closes
// the run in a goroutine of its own, which Shutdown joins.
func (c *CGI) Detach() {
	c.stdout.Close()
	c.mu.Lock()
	c.watching = false
	c.mu.Unlock()
	c.stopCtx()
	go c.Close() // counted in runner.ended since Start
}

// Shutdown refuses new runs and waits until every run has ended. Once
// ctx is done, it kills the process group of every program not yet
// reaped, waits on, and returns ctx's error.
func (cr *CGIRunner) Shutdown(ctx context.Context) error {
	cr.mu.Lock()
	cr.closed = true
	cr.mu.Unlock()
	done := make(chan struct{})
	go func() {
		cr.ended.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	cr.mu.Lock()
	for c := range cr.runs {
		c.SignalGroup(syscall.SIGKILL)
	}
	cr.mu.Unlock()
	<-done
	return ctx.Err()
}

// startCGI starts spec with fresh pipes as fds 0, 1 and 2; spec's own
// Stdin, Stdout and Stderr are ignored. It returns our ends: the write end
// of stdin, the read ends of stdout and stderr.
//
// Our ends are non-blocking and registered with Go's poller, so Close or a
// deadline unblocks a pending Read or Write even while a forked grandchild
// still holds the other end.
func (r *Parent) startCGI(spec Spec) (*Process, [3]*os.File, error) {
	var ours, theirs [3]*os.File
	closeAll := func() {
		for i := range 3 {
			if ours[i] != nil {
				ours[i].Close()
			}
			if theirs[i] != nil {
				theirs[i].Close()
			}
		}
	}
	for i := range 3 {
		o, t, err := pipe(i != 0)
		if err != nil {
			closeAll()
			return nil, [3]*os.File{}, err
		}
		ours[i], theirs[i] = o, t
	}
	spec.Stdin, spec.Stdout, spec.Stderr = theirs[0], theirs[1], theirs[2]
	p, err := r.Start(spec)
	for _, f := range theirs {
		f.Close() // the child has its copies
	}
	if err != nil {
		for _, f := range ours {
			f.Close()
		}
		return nil, [3]*os.File{}, err
	}
	return p, ours, nil
}

// pipe returns a pipe's two ends: ours, non-blocking and registered with
// Go's poller (deadlines and Close unblock it), and theirs, a plain
// blocking fd for the child, never registered (os.Pipe would register
// and unregister both ends: two epoll_ctl calls per end, per request).
// ourRead: we read (the child's stdout, stderr); else we write (stdin).
func pipe(ourRead bool) (ours, theirs *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	o, t := fds[1], fds[0]
	if ourRead {
		o, t = fds[0], fds[1]
	}
	if err := unix.SetNonblock(o, true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	// os.NewFile registers a non-blocking fd with the poller ("kind
	// non-blocking") and leaves a blocking one alone.
	return os.NewFile(uintptr(o), "|cgi"), os.NewFile(uintptr(t), "|cgi-child"), nil
}

// IsPermission reports whether a start error means the program may not be
// executed (EACCES, EPERM) rather than that it is broken or missing.
func IsPermission(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}
