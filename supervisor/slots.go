package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"syscall"
	"time"
)

// Slots: the request path. Everything here runs under p.mu or takes it, and
// never blocks on anything but a waiter's own channel.

// putLocked makes s available: to the longest waiting request, or idle.
// It reports whether a waiting request got it.
func (p *Pool) putLocked(s *slot) bool {
	for len(p.waiters) > 0 {
		wt := p.waiters[0]
		p.waiters[0] = nil
		p.waiters = p.waiters[1:]
		if wt.done {
			continue
		}
		wt.done = true
		p.busyLocked(s, wt.req)
		wt.ch <- s
		return true
	}
	p.idle = append(p.idle, s)
	return false
}

// busyLocked marks s as serving req.
func (p *Pool) busyLocked(s *slot, req *request) {
	s.busy = true
	s.req = req
	s.since = time.Now()
	s.cpuStart.Store(-1)
	s.w.busy++
	if s.w.busy == 1 {
		p.busyWorkers++
		raise(&p.stats.maxBusy, int64(p.busyWorkers))
	}
}

// freeLocked marks s as no longer serving; a retiring worker whose last
// request ended is stopped.
func (p *Pool) freeLocked(d *decision, s *slot) {
	if !s.busy {
		return
	}
	s.busy = false
	s.req = nil
	w := s.w
	w.busy--
	if w.busy == 0 {
		p.busyWorkers--
		w.idleSince = time.Now()
		if w.retiring && !w.termed {
			p.termLocked(d, w)
		}
		if p.draining {
			p.poke()
		}
	}
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

// queuedLocked is the number of requests waiting for a slot.
func (p *Pool) queuedLocked() int {
	n := 0
	for _, wt := range p.waiters {
		if !wt.done {
			n++
		}
	}
	return n
}

func (p *Pool) oldestWaiterLocked() *waiter {
	for _, wt := range p.waiters {
		if !wt.done {
			return wt
		}
	}
	return nil
}

func (p *Pool) dropIdleLocked(w *worker) {
	kept := p.idle[:0]
	for _, s := range p.idle {
		if s.w == w {
			if s.conn != nil {
				s.conn.Close()
				s.conn = nil
			}
			continue
		}
		kept = append(kept, s)
	}
	clear(p.idle[len(kept):])
	p.idle = kept
}

// poke asks the owner to re-run its scaling decision now.
func (p *Pool) poke() {
	select {
	case p.pokes <- struct{}{}:
	default:
	}
}

// acquire returns a free slot for req, waiting up to queue_timeout for
// one. Idle slots are taken last-in first-out (warm workers; spare ones
// stay idle and can be stopped). For a retry, avoid is the worker the
// request just failed on: the slot taken is then one of the worker that
// has served the fewest requests (the least likely to be about to exit by
// itself), not avoid's if possible.
func (p *Pool) acquire(ctx context.Context, req *request, avoid *worker) (*slot, error) {
	cfg := p.conf()
	p.mu.Lock()
	if err := p.unavailableLocked(); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	if len(p.idle) == 0 && p.next.Load() != nil {
		// Draining, with a successor: do not queue here.
		p.mu.Unlock()
		return nil, errRedirect
	}
	if len(p.idle) > 0 {
		s := p.takeIdleLocked(avoid)
		p.busyLocked(s, req)
		p.mu.Unlock()
		return s, nil
	}
	wt := &waiter{ch: make(chan *slot, 1), req: req, since: time.Now()}
	p.waiters = append(p.waiters, wt)
	raise(&p.stats.maxQueue, int64(p.queuedLocked()))
	if live, _ := p.countLocked(); live >= ceiling(cfg) && !p.draining {
		// No worker may be started for it: it waits for a busy one. (The
		// scaler counts those that its spawns leave waiting: atMaxLocked.)
		wt.atMax = true
		p.stats.maxReached.Add(1)
	}
	p.mu.Unlock()
	// The scaler decides on exact numbers, at once rather than at its next
	// tick: a queued request is the signal to spawn.
	p.poke()
	return p.await(ctx, wt)
}

// takeIdleLocked takes an idle slot off p.idle, the last one put there,
// or for a retry (avoid set) one of the worker that has served the fewest
// requests, not avoid's if possible. There must be one.
func (p *Pool) takeIdleLocked(avoid *worker) *slot {
	n := len(p.idle)
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
	return s
}

// await waits up to queue_timeout for the queued request wt to be handed
// a slot.
func (p *Pool) await(ctx context.Context, wt *waiter) (*slot, error) {
	d := p.decide()
	var timeout <-chan time.Time
	if d.cfg.QueueTimeout > 0 {
		timer := time.NewTimer(d.cfg.QueueTimeout)
		defer timer.Stop()
		timeout = timer.C
	} else {
		timeout = closedTime
	}
	var err error
	select {
	case s := <-wt.ch:
		if s != nil {
			return s, nil
		}
		if p.next.Load() != nil {
			return nil, errRedirect
		}
		p.mu.Lock()
		err = p.unavailableLocked()
		p.mu.Unlock()
		if err == nil {
			err = ErrQueueTimeout
		}
		return nil, err
	case <-timeout:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	p.mu.Lock()
	if wt.done {
		// A slot was handed over as we gave up: pass it on.
		if s := <-wt.ch; s != nil {
			p.freeLocked(d, s)
			if !s.w.gone {
				p.putLocked(s)
			}
		}
	}
	wt.done = true
	p.mu.Unlock()
	d.run()
	return nil, err
}

// errRedirect tells Serve that a draining pool hands the request to its
// successor.
var errRedirect = errors.New("pool replaced by a reload")

// closedTime is a channel that is always ready: queue_timeout 0 means no
// waiting at all.
var closedTime = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()

func (p *Pool) unavailableLocked() error {
	switch p.state {
	case Failing:
		return fmt.Errorf("%w (last: %s)", ErrFailing, p.lastErr)
	case Stopping:
		return ErrStopping
	}
	return nil
}

// outcome is how a request's attempt on a slot ended; release acts on it.
type outcome int

const (
	// notCounted: the attempt does not count toward the worker's limits
	// (it never reached the worker, or the worker is being killed for it).
	// The connection is closed.
	notCounted outcome = iota
	// droppedUnread: the worker closed the connection with the request
	// unread. It is likely exiting: the slot goes where it is taken last.
	droppedUnread
	// served: the worker handled (or may have handled) the request, which
	// counts toward its limits. The connection is closed.
	served
	// servedKeepConn: served, and the connection can carry another
	// request.
	servedKeepConn
)

// release returns s to the pool after a request that ended as out; last,
// when not nil, is the request as its worker's last one.
func (p *Pool) release(s *slot, out outcome, last *RequestStatus) {
	if out != servedKeepConn && s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	d := p.decide()
	p.mu.Lock()
	w := s.w
	if last != nil {
		w.last = last
	}
	if out == served || out == servedKeepConn {
		p.countServedLocked(d, w)
	}
	p.freeLocked(d, s)
	handed := false
	switch {
	case w.gone || p.state == Stopping:
		if s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
	case out == droppedUnread && len(p.waiters) == 0:
		p.idle = append(p.idle, nil)
		copy(p.idle[1:], p.idle)
		p.idle[0] = s
	default:
		handed = p.putLocked(s)
	}
	p.mu.Unlock()
	d.run()
	if handed {
		// The request handed the slot is ready to run, but on a busy
		// process (one P by default) it would run only once this goroutine
		// blocks, after it has written its own answer to its client: the
		// worker would sit idle meanwhile. Yield, so that the next request
		// goes to the worker first and the worker's work overlaps ours
		// (bench/README.md: +11-22 % req/s at 32 clients on 4 workers).
		runtime.Gosched()
	}
}

// countServedLocked counts a request w served and retires w once it has
// served its max_requests, or the number after which it exits by itself.
func (p *Pool) countServedLocked(d *decision, w *worker) {
	w.served++
	switch {
	case d.cfg.MaxRequests > 0 && w.served >= int64(d.cfg.MaxRequests):
		p.retireLocked(d, w, "max_requests")
	case p.selfLimit > 0 && w.served >= p.selfLimit:
		// php-cgi exits by itself now (PHP_FCGI_MAX_REQUESTS): a
		// request sent to it would race its exit. The SIGTERM that
		// retiring sends only says the same thing.
		p.retireLocked(d, w, "self_limit")
	}
}

// retireLocked recycles w gracefully: it gets no new request, the owner
// starts its replacement where the pool needs the capacity, and w is
// stopped (SIGTERM, SIGKILL past stop_timeout) once its requests in
// progress are done.
func (p *Pool) retireLocked(d *decision, w *worker, cause string) {
	if w.gone {
		return
	}
	w.gone = true
	w.retiring = true
	p.dropIdleLocked(w)
	p.stats.recycle(cause)
	d.logs(w.log, slog.LevelInfo, "recycling worker", "cause", cause, "requests", w.served, "age", time.Since(w.started).Round(time.Millisecond))
	if w.busy == 0 {
		p.termLocked(d, w)
	}
	p.poke()
}

// termRepeat is when an idle worker that got SIGTERM and still runs gets
// it again: php-cgi loses a SIGTERM that lands just before it blocks in
// accept() (its handler only sets a flag), and would otherwise wait out
// stop_timeout.
const termRepeat = 500 * time.Millisecond

// stopStep is how far termLocked's sequence has gone in stopping a worker
// (guarded by Pool.mu). Steps only advance; each timer of the sequence
// acts only in the step that armed it (stopTimeElapsed):
//
//	notStopped ──termLocked: SIGTERM──▶ termSent ──termRepeat: SIGTERM──▶ termRepeated ──stop_timeout: SIGKILL──▶ killSent
//	any ──kill: SIGKILL──▶ killSent
//	any ──the process exited──▶ watch stops the pending timer
type stopStep int

const (
	notStopped stopStep = iota
	termSent
	termRepeated
	killSent
)

// termLocked sends SIGTERM to w's group, again after termRepeat, and
// SIGKILL past stop_timeout.
func (p *Pool) termLocked(d *decision, w *worker) {
	w.termed = true
	w.stop = termSent
	d.signal(w, syscall.SIGTERM)
	stop := d.cfg.StopTimeout
	first := min(termRepeat, stop)
	w.stopTimer = time.AfterFunc(first, func() { p.stopTimeElapsed(w, termSent, stop-first) })
}

// stopTimeElapsed is the timer of stop step armed: it acts only when w has
// neither exited nor moved to another step since. From termSent it sends
// SIGTERM again and arms the step that sends SIGKILL after rest.
func (p *Pool) stopTimeElapsed(w *worker, armed stopStep, rest time.Duration) {
	var fx effects
	p.mu.Lock()
	if exited(w.proc) || w.stop != armed {
		p.mu.Unlock()
		return
	}
	switch armed {
	case termSent:
		w.stop = termRepeated
		fx.signal(w, syscall.SIGTERM)
		w.stopTimer = time.AfterFunc(rest, func() { p.stopTimeElapsed(w, termRepeated, 0) })
	case termRepeated:
		w.stop = killSent
		fx.logs(w.log, slog.LevelWarn, "worker did not stop within stop_timeout; killing it")
		fx.signal(w, syscall.SIGKILL)
	}
	p.mu.Unlock()
	fx.run()
}

// killLocked stops w at once, its whole process group, ending any stop
// sequence.
func (p *Pool) killLocked(fx *effects, w *worker) {
	w.gone = true
	p.dropIdleLocked(w)
	if w.stopTimer != nil {
		w.stopTimer.Stop()
	}
	w.stop = killSent
	fx.signal(w, syscall.SIGKILL)
}

// kill stops w at once (its whole process group) because of how it served
// a request; it is replaced without counting as a crash.
func (p *Pool) kill(w *worker, why string) {
	var fx effects
	p.mu.Lock()
	w.killed = true
	fx.logs(w.log, slog.LevelWarn, "killing worker", "reason", why)
	p.killLocked(&fx, w)
	p.mu.Unlock()
	fx.run()
	p.poke()
}

// markGone stops handing out slots of w: it refused or dropped a new
// connection, so it is exiting or broken. Should it still run, it is killed
// so that it is replaced; its exit is accounted as what it is (a crash at
// start still backs off).
func (p *Pool) markGone(w *worker) {
	var fx effects
	p.mu.Lock()
	if w.gone || exited(w.proc) {
		w.gone = true
		p.dropIdleLocked(w)
	} else {
		p.killLocked(&fx, w)
	}
	p.mu.Unlock()
	fx.run()
	p.poke()
}

// Roll recycles every worker of the pool (SIGUSR2): each gets no new
// request, its replacement starts first, and it stops once idle.
func (p *Pool) Roll() {
	d := p.decide()
	p.mu.Lock()
	if p.state != Stopping {
		for w := range p.workers {
			p.retireLocked(d, w, "restart")
		}
	}
	p.mu.Unlock()
	d.run()
}
