// Package front is fcgivisor's HTTP server: it matches requests to routes
// in file order, builds the RFC 3875 meta-variables, forwards pool routes
// over FastCGI to a worker slot, runs cgi routes and CGI fallbacks as
// one-shot programs, and turns the CGI-style answer into the HTTP
// response. It speaks only HTTP to the programs (request body to stdin,
// response from stdout, local redirects); starting, killing and reaping
// them is spawner's (spawner.CGIRunner), and the workers are supervisor's.
package front

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/fastcgi"
	"github.com/fcgivisor/fcgivisor/spawner"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// spoolInMemory is how much of a spooled request body (readBody) is kept in
// memory before it spills to a temporary file.
const spoolInMemory = 256 << 10

// defaultBodyReadTimeout is Options.BodyReadTimeout when unset: the time a
// client may go without sending while its body is spooled.
const defaultBodyReadTimeout = 60 * time.Second

// Server is the HTTP front.
type Server struct {
	table           atomic.Pointer[table] // swapped whole by Update (reload)
	log             *slog.Logger
	software        string
	cgi             *spawner.CGIRunner // CGI programs (cgi.go); Shutdown shuts it down
	privileged      bool
	bodyReadTimeout time.Duration
	srv             *http.Server
	wg              sync.WaitGroup
	bufs            sync.Pool // *buffers
	linksWarned     seenSet   // cgi route symlinks warned about (warnLink)
	access          accessLog // http.access_log (access.go)
}

// Options are what the front needs besides the config and pools.
type Options struct {
	Log      *slog.Logger
	Software string // SERVER_SOFTWARE, "fcgivisor/VERSION"
	// Parent starts CGI programs (cgi routes, cgi_fallback).
	Parent *spawner.Parent
	// Privileged: fcgivisor runs as root, so cgi routes' user and group
	// apply (CheckPrivileges has checked them).
	Privileged bool
	// BodyReadTimeout bounds each read of a request body being spooled
	// (readBody); 0 means defaultBodyReadTimeout.
	BodyReadTimeout time.Duration
	// AccessLog is http.access_log opened (stderr or a file), written in
	// http.access_log_format; nil: no access log. SetAccessLog changes it.
	AccessLog io.Writer
}

// table is what a request is served by: the [http] settings and the
// routes bound to their pools. A reload swaps it in one store, so a request
// sees the old table or the new one, never a mix.
type table struct {
	cfg      *conf.HTTP
	routes   []*route
	replaced chan struct{} // closed when Update swaps in the next table
}

// newTable binds cfg's routes; old (nil at start) lends its cgi routes'
// concurrency counters to the same routes of the new table.
func newTable(cfg *conf.Config, pools map[string]*supervisor.Pool, privileged bool, old *table) (*table, error) {
	t := &table{cfg: &cfg.HTTP, replaced: make(chan struct{})}
	code := codeSuffixes(&cfg.HTTP)
	for i, rc := range cfg.HTTP.Routes {
		rt := &route{cfg: rc}
		switch {
		case rc.Static != "":
			st, err := newStaticRoute(rc, privileged, code)
			if err != nil {
				return nil, fmt.Errorf("http.route[%d].%w", i, err)
			}
			rt.static = st
		case rc.Pool != "":
			rt.pool = pools[rc.Pool]
			if rt.pool == nil {
				return nil, fmt.Errorf("http.route[%d].pool: no pool %q", i, rc.Pool)
			}
			rt.env = routeEnv(rc.Env)
		case rc.CGI != "":
			var prev *cgiRoute
			if old != nil {
				prev = old.cgiRoute(rc)
			}
			c, err := newCGIRoute(rc, privileged, prev)
			if err != nil {
				return nil, fmt.Errorf("http.route[%d]: %w", i, err)
			}
			rt.cgi = c
		}
		t.routes = append(t.routes, rt)
	}
	return t, nil
}

// cgiRoute finds the cgi route of t with rc's prefix and directory.
func (t *table) cgiRoute(rc *conf.Route) *cgiRoute {
	for _, rt := range t.routes {
		if rt.cgi != nil && rt.cfg.Prefix == rc.Prefix && rt.cfg.CGI == rc.CGI {
			return rt.cgi
		}
	}
	return nil
}

// Update swaps in the routes and [http] settings of a reloaded config.
// read_header_timeout, idle_timeout and max_header_bytes belong to the
// HTTP server and change at the next restart; max_connections applies at
// once to every listener.
func (s *Server) Update(cfg *conf.Config, pools map[string]*supervisor.Pool) error {
	t, err := newTable(cfg, pools, s.privileged, s.table.Load())
	if err != nil {
		return err
	}
	if old := s.table.Swap(t); old != nil {
		close(old.replaced)
	}

	t.warnStatic(s.log)
	return nil
}

// buffers are reused from request to request.
type buffers struct {
	br     *bufio.Reader
	params []fastcgi.Param
}

// New builds the front for cfg; pools holds every pool by name.
func New(cfg *conf.Config, pools map[string]*supervisor.Pool, o Options) (*Server, error) {
	log := o.Log
	s := &Server{log: log, software: o.Software, cgi: spawner.NewCGIRunner(o.Parent), privileged: o.Privileged,
		bodyReadTimeout: cmp.Or(o.BodyReadTimeout, defaultBodyReadTimeout)}
	s.access.log = log
	s.SetAccessLog(o.AccessLog, cfg.HTTP.AccessLogFormat)
	if err := s.Update(cfg, pools); err != nil {
		return nil, err
	}
	s.bufs.New = func() any {
		return &buffers{br: bufio.NewReaderSize(nil, 8<<10)}
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		MaxHeaderBytes:    cfg.HTTP.MaxHeaderBytes,
		ConnState:         connState, // max_connections (limit.go)
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Serve starts serving on the listeners and returns at once. Each holds
// at most http.max_connections connections (limit.go).
func (s *Server) Serve(ls []net.Listener) {
	for _, l := range ls {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := s.srv.Serve(s.limitListener(l))
			if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.log.Error("http listener failed", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
}

// Shutdown stops accepting, waits for in-flight requests until ctx is done,
// then closes what remains and kills the CGI programs still running. It
// returns once every listener goroutine ended and every CGI program was
// reaped.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	// CGI programs still running (requests cut by Close, or answered
	// programs whose exit is awaited) get until ctx is done, then SIGKILL.
	// Its error is not reported: a request cut is in err already, and an
	// answered program killed cut none.
	s.cgi.Shutdown(ctx)
	s.wg.Wait()
	return err
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := s.table.Load()
	if !s.access.on.Load() {
		s.serve(t, w, r)
		return
	}
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	e := &accessEntry{}
	// Deferred, so that a response cut mid-way (panic with
	// http.ErrAbortHandler) is logged too, with what was sent.
	defer func() { s.access.write(newAccessRecord(r, sw, e, start)) }()
	s.serve(t, sw, r.WithContext(context.WithValue(r.Context(), accessKey{}, e)))
}

func (s *Server) serve(t *table, w http.ResponseWriter, r *http.Request) {
	e := entryOf(r)
	if escapes(r.URL.Path) {
		e.answered(nil)
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	for _, rt := range t.routes {
		scriptName, pathInfo, ok := rt.match(r.URL.Path)
		if !ok {
			if rt.addsSlash(r.URL.Path) {
				e.answered(nil)
				redirectSlash(w, r, rt.cfg.Prefix)
				return
			}
			continue
		}
		e.answered(rt) // until it falls through
		switch {
		case rt.pool != nil:
			if !s.forwards(t, r, rt, scriptName) {
				continue // no such script: the next matching route
			}
			s.serveFastCGI(t, w, r, rt, scriptName, pathInfo)
		case rt.cgi != nil:
			s.serveCGI(t, w, r, rt)
		case rt.cfg.Status != 0:
			// The same answer as for a path no route serves.
			http.Error(w, http.StatusText(rt.cfg.Status), rt.cfg.Status)
		default:
			if !s.serveStatic(w, r, rt) {
				continue // try_files: the next matching route
			}
		}
		return
	}
	e.answered(nil)
	http.Error(w, "Not Found", http.StatusNotFound)
}

// forwards reports whether pool route rt sends a request whose split gave
// scriptName to its pool. A route with suffix forwards only a script that
// exists (isScript); without suffix SCRIPT_NAME is the prefix, or the
// route's script, and is sent unchecked: workers that are not PHP route by
// PATH_INFO and read no file.
func (s *Server) forwards(t *table, r *http.Request, rt *route, scriptName string) bool {
	if rt.cfg.Suffix == "" || rt.cfg.Script != "" {
		return true
	}
	ok, err := isScript(t.cfg.DocumentRoot, scriptName)
	if err != nil {
		s.log.Error("pool route: cannot open document_root", "dir", t.cfg.DocumentRoot, "uri", r.RequestURI, "err", err)
	}
	return ok
}

func (s *Server) serveFastCGI(t *table, w http.ResponseWriter, r *http.Request, rt *route, scriptName, pathInfo string) {
	cfg := t.cfg
	body, length, status := readBody(cfg, w, r, s.bodyReadTimeout, s.log)
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	if f, ok := body.(*os.File); ok {
		defer f.Close() // the spool; r.Body is the server's to close
	}
	if body != nil {
		// A worker may answer while it reads the body (an echo): without
		// this an HTTP/1 response that starts cuts the request body short.
		http.NewResponseController(w).EnableFullDuplex()
	}
	q := &request{
		r:              r,
		scriptName:     scriptName,
		pathInfo:       pathInfo,
		documentRoot:   cfg.DocumentRoot,
		contentLength:  length,
		serverSoftware: s.software,
	}
	bufs := s.bufs.Get().(*buffers)
	defer s.bufs.Put(bufs)
	bufs.params = addEnv(metaVars(bufs.params[:0], q), rt.env)
	defer clear(bufs.params) // drop references to this request's strings
	req := &fastcgi.Request{Params: bufs.params, Body: body}

	written := 0 // the status sent, once the header is out
	e := entryOf(r)
	begin := time.Now()
	err := rt.pool.Serve(e.traced(r.Context()), r.RequestURI, req, func(resp *fastcgi.Response) error {
		status, err := readCGIResponse(resp, bufs.br, w.Header())
		if err != nil {
			clear(w.Header())
			return fmt.Errorf("read response header: %w", err)
		}
		w.WriteHeader(status)
		written = status
		_, rerr, werr := copyBody(w, bufs.br, resp.Buffered, cfg.SendTimeout)
		if rerr != nil {
			return fmt.Errorf("read response body: %w", rerr)
		}
		if werr != nil {
			return &clientError{werr}
		}
		return nil
	})
	e.served(begin)
	bufs.br.Reset(nil)
	code := written
	defer func() { rt.pool.Observe(code) }()
	var ce *clientError
	switch {
	case err == nil:
	case errors.As(err, &ce) || r.Context().Err() != nil:
		// The client went away; nothing to answer (499 as nginx logs it).
		code = 499
	case written != 0:
		// Headers are out: cut the connection so the client sees the failure.
		code = 502
		s.log.Warn("worker failed mid-response", "pool", rt.pool.Name(), "uri", r.RequestURI, "err", err)
		panic(http.ErrAbortHandler)
	case rt.pool.CanFallback(err):
		// Nothing was sent to a worker: the body is unread.
		// The PARAMS that were not sent, route env included: the
		// program sees what a worker would have, then the pool's env.
		code = s.serveFallback(t, w, r, bufs.params, body, rt, err)
	default:
		code = s.poolFailed(w, r, rt, err)
	}
}

// poolFailed answers a request that pool route rt could not serve, with
// nothing sent yet, and reports the status answered.
func (s *Server) poolFailed(w http.ResponseWriter, r *http.Request, rt *route, err error) int {
	code := supervisor.ErrorStatus(err)
	switch code {
	case http.StatusServiceUnavailable:
		s.log.Warn("pool cannot serve", "pool", rt.pool.Name(), "uri", r.RequestURI, "err", err)
		w.Header().Set("Retry-After", "1")
	case http.StatusGatewayTimeout:
		s.log.Warn("request timed out", "pool", rt.pool.Name(), "uri", r.RequestURI)
	default:
		s.log.Error("worker failed", "pool", rt.pool.Name(), "uri", r.RequestURI, "err", err)
	}
	http.Error(w, http.StatusText(code), code)
	return code
}

// readBody returns the request body to send and its length. A body without
// Content-Length (chunked) is always spooled to learn it: FastCGI needs
// CONTENT_LENGTH up front (php-fpm waits forever without it). With
// request_buffering (the default) every body is read whole before a worker
// slot or a CGI place is taken, as nginx does, so that a slow upload holds
// a goroutine and a spool, not a worker; the spool is memory up to
// spoolInMemory, then an unlinked temporary file. Without it a body with
// Content-Length streams to the worker as it arrives. status is non-zero
// when the request must be refused (413, 400).
//
// While spooling, each read from the client must complete within timeout
// (nginx's client_body_timeout): a client that stops sending gets 408
// instead of holding its connection, goroutine and spool. w may be nil
// (no deadlines).
func readBody(cfg *conf.HTTP, w http.ResponseWriter, r *http.Request, timeout time.Duration, log *slog.Logger) (body io.Reader, length int64, status int) {
	limit := int64(cfg.MaxBodyBytes)
	switch {
	case r.ContentLength > limit:
		return nil, 0, http.StatusRequestEntityTooLarge
	case r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody:
		return nil, 0, 0
	case r.ContentLength > 0 && !cfg.RequestBuffering:
		return r.Body, r.ContentLength, 0
	}
	src := io.Reader(r.Body)
	if w != nil {
		rc := http.NewResponseController(w)
		src = &deadlineReader{r: r.Body, set: rc.SetReadDeadline, timeout: timeout}
		defer func() {
			if status == 0 {
				// The body has ended and the server reads ahead for the
				// next request: no deadline may stay behind.
				rc.SetReadDeadline(time.Time{})
			} else {
				// Refused with the body unread: the server would read
				// the rest before answering; expire the connection so
				// that it answers and closes instead.
				rc.SetReadDeadline(time.Now())
			}
		}()
	}
	size := 32 << 10
	if r.ContentLength > 0 {
		size = int(min(r.ContentLength+1, spoolInMemory)) // +1: room to see EOF
	}
	buf := make([]byte, 0, size)
	for len(buf) < spoolInMemory {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, 0, http.StatusRequestEntityTooLarge
		}
		if err == io.EOF {
			return bytes.NewReader(buf), int64(len(buf)), 0
		}
		if err != nil {
			return nil, 0, bodyErrStatus(err)
		}
	}
	f, err := os.CreateTemp("", "fcgivisor-body-")
	if err != nil {
		log.Error("spool request body", "err", err)
		return nil, 0, http.StatusInternalServerError
	}
	os.Remove(f.Name())
	n, err := io.Copy(f, io.MultiReader(bytes.NewReader(buf), io.LimitReader(src, limit+1-int64(len(buf)))))
	if err != nil || n > limit {
		f.Close()
		if n > limit {
			return nil, 0, http.StatusRequestEntityTooLarge
		}
		return nil, 0, bodyErrStatus(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, http.StatusInternalServerError
	}
	return f, n, 0
}

// deadlineReader sets a read deadline of timeout before each read.
type deadlineReader struct {
	r       io.Reader
	set     func(time.Time) error
	timeout time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	d.set(time.Now().Add(d.timeout)) // unsupported (tests' recorders): no deadline
	return d.r.Read(p)
}

// bodyErrStatus is the answer to a request whose body could not be read:
// 408 when the client stopped sending, else 400.
func bodyErrStatus(err error) int {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}

type clientError struct{ err error }

func (e *clientError) Error() string { return "write to client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// statusWriter records the status and size for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// ReadFrom keeps the sendfile of the writer it wraps for static files
// (http.ServeContent copies with io.CopyN, which calls ReadFrom).
func (w *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := io.Copy(w.ResponseWriter, src)
	w.n += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
