// Package spawner starts one process from a Spec and reports its exit: argv
// without a shell, an allowlisted environment, its own process group,
// PR_SET_PDEATHSIG from a locked OS thread, and a listening socket as fd 0.
//
// fcgivisor is a child subreaper, so orphaned grandchildren are reparented to
// it. A Parent, fcgivisor as the parent of its children, is therefore the
// only caller of wait4 in the process: it starts processes and reaps every
// child, hands the status of the ones it started to their owner, and
// discards the rest (orphans). Nothing else may wait for children while a
// Parent runs: start every process through it.
//
// A CGIRunner (cgi.go) runs one-shot CGI programs on top of a Parent: it
// kills them at their timeout or when their caller's context is done, and
// kills and waits for the ones left at Shutdown.
package spawner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Spec describes one process to start.
type Spec struct {
	Path string   // resolved executable, see Resolve
	Args []string // argv, Args[0] included
	Dir  string   // working directory; "" = fcgivisor's
	Env  []string // the whole environment, "K=V"; nothing else is passed

	// Stdin, Stdout and Stderr become fds 0, 1 and 2. nil = /dev/null.
	Stdin, Stdout, Stderr *os.File

	// Credential, when non-nil, sets uid/gid/groups of the child.
	Credential *syscall.Credential
}

// Process is a started child. Its process group id equals its pid.
type Process struct {
	Pid    int
	done   chan struct{}
	status unix.WaitStatus
}

// Done is closed once the process has exited and was reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Status is the wait status; valid once Done is closed.
func (p *Process) Status() unix.WaitStatus {
	<-p.done
	return p.status
}

// Exited reports whether the process was reaped, without blocking.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// SignalGroup sends sig to the process group of p (the process and the
// children it forked that stayed in its group). ESRCH is not an error.
func (p *Process) SignalGroup(sig syscall.Signal) error {
	if err := unix.Kill(-p.Pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", p.Pid, err)
	}
	return nil
}

// Parent starts processes (Start, from forker threads locked for good) and
// reaps every child of fcgivisor (Run). A process has one: NewParent
// refuses a second.
type Parent struct {
	// A child may exit, and be reaped, before ForkExec has returned its
	// pid to us. Rather than hold a lock across the fork (which made the
	// reaper, and so every exit, wait for forks in flight), the reaper
	// keeps the status of an unknown pid while forks are in flight, and
	// the fork claims it when it registers the pid. Unknown pids reaped
	// while no fork is in flight are orphans: discarded.
	mu       sync.Mutex
	procs    map[int]*Process
	inflight int               // forks not yet registered
	early    map[int]earlyExit // statuses of unknown pids reaped while forks were in flight
	null     *os.File
	forks    chan forkJob // to the forkers
}

// earlyExit is a status reaped before its pid was known.
type earlyExit struct {
	status unix.WaitStatus
	at     time.Time
}

// earlyTTL bounds how long an unclaimed early exit is kept: a fork claims
// its own within microseconds; older ones are orphans'. (A pid is reused
// only after the kernel went through pid_max others.)
const earlyTTL = time.Second

// forkers is how many threads fork at once. With vfork a forking thread
// waits until its child has exec'ed; several let CGI requests start
// programs in parallel.
const forkers = 8

// forkJob is one fork+exec for the forker thread.
type forkJob struct {
	path string
	argv []string
	attr *syscall.ProcAttr
	p    *Process
	err  chan error
}

// parentMade: a Parent exists in this process. Two would each wait4 for
// every child and discard the other's as orphans.
var parentMade atomic.Bool

// NewParent returns the process's Parent; call Run to start reaping. A
// second call is an error.
func NewParent() (*Parent, error) {
	if !parentMade.CompareAndSwap(false, true) {
		return nil, errors.New("spawner: a Parent exists already: one process has one (each would reap the other's children)")
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	r := &Parent{procs: make(map[int]*Process), early: make(map[int]earlyExit), null: null, forks: make(chan forkJob)}
	for range forkers {
		go r.forker()
	}
	return r, nil
}

// forker forks children, from a goroutine locked to its OS thread for
// good. PR_SET_PDEATHSIG fires when the thread that forked exits, not the
// process (go.dev/issue/27505): a thread that went away early would kill
// healthy children. These threads never exit (no UnlockOSThread, no
// return), so children get their signal only when fcgivisor itself dies.
// (A thread per fork, kept until the child exited, cost a thread creation
// and exit per CGI request.)
func (r *Parent) forker() {
	runtime.LockOSThread()
	for j := range r.forks {
		r.mu.Lock()
		r.inflight++
		r.mu.Unlock()
		pid, err := syscall.ForkExec(j.path, j.argv, j.attr)
		r.mu.Lock()
		r.inflight--
		if err == nil {
			j.p.Pid = pid
			if e, ok := r.early[pid]; ok && time.Since(e.at) < earlyTTL {
				delete(r.early, pid)
				j.p.status = e.status
				close(j.p.done)
			} else {
				r.procs[pid] = j.p
			}
		}
		if r.inflight == 0 {
			clear(r.early)
		}
		r.mu.Unlock()
		j.err <- err
	}
	// Not reached: forks is never closed, the thread stays.
}

// Run reaps children on every SIGCHLD until ctx is done. Cancel ctx only
// once every started process has exited.
func (r *Parent) Run(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGCHLD)
	defer signal.Stop(ch)
	for {
		r.reap()
		select {
		case <-ctx.Done():
			r.reap()
			return
		case <-ch:
		}
	}
}

func (r *Parent) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid > 0 {
			r.mu.Lock()
			if p, ok := r.procs[pid]; ok {
				delete(r.procs, pid)
				p.status = ws
				close(p.done)
			} else if r.inflight > 0 {
				now := time.Now()
				for k, e := range r.early {
					if now.Sub(e.at) >= earlyTTL {
						delete(r.early, k)
					}
				}
				r.early[pid] = earlyExit{ws, now}
			}
			r.mu.Unlock()
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}

// Start starts the process described by spec, forked by the forker
// thread.
func (r *Parent) Start(spec Spec) (*Process, error) {
	files := []uintptr{r.fd(spec.Stdin), r.fd(spec.Stdout), r.fd(spec.Stderr)}
	attr := &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
			Credential: spec.Credential,
		},
	}
	p := &Process{done: make(chan struct{})}
	errc := make(chan error, 1)
	r.forks <- forkJob{path: spec.Path, argv: spec.Args, attr: attr, p: p, err: errc}
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	runtime.KeepAlive(spec.Stdin)
	runtime.KeepAlive(spec.Stdout)
	runtime.KeepAlive(spec.Stderr)
	return p, nil
}

func (r *Parent) fd(f *os.File) uintptr {
	if f == nil {
		f = r.null
	}
	return f.Fd()
}

// Describe says how a process ended, for logs and status.
func Describe(st unix.WaitStatus) string {
	switch {
	case st.Exited():
		return fmt.Sprintf("exit status %d", st.ExitStatus())
	case st.Signaled():
		return fmt.Sprintf("killed by signal %s", st.Signal())
	default:
		return fmt.Sprintf("wait status %#x", uint32(st))
	}
}

// Resolve finds the executable for argv0 as a shell would, without one: a
// name with a slash is taken relative to dir; a bare name is searched in the
// PATH of env (the worker's own environment), else in fcgivisorPath.
func Resolve(argv0, dir string, env []string, fcgivisorPath string) (string, error) {
	if argv0 == "" {
		return "", errors.New("empty command")
	}
	if strings.Contains(argv0, "/") {
		p := argv0
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if err := executable(p); err != nil {
			return "", err
		}
		return p, nil
	}
	path := fcgivisorPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, argv0)
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q not found in PATH %q", argv0, path)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s: not an executable file", p)
	}
	return nil
}
