package public

import (
	"context"
	"io"

	"github.com/fcgivisor/fcgivisor/fastcgi"
	"github.com/fcgivisor/fcgivisor/spawner"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// fallback runs the request through the pool's command once as a CGI
// program (cgi_fallback), as the front does: its environment is the
// PARAMS the web server sent, then the pool's env for names they do not
// set; its stdout, a CGI response, goes to the client as STDOUT
// unchanged (a CGI response and a FastCGI responder's STDOUT have one
// format). why is what Serve returned.
func (s *Socket) fallback(ctx context.Context, w *fastcgi.ResponseWriter, r *fastcgi.ServerRequest, pool *supervisor.Pool, uri string, buf []byte, why error) (uint32, error) {
	fb, err := pool.Fallback()
	if err != nil {
		s.log.Warn("pool cannot serve and CGI fallback refused", "uri", uri, "why", why, "err", err)
		pool.Observe(503)
		return 0, answer(w, 503)
	}
	s.log.Warn("pool cannot serve: CGI fallback", "uri", uri, "why", why)
	spec := fb.Spec
	spec.Env = cgiEnv(r.Params, fb.Spec.Env)
	c, err := s.cgi.Start(ctx, spec, spawner.CGIOptions{Timeout: fb.Timeout, Log: s.log.With("cgi_fallback", true), OnEnd: fb.Done})
	if err != nil {
		fb.Done()
		s.log.Error("cgi_fallback: start", "uri", uri, "err", err)
		pool.Observe(502)
		return 0, answer(w, 502)
	}
	go func() {
		// The body to the program's stdin; a program that exits without
		// reading it ends the copy (Wait expires the write deadline).
		io.Copy(c.Stdin, r.Body)
		c.Stdin.Close()
	}()
	code, rerr := relay(w, c, buf)
	if rerr != nil {
		c.Close()
		pool.Observe(499)
		return 0, rerr
	}
	c.Wait()
	killed := c.Err()
	c.Close()
	switch {
	case killed != nil && !w.Written():
		pool.Observe(504)
		return 0, answer(w, 504)
	case killed != nil:
		pool.Observe(504)
		return 0, killed
	case !w.Written():
		pool.Observe(502)
		return 0, answer(w, 502)
	}
	pool.Observe(code)
	return uint32(c.Status().ExitStatus()), nil
}

// cgiEnv is the environment of a fallback run: spawner.CGIEnv of the
// PARAMS without HTTP_PROXY (httpoxy: a client's Proxy header, which a web
// server passes on, must not become the program's proxy), then extra.
func cgiEnv(params []fastcgi.Param, extra []string) []string {
	vars := make([]fastcgi.Param, 0, len(params))
	for _, p := range params {
		if p.Name != "HTTP_PROXY" {
			vars = append(vars, p)
		}
	}
	return spawner.CGIEnv(vars, extra)
}
