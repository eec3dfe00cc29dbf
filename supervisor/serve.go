package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fcgivisor/fcgivisor/fastcgi"
)

// replayLimit is how much of a request body is kept so that the request
// can be sent again after a worker closed its connection unread.
const replayLimit = 64 << 10

// maxDials bounds the connection attempts of one request. A failed connect
// never reached a worker, so it does not use up the one re-send.
const maxDials = 4

// Serve runs req on a worker slot of the pool. handle reads the streaming
// response; the slot stays busy until handle returns. handle must wrap
// errors from reading the response with %w so that a protocol violation
// (fastcgi.ErrProtocol) is seen and the worker replaced.
//
// Retry rule (DESIGN.md "Retries"): the request is sent again, once, only
// when it cannot have been processed: the connect failed; a reused kept
// connection was closed by the worker before any response byte (workers
// close idle connections when they exit by themselves); or a fresh
// connection was reset before any response byte, which on a Unix socket
// means the worker exited with the request unread in its backlog.
//
// Errors: ErrQueueTimeout, ErrFailing, ErrStopping (nothing was sent: 503);
// ErrTimeout (504); others are worker failures (502) or handle's own.
func (p *Pool) Serve(ctx context.Context, req *fastcgi.Request, handle func(*fastcgi.Response) error) error {
	r := *req
	var body *replayBody
	if req.Body != nil {
		body = &replayBody{r: req.Body}
		r.Body = body
	}
	sent := 0
	for dials := 0; ; dials++ {
		s, err := p.acquire(ctx)
		if err != nil {
			return err
		}
		err, wasSent, retry := p.serveOn(ctx, s, &r, handle)
		if wasSent {
			sent++
		}
		if !retry || dials+1 >= maxDials || sent > 1 || (wasSent && body != nil && !body.rewind()) {
			return err
		}
		s.w.log.Debug("retrying request on another connection", "err", err)
	}
}

// serveOn runs one attempt on s and releases s.
func (p *Pool) serveOn(ctx context.Context, s *slot, req *fastcgi.Request, handle func(*fastcgi.Response) error) (err error, sent, retry bool) {
	w := s.w
	reused := s.conn != nil
	if reused && s.conn.Closed() {
		s.conn.Close()
		s.conn = nil
		reused = false
	}
	if s.conn == nil {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "unix", w.path)
		if err != nil {
			if ctx.Err() == nil {
				p.markGone(w)
			}
			p.release(s, false, false)
			return fmt.Errorf("connect to worker %d: %w", w.proc.Pid, err), false, ctx.Err() == nil
		}
		s.conn = fastcgi.NewConn(nc)
	}
	conn := s.conn

	var timedOut atomic.Bool
	var timer *time.Timer
	if p.cfg.RequestTimeout > 0 { // 0: no limit
		timer = time.AfterFunc(p.cfg.RequestTimeout, func() {
			timedOut.Store(true)
			conn.Close()
		})
	}
	stopCancel := context.AfterFunc(ctx, func() { conn.Close() })
	// done ends the watch on the request and reports whether it ended in time.
	done := func() bool {
		stopCancel()
		return timer == nil || timer.Stop()
	}

	r := *req
	r.KeepConn = true
	r.Stderr = func(b []byte) { logStderr(w, b) }
	resp, err := conn.Do(&r)
	if err != nil {
		intime := done()
		p.release(s, false, false)
		switch {
		case !intime && timedOut.Load():
			p.kill(w, "request_timeout exceeded before the worker answered")
			return ErrTimeout, true, false
		case ctx.Err() != nil:
			return context.Cause(ctx), true, false
		}
		unread := reused || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
		if unread && !reused {
			// A fresh connection reset unread: the worker is exiting.
			p.markGone(w)
		}
		return fmt.Errorf("worker %d: %w", w.proc.Pid, err), true, unread
	}
	herr := handle(resp)
	keep := resp.Close()
	intime := done()
	switch {
	case herr != nil && !intime && timedOut.Load():
		p.release(s, false, false)
		p.kill(w, "request_timeout exceeded")
		return fmt.Errorf("%w: %w", ErrTimeout, herr), true, false
	case errors.Is(herr, fastcgi.ErrProtocol):
		p.release(s, false, false)
		p.kill(w, "FastCGI protocol violation: "+herr.Error())
		return herr, true, false
	}
	p.release(s, keep && intime && herr == nil, herr == nil)
	return herr, true, false
}

// markGone stops handing out slots of w: it failed to accept a connection.
func (p *Pool) markGone(w *worker) {
	p.mu.Lock()
	w.gone = true
	p.dropIdleLocked(w)
	p.mu.Unlock()
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
