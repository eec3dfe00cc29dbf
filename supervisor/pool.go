// Package supervisor owns the process tree: pools of FastCGI workers, their
// slots, replacement of dead workers with backoff, and serving one request
// on a worker slot with the retry rule of the design.
//
// A pool's state lives behind one mutex (p.mu) so that the request path
// (Acquire/release) costs a lock and no channel round trip; the pool's
// owner goroutine (Run) alone starts and stops workers and reacts to their
// exits. Worker lifecycle:
//
//	spawn ──▶ serving ──exit──▶ gone ──▶ replaced (at once, or after backoff if it died young)
//	             │
//	             └─ stop: SIGTERM to its group ── stop_timeout ──▶ SIGKILL
//
// Pool states (DESIGN.md "Pool states"):
//
//	starting ──initial workers spawned──▶ running ◀──a worker lived minUptime──┐
//	                                         │                                  │
//	                                         └──failLimit young deaths──▶ failing
//	any ──ctx done──▶ stopping
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/fastcgi"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/spawner"
)

// State is a pool's state.
type State int

// Pool states.
const (
	Starting State = iota
	Running
	Failing
	Stopping
)

func (s State) String() string {
	return [...]string{"starting", "running", "failing", "stopping"}[s]
}

// Errors a request can get from a pool before any worker saw it. Callers
// answer them with 503.
var (
	ErrQueueTimeout = errors.New("no worker slot free within queue_timeout")
	ErrFailing      = errors.New("pool is failing: its workers crash at start")
	ErrStopping     = errors.New("pool is stopping")
)

// ErrTimeout is returned when a request ran past request_timeout; the
// worker was killed. Callers answer 504.
var ErrTimeout = errors.New("request_timeout exceeded")

// Crash-loop handling: a worker that exits within minUptime of its start
// without having served a request died young. Young deaths in a row delay
// the replacement by backoffBase·2ⁿ (at most backoffMax); failLimit of them
// mark the pool failing until a worker survives minUptime.
const (
	minUptime   = time.Second
	backoffBase = 100 * time.Millisecond
	backoffMax  = 10 * time.Second
	failLimit   = 3
)

// Env is what a pool needs from fcgivisor's process; main fills it.
type Env struct {
	Reaper  *spawner.Reaper
	Runtime *socket.RuntimeDir
	Logger  *slog.Logger
	// Getenv reads fcgivisor's own environment (for inherit_env and PATH).
	Getenv func(string) (string, bool)
}

// Pool is a set of worker processes running one command.
type Pool struct {
	cfg  *conf.Pool
	env  Env
	log  *slog.Logger
	argv []string
	penv []string // the workers' whole environment

	ready chan struct{} // closed once the initial workers were spawned
	exits chan *worker  // worker watchers → owner

	mu       sync.Mutex
	state    State
	workers  map[*worker]struct{}
	idle     []*slot // free slots, used LIFO
	waiters  []*waiter
	nextID   uint64
	failures int    // young deaths in a row
	lastErr  string // last exit status / start error, for status

	// selfLimit is the number of requests after which a worker exits by
	// itself, 0 when unknown: php-cgi's PHP_FCGI_MAX_REQUESTS. A worker
	// that reached it gets no more requests, so none is sent into the
	// moment it closes its connection and exits; its replacement starts at
	// once.
	selfLimit int64
	refill    chan struct{} // buffered 1: ask the owner to top the pool up
}

type worker struct {
	id      uint64
	proc    *spawner.Process
	path    string // socket path
	started time.Time
	log     *slog.Logger

	// guarded by Pool.mu
	served  int64
	gone    bool // exited, failed to accept, or being stopped: hand out no more slots
	killed  bool // killed by fcgivisor (timeout, protocol error): not a crash
	outDone chan struct{}

	// retire, when set, stops a worker expected to exit by itself that did
	// not within stop_timeout; termed records that fcgivisor sent SIGTERM.
	retire *time.Timer
	termed atomic.Bool // fcgivisor sent SIGTERM
}

type slot struct {
	w    *worker
	conn *fastcgi.Conn // kept connection, nil when none
}

type waiter struct {
	ch   chan *slot // buffered 1; receives the slot, or nil when the pool fails/stops
	done bool       // a slot or nil was sent
}

// NewPool returns a pool for cfg; Run starts it.
func NewPool(cfg *conf.Pool, env Env) *Pool {
	p := &Pool{
		cfg:     cfg,
		env:     env,
		log:     env.Logger.With("pool", cfg.Name),
		argv:    cfg.Command,
		ready:   make(chan struct{}),
		exits:   make(chan *worker),
		refill:  make(chan struct{}, 1),
		workers: make(map[*worker]struct{}),
	}
	p.penv = workerEnv(cfg, env.Getenv)
	p.selfLimit = phpSelfLimit(cfg.Command[0], p.penv)
	return p
}

// phpSelfLimit is the number of requests after which php-cgi exits by
// itself: PHP_FCGI_MAX_REQUESTS, 500 when unset (PHP's default), none when
// 0; 0 (unknown) for other commands.
func phpSelfLimit(argv0 string, env []string) int64 {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PHP_FCGI_MAX_REQUESTS="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				return n
			}
			return 0
		}
	}
	if strings.HasPrefix(filepath.Base(argv0), "php-cgi") {
		return 500
	}
	return 0
}

// workerEnv is exactly the pool's env plus inherit_env, sorted; nothing
// else of fcgivisor's environment (LISTEN_*, NOTIFY_SOCKET, secrets) leaks.
func workerEnv(cfg *conf.Pool, getenv func(string) (string, bool)) []string {
	m := make(map[string]string, len(cfg.Env)+len(cfg.InheritEnv))
	for _, k := range cfg.InheritEnv {
		if v, ok := getenv(k); ok {
			m[k] = v
		}
	}
	for k, v := range cfg.Env {
		m[k] = v
	}
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// Name is the pool's name.
func (p *Pool) Name() string { return p.cfg.Name }

// Ready is closed once the initial workers were spawned (or failed to).
func (p *Pool) Ready() <-chan struct{} { return p.ready }

// State is the pool's current state.
func (p *Pool) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// Pids lists the pids of the live workers, for tests and status.
func (p *Pool) Pids() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pids []int
	for w := range p.workers {
		if !w.gone {
			pids = append(pids, w.proc.Pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// Run starts the workers and supervises them until ctx is done, then stops
// them all (SIGTERM, SIGKILL after stop_timeout or as soon as hard is done)
// and returns once every worker has exited.
func (p *Pool) Run(ctx, hard context.Context) {
	var retry, probe *time.Timer
	// refill brings the pool to its target; a worker that cannot start is
	// a death at birth, retried after backoff.
	refill := func() {
		if !p.fill() && retry == nil {
			p.mu.Lock()
			n := p.failures
			p.mu.Unlock()
			retry = time.NewTimer(backoff(n))
		}
	}
	refill()
	p.mu.Lock()
	if p.state == Starting {
		p.state = Running
	}
	p.mu.Unlock()
	close(p.ready)

	retryC := func() <-chan time.Time {
		if retry == nil {
			return nil
		}
		return retry.C
	}
	probeC := func() <-chan time.Time {
		if probe == nil {
			return nil
		}
		return probe.C
	}
	for {
		select {
		case w := <-p.exits:
			delay, ok := p.onExit(w)
			if !ok {
				continue
			}
			if delay == 0 {
				refill()
				break
			}
			if retry == nil {
				retry = time.NewTimer(delay)
			}
		case <-p.refill:
			refill()
		case <-retryC():
			retry = nil
			refill()
			p.mu.Lock()
			failing := p.state == Failing
			p.mu.Unlock()
			if failing && probe == nil {
				probe = time.NewTimer(minUptime)
			}
		case <-probeC():
			probe = nil
			// Timers are events re-checked against the current state.
			p.mu.Lock()
			if p.state == Failing && p.liveLocked() > 0 && p.failures > 0 && p.oldestLocked() >= minUptime {
				p.state = Running
				p.failures = 0
				p.log.Info("pool recovered")
			}
			p.mu.Unlock()
		case <-ctx.Done():
			if retry != nil {
				retry.Stop()
			}
			if probe != nil {
				probe.Stop()
			}
			p.stopAll(hard)
			return
		}
	}
}

// target is the number of workers the pool keeps.
func (p *Pool) target() int { return p.cfg.Workers }

func (p *Pool) liveLocked() int {
	n := 0
	for w := range p.workers {
		if !w.gone {
			n++
		}
	}
	return n
}

func (p *Pool) oldestLocked() time.Duration {
	var d time.Duration
	for w := range p.workers {
		if !w.gone {
			d = max(d, time.Since(w.started))
		}
	}
	return d
}

// fill spawns workers until the pool has its target; false when one could
// not be started.
func (p *Pool) fill() bool {
	p.mu.Lock()
	n := p.target() - p.liveLocked()
	p.mu.Unlock()
	for range n {
		if !p.spawn() {
			return false
		}
	}
	return true
}

// onExit accounts for an exited worker and says whether and when to
// replace it.
func (p *Pool) onExit(w *worker) (delay time.Duration, replace bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.workers, w)
	p.dropIdleLocked(w)
	if p.state == Stopping {
		return 0, false
	}
	uptime := time.Since(w.started)
	if w.killed || w.served > 0 || uptime >= minUptime {
		p.failures = 0
		return 0, true
	}
	p.failures++
	if p.failures >= failLimit && p.state != Failing {
		p.state = Failing
		p.log.Error("pool failing: workers exit at start; backing off", "failures", p.failures, "last", p.lastErr)
		p.wakeWaitersLocked()
	}
	return backoff(p.failures), true
}

func backoff(n int) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// spawn starts one worker; false if it could not be started.
func (p *Pool) spawn() bool {
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	p.mu.Unlock()

	w, err := p.start(id)
	if err != nil {
		p.log.Error("start worker", "err", err)
		p.mu.Lock()
		p.lastErr = err.Error()
		p.failures++
		if p.failures >= failLimit && p.state != Failing && p.state != Stopping {
			p.state = Failing
			p.log.Error("pool failing: workers cannot be started; backing off", "failures", p.failures)
			p.wakeWaitersLocked()
		}
		p.mu.Unlock()
		return false
	}
	p.mu.Lock()
	p.workers[w] = struct{}{}
	for range p.cfg.Concurrency {
		p.putLocked(&slot{w: w})
	}
	p.mu.Unlock()
	go p.watch(w)
	return true
}

// start creates the worker's socket and process.
func (p *Pool) start(id uint64) (*worker, error) {
	path := p.env.Runtime.WorkerPath(p.cfg.Name, id)
	ln, err := socket.WorkerListener(path)
	if err != nil {
		return nil, err
	}
	defer ln.Close() // the worker holds its own copy; the socket dies with it
	fcgivisorPath, _ := p.env.Getenv("PATH")
	exe, err := spawner.Resolve(p.argv[0], p.cfg.Dir, p.penv, fcgivisorPath)
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("command %q: %w", p.argv[0], err)
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		stdoutR.Close()
		stdoutW.Close()
		os.Remove(path)
		return nil, err
	}
	proc, err := p.env.Reaper.Start(spawner.Spec{
		Path:   exe,
		Args:   p.argv,
		Dir:    p.cfg.Dir,
		Env:    p.penv,
		Stdin:  ln,
		Stdout: stdoutW,
		Stderr: stderrW,
	})
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdoutR.Close()
		stderrR.Close()
		os.Remove(path)
		return nil, err
	}
	w := &worker{
		id:      id,
		proc:    proc,
		path:    path,
		started: time.Now(),
		log:     p.log.With("pid", proc.Pid),
		outDone: make(chan struct{}),
	}
	w.log.Debug("worker started", "socket", path)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); logLines(stdoutR, w.log, "stdout") }()
	go func() { defer wg.Done(); logLines(stderrR, w.log, "stderr") }()
	go func() {
		// Like exec.Cmd.WaitDelay: a grandchild may hold the pipes open after
		// the worker died; stop reading a second after its exit.
		<-proc.Done()
		t := time.AfterFunc(time.Second, func() { stdoutR.Close(); stderrR.Close() })
		wg.Wait()
		t.Stop()
		stdoutR.Close()
		stderrR.Close()
		close(w.outDone)
	}()
	return w, nil
}

// watch waits for w to exit and reports it to the owner.
func (p *Pool) watch(w *worker) {
	<-w.proc.Done()
	p.mu.Lock()
	if w.retire != nil {
		w.retire.Stop()
	}
	w.gone = true
	p.dropIdleLocked(w)
	p.mu.Unlock()
	<-w.outDone
	os.Remove(w.path)
	st := w.proc.Status()
	p.mu.Lock()
	w.gone = true
	stopping := p.state == Stopping
	killed := w.killed
	if !stopping && !killed {
		p.lastErr = describe(st)
	}
	p.mu.Unlock()
	switch {
	case stopping || killed:
		w.log.Info("worker exited", "status", describe(st))
	default:
		w.log.Warn("worker exited unexpectedly", "status", describe(st), "uptime", time.Since(w.started).Round(time.Millisecond))
	}
	p.exits <- w
}

func describe(st unix.WaitStatus) string {
	switch {
	case st.Exited():
		return fmt.Sprintf("exit status %d", st.ExitStatus())
	case st.Signaled():
		return fmt.Sprintf("killed by signal %s", st.Signal())
	default:
		return fmt.Sprintf("wait status %#x", uint32(st))
	}
}

// stopAll stops every worker: SIGTERM to each group, SIGKILL past
// stop_timeout, and returns once all have exited.
func (p *Pool) stopAll(hard context.Context) {
	p.mu.Lock()
	p.state = Stopping
	p.wakeWaitersLocked()
	for _, s := range p.idle {
		if s.conn != nil {
			s.conn.Close()
		}
	}
	p.idle = nil
	live := make([]*worker, 0, len(p.workers))
	for w := range p.workers {
		w.gone = true
		live = append(live, w)
	}
	p.mu.Unlock()
	for _, w := range live {
		w.termed.Store(true)
		w.proc.SignalGroup(syscall.SIGTERM)
	}
	kill := time.NewTimer(p.cfg.StopTimeout)
	defer kill.Stop()
	hardC := hard.Done()
	for n := len(live); n > 0; {
		select {
		case w := <-p.exits:
			// The leader is gone; children it left in its group go too.
			w.proc.SignalGroup(syscall.SIGKILL)
			p.mu.Lock()
			delete(p.workers, w)
			p.mu.Unlock()
			n--
		case <-kill.C:
			p.log.Warn("workers did not stop within stop_timeout; killing", "remaining", n)
			for _, w := range live {
				w.proc.SignalGroup(syscall.SIGKILL)
			}
		case <-hardC:
			hardC = nil
			for _, w := range live {
				w.proc.SignalGroup(syscall.SIGKILL)
			}
		}
	}
}

// putLocked makes s available: to the longest waiting request, or idle.
func (p *Pool) putLocked(s *slot) {
	for len(p.waiters) > 0 {
		wt := p.waiters[0]
		p.waiters[0] = nil
		p.waiters = p.waiters[1:]
		if wt.done {
			continue
		}
		wt.done = true
		wt.ch <- s
		return
	}
	p.idle = append(p.idle, s)
}

// wakeWaitersLocked answers every queued request with nil (no slot).
func (p *Pool) wakeWaitersLocked() {
	for _, wt := range p.waiters {
		if !wt.done {
			wt.done = true
			wt.ch <- nil
		}
	}
	p.waiters = nil
}

func (p *Pool) dropIdleLocked(w *worker) {
	kept := p.idle[:0]
	for _, s := range p.idle {
		if s.w == w {
			if s.conn != nil {
				s.conn.Close()
			}
			continue
		}
		kept = append(kept, s)
	}
	clear(p.idle[len(kept):])
	p.idle = kept
}

// acquire returns a free slot, waiting up to queue_timeout for one. Idle
// slots are taken last-in first-out (warm workers; spare ones stay idle).
// For a retry, avoid is the worker the request just failed on: the slot
// taken is then one of the worker that has served the fewest requests (the
// least likely to be about to exit by itself), not avoid's if possible.
func (p *Pool) acquire(ctx context.Context, avoid *worker) (*slot, error) {
	p.mu.Lock()
	if err := p.unavailableLocked(); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	if n := len(p.idle); n > 0 {
		i := n - 1
		if avoid != nil {
			for j, s := range p.idle {
				if (p.idle[i].w == avoid && s.w != avoid) || (s.w != avoid && s.w.served < p.idle[i].w.served) {
					i = j
				}
			}
		}
		s := p.idle[i]
		copy(p.idle[i:], p.idle[i+1:])
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return s, nil
	}
	wt := &waiter{ch: make(chan *slot, 1)}
	p.waiters = append(p.waiters, wt)
	p.mu.Unlock()

	timer := time.NewTimer(p.cfg.QueueTimeout)
	defer timer.Stop()
	var err error
	select {
	case s := <-wt.ch:
		if s != nil {
			return s, nil
		}
		p.mu.Lock()
		err = p.unavailableLocked()
		p.mu.Unlock()
		if err == nil {
			err = ErrQueueTimeout
		}
		return nil, err
	case <-timer.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	p.mu.Lock()
	if wt.done {
		// A slot was handed over as we gave up: pass it on.
		if s := <-wt.ch; s != nil {
			p.putLocked(s)
		}
	}
	wt.done = true
	p.mu.Unlock()
	return nil, err
}

func (p *Pool) unavailableLocked() error {
	switch p.state {
	case Failing:
		return fmt.Errorf("%w (last: %s)", ErrFailing, p.lastErr)
	case Stopping:
		return ErrStopping
	}
	return nil
}

// release returns s to the pool after a request. keep says whether its
// connection can carry another request.
func (p *Pool) release(s *slot, keep, served bool) {
	p.releaseAt(s, keep, served, false)
}

// releaseAt is release; last puts an idle slot where it is taken last.
func (p *Pool) releaseAt(s *slot, keep, served, last bool) {
	if !keep && s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if served {
		s.w.served++
		if p.selfLimit > 0 && s.w.served >= p.selfLimit && !s.w.gone {
			p.exitingLocked(s.w)
		}
	}
	if s.w.gone || p.state == Stopping {
		if s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
		return
	}
	if last && len(p.waiters) == 0 {
		p.idle = append(p.idle, nil)
		copy(p.idle[1:], p.idle)
		p.idle[0] = s
		return
	}
	p.putLocked(s)
}

// kill stops w at once (its whole process group) because of how it served
// a request; it is replaced without counting as a crash.
func (p *Pool) kill(w *worker, why string) {
	p.mu.Lock()
	w.gone = true
	w.killed = true
	p.dropIdleLocked(w)
	p.mu.Unlock()
	w.log.Warn("killing worker", "reason", why)
	w.proc.SignalGroup(syscall.SIGKILL)
}
