package front

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/fastcgi"
	"github.com/fcgivisor/fcgivisor/spawner"
)

func TestRouteMatchAndSplit(t *testing.T) {
	for _, tc := range []struct {
		route                conf.Route
		path                 string
		ok                   bool
		scriptName, pathInfo string
	}{
		{conf.Route{Prefix: "/"}, "/a/b", true, "", "/a/b"},
		{conf.Route{Prefix: "/go/"}, "/go/x", true, "/go", "/x"},
		{conf.Route{Prefix: "/go/"}, "/go", false, "", ""},
		{conf.Route{Prefix: "/go/"}, "/gopher", false, "", ""},
		{conf.Route{Prefix: "/", Suffix: ".php"}, "/app/x.php/extra/y", true, "/app/x.php", "/extra/y"},
		{conf.Route{Prefix: "/", Suffix: ".php"}, "/x.php", true, "/x.php", ""},
		// The first segment that ends in the suffix, not a later one, and
		// not a segment that merely contains it.
		{conf.Route{Prefix: "/", Suffix: ".php"}, "/a.phpx/b.php/c.php", true, "/a.phpx/b.php", "/c.php"},
		{conf.Route{Prefix: "/", Suffix: ".php"}, "/img/logo.png", false, "", ""},
		{conf.Route{Prefix: "/", Suffix: ".php", Index: "index.php"}, "/blog/", true, "/blog/index.php", ""},
		{conf.Route{Prefix: "/", Index: "index.php"}, "/", true, "", "/index.php"},
		{conf.Route{Prefix: "/app/", Script: "/index.php"}, "/app/users/7", true, "/index.php", "/app/users/7"},
		// A pool route's prefix without its slash matches at a segment
		// boundary only: PATH_INFO never starts with "../" or "le".
		{conf.Route{Prefix: "/x", Pool: "p"}, "/x../y", false, "", ""},
		{conf.Route{Prefix: "/app", Pool: "p"}, "/apple", false, "", ""},
		{conf.Route{Prefix: "/app", Pool: "p"}, "/app", true, "/app", ""},
		{conf.Route{Prefix: "/app", Pool: "p"}, "/app/x", true, "/app", "/x"},
	} {
		rt := &route{cfg: &tc.route}
		sn, pi, ok := rt.match(tc.path)
		if ok != tc.ok || sn != tc.scriptName || pi != tc.pathInfo {
			t.Errorf("%+v match %q = (%q, %q, %v); want (%q, %q, %v)", tc.route, tc.path, sn, pi, ok, tc.scriptName, tc.pathInfo, tc.ok)
		}
	}
}

func TestEscapes(t *testing.T) {
	for p, want := range map[string]bool{
		"/a/b":          false,
		"/a/../b":       true,
		"/..":           true,
		"/a/..":         true,
		"/a/..b/c":      false,
		"/a/b..":        false,
		"/a\x00b":       true,
		"/./a":          false,
		"/a/.../b":      false,
		"/x.php/../../": true,
	} {
		if got := escapes(p); got != want {
			t.Errorf("escapes(%q) = %v, want %v", p, got, want)
		}
	}
}

func params(ps []fastcgi.Param) map[string]string {
	m := make(map[string]string)
	for _, p := range ps {
		m[p.Name] = p.Value
	}
	return m
}

func TestMetaVars(t *testing.T) {
	r := httptest.NewRequest("POST", "http://example.com:8080/app/x.php/extra?a=1&b=2", strings.NewReader("body"))
	r.RemoteAddr = "192.0.2.7:4242"
	r.Header.Set("Content-Type", "text/plain")
	r.Header.Set("X-Custom", "v1")
	r.Header.Add("Cookie", "a=1")
	r.Header.Add("Cookie", "b=2")
	r.Header.Set("Proxy", "http://evil.example:3128")
	r.Header["X_Custom"] = []string{"spoof"}
	r = r.WithContext(withServerAddr(r.Context(), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}))
	m := params(metaVars(nil, &request{
		r: r, scriptName: "/app/x.php", pathInfo: "/extra", documentRoot: "/srv/www",
		contentLength: 4, serverSoftware: "fcgivisor/test",
	}))
	want := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_SOFTWARE":   "fcgivisor/test",
		"REQUEST_METHOD":    "POST",
		"QUERY_STRING":      "a=1&b=2",
		"SCRIPT_NAME":       "/app/x.php",
		"SCRIPT_FILENAME":   "/srv/www/app/x.php",
		"PATH_INFO":         "/extra",
		"DOCUMENT_ROOT":     "/srv/www",
		"CONTENT_LENGTH":    "4",
		"CONTENT_TYPE":      "text/plain",
		"REMOTE_ADDR":       "192.0.2.7",
		"REMOTE_PORT":       "4242",
		"SERVER_NAME":       "example.com",
		"SERVER_ADDR":       "127.0.0.1",
		"SERVER_PORT":       "8080",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"REDIRECT_STATUS":   "200",
		"HTTP_HOST":         "example.com:8080",
		"HTTP_X_CUSTOM":     "v1",
		"HTTP_COOKIE":       "a=1; b=2",
		"REQUEST_SCHEME":    "http",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	// httpoxy: a Proxy header never becomes HTTP_PROXY; Content-* are not
	// repeated as HTTP_*.
	for _, k := range []string{"HTTP_PROXY", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTPS"} {
		if v, ok := m[k]; ok {
			t.Errorf("%s = %q is set", k, v)
		}
	}
}

func TestMetaVarsWithoutBody(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	m := params(metaVars(nil, &request{r: r}))
	if m["CONTENT_LENGTH"] != "0" || m["QUERY_STRING"] != "" {
		t.Fatalf("CONTENT_LENGTH %q QUERY_STRING %q", m["CONTENT_LENGTH"], m["QUERY_STRING"])
	}
	if _, ok := m["PATH_TRANSLATED"]; ok {
		t.Fatal("PATH_TRANSLATED set with an empty PATH_INFO (RFC 3875 4.1.6)")
	}
}

func TestReadCGIResponse(t *testing.T) {
	for _, tc := range []struct {
		in     string
		status int
		header map[string]string
		body   string
		err    string
	}{
		{in: "Content-Type: text/plain\r\n\r\nhello", status: 200, header: map[string]string{"Content-Type": "text/plain"}, body: "hello"},
		{in: "Content-Type: text/plain\n\nunix newlines", status: 200, body: "unix newlines"},
		{in: "Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\nnope", status: 404, header: map[string]string{"Status": ""}, body: "nope"},
		{in: "Location: /elsewhere\r\n\r\n", status: 302, header: map[string]string{"Location": "/elsewhere"}},
		{in: "Status: 301\r\nLocation: http://x/\r\n\r\n", status: 301},
		{in: "Status: 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", status: 200, header: map[string]string{"Transfer-Encoding": "", "Connection": ""}},
		{in: "Status: abc\r\n\r\n", err: "bad Status"},
		{in: "", err: "empty response"},
		{in: "no colon here\r\n\r\n", err: "malformed"},
		{in: " folded: x\r\n\r\n", err: "bad header line"},
		{in: "Bad Key: x\r\n\r\n", err: "bad header line"},
		{in: "X-Long: " + strings.Repeat("b", 20000) + "\r\nx-lower: 1\r\n\r\nbody", status: 200, header: map[string]string{"X-Long": strings.Repeat("b", 20000), "X-Lower": "1"}, body: "body"},
		{in: "Content-Type: text/plain\r\nStatus: 204", status: 204},
		{in: "X: " + strings.Repeat("a", maxResponseHeader) + "\r\n\r\n", err: "header block over"},
		// The limits are inclusive: a block of exactly maxResponseHeader
		// bytes and maxResponseHeaderLines lines is fine.
		{in: "X: " + strings.Repeat("a", maxResponseHeader-7) + "\r\n\r\nbody", status: 200, body: "body"},
		{in: "X: " + strings.Repeat("a", maxResponseHeader-6) + "\r\n\r\n", err: "header block over"},
		{in: strings.Repeat("A: 1\n", maxResponseHeaderLines) + "\nbody", status: 200, body: "body"},
		{in: strings.Repeat("A: 1\n", maxResponseHeaderLines+1) + "\n", err: "over 1000 lines"},
		// Nothing the client could misread gets through.
		{in: "X: a\x00b\r\n\r\n", err: "control character"},
		{in: "X: a\rb\r\n\r\n", err: "control character"},
		{in: "X: a\r \r\n\r\n", err: "control character"},
		{in: "X\x00: a\r\n\r\n", err: "bad header line"},
		{in: "X[1]: a\r\n\r\n", err: "bad header line"},
		{in: "X: tab\tand obs-text \xe9\r\n\r\n", status: 200, header: map[string]string{"X": "tab\tand obs-text \xe9"}},
		{in: "Content-Length: 5\r\nContent-Length: 5\r\n\r\n12345", err: "bad Content-Length"},
		{in: "Content-Length: +5\r\n\r\n12345", err: "bad Content-Length"},
		{in: "Content-Length: 5\r\n\r\n12345", status: 200, header: map[string]string{"Content-Length": "5"}, body: "12345"},
		{in: "Status: 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", err: "bad Status"},
		{in: "Status: 99\r\n\r\n", err: "bad Status"},
	} {
		br := bufio.NewReader(nil)
		h := http.Header{}
		status, err := readCGIResponse(strings.NewReader(tc.in), br, h)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%.40q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%.40q: %v", tc.in, err)
			continue
		}
		if status != tc.status {
			t.Errorf("%.40q: status %d, want %d", tc.in, status, tc.status)
		}
		for k, v := range tc.header {
			if got := h.Get(k); got != v {
				t.Errorf("%.40q: header %s = %q, want %q", tc.in, k, got, v)
			}
		}
		body, _ := io.ReadAll(br)
		if string(body) != tc.body {
			t.Errorf("%.40q: body %q, want %q", tc.in, body, tc.body)
		}
	}
}

func TestBodyLimitsAndSpooling(t *testing.T) {
	cfg := &conf.HTTP{MaxBodyBytes: 2 << 20}
	log := slog.New(slog.DiscardHandler)
	// Declared too large: refused before anything is read.
	r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
	r.ContentLength = 3 << 20
	if _, _, status := readBody(cfg, nil, r, defaultBodyReadTimeout, log); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", status)
	}
	// Chunked (unknown length) bodies are spooled to learn their length:
	// in memory when small, in a file when large; over the limit is 413.
	for _, n := range []int{10, spoolInMemory + 5, 2 << 20} {
		r := httptest.NewRequest("POST", "/", io.NopCloser(strings.NewReader(strings.Repeat("y", n))))
		r.ContentLength = -1
		body, length, status := readBody(cfg, nil, r, defaultBodyReadTimeout, log)
		if status != 0 || length != int64(n) {
			t.Fatalf("n=%d: length %d status %d", n, length, status)
		}
		b, _ := io.ReadAll(body)
		if len(b) != n {
			t.Fatalf("n=%d: read back %d bytes", n, len(b))
		}
		if c, ok := body.(io.Closer); ok {
			c.Close()
		}
	}
	r = httptest.NewRequest("POST", "/", io.NopCloser(strings.NewReader(strings.Repeat("z", 2<<20+1))))
	r.ContentLength = -1
	if _, _, status := readBody(cfg, nil, r, defaultBodyReadTimeout, log); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked over the limit: status %d, want 413", status)
	}
}

// With request_buffering a body with Content-Length is read whole before
// it is handed on (memory, then a file); without it, it streams.
func TestRequestBuffering(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, n := range []int{10, spoolInMemory - 1, spoolInMemory, spoolInMemory + 5} {
		for _, buffering := range []bool{true, false} {
			cfg := &conf.HTTP{MaxBodyBytes: 2 << 20, RequestBuffering: buffering}
			src := strings.NewReader(strings.Repeat("y", n))
			r := httptest.NewRequest("POST", "/", io.NopCloser(src))
			r.ContentLength = int64(n)
			body, length, status := readBody(cfg, nil, r, defaultBodyReadTimeout, log)
			if status != 0 || length != int64(n) {
				t.Fatalf("n=%d buffering=%v: length %d status %d", n, buffering, length, status)
			}
			if buffering != (src.Len() == 0) {
				t.Errorf("n=%d buffering=%v: %d of %d bytes left unread by readBody", n, buffering, src.Len(), n)
			}
			if (body == io.Reader(r.Body)) == buffering {
				t.Errorf("n=%d buffering=%v: body is r.Body: %v", n, buffering, body == io.Reader(r.Body))
			}
			b, _ := io.ReadAll(body)
			if len(b) != n {
				t.Fatalf("n=%d buffering=%v: read back %d bytes", n, buffering, len(b))
			}
			if f, ok := body.(*os.File); ok {
				f.Close()
			}
		}
	}
}

// TestPoolRouteEnv: a pool route's env is added to the PARAMS after the
// meta-variables, in name order, once each, and never replaces one.
func TestPoolRouteEnv(t *testing.T) {
	r := httptest.NewRequest("GET", "/git/x?a=opml", nil)
	r.Header.Set("X-Y", "client")
	q := &request{r: r, scriptName: "/git", pathInfo: "/x", documentRoot: "/srv/www", serverSoftware: "fcgivisor/t"}
	env := routeEnv(map[string]string{"GITWEB_CONFIG": "/etc/gitweb.conf", "SCRIPT_NAME": "/evil", "HTTP_X_Y": "route", "APP_ENV": "prod"})
	meta := metaVars(nil, q)
	ps := addEnv(slices.Clone(meta), env)
	if !slices.Equal(ps[:len(meta)], meta) {
		t.Errorf("the meta-variables changed: %v, want %v", ps[:len(meta)], meta)
	}
	if got, want := ps[len(meta):], []fastcgi.Param{{Name: "APP_ENV", Value: "prod"}, {Name: "GITWEB_CONFIG", Value: "/etc/gitweb.conf"}}; !slices.Equal(got, want) {
		t.Errorf("added %v, want %v (sorted, clashes dropped)", got, want)
	}
	got := params(ps)
	if got["SCRIPT_NAME"] != "/git" || got["HTTP_X_Y"] != "client" {
		t.Errorf("SCRIPT_NAME %q, HTTP_X_Y %q: the route's env replaced a meta-variable", got["SCRIPT_NAME"], got["HTTP_X_Y"])
	}
	// A CGI fallback gets the same PARAMS, then the pool's env for names
	// neither sets: the route's env wins over the pool's.
	fb := spawner.CGIEnv(ps, []string{"APP_ENV=pool", "POOL_ONLY=1"})
	for _, kv := range []string{"APP_ENV=prod", "GITWEB_CONFIG=/etc/gitweb.conf", "POOL_ONLY=1", "SCRIPT_NAME=/git"} {
		if !slices.Contains(fb, kv) {
			t.Errorf("fallback environment lacks %s: %v", kv, fb)
		}
	}
	if slices.Contains(fb, "APP_ENV=pool") {
		t.Error("fallback environment has the pool's APP_ENV over the route's")
	}
}

// TestSlashRedirect: a route whose prefix ends in "/" answers the prefix
// without its slash with a redirect to the prefix, query kept (issue 11),
// in file order (an earlier route that matches the path serves it), never
// to another host, and not for a status route or a route with suffix that
// would not serve the prefix itself.
func TestSlashRedirect(t *testing.T) {
	tb := &table{cfg: &conf.HTTP{}, routes: []*route{
		{cfg: &conf.Route{Prefix: "/data/", Status: 404}},
		{cfg: &conf.Route{Prefix: "/early", Status: 403}}, // serves /early first
		{cfg: &conf.Route{Prefix: "/early/", Pool: "p"}},
		{cfg: &conf.Route{Prefix: "/x/", Pool: "p"}},
		{cfg: &conf.Route{Prefix: "/php/", Suffix: ".php", Pool: "p"}},
		{cfg: &conf.Route{Prefix: "/idx/", Suffix: ".php", Index: "index.php", Pool: "p"}},
		{cfg: &conf.Route{Prefix: "/cgi-bin/", CGI: "/usr/lib/cgi-bin"}},
		{cfg: &conf.Route{Prefix: "/assets/", Static: "/srv/assets"}},
		{cfg: &conf.Route{Prefix: "//evil.example/", Pool: "p"}},
		{cfg: &conf.Route{Prefix: "/\\evil.example/", Pool: "p"}},
		{cfg: &conf.Route{Prefix: "/a b/", Pool: "p"}},
	}}
	s := &Server{log: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		method, target string
		code           int
		location       string
	}{
		{"GET", "/x?a=opml", 301, "/x/?a=opml"},
		{"GET", "/x", 301, "/x/"},
		{"GET", "/x?", 301, "/x/"},
		{"GET", "/%78?a=b%20c&d", 301, "/x/?a=b%20c&d"}, // the decoded path, the raw query
		{"HEAD", "/x", 301, "/x/"},
		{"POST", "/x?a=1", 308, "/x/?a=1"}, // method and body kept
		{"PUT", "/x", 308, "/x/"},
		{"GET", "/X", 404, ""}, // exact bytes, as the prefix match
		{"GET", "/xx", 404, ""},
		{"GET", "/idx", 301, "/idx/"},             // index completes /idx/
		{"GET", "/php", 404, ""},                  // /php/ would not match either
		{"GET", "/cgi-bin?q", 301, "/cgi-bin/?q"}, // every route kind
		{"GET", "/assets", 301, "/assets/"},
		{"GET", "/data", 404, ""},  // the status route's own behaviour
		{"GET", "/early", 403, ""}, // an earlier route wins
		{"GET", "//evil.example", 404, ""},
		{"GET", "/%5Cevil.example", 404, ""},
		{"GET", "/a%20b", 301, "/a%20b/"},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		r.Host = "attacker.example"
		w := httptest.NewRecorder()
		s.serve(tb, w, r)
		loc := w.Header().Get("Location")
		if w.Code != tc.code || loc != tc.location {
			t.Errorf("%s %s: %d Location %q, want %d %q", tc.method, tc.target, w.Code, loc, tc.code, tc.location)
		}
	}
}
