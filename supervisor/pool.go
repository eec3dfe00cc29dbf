// Package supervisor owns the process tree: pools of FastCGI workers, their
// slots, replacement of dead workers with backoff, and serving one request
// on a worker slot with the retry rule written at Serve (serve.go).
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
// Pool states:
//
//	starting ──initial workers spawned──▶ running ◀──a worker lived minUptime──┐
//	                                         │                                  │
//	                                         └──failLimit young deaths──▶ failing
//	any ──ctx done──▶ stopping
//
// Lock rules:
//   - Fields marked "guarded by Pool.mu" are read and written with p.mu
//     held; a function that needs it held ends in Locked.
//   - Nothing waits, logs or signals a worker while holding p.mu. A Locked
//     function that decides to log or signal appends to the effects its
//     caller passes (effects.go); the caller runs them once it has released
//     p.mu. Every signal to a worker is sent that way, by the goroutine
//     that decided it, after the unlock: timers, kill, markGone and stopAll
//     included.
//   - A timer callback that acts on a worker takes p.mu and returns unless
//     the worker is still in the stop step that armed it (stopTimeElapsed):
//     a timer that elapsed in any other step, or after the exit, does
//     nothing. Such a timer is stored in the worker under p.mu, and watch
//     stops it under p.mu once the worker exited, so none outlives its
//     worker. Timers that only close a connection or pipe (request_timeout,
//     the output drain) touch no pool state and take no lock; the goroutine
//     that armed them learns from Stop whether they fired.
//   - Counters live in a Stats (stats.go) shared by the pool's
//     generations: atomics, and Stats.mu, a leaf lock taken under p.mu,
//     never the other way round.
//   - A slow-request timer (slowlog.go) takes no lock but to start its
//     handling (startBackground), and holds none while it logs, reads
//     /proc or runs slowlog_command.
//   - A decision reads the pool's configuration once (p.decide, or
//     cfg := p.conf()) and passes it down, so that an Update cannot hand
//     one decision two configurations.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"reflect"
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
	// ErrNotAccepted: no worker could be connected to (they were exiting
	// or crashing at start); the request was not sent.
	ErrNotAccepted = errors.New("no worker accepted the request")
)

// ErrorStatus is the HTTP status that answers a request whose Serve (or
// Fallback) failed with err before anything was answered: 503 when the
// pool could not take it (the errors above, ErrFallbackBusy), 504 for
// request_timeout, 502 for a worker that failed. The front and the
// public sockets answer by it.
func ErrorStatus(err error) int {
	switch {
	case errors.Is(err, ErrQueueTimeout), errors.Is(err, ErrFailing), errors.Is(err, ErrStopping),
		errors.Is(err, ErrNotAccepted), errors.Is(err, ErrFallbackBusy):
		return 503
	case errors.Is(err, ErrTimeout):
		return 504
	}
	return 502
}

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
	Parent  *spawner.Parent
	Runtime *socket.RuntimeDir
	Logger  *slog.Logger
	// Getenv reads fcgivisor's own environment (for inherit_env and PATH).
	Getenv func(string) (string, bool)
	// Privileged: fcgivisor runs as root, so pools' user and group apply
	// (PHP-FPM ignores them otherwise, and so does fcgivisor).
	Privileged bool
	// Self is fcgivisor's executable, re-exec'ed to apply rlimit_nofile
	// (spawner.WithLimits); "" leaves rlimits alone.
	Self string

	// Stats hands each pool the counters of its name, shared by its
	// generations (stats.go); nil: each Pool counts on its own.
	Stats *StatsSet

	// Start starts a process, a worker or a slowlog_command; nil:
	// Parent.Start. Dial connects to a worker's socket; nil: a Unix-socket
	// dial. Tests set both to run a pool against scripted processes on
	// fake time (testing/synctest), which real processes and sockets would
	// keep from advancing.
	Start func(spawner.Spec) (Process, error)
	Dial  func(ctx context.Context, path string) (net.Conn, error)
}

// Process is a started worker process: one the Parent started, or a
// test's scripted one.
type Process interface {
	Pid() int
	// Done is closed once the process has exited and was reaped; Status
	// is then its wait status.
	Done() <-chan struct{}
	Status() unix.WaitStatus
	// SignalGroup sends sig to the process's group; ESRCH is no error.
	SignalGroup(sig syscall.Signal) error
}

// reaped is a Process the Parent started.
type reaped struct{ p *spawner.Process }

func (r reaped) Pid() int                             { return r.p.Pid }
func (r reaped) Done() <-chan struct{}                { return r.p.Done() }
func (r reaped) Status() unix.WaitStatus              { return r.p.Status() }
func (r reaped) SignalGroup(sig syscall.Signal) error { return r.p.SignalGroup(sig) }

// exited reports, without blocking, whether proc has exited.
func exited(proc Process) bool {
	select {
	case <-proc.Done():
		return true
	default:
		return false
	}
}

// defaults fills the OS behind env's fields that are nil.
func (env *Env) defaults() {
	if env.Start == nil {
		parent := env.Parent
		env.Start = func(spec spawner.Spec) (Process, error) {
			proc, err := parent.Start(spec)
			if err != nil {
				return nil, err
			}
			return reaped{proc}, nil
		}
	}
	if env.Dial == nil {
		env.Dial = func(ctx context.Context, path string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	}
}

// Pool is a set of worker processes running one command.
type Pool struct {
	cfgp atomic.Pointer[conf.Pool] // swapped by Update; see conf()
	env  Env
	log  *slog.Logger
	argv []string
	penv []string // the workers' whole environment

	ready chan struct{} // closed once the initial workers were spawned
	done  chan struct{} // closed when Run returns
	exits chan *worker  // worker watchers → owner
	pokes chan struct{} // buffered 1: ask the owner to re-run its scaling decision

	// selfLimit is the number of requests after which a worker exits by
	// itself, 0 when unknown: php-cgi's PHP_FCGI_MAX_REQUESTS. A worker
	// that reached it gets no more requests, so none is sent into the
	// moment it closes its connection and exits; its replacement starts at
	// once.
	selfLimit int64
	cred      *syscall.Credential // user/group of the workers; nil: fcgivisor's own

	// startFailed: every initial worker died before it served (Ready).
	startFailed atomic.Bool

	// next, once set by Drain, takes every new request: this pool only
	// finishes what it has.
	next atomic.Pointer[Pool]

	stats   *Stats    // shared with the pool's other generations (stats.go)
	started time.Time // this generation's start

	// Slow-request handling (slowlog.go) runs on timer goroutines; Run
	// waits for those going on (bg) before it returns. quit is closed
	// when Run returns: a slowlog_command still running is killed.
	bg      sync.WaitGroup
	quit    chan struct{}
	slowRun atomic.Int32 // slowlog_command runs going on

	mu          sync.Mutex
	state       State
	draining    bool // Drain: no spawning; workers stop once idle; Run returns when none is left
	bgClosed    bool // Run has returned: no more slow-request handling starts (bg)
	workers     map[*worker]struct{}
	idle        []*slot // free slots, used LIFO
	waiters     []*waiter
	busyWorkers int    // workers with a busy slot, for Stats.maxBusy
	fallbacks   int    // CGI fallback runs going on (fallback.go)
	failures    int    // young deaths in a row
	lastErr     string // last unexpected exit / start error
	lastStderr  string // last line a worker wrote to stderr
}

type worker struct {
	proc     Process
	path     string // socket path
	started  time.Time
	lifetime time.Duration // max_lifetime drawn for this worker; 0 = none
	log      *slog.Logger
	slots    []*slot
	outDone  chan struct{}
	// proc's /proc/PID/statm, open for its life (nil when it could not
	// be opened): RSS, read with one pread, and never another process's
	// once the pid is reused.
	statm *os.File
	// rssRead is when rssLast was read from statm, in ns of the
	// monotonic clock since started (0: never): a request's end reuses a
	// reading younger than rssReuse.
	rssRead atomic.Int64
	rssLast atomic.Int64

	// guarded by Pool.mu
	last      *RequestStatus // the last request it finished
	served    int64
	busy      int       // slots serving a request
	idleSince time.Time // when busy last became 0
	gone      bool      // exited, retiring, failed to accept, or being stopped: hand out no more slots
	retiring  bool      // recycled: stopped once busy is 0
	killed    bool      // killed by fcgivisor (timeout, protocol error): not a crash
	termed    bool      // fcgivisor sent SIGTERM: a clean exit is not the worker's own
	// exitPending: it died by itself while live, and the owner has not
	// yet accounted for the exit (onExit, which decides the crash-loop
	// backoff). It keeps its place in the count of live workers until
	// then, so that the scaler does not replace it without the backoff.
	exitPending bool
	stop        stopStep    // how far termLocked's sequence got
	stopTimer   *time.Timer // the pending step of that sequence; watch stops it
}

type slot struct {
	w    *worker
	conn *fastcgi.Conn // kept connection, nil when none
	// cpuStart is the worker's CPU time (ns) when the request
	// began, -1 until the request has read it (outside p.mu).
	cpuStart atomic.Int64
	// cpuEnd is the worker's CPU time (ns) when the slot's last request
	// ended, 0 when unknown (no request yet, or the clock could not be
	// read): the next request on the slot starts from it instead of
	// reading the clock again. Owned by the request holding the slot.
	cpuEnd int64

	// guarded by Pool.mu
	busy  bool
	req   *request
	since time.Time
}

// request is one request through Serve, for status and the slow-request
// log.
type request struct {
	method, uri string
	arrived     time.Time
	began       time.Time   // when it first got a slot; the request's goroutine's alone
	slow        atomic.Bool // its slow-request handling has begun: once per request
}

type waiter struct {
	ch    chan *slot // buffered 1; receives the slot, or nil when the pool fails/stops
	done  bool       // a slot or nil was sent, or the request gave up
	atMax bool       // counted in max_workers_reached
	req   *request
	since time.Time
}

// NewPool returns a pool for cfg; Run starts it.
func NewPool(cfg *conf.Pool, env Env) *Pool {
	env.defaults()
	p := &Pool{
		env:     env,
		log:     env.Logger.With("pool", cfg.Name),
		argv:    cfg.Command,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		exits:   make(chan *worker),
		pokes:   make(chan struct{}, 1),
		workers: make(map[*worker]struct{}),
		stats:   env.Stats.stats(cfg.Name),
		started: time.Now(),
		quit:    make(chan struct{}),
	}
	p.cfgp.Store(cfg)
	p.penv = workerEnv(cfg, env.Getenv)
	if env.Privileged {
		// main has checked that these resolve (CheckPrivileges).
		p.cred, _ = spawner.Credential(cfg.User, cfg.Group)
	}
	p.selfLimit = phpSelfLimit(cfg.Command[0], p.penv)
	return p
}

// CheckPrivileges checks a pool's user and group against how fcgivisor
// runs: as root, a pool must name its user (user = "root" to mean it), and
// the user and group must exist; as another user, they are ignored with a
// warning, as PHP-FPM does. Errors name the key.
func CheckPrivileges(cfg *conf.Pool, privileged bool, log *slog.Logger) error {
	return spawner.CheckCredential("pool."+cfg.Name, "workers", cfg.User, cfg.Group, privileged, log)
}

// ResolveCommand finds the executable of cfg's command[0] as starting a
// worker does (Pool.command), with getenv as the pool's Env.Getenv, so
// that a check can judge the file a start would execute.
func ResolveCommand(cfg *conf.Pool, getenv func(string) (string, bool)) (string, error) {
	return resolve(cfg.Command[0], cfg.Dir, workerEnv(cfg, getenv), getenv)
}

// resolve is spawner.Resolve with fcgivisor's own PATH from getenv.
func resolve(argv0, dir string, env []string, getenv func(string) (string, bool)) (string, error) {
	fcgivisorPath, _ := getenv("PATH")
	return spawner.Resolve(argv0, dir, env, fcgivisorPath)
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

// conf is the pool's current configuration. Update may replace it with one
// that differs only in live settings (NeedsRestart false).
func (p *Pool) conf() *conf.Pool { return p.cfgp.Load() }

// NeedsRestart reports whether moving a pool from old to new settings needs
// new workers: anything that shapes the worker process (command, env, dir,
// user, concurrency, limits) does; scaling limits, timeouts and the
// public socket's settings do not.
func NeedsRestart(old, new *conf.Pool) bool {
	a, b := *old, *new
	for _, c := range []*conf.Pool{&a, &b} {
		c.Scaling, c.Workers, c.MinWorkers, c.MaxWorkers, c.MinIdle, c.MaxIdle = "", 0, 0, 0, 0, 0
		c.IdleTimeout, c.RequestTimeout, c.QueueTimeout, c.StopTimeout, c.MaxLifetime = 0, 0, 0, 0, 0
		c.MaxRequests, c.MaxMemory, c.CGIFallback = 0, 0, false
		c.RequestSlowlogTimeout, c.SlowlogCommand = 0, nil
		// The public socket is the daemon's (package public), not the workers'.
		c.Listen, c.ListenMode, c.ListenOwner, c.ListenGroup, c.AllowedClients = "", 0, "", "", nil
	}
	return !reflect.DeepEqual(a, b)
}

// Update applies settings that do not need new workers (scaling limits,
// timeouts, recycling limits); the owner re-decides at once.
func (p *Pool) Update(cfg *conf.Pool) {
	p.cfgp.Store(cfg)
	p.poke()
}

// Name is the pool's name.
func (p *Pool) Name() string { return p.conf().Name }

// StartFailed reports, once Ready is closed, whether every initial worker
// died before it served: a reload does not hand over to such a generation.
func (p *Pool) StartFailed() bool { return p.startFailed.Load() }

// Done is closed when Run has returned: every worker has exited.
func (p *Pool) Done() <-chan struct{} { return p.done }

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
			pids = append(pids, w.proc.Pid())
		}
	}
	sort.Ints(pids)
	return pids
}

// Run starts the workers and supervises them until ctx is done, then stops
// them all (SIGTERM, SIGKILL after stop_timeout or as soon as hard is done)
// and returns once every worker has exited.
//
// Run is the pool's owner: only it spawns workers. It acts on worker exits,
// on pokes from the request path (a request queued, a worker retired) and
// on a tick, and each time re-decides from the pool's exact numbers.
func (p *Pool) Run(ctx, hard context.Context) {
	defer close(p.done)
	defer p.closeBackground()
	o := &owner{p: p, tokens: float64(spawnBurst(p.conf())), refilled: time.Now()}
	o.scale(time.Now())
	p.awaitInitial()

	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	for {
		if p.drained() {
			return
		}
		select {
		case w := <-p.exits:
			if delay := p.onExit(w); delay > 0 && o.retry == nil {
				o.retry = time.NewTimer(delay)
			}
			o.scale(time.Now())
		case <-p.pokes:
			o.scale(time.Now())
		case <-o.retryC():
			o.retry = nil
			o.scale(time.Now())
		case now := <-tick.C:
			o.tick(now)
			o.scale(now)
		case <-ctx.Done():
			if o.retry != nil {
				o.retry.Stop()
			}
			p.stopAll(hard)
			return
		}
	}
}

// awaitInitial waits until the initial workers serve (answered the probe)
// or died, records whether they all died (StartFailed), and closes Ready:
// a new generation takes over from an old one only then.
func (p *Pool) awaitInitial() {
	p.mu.Lock()
	initial := make([]*worker, 0, len(p.workers))
	for w := range p.workers {
		initial = append(initial, w)
	}
	p.mu.Unlock()
	var probes sync.WaitGroup
	var alive atomic.Int64
	for _, w := range initial {
		probes.Go(func() {
			if p.probe(w) {
				alive.Add(1)
			}
		})
	}
	probes.Wait()
	p.startFailed.Store(len(initial) > 0 && alive.Load() == 0)
	p.mu.Lock()
	if p.state == Starting {
		p.state = Running
	}
	p.mu.Unlock()
	close(p.ready)
}

// Drain winds the pool down after a reload removed or replaced it: new
// requests go to next (when not nil); requests already here are served;
// each worker stops once idle and no request waits; no worker is started;
// Run returns when the last worker has exited.
func (p *Pool) Drain(next *Pool) {
	p.mu.Lock()
	if next != nil {
		p.next.Store(next)
		// Queued requests move to the successor at once.
		p.wakeWaitersLocked()
	}
	p.draining = true
	p.mu.Unlock()
	p.poke()
}

// drained reports whether a draining pool has no worker left; it is then
// stopping.
func (p *Pool) drained() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.draining || len(p.workers) > 0 {
		return false
	}
	p.state = Stopping
	p.wakeWaitersLocked()
	return true
}

func (p *Pool) liveLocked() int {
	n := 0
	for w := range p.workers {
		if !w.gone {
			n++
		}
	}
	return n
}

// onExit accounts for an exited worker and returns the backoff before the
// pool may spawn again (0: at once).
func (p *Pool) onExit(w *worker) (delay time.Duration) {
	var fx effects
	p.mu.Lock()
	delete(p.workers, w) // watch already dropped its idle slots
	p.stats.exits.Add(1)
	switch {
	case p.state == Stopping:
	case w.killed || w.retiring || w.termed || w.served > 0 || time.Since(w.started) >= minUptime:
		p.failures = 0
	default:
		delay = p.youngDeathLocked(&fx)
	}
	p.mu.Unlock()
	fx.run()
	return delay
}

// youngDeathLocked counts a worker that died at start and returns the
// backoff; failLimit in a row make the pool failing.
func (p *Pool) youngDeathLocked(fx *effects) time.Duration {
	p.failures++
	if p.failures >= failLimit && p.state != Failing && p.state != Stopping {
		p.state = Failing
		fx.logs(p.log, slog.LevelError, "pool failing: workers exit at start; backing off", "failures", p.failures, "last", p.lastErr)
		p.wakeWaitersLocked()
	}
	return backoff(p.failures)
}

func backoff(n int) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// spawn starts one worker with cfg; false if it could not be started.
func (p *Pool) spawn(cfg *conf.Pool) bool {
	p.stats.spawns.Add(1)
	w, err := p.start(cfg)
	if err != nil {
		p.log.Error("start worker", "err", err)
		p.mu.Lock()
		p.lastErr = err.Error()
		p.mu.Unlock()
		return false
	}
	if l := cfg.MaxLifetime; l > 0 {
		// Spread between 90% and 100% so that a pool's workers do not all
		// retire at once.
		w.lifetime = l - time.Duration(rand.Int64N(int64(l)/10+1))
	}
	p.mu.Lock()
	p.workers[w] = struct{}{}
	w.idleSince = w.started
	for range cfg.Concurrency {
		s := &slot{w: w}
		w.slots = append(w.slots, s)
		p.putLocked(s)
	}
	p.mu.Unlock()
	go p.watch(w)
	return true
}

// command is the pool's command under cfg as a spawner.Spec: resolved,
// with its dir, environment, credentials and rlimits. Callers set the
// stdio.
func (p *Pool) command(cfg *conf.Pool) (spawner.Spec, error) {
	exe, err := resolve(p.argv[0], cfg.Dir, p.penv, p.env.Getenv)
	if err != nil {
		return spawner.Spec{}, fmt.Errorf("command %q: %w", p.argv[0], err)
	}
	spec := spawner.Spec{Path: exe, Args: p.argv, Dir: cfg.Dir, Env: p.penv, Credential: p.cred}
	if n := cfg.RlimitNofile; n > 0 && p.env.Self != "" {
		spec = spawner.WithLimits(spec, p.env.Self, n)
	}
	return spec, nil
}

// start creates the worker's socket and process.
func (p *Pool) start(cfg *conf.Pool) (*worker, error) {
	spec, err := p.command(cfg)
	if err != nil {
		return nil, err
	}
	path := p.env.Runtime.NewWorkerPath(cfg.Name)
	ln, err := socket.WorkerListener(path)
	if err != nil {
		return nil, err
	}
	defer ln.Close() // the worker holds its own copy; the socket dies with it
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
	spec.Stdin, spec.Stdout, spec.Stderr = ln, stdoutW, stderrW
	proc, err := p.env.Start(spec)
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdoutR.Close()
		stderrR.Close()
		os.Remove(path)
		return nil, err
	}
	w := &worker{
		proc:    proc,
		path:    path,
		started: time.Now(),
		log:     p.log.With("pid", proc.Pid()),
		outDone: make(chan struct{}),
	}
	w.statm = openProc(proc.Pid())
	w.log.Debug("worker started", "socket", path)
	go p.logOutput(w, stdoutR, stderrR)
	return w, nil
}

// logOutput logs w's stdout and stderr line by line until both end, and
// then closes w.outDone.
func (p *Pool) logOutput(w *worker, stdout, stderr *os.File) {
	defer close(w.outDone)
	var wg sync.WaitGroup
	wg.Go(func() { spawner.LogLines(stdout, w.log, "stdout", nil) })
	wg.Go(func() {
		spawner.LogLines(stderr, w.log, "stderr", func(line string) {
			p.mu.Lock()
			p.lastStderr = line
			p.mu.Unlock()
		})
	})
	// Like exec.Cmd.WaitDelay: a grandchild may hold the pipes open after
	// the worker died; stop reading a second after its exit.
	<-w.proc.Done()
	t := time.AfterFunc(time.Second, func() { stdout.Close(); stderr.Close() })
	wg.Wait()
	t.Stop()
	stdout.Close()
	stderr.Close()
}

// probeTimeout bounds how long a pool's initial worker may take to answer
// the readiness probe; past it the worker counts as ready anyway (it may
// not implement FCGI_GET_VALUES: the spec asks it to, every library does).
const probeTimeout = 2 * time.Second

// probe connects to one of the pool's initial workers and waits for its
// answer to FCGI_GET_VALUES: then the worker accepts and reads
// connections, it serves. Pool.Ready waits for it, so that a new
// generation takes over from an old one (reload) or systemd hears READY=1
// only once workers serve. The probe's connection is closed at once; it is
// no request. A worker that dies ends the probe (its socket resets).
//
// It reports false when the worker is gone (refused or reset the probe):
// it died at start.
func (p *Pool) probe(w *worker) bool {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	nc, err := p.env.Dial(ctx, w.path)
	if err != nil {
		return false
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := fastcgi.NewConn(nc).GetValues("FCGI_MPXS_CONNS"); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			w.log.Warn("worker did not answer the readiness probe (FCGI_GET_VALUES) in time; taking it as ready", "err", err)
			return true
		}
		return false
	}
	w.log.Debug("worker serves", "after", time.Since(w.started).Round(time.Microsecond))
	return true
}

// watch waits for w to exit and reports it to the owner.
func (p *Pool) watch(w *worker) {
	<-w.proc.Done()
	p.mu.Lock()
	if w.stopTimer != nil {
		w.stopTimer.Stop()
	}
	w.exitPending = !w.gone && !w.killed && !w.retiring && !w.termed
	w.gone = true
	p.dropIdleLocked(w)
	p.mu.Unlock()
	<-w.outDone
	os.Remove(w.path)
	w.closeProc()
	st := w.proc.Status()
	p.mu.Lock()
	expected := p.state == Stopping || w.killed || w.retiring || w.termed
	if !expected {
		p.lastErr = spawner.Describe(st)
	}
	p.mu.Unlock()
	if expected {
		w.log.Info("worker exited", "status", spawner.Describe(st))
	} else {
		w.log.Warn("worker exited unexpectedly", "status", spawner.Describe(st), "uptime", time.Since(w.started).Round(time.Millisecond))
	}
	p.exits <- w
}

// stopAll stops every worker: SIGTERM to each group, SIGKILL past
// stop_timeout, and returns once all have exited.
func (p *Pool) stopAll(hard context.Context) {
	var fx effects
	d := p.decide()
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
		w.termed = true
		fx.signal(w, syscall.SIGTERM)
		live = append(live, w)
	}
	p.mu.Unlock()
	fx.run()
	kill := time.NewTimer(d.cfg.StopTimeout)
	defer kill.Stop()
	again := time.NewTimer(termRepeat) // see termRepeat
	defer again.Stop()
	hardC := hard.Done()
	for n := len(live); n > 0; {
		select {
		case <-again.C:
			for _, w := range live {
				if !exited(w.proc) {
					fx.signal(w, syscall.SIGTERM)
				}
			}
		case w := <-p.exits:
			// The leader is gone; children it left in its group go too.
			fx.signal(w, syscall.SIGKILL)
			p.mu.Lock()
			delete(p.workers, w)
			p.mu.Unlock()
			n--
		case <-kill.C:
			fx.logs(p.log, slog.LevelWarn, "workers did not stop within stop_timeout; killing", "remaining", n)
			for _, w := range live {
				fx.signal(w, syscall.SIGKILL)
			}
		case <-hardC:
			hardC = nil
			for _, w := range live {
				fx.signal(w, syscall.SIGKILL)
			}
		}
		fx.run()
	}
}
