package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/fastcgi"
	"golang.org/x/sys/unix"
)

// replayLimit is how much of a request body is kept so that the request
// can be sent again after a worker closed its connection unread.
const replayLimit = 64 << 10

// deathGrace is how long a re-send waits to learn whether the worker that
// dropped the request is dying. A killed or exiting process is reaped
// within a few ms on a quiet machine; 20 ms was too short under load (the
// race detector, parallel tests: a php-cgi that crashed on exit(3) was
// taken for one that dropped the request unread, and the request was sent
// to two more workers). It delays only a re-send, or a 502.
const deathGrace = 100 * time.Millisecond

// maxDials bounds the connection attempts of one request that reached no
// worker. A failed connect never reached a worker, so it is not a send.
const maxDials = 8

// errKeptClosed: the worker of the slot taken had closed its kept
// connection after its last answer; the request was not sent.
var errKeptClosed = errors.New("the worker closed its kept connection")

// Serve runs req on a worker slot of the pool. handle reads the streaming
// response; the slot stays busy until handle returns. handle must wrap
// errors from reading the response with %w so that a protocol violation
// (fastcgi.ErrProtocol) is seen and the worker replaced.
//
// Retry rule (issue 11): the request is sent again, to another worker
// where one is free, only when it cannot have been processed. On a Unix
// socket the kernel tells:
//   - the connect failed: never sent (not a send; at most maxDials);
//   - EPIPE: the worker had closed the connection before our write;
//   - ECONNRESET before any response byte: the worker closed it with our
//     request unread in its receive queue or backlog (a worker exiting by
//     itself after PHP_FCGI_MAX_REQUESTS or after an error page as gitweb
//     does, a worker killed before it read).
//
// That proof may repeat, one exiting worker after another, so the sends
// are not limited to one: they are bounded by twice the pool's workers,
// plus one (maxResends), and a re-send is decided only within queue_timeout of the
// request's arrival (when it is not 0) and while ctx lasts. A plain EOF before any
// response byte means the worker read the request and then closed: it may
// have run it, so that is a 502, never a re-send (a request that crashes
// its worker must not crash a second one). A re-send goes on a fresh
// connection.
//
// A worker whose kept connection is found closed when its slot is taken
// (it exited or is exiting after its last answer) does not get the request
// while another worker has an idle slot.
//
// Errors: ErrQueueTimeout, ErrFailing, ErrStopping, ErrNotAccepted
// (nothing was sent: 503); ErrTimeout (504); others are worker failures
// (502) or handle's own.
//
// uri names the request in status output and the slow-request log, with
// its REQUEST_METHOD. Counted per request (Stats): accepted; the wait for
// a slot (fcgivisor_queue_wait_seconds) once it got one or gave up
// waiting; the time it held a worker slot, from the first slot to the end
// of handle (fcgivisor_request_duration_seconds), once it got one.
func (p *Pool) Serve(ctx context.Context, uri string, req *fastcgi.Request, handle func(*fastcgi.Response) error) error {
	// Replaced by a reload: the new generation takes new requests.
	p = p.live()
	rq := &request{method: fastcgi.Value(req.Params, "REQUEST_METHOD"), uri: uri, arrived: time.Now()}
	p.stats.accepted.Add(1)
	err := p.serve(ctx, rq, req, handle)
	if !rq.began.IsZero() {
		p.stats.duration.observe(time.Since(rq.began))
	}
	return err
}

// serve is Serve's work on p, which a draining p hands to its successor.
func (p *Pool) serve(ctx context.Context, rq *request, req *fastcgi.Request, handle func(*fastcgi.Response) error) error {
	r := *req
	var body *replayBody
	if req.Body != nil {
		body = &replayBody{r: req.Body}
		r.Body = body
	}
	cfg := p.conf()
	var deadline time.Time
	if qt := cfg.QueueTimeout; qt > 0 {
		deadline = rq.arrived.Add(qt)
	}
	sent, dials := 0, 0
	var avoid *worker
	for {
		s, err := p.acquire(ctx, rq, avoid)
		if errors.Is(err, errRedirect) {
			// Not sent here (or re-sendable, body rewound): the new
			// generation serves it.
			return p.next.Load().serve(ctx, rq, &r, handle)
		}
		p.waited(ctx, rq, err)
		if err != nil {
			return err
		}
		if avoid != nil && s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
		wasSent, retry, err := p.serveOn(ctx, s, rq, &r, handle)
		if wasSent {
			sent++
		} else {
			dials++
		}
		if !retry {
			return err
		}
		// The body is rewound even when nothing was sent: a short one
		// was read to go out with the head (fastcgi inlineBody).
		if dials >= maxDials || sent > p.maxResends(cfg) || (sent > 0 && !deadline.IsZero() && time.Now().After(deadline)) ||
			(body != nil && !body.rewind()) {
			if sent == 0 {
				// No worker could even be reached: the pool cannot serve.
				return fmt.Errorf("%w: %w", ErrNotAccepted, err)
			}
			// A reset may also come from a worker that read part of the
			// request and crashed: not proof enough for a 503.
			return err
		}
		avoid = s.w
		s.w.log.Debug("retrying request: the worker did not read it", "err", err, "sent", sent)
	}
}

// waited records, at rq's first acquire, how long it waited for a slot:
// when it got one, or gave up waiting (queue_timeout, the client gone),
// not when it was refused at once (failing, stopping).
func (p *Pool) waited(ctx context.Context, rq *request, err error) {
	if !rq.began.IsZero() || (err != nil && !errors.Is(err, ErrQueueTimeout) && ctx.Err() == nil) {
		return
	}
	now := time.Now()
	p.stats.queueWait.observe(now.Sub(rq.arrived))
	if err == nil {
		rq.began = now
	}
}

// crashed reports whether an exit says the process failed by itself: a
// non-zero exit status, or a signal it raised (SIGSEGV, SIGABRT, ...).
// SIGKILL and SIGTERM come from outside (fcgivisor, an operator, the OOM
// killer), and exit status 0 is a worker ending on purpose (php-cgi after
// PHP_FCGI_MAX_REQUESTS, gitweb after an error page).
func crashed(st unix.WaitStatus) bool {
	if st.Signaled() {
		return st.Signal() != unix.SIGKILL && st.Signal() != unix.SIGTERM
	}
	return st.ExitStatus() != 0
}

// awaitDeath gives the reaper a moment to tell whether w, which dropped a
// request unread, is dying (killed, crashed, exiting by itself), so that a
// re-send does not go to it. One that lives on (libfcgi closing a kept
// connection) may take the re-send. It reports whether w crashed: then
// the reset is no proof that the request went unread.
//
// A worker still running then is left alone, unless the request was
// dropped on a fresh connection (exiting): it is marked gone (and killed),
// after the wait, so that the kill does not hide how it would have ended.
func (p *Pool) awaitDeath(w *worker, fresh bool) bool {
	select {
	case <-w.proc.Done():
		p.markGone(w)
		return crashed(w.proc.Status())
	case <-time.After(deathGrace):
		if fresh {
			p.markGone(w)
		}
		return false
	}
}

// maxResends is how often one request may be sent again: twice the
// pool's workers, live ones or max_workers, whichever is more, plus one.
// Workers that exit by themselves are replaced as fast as they go, so the
// live count alone can be 1 just when a chain of them drops the request;
// and with every worker exiting every few requests (gitweb: after each
// error page) a request can meet one about to exit several times in a
// row: with once per worker, 3 workers exiting every 5th response and on
// every 4th request lost about 1 request in 1000 after 5 drops in a row
// (TestSelfExitingWorkersLoseNothing). queue_timeout bounds the time.
func (p *Pool) maxResends(cfg *conf.Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for w := range p.workers {
		if !w.gone {
			n++
		}
	}
	return 2*max(n, cfg.MaxWorkers) + 1
}

// serveOn runs one attempt on s and releases s. It reports whether the
// request was sent to the worker, and whether it may be sent again
// (nothing of it was read). A kept connection the worker had closed after
// its last answer (it exits, or closes kept connections) fails the first
// write with EPIPE: not sent, and the slot goes where it is taken last, so
// that another idle worker takes the request.
func (p *Pool) serveOn(ctx context.Context, s *slot, rq *request, req *fastcgi.Request, handle func(*fastcgi.Response) error) (sent, retry bool, err error) {
	reused, retry, err := p.connect(ctx, s)
	if err != nil {
		return false, retry, err
	}
	cfg := p.conf()
	w, conn := s.w, s.conn
	traceOf(ctx).sent(w.proc.Pid())
	a := p.begin(s, rq, cfg)
	guard := watchRequest(ctx, conn, cfg.RequestTimeout)

	r := *req
	r.KeepConn = true
	r.Stderr = func(b []byte) {
		logStderr(w, b)
		if req.Stderr != nil {
			req.Stderr(b) // a public socket's client gets it too
		}
	}
	resp, err := conn.Do(&r)
	if err != nil && reused && errors.Is(err, syscall.EPIPE) {
		// Do fails with EPIPE only when writing the request's head: the
		// worker had closed the kept connection before it.
		guard.expired()
		a.end()
		p.release(s, droppedUnread, nil)
		return false, true, fmt.Errorf("worker %d: %w: %w", w.proc.Pid(), errKeptClosed, err)
	}
	if err != nil {
		timedOut := guard.expired()
		retry, err := p.notAnswered(ctx, s, reused, timedOut, err, a.end())
		return true, retry, err
	}
	herr := handle(resp)
	keep := resp.Close()
	intime := !guard.expired()
	// The client may go away between the answer and the end of the
	// watch: then the watch closes the connection, and it is not kept.
	keep = keep && !guard.fired
	return true, false, p.answered(s, herr, keep, intime, a.end())
}

// connect gives s a connection to its worker: its kept one, else a new
// one. A kept connection is not checked before reuse (that was a system
// call per request): one the worker closed fails the request's first write
// with EPIPE, which serveOn takes as not sent. On failure s is released,
// and retry says whether the request may go to another slot.
func (p *Pool) connect(ctx context.Context, s *slot) (reused, retry bool, err error) {
	w := s.w
	if s.conn != nil && !s.conn.Usable() {
		// Closed here (the watch of a request whose client went away),
		// or bytes after its last END_REQUEST: no system call tells it.
		s.conn.Close()
		s.conn = nil
	}
	if s.conn != nil {
		return true, false, nil
	}
	nc, err := p.env.Dial(ctx, w.path)
	if err != nil {
		if ctx.Err() == nil {
			p.markGone(w)
		}
		p.release(s, notCounted, nil)
		return false, ctx.Err() == nil, fmt.Errorf("connect to worker %d: %w", w.proc.Pid(), err)
	}
	s.conn = fastcgi.NewConn(nc)
	return false, false, nil
}

// guard ends a request on its worker connection when request_timeout
// passes or the client goes away: the connection is closed under it.
type guard struct {
	timer      *time.Timer
	timedOut   atomic.Bool
	fired      bool // set by expired: the client went away and the connection is closed
	stopCancel func() bool
}

// watchRequest closes conn when limit (0: none) passes or ctx is done.
func watchRequest(ctx context.Context, conn *fastcgi.Conn, limit time.Duration) *guard {
	g := &guard{}
	if limit > 0 {
		g.timer = time.AfterFunc(limit, func() {
			g.timedOut.Store(true)
			conn.Close()
		})
	}
	g.stopCancel = context.AfterFunc(ctx, func() { conn.Close() })
	return g
}

// expired ends the watch and reports whether request_timeout fired
// before. Once it has returned, fired says whether the client's going
// away closed the connection.
func (g *guard) expired() bool {
	// Not stopped: ctx is done, and the close has run or is about to, on
	// its own goroutine.
	g.fired = !g.stopCancel()
	return g.timer != nil && !g.timer.Stop() && g.timedOut.Load()
}

// answered releases s after the worker answered (handle returned herr)
// and returns the request's error. keep: the connection may carry
// another request; intime: request_timeout did not fire.
func (p *Pool) answered(s *slot, herr error, keep, intime bool, last *RequestStatus) error {
	w := s.w
	switch {
	case herr != nil && !intime:
		p.release(s, notCounted, last)
		p.stats.timeouts.Add(1)
		p.kill(w, "request_timeout exceeded")
		return fmt.Errorf("%w: %w", ErrTimeout, herr)
	case errors.Is(herr, fastcgi.ErrProtocol):
		p.release(s, notCounted, last)
		p.kill(w, "FastCGI protocol violation: "+herr.Error())
		return herr
	}
	// The worker answered: the request counts toward its limits whatever
	// happened to the answer on its way to the client.
	if keep && intime && herr == nil {
		p.release(s, servedKeepConn, last)
	} else {
		p.release(s, served, last)
	}
	return herr
}

// notAnswered releases s after a request sent on it got no response byte
// (err), and reports whether the request may be sent again: only when the
// worker dropped it unread. timedOut: request_timeout ran out first.
func (p *Pool) notAnswered(ctx context.Context, s *slot, reused, timedOut bool, err error, last *RequestStatus) (retry bool, _ error) {
	w := s.w
	unread := errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	if !unread && !timedOut && ctx.Err() == nil {
		// A plain EOF: the worker read the request and closed, most
		// likely dying of it. Learn that before its slot is free again,
		// or the next request meets its reset and, the exit being a
		// crash, gets a 502 for a crash that was not its own.
		p.awaitDeath(w, false)
	}
	// A worker that dropped a request unread is likely exiting: its
	// slot goes where it is taken last. One that read it counts it.
	if unread {
		p.release(s, droppedUnread, nil)
	} else {
		p.release(s, served, last)
	}
	switch {
	case timedOut:
		p.stats.timeouts.Add(1)
		p.kill(w, "request_timeout exceeded before the worker answered")
		return false, ErrTimeout
	case ctx.Err() != nil:
		return false, context.Cause(ctx)
	}
	err = fmt.Errorf("worker %d: %w", w.proc.Pid(), err)
	if unread && p.awaitDeath(w, !reused) {
		// It crashed: the reset may come from a worker that ran the
		// request and died before reading all of it (php-cgi running
		// exit(3) leaves the empty STDIN record unread, and its exit
		// resets the connection). Not proof enough to send it again.
		return false, err
	}
	return unread, err
}

// logStderr logs FastCGI stderr records line by line.
func logStderr(w *worker, b []byte) {
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte{'\n'})
		b = rest
		if len(line) > 0 {
			w.log.Warn(string(line), "stream", "fcgi-stderr")
		}
	}
}

// replayBody remembers the first replayLimit bytes read so that a request
// whose connection failed unread can be sent again.
type replayBody struct {
	r        io.Reader
	buf      []byte
	overflow bool
}

func (b *replayBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 && !b.overflow {
		if len(b.buf)+n > replayLimit {
			b.overflow = true
			b.buf = nil
		} else {
			b.buf = append(b.buf, p[:n]...)
		}
	}
	return n, err
}

// Len is what is left of the body when its reader says (bytes.Reader: a
// body the front holds in memory), else -1: fastcgi.Conn sends a short
// body with the request's head.
func (b *replayBody) Len() int {
	if l, ok := b.r.(interface{ Len() int }); ok {
		return l.Len()
	}
	return -1
}

// rewind makes the body readable again from its start; false when more
// than replayLimit bytes were consumed.
func (b *replayBody) rewind() bool {
	if b.overflow {
		return false
	}
	if len(b.buf) > 0 {
		b.r = io.MultiReader(bytes.NewReader(b.buf), b.r)
		b.buf = nil
	}
	return true
}
