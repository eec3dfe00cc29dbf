package front

// One-shot CGI (RFC 3875): cgi routes run a script under their directory
// once per request, and pools with cgi_fallback run their command once
// when they cannot serve. Both go through runCGI: the meta-variables of
// metaVars (the FastCGI params) become the environment, the body streams
// to stdin, and stdout is read by the FastCGI path's response parser.
// The process itself is spawner's (spawner.CGIRunner): it starts the
// program, kills it at the timeout or when the client goes away, logs
// its stderr line by line and waits for it to be reaped.
//
// Choices, where RFC 3875 leaves room:
//   - The script is the first path segment after the route prefix that is
//     an executable regular file under the directory; a directory segment
//     continues the walk; the rest of the path is PATH_INFO. Paths are
//     resolved through an os.Root, so no "..", symlink or absolute link
//     leads outside the directory (404). Empty segments ("//") and dotfile
//     segments are 404; a directory, a non-executable or special file 403.
//   - The working directory is the script's directory (RFC 3875 9.3 asks
//     for it; Apache does it).
//   - The environment is exactly the meta-variables, then the route's env
//     for names the meta-variables do not set, then PATH
//     (defaultCGIPath) when neither does. Nothing of fcgivisor's own
//     environment is passed.
//   - A path-only Location ("/path?q") without Status is a local redirect
//     (RFC 3875 6.2.2): the front serves GET for it through its routes,
//     without the body, up to maxLocalRedirects times.
//   - timeout (route) or request_timeout (fallback) SIGKILLs the program's
//     process group: 504 if nothing was answered yet, else the client
//     connection is cut. A client that goes away gets the group killed
//     too. A program that ends normally leaves what it started in the
//     background alone, unless that still holds its stdout open: then
//     the response does not end, and the timeout applies.
//   - max_concurrent runs per route; more wait up to cgiQueueTimeout, then
//     503 with Retry-After.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/fastcgi"
	"github.com/fcgivisor/fcgivisor/spawner"
)

const (
	// defaultCGIPath is the PATH of a CGI script whose route env sets none
	// (a "#!/usr/bin/env perl" line needs one).
	defaultCGIPath = "/usr/local/bin:/usr/bin:/bin"
	// cgiQueueTimeout is how long a request waits for one of a cgi route's
	// max_concurrent places when all are taken; then it gets 503.
	cgiQueueTimeout = 5 * time.Second
	// maxLocalRedirects bounds a chain of local redirects.
	maxLocalRedirects = 10
	// bodyStopWait: how long a body copy that was told to stop may take
	// before it counts as blocked on a stalled client.
	bodyStopWait = 100 * time.Millisecond
)

// cgiRoute is what a cgi route needs at request time, built with the table.
type cgiRoute struct {
	dir   string
	cred  *syscall.Credential
	env   []string      // route env, sorted; PATH added when unset
	slots chan struct{} // max_concurrent places, carried across reloads
}

func newCGIRoute(rc *conf.Route, privileged bool, old *cgiRoute) (*cgiRoute, error) {
	c := &cgiRoute{dir: rc.CGI}
	if privileged {
		cred, err := spawner.Credential(rc.User, rc.Group)
		if err != nil {
			return nil, err
		}
		c.cred = cred
	}
	hasPath := false
	for _, k := range slices.Sorted(maps.Keys(rc.Env)) {
		c.env = append(c.env, k+"="+rc.Env[k])
		hasPath = hasPath || k == "PATH"
	}
	if !hasPath {
		c.env = append(c.env, "PATH="+defaultCGIPath)
	}
	if old != nil && cap(old.slots) == rc.MaxConcurrent {
		c.slots = old.slots // runs going on keep counting
	} else {
		c.slots = make(chan struct{}, rc.MaxConcurrent)
	}
	return c, nil
}

// CheckPrivileges checks the user and group of cgi and static routes
// against how fcgivisor runs, as supervisor.CheckPrivileges does for
// pools: as root a cgi route must name the user its scripts run as, and a
// static route the user whose rights it serves files with (user = "root"
// to mean it); as another user, user and group are ignored with a
// warning.
func CheckPrivileges(cfg *conf.Config, privileged bool, log *slog.Logger) []error {
	var errs []error
	for i, rc := range cfg.HTTP.Routes {
		key := fmt.Sprintf("http.route[%d]", i)
		var err error
		switch {
		case rc.CGI != "":
			err = spawner.CheckCredential(key, "CGI scripts", rc.User, rc.Group, privileged, log)
		case rc.Static != "" && privileged && rc.User == "":
			err = fmt.Errorf("%s.user: fcgivisor runs as root and refuses to serve files with root's rights unless told so: set user to the user whose rights files are served with (e.g. \"www-data\"), or user = \"root\"", key)
		case rc.Static != "":
			err = spawner.CheckCredential(key, "", rc.User, "", privileged, log)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// findScript finds the script a request path names under dir (see the
// choices above). rest is the path after the route prefix, starting with
// "/" or empty. It returns the script's path relative to dir and the rest
// of the path (PATH_INFO), or the status to answer; with 404, link is the
// path relative to dir of a symlink that leads outside dir when that is
// why (issue 11: Debian's /usr/lib/cgi-bin/gitweb.cgi links to
// /usr/share/gitweb), else "".
func findScript(dir, rest string) (script, pathInfo string, status int, link string) {
	if rest == "" || rest == "/" {
		return "", "", http.StatusForbidden, ""
	}
	if rest[0] != '/' {
		return "", "", http.StatusNotFound, ""
	}
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", http.StatusNotFound, "" // gone since check, start or reload refused it missing (CheckDirs)
	}
	if err != nil {
		return "", "", http.StatusInternalServerError, ""
	}
	defer root.Close()
	end := 0 // rest[:end] is the part walked so far
	for end < len(rest) {
		next := strings.IndexByte(rest[end+1:], '/')
		if next < 0 {
			next = len(rest)
		} else {
			next += end + 1
		}
		seg := rest[end+1 : next]
		switch {
		case seg == "" && next == len(rest):
			return "", "", http.StatusForbidden, "" // "dir/": a directory
		case seg == "" || seg[0] == '.':
			return "", "", http.StatusNotFound, "" // "//", dotfiles, "..", "."
		}
		rel := rest[1:next]
		fi, err := root.Stat(rel)
		switch {
		case err != nil:
			// Missing, or a symlink that leads outside dir: both 404.
			// os.Root refuses the escape with an error that is not
			// ErrNotExist (a dangling link inside is ErrNotExist).
			if !errors.Is(err, fs.ErrNotExist) {
				if li, lerr := root.Lstat(rel); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
					return "", "", http.StatusNotFound, rel
				}
			}
			return "", "", http.StatusNotFound, ""
		case fi.IsDir():
			end = next
			continue
		case fi.Mode().IsRegular() && fi.Mode()&0o111 != 0:
			return rel, rest[next:], 0, ""
		default:
			return "", "", http.StatusForbidden, ""
		}
	}
	return "", "", http.StatusForbidden, ""
}

// serveCGI serves a request of a cgi route.
func (s *Server) serveCGI(t *table, w http.ResponseWriter, r *http.Request, rt *route) {
	base := strings.TrimSuffix(rt.cfg.Prefix, "/")
	script, pathInfo, status, link := findScript(rt.cgi.dir, r.URL.Path[len(base):])
	if link != "" {
		s.warnLink(rt, link)
	}
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	// The body first (whole, with request_buffering): a slow upload
	// holds no place.
	body, length, status := readBody(t.cfg, w, r, s.bodyReadTimeout, s.log)
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	if f, ok := body.(*os.File); ok {
		defer f.Close() // the spool; r.Body is the server's to close
	}
	if !rt.cgi.acquire(r.Context()) {
		if r.Context().Err() == nil {
			s.log.Warn("cgi route busy: max_concurrent runs for 5 s", "route", rt.cfg.Prefix, "uri", r.RequestURI)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		}
		return
	}
	scriptFilename := path.Join(rt.cgi.dir, script)
	q := &request{
		r:              r,
		scriptName:     base + "/" + script,
		scriptFilename: scriptFilename,
		pathInfo:       pathInfo,
		documentRoot:   t.cfg.DocumentRoot,
		contentLength:  length,
		serverSoftware: s.software,
	}
	spec := spawner.Spec{
		Path:       scriptFilename,
		Args:       []string{scriptFilename},
		Dir:        path.Dir(scriptFilename),
		Env:        spawner.CGIEnv(metaVars(nil, q), rt.cgi.env),
		Credential: rt.cgi.cred,
	}
	_, redirect := s.runCGI(w, r, spec, body, rt.cfg.Timeout, s.log.With("script", scriptFilename), func() { <-rt.cgi.slots })
	if redirect != "" {
		s.localRedirect(t, w, r, redirect)
	}
}

// warnLink warns, once per link (linksWarned), that a cgi route answered
// 404 for a script because link, relative to the route's directory, is a
// symlink that leads outside it, and says how to serve it.
func (s *Server) warnLink(rt *route, link string) {
	p := path.Join(rt.cgi.dir, link)
	if !s.linksWarned.add(p) {
		return
	}
	target, err := os.Readlink(p)
	if err != nil {
		target = "(" + err.Error() + ")"
	}
	s.log.Warn("cgi route: 404 for a symlink that leads outside the directory; to run its target, add a route whose cgi directory is the target's",
		"route", rt.cfg.Prefix, "dir", rt.cgi.dir, "link", p, "target", target)
}

// maxLinksWarned bounds linksWarned: a client can name endless paths to
// one link through a symlink to a directory inside ("self -> .":
// /cgi-bin/self/self/out.cgi), each another path to warn about.
const maxLinksWarned = 1024

// seenSet remembers up to maxLinksWarned strings, so that something is
// logged once per path with bounded memory: when full it is emptied, and
// a path may be logged again after maxLinksWarned others.
type seenSet struct {
	mu   sync.Mutex
	seen map[string]struct{} // guarded by mu
}

// add reports whether k was not in the set, and adds it.
func (s *seenSet) add(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[k]; ok {
		return false
	}
	if s.seen == nil || len(s.seen) >= maxLinksWarned {
		s.seen = make(map[string]struct{})
	}
	s.seen[k] = struct{}{}
	return true
}

// acquire takes one of the route's max_concurrent places, waiting up to
// cgiQueueTimeout; release with <-c.slots.
func (c *cgiRoute) acquire(ctx context.Context) bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	timer := time.NewTimer(cgiQueueTimeout)
	defer timer.Stop()
	select {
	case c.slots <- struct{}{}:
		return true
	case <-timer.C:
	case <-ctx.Done():
	}
	return false
}

// serveFallback serves a request of pool rt.pool, which could not serve
// it, by running the pool's command once as CGI. It reports the status
// answered.
func (s *Server) serveFallback(t *table, w http.ResponseWriter, r *http.Request, vars []fastcgi.Param, body io.Reader, rt *route, why error) int {
	pool := rt.pool
	fb, err := pool.Fallback()
	if err != nil {
		s.log.Warn("pool cannot serve and CGI fallback refused", "pool", pool.Name(), "uri", r.RequestURI, "why", why, "err", err)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		return http.StatusServiceUnavailable
	}
	s.log.Warn("pool cannot serve: CGI fallback", "pool", pool.Name(), "uri", r.RequestURI, "why", why)
	spec := fb.Spec
	spec.Env = spawner.CGIEnv(vars, fb.Spec.Env)
	code, redirect := s.runCGI(w, r, spec, body, fb.Timeout, s.log.With("pool", pool.Name(), "cgi_fallback", true), fb.Done)
	if redirect != "" {
		return s.localRedirect(t, w, r, redirect)
	}
	return code
}

// redirectDepth counts the local redirects a request went through.
type redirectDepth struct{}

// runCGI runs spec as a CGI program for the request and answers with what
// it prints. It reports the status answered (499 when the client went
// away), or, for a local redirect, the location to serve in its place,
// with nothing answered: the caller serves it (localRedirect) once
// release has run.
//
// release (the caller's concurrency place) runs once the program has
// exited and was reaped. When the response is complete and the body has
// been handed over, runCGI returns at once and s.cgi waits for the exit
// (spawner.CGI.Detach), as Shutdown waits for s.cgi: the client has its
// answer (and a kept connection its next request) without waiting for
// the exit to be reaped. The timeout still applies to that wait; the
// client going away no longer does.
func (s *Server) runCGI(w http.ResponseWriter, r *http.Request, spec spawner.Spec, body io.Reader, timeout time.Duration, log *slog.Logger, release func()) (code int, redirect string) {
	var fromClient *clientBody // the body, when it streams from the client
	if body != nil {
		// The program may answer while it reads (cat): without this an
		// HTTP/1 response that starts cuts the request body short.
		http.NewResponseController(w).EnableFullDuplex()
		if body == io.Reader(r.Body) {
			fromClient = &clientBody{r: body}
			body = fromClient
		}
	}
	// Until Detach, the client going away (r's context) kills the program.
	begin := time.Now()
	c, err := s.cgi.Start(r.Context(), spec, spawner.CGIOptions{Timeout: timeout, Log: log, OnEnd: release})
	if err != nil {
		release()
		if spawner.IsPermission(err) {
			log.Warn("cgi program may not be run", "err", err)
			http.Error(w, "Forbidden", http.StatusForbidden)
			return http.StatusForbidden, ""
		}
		log.Error("cgi program failed to start", "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return http.StatusInternalServerError, ""
	}
	e := entryOf(r)
	e.startedCGI(spec.Path, c.Pid)
	defer e.ranSince(begin)
	copied := make(chan struct{}) // closed once the body is copied and stdin closed
	if body == nil {
		c.Stdin.Close()
		close(copied)
	} else {
		go copyBodyToStdin(c.Stdin, body, copied)
	}
	detached := false
	defer func() {
		if !detached {
			// Failed, redirected, or the body copy still goes on: wait
			// for the exit here, then stop the copy, then end the run.
			c.Wait()
			stopBodyCopy(w, fromClient, copied)
			c.Close()
		}
	}()
	code, redirect, complete := s.answerCGI(w, c, log.With("pid", c.Pid))
	if complete {
		select {
		case <-copied:
			// The answer is complete and nothing reads the request any
			// more: wait for the exit off the request.
			c.Detach()
			detached = true
		default:
		}
	}
	return code, redirect
}

// answerCGI answers with the response of the CGI program c: the header
// block, then the body. It reports the status answered (499 when the
// client went away), or the location of a local redirect, with nothing
// answered, and whether a response went out complete. When the output
// fails once the header is out, it cuts the connection: it panics with
// http.ErrAbortHandler.
func (s *Server) answerCGI(w http.ResponseWriter, c *spawner.CGI, log *slog.Logger) (code int, redirect string, complete bool) {
	bufs := s.bufs.Get().(*buffers)
	defer s.bufs.Put(bufs)
	defer bufs.br.Reset(nil)
	status, explicit, err := readCGIHeader(c, bufs.br, w.Header())
	if err != nil {
		clear(w.Header())
		c.SignalGroup(syscall.SIGKILL)
		switch kerr := c.Err(); {
		case errors.Is(kerr, spawner.ErrCGITimeout):
			http.Error(w, "Gateway Timeout", http.StatusGatewayTimeout)
			return http.StatusGatewayTimeout, "", false
		case kerr != nil:
			return 499, "", false // the client went away
		}
		<-c.Done()
		log.Error("cgi program sent no valid response", "err", err, "exit", spawner.Describe(c.Status()))
		http.Error(w, "Bad Gateway", http.StatusBadGateway)
		return http.StatusBadGateway, "", false
	}
	if loc := w.Header().Get("Location"); !explicit && isLocalRedirect(loc) {
		clear(w.Header())
		return 0, loc, false // the program's document, if any, is not sent
	}
	w.WriteHeader(status)
	_, rerr, werr := copyBody(w, bufs.br, cgiPending(c, bufs.br), s.table.Load().cfg.SendTimeout)
	switch {
	case werr != nil:
		c.SignalGroup(syscall.SIGKILL)
		return 499, "", false
	case rerr != nil:
		c.SignalGroup(syscall.SIGKILL)
		if kerr := c.Err(); kerr != nil && !errors.Is(kerr, spawner.ErrCGITimeout) {
			return 499, "", false // the client went away
		}
		log.Warn("cgi program failed mid-response", "err", rerr)
		panic(http.ErrAbortHandler) // headers are out: cut the connection
	}
	return status, "", true
}

// cgiPending is copyBody's pending for the output of c, read through br:
// is more output coming within pipeWait (data, or EOF as the program
// exits)? copyBody flushes only when not, so a response the program
// writes at once goes out in one write with a Content-Length, while what
// a pausing program wrote is sent pipeWait later. The wait is a read
// deadline, in Go's poller: no thread blocks in a syscall. Once the
// program was killed, c keeps its expired deadline and ignores these.
func cgiPending(c *spawner.CGI, br *bufio.Reader) func() int {
	return func() int {
		c.SetReadDeadline(time.Now().Add(pipeWait))
		_, err := br.Peek(1) // an error is returned once, not kept
		c.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0
		}
		return 1
	}
}

// copyBodyToStdin copies the request body to a CGI program's stdin and
// closes it; closing copied is its last act.
func copyBodyToStdin(stdin *os.File, body io.Reader, copied chan<- struct{}) {
	defer close(copied)
	buf := make([]byte, 32<<10)
	io.CopyBuffer(stdin, body, buf) // EPIPE: the program did not read it all
	stdin.Close()
}

// stopBodyCopy ends the copy of the request body to a program that is
// done, and returns once the copy has ended (copied is closed). A client
// still sending a body nobody reads must not hold the run (and its
// max_concurrent place) open: the copy reads no more of it, and if it is
// still blocked reading from the client bodyStopWait later, the
// connection's read deadline unblocks it. Only then: once a body has
// ended, the server reads ahead on the connection for the next request,
// and a deadline would break that. (A copy blocked writing to stdin was
// unblocked by spawner.CGI.Wait.)
func stopBodyCopy(w http.ResponseWriter, fromClient *clientBody, copied <-chan struct{}) {
	if fromClient != nil {
		fromClient.stopped.Store(true)
		t := time.NewTimer(bodyStopWait)
		select {
		case <-copied:
		case <-t.C:
			http.NewResponseController(w).SetReadDeadline(time.Now())
		}
		t.Stop()
	}
	<-copied
}

// clientBody is a request body streaming from the client to a CGI
// program, which the front stops reading once the program is done.
type clientBody struct {
	r       io.Reader
	stopped atomic.Bool
}

var errBodyStopped = errors.New("the CGI program is done: request body not read further")

func (b *clientBody) Read(p []byte) (int, error) {
	if b.stopped.Load() {
		return 0, errBodyStopped
	}
	return b.r.Read(p)
}

// localRedirect serves GET loc through the routes in place of the CGI
// program's answer (RFC 3875 6.2.2).
func (s *Server) localRedirect(t *table, w http.ResponseWriter, r *http.Request, loc string) int {
	depth, _ := r.Context().Value(redirectDepth{}).(int)
	if depth >= maxLocalRedirects {
		s.log.Error("too many local redirects", "uri", r.RequestURI, "location", loc)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return http.StatusInternalServerError
	}
	u, err := url.ParseRequestURI(loc)
	if err != nil {
		s.log.Error("bad local redirect", "uri", r.RequestURI, "location", loc, "err", err)
		http.Error(w, "Bad Gateway", http.StatusBadGateway)
		return http.StatusBadGateway
	}
	r2 := r.Clone(context.WithValue(r.Context(), redirectDepth{}, depth+1))
	r2.Method = http.MethodGet
	r2.URL = u
	r2.RequestURI = loc
	r2.Body = http.NoBody
	r2.ContentLength = 0
	r2.TransferEncoding = nil
	r2.Header.Del("Content-Length")
	r2.Header.Del("Content-Type")
	sw := &statusWriter{ResponseWriter: w}
	s.serve(t, sw, r2)
	if sw.status == 0 {
		return http.StatusOK
	}
	return sw.status
}

// isLocalRedirect: a path-only Location ("/x", not "//host/x").
func isLocalRedirect(loc string) bool {
	return strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//")
}

// pipeWait is how long a CGI response's copy waits for more output before
// it flushes what it has: a program writes its response and exits, and
// the exit (EOF) reaches us a moment after the last write.
const pipeWait = 2 * time.Millisecond
