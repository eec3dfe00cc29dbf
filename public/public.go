// Package public serves the pools' public FastCGI sockets (a pool's
// listen key): a web server in front of fcgivisor (nginx fastcgi_pass,
// Apache mod_proxy_fcgi, Caddy php_fastcgi, lighttpd fastcgi.server)
// speaks FastCGI to fcgivisor, which runs each request on a worker slot
// of the pool.
//
// A request takes a slot from the pool's own accounting (Pool.Serve, as
// the HTTP front's requests do) only for its own duration: from the end
// of its PARAMS until its answer is read. A web server's kept connection
// (nginx fastcgi_keep_conn, Apache enablereuse, Caddy's pool) holds no
// worker while it idles, which PHP-FPM's workers cannot do: there the
// connection is the worker's. queue_timeout, scaling, recycling,
// request_timeout, the retry rule, cgi_fallback, /status and /metrics
// behave for these requests as for the front's.
//
// The PARAMS pass to the worker as the web server sent them, and the
// worker's STDOUT and STDERR records go back as they come: fcgivisor
// neither parses nor buffers the answer. It answers on its own only
// when no worker answered: a CGI-style 502, 503 (with Retry-After) or 504
// in STDOUT, then END_REQUEST. Once part of a worker's answer has gone
// out, a failure closes the client connection, which the web server
// reports as an upstream error. The protocol side (one request at a time
// per connection, GET_VALUES, ABORT_REQUEST, CANT_MPX_CONN, UNKNOWN_ROLE,
// limits) is fastcgi.ServerConn's.
package public

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/fastcgi"
	"github.com/fcgivisor/fcgivisor/spawner"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// Options are what every public socket shares.
type Options struct {
	Log *slog.Logger
	// Parent starts the CGI fallback runs (cgi_fallback).
	Parent *spawner.Parent
}

// Socket serves one pool's public socket. Its accept loop and its
// connections' goroutines run until Shutdown has returned.
type Socket struct {
	l     net.Listener
	log   *slog.Logger
	cgi   *spawner.CGIRunner
	state atomic.Pointer[target]

	hard   context.Context // done: cut requests in progress
	cut    context.CancelFunc
	mu     sync.Mutex
	conns  map[*fastcgi.ServerConn]struct{}
	closed bool // Close was called: no more accepts, idle conns close
	// changed (1-buffered) is poked when a connection ends: an accept
	// waiting for a place under max_connections looks again.
	changed chan struct{}
	wg      sync.WaitGroup
	bufs    sync.Pool
}

// target is what the socket serves: the pool's live generation and the
// settings a reload may change.
type target struct {
	pool    *supervisor.Pool
	name    string
	allowed []netip.Prefix // nil: any client (a Unix socket)
	opts    fastcgi.ServerOptions
	// maxConns is http.max_connections: connections open at once (0: no
	// limit).
	maxConns int
}

func newTarget(pool *supervisor.Pool, cfg *conf.Pool, http *conf.HTTP, tcp bool) *target {
	t := &target{pool: pool, name: cfg.Name, maxConns: http.MaxConnections}
	if tcp {
		t.allowed = cfg.AllowedPrefixes()
	}
	slots := strconv.Itoa(cfg.MaxWorkers * max(cfg.Concurrency, 1))
	t.opts = fastcgi.ServerOptions{
		Values: map[string]string{
			"FCGI_MAX_CONNS":  slots,
			"FCGI_MAX_REQS":   slots,
			"FCGI_MPXS_CONNS": "0",
		},
		IdleTimeout:  http.IdleTimeout,
		ReadTimeout:  http.SendTimeout,
		WriteTimeout: http.SendTimeout,
	}
	return t
}

// Serve starts serving l, pool's public socket, which it owns from now
// on. http gives the timeouts: idle_timeout for a connection between
// requests, send_timeout for each read of a request's records and each
// write of its answer.
func Serve(l net.Listener, pool *supervisor.Pool, cfg *conf.Pool, http *conf.HTTP, o Options) *Socket {
	hard, cut := context.WithCancel(context.Background())
	s := &Socket{
		l: l, log: o.Log.With("pool", cfg.Name, "listen", cfg.Listen),
		cgi:  spawner.NewCGIRunner(o.Parent),
		hard: hard, cut: cut,
		conns:   make(map[*fastcgi.ServerConn]struct{}),
		changed: make(chan struct{}, 1),
	}
	s.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	s.state.Store(newTarget(pool, cfg, http, isTCP(l)))
	s.wg.Add(1)
	go s.accept()
	return s
}

// Update makes the socket serve pool (a new generation after a reload)
// with cfg's and http's settings; connections take them with their next
// request (allowed_clients: with their next accept).
func (s *Socket) Update(pool *supervisor.Pool, cfg *conf.Pool, http *conf.HTTP) {
	s.state.Store(newTarget(pool, cfg, http, isTCP(s.l)))
}

func isTCP(l net.Listener) bool {
	_, ok := l.Addr().(*net.TCPAddr)
	return ok
}

// Close stops accepting (a Unix socket's path is removed) and closes the
// connections as soon as they carry no request: those in progress
// finish. It does not wait: Shutdown does.
func (s *Socket) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.l.Close()
	for c := range s.conns {
		c.CloseIdle()
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Shutdown closes the socket and waits for its requests to finish; once
// ctx is done it cuts them (their worker connections closed, their CGI
// fallback runs killed) and returns ctx's error after they have ended.
func (s *Socket) Shutdown(ctx context.Context) error {
	s.Close()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.cgi.Shutdown(context.Background())
		close(done)
	}()
	select {
	case <-done:
		s.cut()
		return nil
	case <-ctx.Done():
	}
	s.cut()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// accept is the accept loop: it hands each allowed connection to a
// goroutine of its own.
func (s *Socket) accept() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		if !s.waitPlace() {
			return
		}
		nc, err := s.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait, as net/http does, rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Error("public socket: accept", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		t := s.state.Load()
		if t.allowed != nil && !allowed(nc.RemoteAddr(), t.allowed) {
			s.log.Warn("public socket: client not in allowed_clients: closed", "client", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		c := fastcgi.NewServerConn(nc, t.opts)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

func allowed(a net.Addr, prefixes []netip.Prefix) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ap := ta.AddrPort()
	// Unmapped (a dual-stack socket's ::ffff:10.0.0.7 is 10.0.0.7), and
	// without its zone (fe80::1%eth0 is in fe80::/10).
	ip := ap.Addr().Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Socket) serveConn(c *fastcgi.ServerConn) {
	defer s.wg.Done()
	err := c.Serve(s.hard, s.handle)
	switch {
	case errors.Is(err, fastcgi.ErrProtocol):
		s.log.Warn("public socket: client connection closed: not FastCGI", "err", err)
	case err != nil:
		// A reset, a timeout: what clients and web servers do every day
		// (nginx resets its upstream connection when its client aborts).
		s.log.Debug("public socket: client connection closed", "err", err)
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// waitPlace waits until the socket holds fewer connections than
// http.max_connections, as the front's listeners do: meanwhile new
// clients wait in the listen backlog, and a kept connection idle between
// two requests is closed to make room. It reports false once the socket
// is closed.
func (s *Socket) waitPlace() bool {
	for {
		s.mu.Lock()
		limit := s.state.Load().maxConns
		if s.closed || limit <= 0 || len(s.conns) < limit {
			closed := s.closed
			s.mu.Unlock()
			return !closed
		}
		for c := range s.conns {
			if c.Idle() {
				c.Close()
				break
			}
		}
		s.mu.Unlock()
		// A connection that goes idle pokes nothing: look again soon.
		select {
		case <-s.changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// clientError wraps a failed write to the client.
type clientError struct{ err error }

func (e *clientError) Error() string { return "write to client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// handle runs one request of the web server on the pool.
func (s *Socket) handle(ctx context.Context, w *fastcgi.ResponseWriter, r *fastcgi.ServerRequest) (uint32, error) {
	t := s.state.Load()
	pool := t.pool
	uri := fastcgi.Value(r.Params, "REQUEST_URI")
	if uri == "" {
		uri = fastcgi.Value(r.Params, "SCRIPT_NAME")
	}
	req := &fastcgi.Request{Params: r.Params, Body: r.Body, Stderr: func(b []byte) { w.WriteStderr(b) }}
	if fastcgi.Value(r.Params, "CONTENT_LENGTH") == "0" || r.BodyEmpty() {
		// No body: the worker gets an empty STDIN at once, without a
		// goroutine to copy one. (A web server may stream a body
		// without CONTENT_LENGTH: then it is copied as it comes.)
		req.Body = nil
	}
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	code, appStatus := 0, uint32(0)
	err := pool.Serve(ctx, uri, req, func(resp *fastcgi.Response) error {
		var err error
		code, err = relay(w, resp, *bp)
		appStatus = resp.AppStatus()
		return err
	})
	var ce *clientError
	switch {
	case err == nil:
		pool.Observe(code)
		return appStatus, nil
	case errors.Is(context.Cause(ctx), fastcgi.ErrAborted):
		pool.Observe(499)
		return 0, nil
	case errors.As(err, &ce) || ctx.Err() != nil:
		pool.Observe(499)
		return 0, err
	case w.Written():
		pool.Observe(502)
		s.log.Warn("worker failed mid-response", "uri", uri, "err", err)
		return 0, err
	case pool.CanFallback(err):
		return s.fallback(ctx, w, r, pool, uri, *bp, err)
	}
	return 0, s.failed(w, pool, uri, err)
}

// relay copies the worker's STDOUT to the client, gathering what has
// arrived into buf before each write, and returns the status the answer
// gives (200 without a Status header).
func relay(w *fastcgi.ResponseWriter, resp io.Reader, buf []byte) (code int, err error) {
	type buffered interface{ Buffered() int }
	bf, _ := resp.(buffered)
	for {
		n := 0
		var rerr error
		for n < len(buf) {
			var k int
			k, rerr = resp.Read(buf[n:])
			n += k
			if rerr != nil || bf == nil || bf.Buffered() == 0 {
				break
			}
		}
		if code == 0 && n > 0 {
			code = statusOf(buf[:n])
		}
		if rerr == io.EOF {
			// The last bytes go out with END_REQUEST, in one write.
			w.WriteLast(buf[:n])
			return max(code, 200), nil
		}
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return code, &clientError{werr}
			}
		}
		if rerr != nil {
			return code, rerr
		}
	}
}

// statusOf reads the status of a CGI-style answer from its first bytes:
// the Status header's code when the header is there, else 200.
func statusOf(b []byte) int {
	for len(b) > 0 {
		window := string(b[:min(len(b), 512)])
		line, rest, found := strings.Cut(window, "\n")
		if !found && len(b) > 512 {
			return 200
		}
		line = strings.TrimRight(line, "\r")
		if line == "" {
			return 200
		}
		if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Status") {
			value = strings.TrimSpace(value)
			if len(value) >= 3 {
				if c, err := strconv.Atoi(value[:3]); err == nil && c >= 100 && c <= 999 {
					return c
				}
			}
			return 200
		}
		b = b[len(window)-len(rest):] // rest is the window's, not b's
		if !found {
			return 200
		}
	}
	return 200
}

// failed answers a request no worker answered, and returns nil (the
// connection goes on) unless writing the answer failed.
func (s *Socket) failed(w *fastcgi.ResponseWriter, pool *supervisor.Pool, uri string, err error) error {
	code := supervisor.ErrorStatus(err)
	switch code {
	case 503:
		s.log.Warn("pool cannot serve", "uri", uri, "err", err)
	case 504:
		s.log.Warn("request timed out", "uri", uri)
	default:
		s.log.Error("worker failed", "uri", uri, "err", err)
	}
	pool.Observe(code)
	return answer(w, code)
}

// answer writes a CGI-style answer of its own with status code.
func answer(w *fastcgi.ResponseWriter, code int) error {
	text := http.StatusText(code)
	extra := ""
	if code == 503 {
		extra = "Retry-After: 1\r\n"
	}
	_, err := fmt.Fprintf(w, "Status: %d %s\r\n%sContent-Type: text/plain; charset=utf-8\r\n\r\n%s\n", code, text, extra, text)
	return err
}
