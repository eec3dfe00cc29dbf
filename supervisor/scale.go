package supervisor

import (
	"log/slog"
	"sort"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
)

// Scaling:
//
//   - static: exactly `workers`; a worker that exits or retires is replaced.
//   - dynamic: starts `workers`; keeps at least min_idle idle workers and
//     min_workers in all, spawns one worker per `concurrency` queued
//     requests, never above max_workers; an idle worker above the floor is
//     stopped once idle for idle_timeout (above max_idle: after one second).
//   - ondemand: no worker until a request queues; spawns for the queue;
//     a worker idle for idle_timeout stops.
//
// Decisions use the pool's exact numbers (busy and idle slots, queued
// requests) and are taken as soon as something changes (a request queues, a
// worker exits or retires), not only on the tick. Spawning is rate-limited
// by a token bucket (spawnBurst at once, refilled spawnRefill times a
// second), so a stampede cannot fork-bomb the machine.

// excessIdleAfter is how long an idle worker above max_idle lives on.
const excessIdleAfter = time.Second

// spawnBurst is how many workers the pool may start at once; the budget
// refills at spawnRefill bursts a second. Growth is capped by max_workers
// and crash loops by backoff; this bounds the fork rate of a pool whose
// workers come and go fast (a tiny max_requests under load).
func spawnBurst(cfg *conf.Pool) int { return max(8, min(cfg.MaxWorkers, 64)) }

const spawnRefill = 10

// tickEvery is how often the owner re-checks ages, memory and idleness.
const tickEvery = 100 * time.Millisecond

// floor is the number of workers a pool with cfg never goes below.
func floor(cfg *conf.Pool) int {
	switch cfg.Scaling {
	case conf.Dynamic:
		return cfg.MinWorkers
	case conf.OnDemand:
		return 0
	}
	return cfg.Workers
}

// owner is the state only Run's goroutine touches.
type owner struct {
	p        *Pool
	retry    *time.Timer // backoff after young deaths: no spawn until it fires
	tokens   float64
	refilled time.Time
	lastRSS  time.Time
	started  bool
}

func (o *owner) retryC() <-chan time.Time {
	if o.retry == nil {
		return nil
	}
	return o.retry.C
}

// ceiling is the most workers a pool with cfg runs: static pools run
// exactly `workers`, the others grow up to max_workers.
func ceiling(cfg *conf.Pool) int {
	if cfg.Scaling == conf.Dynamic || cfg.Scaling == conf.OnDemand {
		return cfg.MaxWorkers
	}
	return cfg.Workers
}

// countLocked counts the live workers as the scaler does, and the idle
// ones among them. A worker that died by itself counts until onExit has
// decided the backoff of its replacement.
func (p *Pool) countLocked() (live, idle int) {
	for w := range p.workers {
		if w.exitPending {
			live++
			continue
		}
		if w.gone {
			continue
		}
		live++
		if w.busy == 0 {
			idle++
		}
	}
	return live, idle
}

// wantLocked decides how many workers to start now from the pool's
// numbers.
func (p *Pool) wantLocked(c *conf.Pool, initial bool) int {
	live, idleWorkers := p.countLocked()
	queued := p.queuedLocked()
	switch c.Scaling {
	case conf.Dynamic, conf.OnDemand:
		need := (queued + c.Concurrency - 1) / c.Concurrency
		if c.Scaling == conf.Dynamic {
			need = max(need, c.MinIdle-idleWorkers)
		}
		need = max(need, floor(c)-live)
		if initial && c.Scaling == conf.Dynamic {
			need = max(need, c.Workers-live)
		}
		return max(min(need, c.MaxWorkers-live), 0)
	default:
		return max(c.Workers-live, 0)
	}
}

// atMaxLocked counts in max_workers_reached, once each, the queued
// requests that the workers about to start (spawn of them) leave waiting
// while the pool is at its ceiling: they wait for a busy worker because
// the pool may not start another (issue 13: once per request that waited,
// not once per decision). Waiters are served in order, so the first
// spawn×concurrency of them get the new workers' slots.
func (p *Pool) atMaxLocked(c *conf.Pool, spawn int) {
	live, _ := p.countLocked()
	if live+spawn < ceiling(c) {
		return
	}
	i := 0
	for _, wt := range p.waiters {
		if wt.done {
			continue
		}
		if i >= spawn*c.Concurrency && !wt.atMax {
			wt.atMax = true
			p.stats.maxReached.Add(1)
		}
		i++
	}
}

// scale starts the workers the pool needs, within the spawn budget, unless
// a crash-loop backoff is pending.
func (o *owner) scale(now time.Time) {
	p := o.p
	if o.retry != nil {
		return
	}
	d := p.decide()
	burst := float64(spawnBurst(d.cfg))
	o.tokens = min(burst, o.tokens+now.Sub(o.refilled).Seconds()*spawnRefill*burst)
	o.refilled = now
	p.mu.Lock()
	n := p.scaleLocked(d, !o.started, int(o.tokens))
	p.mu.Unlock()
	d.run()
	if n < 0 {
		return
	}
	o.started = true
	for range n {
		o.tokens--
		if !p.spawn(d.cfg) {
			var fx effects
			p.mu.Lock()
			delay := p.youngDeathLocked(&fx)
			p.mu.Unlock()
			fx.run()
			o.retry = time.NewTimer(delay)
			return
		}
	}
}

// scaleLocked returns how many workers to start now, at most tokens (the
// spawn budget), or -1 when it starts none because it is stopping or
// draining (a draining pool retires its idle workers once no request
// waits).
func (p *Pool) scaleLocked(d *decision, initial bool, tokens int) int {
	if p.state == Stopping {
		return -1
	}
	if p.draining {
		if p.queuedLocked() == 0 {
			for w := range p.workers {
				if w.busy == 0 {
					p.retireLocked(d, w, "reload")
				}
			}
		}
		return -1
	}
	n := min(p.wantLocked(d.cfg, initial), tokens)
	if p.state == Failing {
		// One probe worker at a time while failing.
		n = min(n, 1)
	}
	p.atMaxLocked(d.cfg, n)
	return n
}

// tick recycles by age and memory, stops idle workers, and brings a
// failing pool back once a worker has survived minUptime.
func (o *owner) tick(now time.Time) {
	p := o.p
	d := p.decide()
	var rss map[*worker]int64
	if d.cfg.MaxMemory > 0 && now.Sub(o.lastRSS) >= time.Second {
		o.lastRSS = now
		rss = p.sampleRSS()
	}
	p.mu.Lock()
	p.tickLocked(d, now, rss)
	p.mu.Unlock()
	d.run()
}

// sampleRSS reads the resident set size of each live worker, without
// holding p.mu.
func (p *Pool) sampleRSS() map[*worker]int64 {
	p.mu.Lock()
	ws := make([]*worker, 0, len(p.workers))
	for w := range p.workers {
		if !w.gone {
			ws = append(ws, w)
		}
	}
	p.mu.Unlock()
	rss := make(map[*worker]int64, len(ws))
	for _, w := range ws {
		if n, err := w.rss(); err == nil {
			rss[w] = n
		}
	}
	return rss
}

// tickLocked is tick's decision on the pool's numbers and the sampled
// rss (nil when not sampled this time).
func (p *Pool) tickLocked(d *decision, now time.Time, rss map[*worker]int64) {
	if p.state == Failing && p.failures > 0 {
		for w := range p.workers {
			if !w.gone && now.Sub(w.started) >= minUptime {
				p.state = Running
				p.failures = 0
				d.logs(p.log, slog.LevelInfo, "pool recovered")
				break
			}
		}
	}
	var idle []*worker
	for w := range p.workers {
		if w.gone {
			continue
		}
		if n, ok := rss[w]; ok && n > int64(d.cfg.MaxMemory) {
			p.retireLocked(d, w, "max_memory")
			continue
		}
		if w.lifetime > 0 && now.Sub(w.started) >= w.lifetime {
			p.retireLocked(d, w, "max_lifetime")
			continue
		}
		if w.busy == 0 {
			idle = append(idle, w)
		}
	}
	p.stopIdleLocked(d, now, idle)
}

// stopIdleLocked stops idle workers above the floor: those above max_idle
// (dynamic) after excessIdleAfter, the others after idle_timeout.
func (p *Pool) stopIdleLocked(d *decision, now time.Time, idle []*worker) {
	c := d.cfg
	if c.Scaling != conf.Dynamic && c.Scaling != conf.OnDemand {
		return
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].idleSince.Before(idle[j].idleSince) })
	live := p.liveLocked()
	keepIdle := 0
	if c.Scaling == conf.Dynamic {
		keepIdle = c.MinIdle
	}
	for i, w := range idle {
		if live <= floor(c) || len(idle)-i <= keepIdle || p.queuedLocked() > 0 {
			return
		}
		after := c.IdleTimeout
		if c.Scaling == conf.Dynamic && len(idle)-i > c.MaxIdle {
			after = min(after, excessIdleAfter)
		}
		if now.Sub(w.idleSince) < after {
			continue
		}
		p.retireLocked(d, w, "idle")
		live--
	}
}
