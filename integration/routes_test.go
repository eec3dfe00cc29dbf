package integration

// Route rules of issue 11 through the real binary and real workers: the
// redirect of a prefix without its slash, and a pool route's env reaching
// libfcgi and FCGI.pm apps, which take a request's environment from its
// PARAMS alone.

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestSlashRedirect: /c (the C worker's route is /c/) answers 301 to
// /c/ with the query kept; following it reaches the worker with that
// query. A POST gets 308, so that the client repeats it with its body.
func TestSlashRedirect(t *testing.T) {
	t.Parallel()
	in := start(t, options{langs: []string{"go", "c"}})
	forLangs(t, []lang{{"go"}, {"c"}}, func(t *testing.T, l lang) {
		bare := "/" + l.name
		resp, body := in.get(t, bare+"?vars&a=opml&y=a%20b")
		if resp.StatusCode != http.StatusMovedPermanently {
			t.Fatalf("GET %s?vars&a=opml: %d %q, want 301", bare, resp.StatusCode, clip(body))
		}
		loc := resp.Header.Get("Location")
		if want := bare + "/?vars&a=opml&y=a%20b"; loc != want {
			t.Fatalf("Location %q, want %q", loc, want)
		}
		resp, body = in.get(t, loc)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %q", loc, resp.StatusCode, clip(body))
		}
		vars := parseLines(body)
		if got := vars["QUERY_STRING"]; !slices.Equal(got, []string{"vars&a=opml&y=a%20b"}) {
			t.Errorf("after the redirect QUERY_STRING = %q, want the query sent to %s", got, bare)
		}
		if got := vars["PATH_INFO"]; !slices.Equal(got, []string{"/"}) {
			t.Errorf("after the redirect PATH_INFO = %q, want \"/\"", got)
		}
		resp, body, err := in.do(context.Background(), http.MethodPost, bare+"?echo", []byte("body"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != bare+"/?echo" {
			t.Errorf("POST %s?echo: %d Location %q, want 308 %q", bare, resp.StatusCode, resp.Header.Get("Location"), bare+"/?echo")
		}
		if resp, _ := in.get(t, bare+"x"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %sx: %d, want 404 (not the prefix without its slash)", bare, resp.StatusCode)
		}
	})
}

// envRoutes send the C and Perl pools requests under /envc/ and /envperl/
// with a route env; SCRIPT_NAME and HTTP_X_T clash with meta-variables.
const envRoutes = `
[[http.route]]
prefix = "/envc/"
pool   = "c"
env    = { GITWEB_CONFIG = "/etc/gitweb-test.conf", CGIT_CONFIG = "/etc/cgitrc-test", SCRIPT_NAME = "/evil", HTTP_X_T = "route" }

[[http.route]]
prefix = "/envperl/"
pool   = "perl"
env    = { GITWEB_CONFIG = "/etc/gitweb-test.conf", CGIT_CONFIG = "/etc/cgitrc-test", SCRIPT_NAME = "/evil", HTTP_X_T = "route" }
`

// TestRouteEnv: a pool route's env reaches a libfcgi (C) and an FCGI.pm
// (Perl) app in the request's environment, once, the meta-variables
// winning a clash; the pool's env is in the worker process's environment
// (?penv) and not in the request's (?vars), which is why route env is
// needed (issue 11). The plain route of the same pool sends none of it.
func TestRouteEnv(t *testing.T) {
	t.Parallel()
	in := start(t, options{langs: []string{"c", "perl"}, routes: envRoutes, pool: func(_ lang, p *poolOpts) {
		p.env = map[string]string{"POOL_MARK": "pool-env"}
	}})
	forLangs(t, []lang{{"c"}, {"perl"}}, func(t *testing.T, l lang) {
		p := "/env" + l.name + "/x"
		resp, body, err := in.do(context.Background(), http.MethodGet, p+"?vars", nil, http.Header{"X-T": {"client"}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s?vars: %d %q", p, resp.StatusCode, clip(body))
		}
		vars := parseLines(body)
		for k, v := range map[string]string{
			"GITWEB_CONFIG": "/etc/gitweb-test.conf",
			"CGIT_CONFIG":   "/etc/cgitrc-test",
			"SCRIPT_NAME":   "/env" + l.name, // the meta-variable wins
			"HTTP_X_T":      "client",        // so does a request header
			"PATH_INFO":     "/x",
		} {
			if got := vars[k]; !slices.Equal(got, []string{v}) {
				t.Errorf("GET %s?vars: %s = %q, want [%q]", p, k, got, v)
			}
		}
		if v, ok := vars["POOL_MARK"]; ok {
			t.Errorf("GET %s?vars: the pool's env is in the request's environment (%q): the worker does not show its process environment to a request, or this test proves nothing", p, v)
		}
		penv := parseLines(in.expect(t, p+"?penv", http.StatusOK, ""))
		if got := penv["POOL_MARK"]; !slices.Equal(got, []string{"pool-env"}) {
			t.Errorf("GET %s?penv: POOL_MARK = %q in the worker's process environment, want [\"pool-env\"]", p, got)
		}
		if _, ok := penv["GITWEB_CONFIG"]; ok {
			t.Errorf("GET %s?penv: the route's env is in the worker process's environment", p)
		}
		// The language's own route (/c/, /perl/) has no env.
		plain := parseLines(in.expect(t, l.path("/x?vars"), http.StatusOK, ""))
		for k := range plain {
			if strings.HasSuffix(k, "_CONFIG") {
				t.Errorf("GET %s?vars: %s sent on a route without env", l.path("/x"), k)
			}
		}
	})
}

// forLangs is eachLang for the languages ls only.
func forLangs(t *testing.T, ls []lang, f func(t *testing.T, l lang)) {
	t.Helper()
	for _, l := range ls {
		t.Run(l.name, func(t *testing.T) {
			l.need(t)
			t.Parallel()
			f(t, l)
		})
	}
}
