package integration

// One-shot CGI: cgi routes (scripts under a directory, run once per
// request) and the pool CGI fallback (cgi_fallback: the pool's command run
// once as CGI when the pool cannot serve). The scripts are in
// testdata/cgi; each test copies them into a world-readable tree of its own
// (newCGITree) so that scripts may run as nobody and tests may add files.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Helpers

// cgiTree is a test's CGI world:
//
//	root/       0755, outside the route's directory (canaries live here)
//	root/cgi/   the cgi route's directory: every script of testdata/cgi
//	root/cgi/sub/  env.sh, env.pl, echo.sh again, one level down
//	root/out/   where scripts write what the test reads ($OUT)
type cgiTree struct {
	root, dir, out string
}

func newCGITree(t testing.TB) *cgiTree {
	t.Helper()
	root := shortTempDir(t)
	// MkdirTemp makes 0700; scripts run as nobody must reach theirs.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	tr := &cgiTree{root: root, dir: filepath.Join(root, "cgi"), out: filepath.Join(root, "out")}
	for _, d := range []string{tr.dir, filepath.Join(tr.dir, "sub"), tr.out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir("testdata/cgi")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		tr.copyScript(t, e.Name(), e.Name())
	}
	for _, name := range []string{"env.sh", "env.pl", "echo.sh"} {
		tr.copyScript(t, name, "sub/"+name)
	}
	return tr
}

// copyScript copies testdata/cgi/NAME to dir/REL, mode 0755.
func (tr *cgiTree) copyScript(t testing.TB, name, rel string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata/cgi", name))
	if err != nil {
		t.Fatal(err)
	}
	tr.write(t, filepath.Join(tr.dir, rel), string(data), 0o755)
}

func (tr *cgiTree) write(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode goes through the umask.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// cgiRoute renders one cgi [[http.route]] whose scripts run as root; lines
// are more `key = value` lines, not user (see cgiRouteAs).
func cgiRoute(prefix, dir string, lines ...string) string {
	return cgiRouteAs("root", prefix, dir, lines...)
}

// cgiRouteAs is cgiRoute with the scripts' user: as root, fcgivisor
// refuses a cgi route without one.
func cgiRouteAs(user, prefix, dir string, lines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[http.route]]\nprefix = %s\ncgi = %s\n", tomlString(prefix), tomlString(dir))
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "user = %s\n", tomlString(user))
	return b.String() + "\n"
}

// tomlTable renders an inline table: { A = "1", B = "2" }.
func tomlTable(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var kv []string
	for _, k := range keys {
		kv = append(kv, k+" = "+tomlString(m[k]))
	}
	return "{ " + strings.Join(kv, ", ") + " }"
}

// rawGet sends "GET target" exactly as given (Go's client would clean or
// re-encode it) and returns the status and body.
func (in *instance) rawGet(t testing.TB, target string) (int, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", in.port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", target, in.port); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s (raw): %v", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s (raw): body: %v", target, err)
	}
	return resp.StatusCode, body
}

// envOf parses NAME=VALUE lines and fails t when a name appears twice.
func envOf(t testing.TB, what string, body []byte) map[string]string {
	t.Helper()
	env := map[string]string{}
	for k, vs := range parseLines(body) {
		if len(vs) != 1 {
			t.Errorf("%s: %s appears %d times: %q", what, k, len(vs), vs)
		}
		env[k] = vs[0]
	}
	return env
}

// metaVarNames are the names fcgivisor's meta-variables may have besides
// HTTP_*: those RFC 3875 lists and the others the FastCGI params carry too
// (front/cgivars.go).
var metaVarNames = []string{
	"AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "DOCUMENT_ROOT", "DOCUMENT_URI",
	"GATEWAY_INTERFACE", "HTTPS", "PATH_INFO", "PATH_TRANSLATED", "QUERY_STRING",
	"REDIRECT_STATUS", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_PORT", "REMOTE_USER",
	"REQUEST_METHOD", "REQUEST_SCHEME", "REQUEST_URI", "SCRIPT_FILENAME", "SCRIPT_NAME",
	"SERVER_ADDR", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE",
}

// randomBytes returns n random bytes (with NULs, CRs and LFs: a body must
// pass untouched).
func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// onlyReader hides the concrete type of a reader so that the request goes
// out chunked (no Content-Length).
type onlyReader struct{ io.Reader }

// poolCGI is what /status says of a pool that the fallback tests check.
type poolCGI struct {
	state     string
	fallbacks int64 // totals.cgi_fallbacks
	refused   int64 // totals.cgi_fallbacks_refused
	workers   []int
}

// cgiStatus reads /status, pool by pool.
func cgiStatus(t testing.TB, a *adminClient) map[string]poolCGI {
	t.Helper()
	resp, body := a.get(t, "/status")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /status: %d %q", resp.StatusCode, clip(body))
	}
	var doc struct {
		Pools []struct {
			Name    string `json:"name"`
			State   string `json:"state"`
			Workers []struct {
				Pid int `json:"pid"`
			} `json:"workers"`
			Totals map[string]json.RawMessage `json:"totals"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("/status: %v\n%s", err, clip(body))
	}
	out := map[string]poolCGI{}
	for _, p := range doc.Pools {
		pc := poolCGI{state: p.State}
		for key, dst := range map[string]*int64{"cgi_fallbacks": &pc.fallbacks, "cgi_fallbacks_refused": &pc.refused} {
			raw, ok := p.Totals[key]
			if !ok {
				t.Fatalf("/status: pool %s totals have no %s: %s", p.Name, key, clip(body))
			}
			n, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil {
				t.Fatalf("/status: pool %s %s = %s: %v", p.Name, key, raw, err)
			}
			*dst = n
		}
		for _, w := range p.Workers {
			pc.workers = append(pc.workers, w.Pid)
		}
		out[p.Name] = pc
	}
	return out
}

// fallbackLogged reports whether a WARN record says a CGI fallback ran for
// pool and uri.
func fallbackLogged(r map[string]any, pool, uri string) bool {
	msg, _ := r["msg"].(string)
	return r["level"] == "WARN" && strings.Contains(msg, "CGI fallback") && r["pool"] == pool && r["uri"] == uri
}

// result is one request's outcome from a goroutine.
type result struct {
	resp    *http.Response
	body    []byte
	err     error
	elapsed time.Duration
}

func (in *instance) goDo(method, path string, body []byte) <-chan result {
	ch := make(chan result, 1)
	go func() {
		t0 := time.Now()
		resp, b, err := in.do(context.Background(), method, path, body, nil)
		ch <- result{resp, b, err, time.Since(t0)}
	}()
	return ch
}

// await waits for a request started with goDo, bounded.
func await(t testing.TB, what string, ch <-chan result, timeout time.Duration) result {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		return r
	case <-time.After(timeout):
		t.Fatalf("%s: no answer within %v", what, timeout)
	}
	panic("unreachable")
}

// waitFile waits until path exists.
func waitFile(t testing.TB, path string, timeout time.Duration) {
	t.Helper()
	if !waitFor(timeout, func() bool { _, err := os.Stat(path); return err == nil }) {
		t.Fatalf("%s did not appear within %v", path, timeout)
	}
}

func readPid(t testing.TB, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		t.Fatalf("%s: %q is not a pid", path, data)
	}
	return pid
}

// ---------------------------------------------------------------------------
// cgi routes

// TestCGIVariables: the environment of a CGI script in sh and in Perl is
// exactly the meta-variables, the route's env and PATH; the working
// directory is the script's; request bodies reach stdin.
func TestCGIVariables(t *testing.T) {
	t.Parallel()
	tr := newCGITree(t)
	in := start(t, options{
		langs: []string{},
		env:   []string{"FCGIVISOR_SECRET=x"},
		routes: cgiRoute("/cgi-bin/", tr.dir, "env = "+tomlTable(map[string]string{"K": "V", "SCRIPT_NAME": "/clash"})) +
			cgiRoute("/cgi-path/", tr.dir, "env = "+tomlTable(map[string]string{"PATH": "/opt/none/bin:/usr/bin:/bin"})),
	})
	port := strconv.Itoa(in.port)
	docRoot := documentRoot()

	for _, sc := range []struct{ lang, ext string }{{"sh", "sh"}, {"perl", "pl"}} {
		t.Run(sc.lang, func(t *testing.T) {
			if sc.lang == "perl" {
				lang{"perl"}.need(t)
			}
			t.Parallel()
			script := "env." + sc.ext

			// check asserts the exact environment: want values, absent
			// names, and nothing outside the allowed names.
			check := func(t *testing.T, what string, resp *http.Response, body []byte, wantCwd string, want map[string]string, absent []string, routeEnv ...string) {
				t.Helper()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d %q", what, resp.StatusCode, clip(body))
				}
				env := envOf(t, what, body)
				for k, v := range want {
					if got, ok := env[k]; !ok || got != v {
						t.Errorf("%s: %s = %q (set %v), want %q", what, k, got, ok, v)
					}
				}
				for _, k := range absent {
					if v, ok := env[k]; ok {
						t.Errorf("%s: %s = %q is set, want it absent", what, k, v)
					}
				}
				if !strings.HasPrefix(env["SERVER_SOFTWARE"], "fcgivisor/") {
					t.Errorf("%s: SERVER_SOFTWARE = %q, want fcgivisor/...", what, env["SERVER_SOFTWARE"])
				}
				for k := range env {
					if !slices.Contains(metaVarNames, k) && !strings.HasPrefix(k, "HTTP_") && k != "PATH" && !slices.Contains(routeEnv, k) {
						t.Errorf("%s: %s=%q is neither a meta-variable nor in the route's env nor PATH: it leaked from fcgivisor's environment", what, k, env[k])
					}
				}
				if got := resp.Header.Get("X-Cwd"); got != wantCwd {
					t.Errorf("%s: working directory %q, want the script's directory %q", what, got, wantCwd)
				}
				if t.Failed() {
					t.Logf("%s: environment:\n%s", what, body)
				}
			}

			// A script one directory down, with PATH_INFO, a query and
			// headers of every kind.
			path := "/cgi-bin/sub/" + script + "/extra/path"
			hdr := http.Header{
				"X-Custom":      {"custom value"},
				"Proxy":         {"http://evil.example:3128"},
				"X_under":       {"shadow"},
				"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:secret"))},
			}
			resp, body, err := in.do(context.Background(), http.MethodGet, path+"?a=1&b=2", nil, hdr)
			if err != nil {
				t.Fatal(err)
			}
			check(t, "GET "+path, resp, body, filepath.Join(tr.dir, "sub"), map[string]string{
				"GATEWAY_INTERFACE": "CGI/1.1",
				"SERVER_PROTOCOL":   "HTTP/1.1",
				"REQUEST_METHOD":    "GET",
				"QUERY_STRING":      "a=1&b=2",
				"REQUEST_URI":       path + "?a=1&b=2",
				"SCRIPT_NAME":       "/cgi-bin/sub/" + script,
				"SCRIPT_FILENAME":   tr.dir + "/sub/" + script,
				"PATH_INFO":         "/extra/path",
				"DOCUMENT_ROOT":     docRoot,
				"CONTENT_LENGTH":    "0",
				"REMOTE_ADDR":       "127.0.0.1",
				"SERVER_NAME":       "127.0.0.1",
				"SERVER_PORT":       port,
				"REDIRECT_STATUS":   "200",
				"HTTP_HOST":         "127.0.0.1:" + port,
				"HTTP_X_CUSTOM":     "custom value",
				"AUTH_TYPE":         "Basic",
				"REMOTE_USER":       "alice",
				"K":                 "V",
				"PATH":              "/usr/local/bin:/usr/bin:/bin",
			}, []string{"HTTP_PROXY", "HTTP_X_UNDER", "FCGIVISOR_SECRET", "GORACE", "HOME", "PATH_TRANSLATED"}, "K")

			// At the top of the directory, without PATH_INFO.
			path = "/cgi-bin/" + script
			resp, body = in.get(t, path)
			check(t, "GET "+path, resp, body, tr.dir, map[string]string{
				"SCRIPT_NAME":     path,
				"SCRIPT_FILENAME": tr.dir + "/" + script,
				"QUERY_STRING":    "",
				"REQUEST_URI":     path,
			}, []string{"PATH_TRANSLATED", "AUTH_TYPE", "REMOTE_USER"}, "K")
			if pi, ok := envOf(t, path, body)["PATH_INFO"]; ok && pi != "" {
				t.Errorf("GET %s: PATH_INFO = %q, want empty", path, pi)
			}

			// A POST: method, length and type of the body.
			resp, body, err = in.do(context.Background(), http.MethodPost, path, []byte("a=b&c=d"),
				http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
			if err != nil {
				t.Fatal(err)
			}
			check(t, "POST "+path, resp, body, tr.dir, map[string]string{
				"REQUEST_METHOD": "POST",
				"CONTENT_LENGTH": "7",
				"CONTENT_TYPE":   "application/x-www-form-urlencoded",
			}, nil, "K")

			// A route whose env sets PATH: that PATH, not the default.
			path = "/cgi-path/" + script
			resp, body = in.get(t, path)
			check(t, "GET "+path, resp, body, tr.dir, map[string]string{
				"PATH":        "/opt/none/bin:/usr/bin:/bin",
				"SCRIPT_NAME": path,
			}, []string{"K", "FCGIVISOR_SECRET"})

			// Bodies to stdin and back, byte for byte, with a length and
			// chunked (the script still needs CONTENT_LENGTH).
			data := randomBytes(t, 300<<10)
			path = "/cgi-bin/echo." + sc.ext
			for _, chunked := range []bool{false, true} {
				var r io.Reader = bytes.NewReader(data)
				if chunked {
					r = onlyReader{r}
				}
				resp, body, err := in.doReader(context.Background(), http.MethodPost, path, r, nil)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
					t.Errorf("POST %s (chunked %v) of %d bytes: %d, %d bytes back, equal %v", path, chunked, len(data), resp.StatusCode, len(body), bytes.Equal(body, data))
				}
				if got := resp.Header.Get("X-Content-Length"); got != strconv.Itoa(len(data)) {
					t.Errorf("POST %s (chunked %v): CONTENT_LENGTH %q, want %d", path, chunked, got, len(data))
				}
			}
		})
	}
}

// TestCGIResponses: what a script prints becomes the HTTP answer: Status,
// Location (absolute: 302; a path: a local redirect), other headers, a
// streamed body; invalid or no output is a 502; stderr is logged per line.
func TestCGIResponses(t *testing.T) {
	t.Parallel()
	tr := newCGITree(t)
	in := start(t, options{langs: []string{}, routes: cgiRoute("/cgi-bin/", tr.dir, "env = "+tomlTable(map[string]string{"OUT": tr.out}))})

	for _, c := range []struct {
		name, method, path string
		status             int
		body               string // "" = any
		header             map[string]string
		noHeader           []string
	}{
		{"status", "GET", "/cgi-bin/status.sh", 404, "not here\n", map[string]string{"X-Extra": "yes", "Content-Type": "text/plain"}, []string{"Status"}},
		{"absolute location", "GET", "/cgi-bin/location-abs.sh", 302, "", map[string]string{"Location": "http://example.com/elsewhere?x=1"}, nil},
		{"local redirect", "GET", "/cgi-bin/location-local.sh", 200, "target method=GET query=from=local script=/cgi-bin/target.sh\n", nil, []string{"Location"}},
		{"local redirect of a POST", "POST", "/cgi-bin/location-local.sh", 200, "target method=GET query=from=local script=/cgi-bin/target.sh\n", nil, []string{"Location"}},
		{"invalid header", "GET", "/cgi-bin/badheader.sh", 502, "", nil, nil},
		{"no output", "GET", "/cgi-bin/silent.sh", 502, "", nil, nil},
	} {
		var reqBody []byte
		if c.method == "POST" {
			reqBody = []byte("some body")
		}
		resp, body, err := in.do(context.Background(), c.method, c.path, reqBody, nil)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if resp.StatusCode != c.status || (c.body != "" && string(body) != c.body) {
			t.Errorf("%s: %s %s: %d %q, want %d %q", c.name, c.method, c.path, resp.StatusCode, clip(body), c.status, c.body)
		}
		for k, v := range c.header {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: header %s = %q, want %q", c.name, k, got, v)
			}
		}
		for _, k := range c.noHeader {
			if v, ok := resp.Header[k]; ok {
				t.Errorf("%s: header %s = %q passed to the client", c.name, k, v)
			}
		}
	}

	// A local redirect to itself for ever must still be answered (and not
	// take fcgivisor down: the cleanup checks its exit).
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	resp, body, err := in.do(ctx, http.MethodGet, "/cgi-bin/loop.sh", nil, nil)
	cancel()
	if err != nil {
		t.Errorf("a script redirecting locally to itself: no answer: %v", err)
	} else if resp.StatusCode == http.StatusOK {
		t.Errorf("a script redirecting locally to itself: 200 %q", clip(body))
	}

	t.Run("streamed body", func(t *testing.T) {
		resp, err := in.client.Get(in.base + "/cgi-bin/stream.sh")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		goFile := filepath.Join(tr.out, "stream-go")
		defer os.WriteFile(goFile, nil, 0o644) // let the script end whatever happens
		br := bufio.NewReader(resp.Body)
		first := make(chan string, 1)
		go func() { line, _ := br.ReadString('\n'); first <- line }()
		select {
		case line := <-first:
			if line != "first\n" {
				t.Fatalf("first line %q, want \"first\\n\"", line)
			}
		case <-time.After(3 * time.Second):
			os.WriteFile(goFile, nil, 0o644)
			<-first
			t.Fatal("the first line did not reach the client while the script was still running: the body is not streamed")
		}
		if err := os.WriteFile(goFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "second\n" {
			t.Fatalf("rest of the body %q (%v), want \"second\\n\"", rest, err)
		}
	})

	t.Run("stderr logged", func(t *testing.T) {
		in.expect(t, "/cgi-bin/stderr.sh", 200, "ok\n")
		script := filepath.Join(tr.dir, "stderr.sh")
		var pids []any
		for _, line := range []string{"cgi stderr line one", "cgi stderr line two"} {
			r := in.waitLog(t, fmt.Sprintf("%q from the script", line), func(r map[string]any) bool { return r["msg"] == line })
			pid, _ := r["pid"].(float64)
			if r["script"] != script || r["stream"] != "stderr" || pid <= 0 {
				t.Errorf("stderr line logged as %v, want script %q, stream \"stderr\" and a pid", r, script)
			}
			pids = append(pids, r["pid"])
		}
		if pids[0] != pids[1] {
			t.Errorf("the two stderr lines of one run have pids %v", pids)
		}
	})
}

// TestCGIKeepAliveAfterBody: a request that follows one with a body on the
// same keep-alive connection is served like any other (the end of a CGI
// run must not leave the connection, or its context, broken).
func TestCGIKeepAliveAfterBody(t *testing.T) {
	t.Parallel()
	tr := newCGITree(t)
	in := start(t, options{langs: []string{}, routes: cgiRoute("/cgi-bin/", tr.dir)})
	// One connection, reused for every request.
	tp := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tp.CloseIdleConnections()
	client := &http.Client{Transport: tp, Timeout: 20 * time.Second}
	var reused int
	do := func(method, path string, body []byte) (int, []byte) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if i.Reused {
				reused++
			}
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, in.base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		return resp.StatusCode, data
	}
	data := randomBytes(t, 256<<10)
	const target = "target method=GET query= script=/cgi-bin/target.sh\n"
	for round := range 6 {
		if code, body := do(http.MethodPost, "/cgi-bin/echo.sh", data); code != 200 || !bytes.Equal(body, data) {
			t.Errorf("round %d: POST echo.sh: %d, %d bytes back of %d", round, code, len(body), len(data))
		}
		if code, body := do(http.MethodGet, "/cgi-bin/target.sh", nil); code != 200 || string(body) != target {
			t.Errorf("round %d: GET target.sh right after a POST on the same connection: %d %q, want 200 %q", round, code, clip(body), target)
		}
		if code, body := do(http.MethodPost, "/cgi-bin/target.sh", []byte("small")); code != 200 || !strings.Contains(string(body), "method=POST") {
			t.Errorf("round %d: POST target.sh: %d %q", round, code, clip(body))
		}
		if code, body := do(http.MethodGet, "/cgi-bin/status.sh", nil); code != 404 || string(body) != "not here\n" {
			t.Errorf("round %d: GET status.sh right after a POST on the same connection: %d %q, want 404 \"not here\\n\"", round, code, clip(body))
		}
	}
	t.Logf("%d of %d requests reused the connection", reused, 6*4)
}

// TestCGIRefusals: what is not an executable inside the directory never
// runs: missing scripts, directories, non-executables, traversal in every
// spelling, double slashes, symlinks out, dotfiles. Canaries outside the
// directory record it if they ever run.
func TestCGIRefusals(t *testing.T) {
	t.Parallel()
	tr := newCGITree(t)
	marker := filepath.Join(tr.out, "canary-ran")
	canary := func(tag string) string {
		return fmt.Sprintf("#!/bin/sh\necho %s >>%s\nprintf 'Content-Type: text/plain\\r\\n\\r\\ncanary %s\\n'\n", tag, marker, tag)
	}
	outside := filepath.Join(tr.root, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	tr.write(t, filepath.Join(tr.root, "canary.sh"), canary("root"), 0o755)
	tr.write(t, filepath.Join(outside, "canary.sh"), canary("outside"), 0o755)
	tr.write(t, filepath.Join(tr.dir, "plain.txt"), "not a program\n", 0o644)
	tr.write(t, filepath.Join(tr.dir, "plain.sh"), canary("plain"), 0o644) // a script without x bit
	tr.copyScript(t, "env.sh", ".hidden.sh")
	for _, d := range []string{".hid", "empty"} {
		if err := os.Mkdir(filepath.Join(tr.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tr.copyScript(t, "env.sh", ".hid/env.sh")
	for link, target := range map[string]string{
		"link-in.sh":  "env.sh",                             // inside: fine
		"link-out.sh": filepath.Join(tr.root, "canary.sh"),  // outside, absolute
		"link-rel.sh": "../canary.sh",                       // outside, relative
		"linkdir-out": outside,                              // a directory outside
		"sub/up":      "../..",                              // the parent, relative, one level down
		"linkdir-up":  filepath.Join(tr.root),               // the parent
		"dangling.sh": filepath.Join(tr.root, "nothing.sh"), // nowhere
	} {
		if err := os.Symlink(target, filepath.Join(tr.dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	in := start(t, options{langs: []string{}, routes: cgiRoute("/cgi-bin/", tr.dir)})

	// Sanity: the layout serves what it should, so that the refusals below
	// are refusals and not a broken route.
	for _, p := range []string{"/cgi-bin/env.sh", "/cgi-bin/link-in.sh", "/cgi-bin/link-in.sh/x", "/cgi-bin/sub/env.sh"} {
		if code, body := in.rawGet(t, p); code != 200 || !strings.Contains(string(body), "GATEWAY_INTERFACE=CGI/1.1\n") {
			t.Errorf("GET %s: %d %q, want 200 and the environment", p, code, clip(body))
		}
	}
	code, body := in.rawGet(t, "/cgi-bin/link-in.sh/x")
	if env := envOf(t, "link-in.sh", body); code == 200 && (env["SCRIPT_NAME"] != "/cgi-bin/link-in.sh" || env["PATH_INFO"] != "/x") {
		t.Errorf("GET /cgi-bin/link-in.sh/x: SCRIPT_NAME %q PATH_INFO %q", env["SCRIPT_NAME"], env["PATH_INFO"])
	}

	for _, c := range []struct {
		target string
		want   []int
	}{
		{"/cgi-bin/nothing.sh", []int{404}},
		{"/cgi-bin/sub/nothing.sh/x", []int{404}},
		{"/cgi-bin/", []int{403, 404}},
		{"/cgi-bin/sub/", []int{403, 404}},
		{"/cgi-bin/sub", []int{403, 404}},
		{"/cgi-bin/empty/", []int{403, 404}},
		{"/cgi-bin/plain.txt", []int{403}},
		{"/cgi-bin/plain.sh", []int{403}},
		// Traversal: a path with ".." segments, raw or percent-encoded,
		// is answered 400 or 404 (either is correct); nothing outside runs.
		{"/cgi-bin/../canary.sh", []int{400, 404}},
		{"/cgi-bin/sub/../../canary.sh", []int{400, 404}},
		{"/cgi-bin/%2e%2e/canary.sh", []int{400, 404}},
		{"/cgi-bin/%2E%2e/canary.sh", []int{400, 404}},
		{"/cgi-bin/.%2e/canary.sh", []int{400, 404}},
		{"/cgi-bin/%2e./canary.sh", []int{400, 404}},
		{"/cgi-bin/sub/%2e%2e/%2e%2e/canary.sh", []int{400, 404}},
		{"/cgi-bin/..%2fcanary.sh", []int{400, 404}},
		{"/cgi-bin/sub%2f..%2f..%2fcanary.sh", []int{400, 404}},
		{"/cgi-bin/..", []int{400, 404}},
		// Double slashes, one of them spelling an absolute path.
		{"/cgi-bin//env.sh", []int{404}},
		{"/cgi-bin/sub//env.sh", []int{404}},
		{"/cgi-bin/" + tr.root + "/canary.sh", []int{404}},
		// Symlinks whose real path is outside.
		{"/cgi-bin/link-out.sh", []int{404}},
		{"/cgi-bin/link-rel.sh", []int{404}},
		{"/cgi-bin/link-out.sh/x", []int{404}},
		{"/cgi-bin/linkdir-out/canary.sh", []int{404}},
		{"/cgi-bin/linkdir-up/canary.sh", []int{404}},
		{"/cgi-bin/sub/up/canary.sh", []int{404}},
		{"/cgi-bin/dangling.sh", []int{404}},
		// Dotfiles.
		{"/cgi-bin/.hidden.sh", []int{404}},
		{"/cgi-bin/.hid/env.sh", []int{404}},
		{"/cgi-bin/%2ehidden.sh", []int{404}},
	} {
		code, body := in.rawGet(t, c.target)
		if !slices.Contains(c.want, code) {
			t.Errorf("GET %s: %d %q, want one of %v", c.target, code, clip(body), c.want)
		}
		if bytes.Contains(body, []byte("GATEWAY_INTERFACE=")) || bytes.Contains(body, []byte("canary")) {
			t.Errorf("GET %s ran a script: %q", c.target, clip(body))
		}
	}
	if data, err := os.ReadFile(marker); err == nil {
		t.Errorf("a canary outside the cgi directory (or without x bit) ran: %q", data)
	}
}

// TestCGITimeout: past the route's timeout the script's whole process group
// is killed, a forked child included, and the client gets 504.
func TestCGITimeout(t *testing.T) {
	t.Parallel()
	tr := newCGITree(t)
	in := start(t, options{langs: []string{}, routes: cgiRoute("/slow/", tr.dir, `timeout = "1s"`, "env = "+tomlTable(map[string]string{"OUT": tr.out}))})
	ch := in.goDo(http.MethodGet, "/slow/fork.sh", nil)

	waitFile(t, filepath.Join(tr.out, "script.pid"), 5*time.Second)
	waitFile(t, filepath.Join(tr.out, "child.pid"), 5*time.Second)
	var procs []procID
	for _, f := range []string{"script.pid", "child.pid"} {
		pid := readPid(t, filepath.Join(tr.out, f))
		p, ok := identify(pid)
		if !ok {
			// Killed already (the timeout is short): nothing to follow.
			t.Logf("%s %d gone before the test looked", f, pid)
			continue
		}
		procs = append(procs, p)
	}
	in.snapshot() // the exit check covers every process below fcgivisor now

	r := await(t, "GET /slow/fork.sh", ch, 15*time.Second)
	if r.resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("a script past its 1s timeout: %d %q, want 504", r.resp.StatusCode, clip(r.body))
	}
	if r.elapsed < 900*time.Millisecond || r.elapsed > 4*time.Second {
		t.Errorf("504 after %v, want about the 1s timeout", r.elapsed.Round(time.Millisecond))
	}
	for _, p := range procs {
		if !waitFor(5*time.Second, func() bool { return !p.exists() }) {
			state, ppid, _, _ := procStat(p.pid)
			t.Errorf("%v still exists 5s after the 504 (state %c, parent %d)", p, state, ppid)
		}
	}
}

// TestCGIMaxConcurrent: with max_concurrent = 1 a second request waits for
// the first (up to 5 s), then gets 503 with Retry-After.
func TestCGIMaxConcurrent(t *testing.T) {
	t.Parallel()
	tr := newCGITree(t)
	env := "env = " + tomlTable(map[string]string{"OUT": tr.out})
	in := start(t, options{langs: []string{}, routes: cgiRoute("/wait/", tr.dir, "max_concurrent = 1", env) +
		cgiRoute("/full/", tr.dir, "max_concurrent = 1", env)})
	started := func(tag string) string { return filepath.Join(tr.out, "started-"+tag) }

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		// A 2 s script twice: the second waits for the place and runs.
		defer wg.Done()
		first := in.goDo(http.MethodGet, "/wait/sleep.sh?2-a", nil)
		if !waitFor(5*time.Second, func() bool { _, err := os.Stat(started("a")); return err == nil }) {
			t.Error("first 2s request did not start")
		}
		second := in.goDo(http.MethodGet, "/wait/sleep.sh?2-b", nil)
		for i, ch := range []<-chan result{first, second} {
			r := <-ch // bounded by the client's timeout
			if r.err != nil || r.resp.StatusCode != 200 || string(r.body) != "slept 2\n" {
				t.Errorf("2s request %d of 2 with max_concurrent 1: %v %v %q, want 200", i+1, r.err, r.resp, r.body)
			}
			if i == 1 && r.elapsed < 3*time.Second {
				t.Errorf("second 2s request took %v: it did not wait for the first", r.elapsed.Round(time.Millisecond))
			}
		}
	}()
	go func() {
		// A 7 s script: the second request gives up after 5 s.
		defer wg.Done()
		first := in.goDo(http.MethodGet, "/full/sleep.sh?7-c", nil)
		if !waitFor(5*time.Second, func() bool { _, err := os.Stat(started("c")); return err == nil }) {
			t.Error("first 7s request did not start")
		}
		r := <-in.goDo(http.MethodGet, "/full/sleep.sh?7-d", nil)
		switch {
		case r.err != nil:
			t.Errorf("second 7s request: %v", r.err)
		case r.resp.StatusCode != http.StatusServiceUnavailable || r.resp.Header.Get("Retry-After") != "1":
			t.Errorf("second request while a 7s script holds the only place: %d (Retry-After %q) after %v, want 503 with Retry-After: 1",
				r.resp.StatusCode, r.resp.Header.Get("Retry-After"), r.elapsed.Round(time.Millisecond))
		case r.elapsed < 4500*time.Millisecond || r.elapsed > 6500*time.Millisecond:
			t.Errorf("503 after %v, want after the 5s wait", r.elapsed.Round(time.Millisecond))
		}
		if _, err := os.Stat(started("d")); err == nil {
			t.Error("the refused request ran its script")
		}
		r = <-first
		if r.err != nil || r.resp.StatusCode != 200 || string(r.body) != "slept 7\n" {
			t.Errorf("first 7s request: %v %v %q, want 200", r.err, r.resp, r.body)
		}
	}()
	wg.Wait()
}

// TestCGIRunsAsUser: a cgi route with user = "nobody" runs its scripts as
// nobody.
func TestCGIRunsAsUser(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal("user nobody: ", err)
	}
	t.Parallel()
	tr := newCGITree(t)
	in := start(t, options{langs: []string{}, routes: cgiRouteAs("nobody", "/cgi-bin/", tr.dir) +
		cgiRouteAs("root", "/as-root/", tr.dir)})
	if os.Geteuid() != 0 {
		// Not root: user is ignored with a warning; scripts run as fcgivisor.
		own := fmt.Sprintf("%d %d\n", os.Getuid(), os.Getgid())
		in.expect(t, "/cgi-bin/id.sh", 200, own)
		in.expect(t, "/as-root/id.sh", 200, own)
		in.waitLog(t, "the warning that user is ignored", func(r map[string]any) bool {
			return strings.Contains(fmt.Sprint(r["msg"]), "user and group are ignored")
		})
		return
	}
	in.expect(t, "/cgi-bin/id.sh", 200, nobody.Uid+" "+nobody.Gid+"\n")
	in.expect(t, "/as-root/id.sh", 200, "0 0\n")
}

// TestCGIRouteWithoutUser: as root, a cgi route must name its user, as a
// pool must: check and run refuse the file with the key; as another user
// the file is fine.
func TestCGIRouteWithoutUser(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, route string) string {
		o := options{langs: []string{}, routes: route}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(renderConfig(&o, shortTempDir(t), freePort(t))), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	withUser := write("with-user.toml", cgiRoute("/cgi-bin/", dir))
	without := write("without-user.toml", "[[http.route]]\nprefix = \"/cgi-bin/\"\ncgi = "+tomlString(dir)+"\n")

	if code, out := runCLI(t, nil, dir, "check", "-c", withUser); code != 0 {
		t.Fatalf("check of a cgi route with user = \"root\": exit %d\n%s", code, out)
	}
	if os.Geteuid() != 0 {
		if code, out := runCLI(t, nil, dir, "check", "-c", without); code != 0 {
			t.Fatalf("check of a cgi route without user, not as root: exit %d, want 0\n%s", code, out)
		}
		return
	}
	for _, cmd := range []string{"check", "run"} {
		code, out := runCLI(t, nil, dir, cmd, "-c", without)
		if code != 1 || !strings.Contains(out, "http.route[0].user") || !strings.Contains(out, `user = "root"`) {
			t.Errorf("%s of a cgi route without user, as root: exit %d, want 1 and an error naming http.route[0].user and the fix\n%s", cmd, code, out)
		}
	}
}

// TestCGIPHPShebang: a PHP script with a php-cgi shebang runs as one-shot
// CGI (no FastCGI: no FCGI_ROLE).
func TestCGIPHPShebang(t *testing.T) {
	lang{"php"}.need(t)
	if phpCGI != "/usr/bin/php-cgi" {
		if _, err := os.Stat("/usr/bin/php-cgi"); err != nil {
			t.Skip("not installed: /usr/bin/php-cgi (the script's shebang)")
		}
	}
	t.Parallel()
	tr := newCGITree(t)
	in := start(t, options{langs: []string{}, routes: cgiRoute("/cgi-bin/", tr.dir)})
	in.expect(t, "/cgi-bin/hello.php?q=x", 200, "fcgi_role=\nscript_name=/cgi-bin/hello.php\nq=x\n")
}

// ---------------------------------------------------------------------------
// Pool CGI fallback

// fallbackPool renders a php front-controller route and pool whose command
// is php-cgi-only.sh: its workers die at start, so the pool goes failing.
func fallbackPool(name, wrapper, user, cwdLog string, lines ...string) (route, pool string) {
	route = fmt.Sprintf("[[http.route]]\nprefix = %s\nscript = \"/index.php\"\npool = %s\n\n", tomlString("/"+name+"/"), tomlString(name))
	pool = fmt.Sprintf("[pool.%s]\ncommand = %s\nenv = %s\nuser = %s\n%s\n\n", name, tomlStrings([]string{wrapper}),
		tomlTable(map[string]string{"PHP_FCGI_MAX_REQUESTS": "0", "PHP_CGI": phpCGI, "CWD_LOG": cwdLog}), tomlString(user), strings.Join(lines, "\n"))
	return route, pool
}

// readableByOthers reports whether a process of another user can read
// path: o+r on it and o+x on every directory above it.
func readableByOthers(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o004 == 0 {
		return false
	}
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" {
			return true
		}
	}
}

// TestCGIFallbackFailingPool: a pool whose workers cannot start serves its
// requests by running its command once as CGI when cgi_fallback is on, and
// answers 503 when it is off.
func TestCGIFallbackFailingPool(t *testing.T) {
	lang{"php"}.need(t)
	t.Parallel()
	tr := newCGITree(t)
	wrapper := filepath.Join(tr.dir, "php-cgi-only.sh")
	// The fallback runs as the pool's user in the pool's dir: nobody when
	// nobody can read index.php (a repository under /root is not readable).
	fbUser, wantUID := "root", "0"
	if nobody, err := user.Lookup("nobody"); err == nil && os.Geteuid() == 0 && readableByOthers(filepath.Join(documentRoot(), "index.php")) {
		fbUser, wantUID = "nobody", nobody.Uid
	}
	// The wrapper records its working directory (the pool's dir) in out.
	if err := os.Chmod(tr.out, 0o777); err != nil {
		t.Fatal(err)
	}
	// workers = 4 makes max_workers, the fallback limit, 4: the requests
	// below follow one another, and one may arrive before the previous
	// run's exit was reaped (its place is held until then; the limit
	// itself is TestCGIFallbackSaturatedPool's).
	fbRoute, fbPool := fallbackPool("fb", wrapper, fbUser, tr.out, "cgi_fallback = true", `queue_timeout = "10s"`, `request_timeout = "2s"`,
		"workers = 4", "dir = "+tomlString(tr.out))
	// The route's env reaches the fallback as it would a worker's PARAMS.
	fbRoute = strings.Replace(fbRoute, "pool = ", "env = { ROUTE_MARK = \"route-env\" }\npool = ", 1)
	noRoute, noPool := fallbackPool("nofb", wrapper, "root", tr.out, `queue_timeout = "10s"`)
	in := start(t, options{langs: []string{}, env: []string{"FCGIVISOR_SECRET=x"}, routes: fbRoute + noRoute + fbPool + noPool})
	a := newAdminClient(t, "unix", filepath.Join(in.runtimeDir, "admin.sock"))

	// Both pools go failing (3 young deaths) before any request.
	if !waitFor(eventTimeout, func() bool {
		st := cgiStatus(t, a)
		return st["fb"].state == "failing" && st["nofb"].state == "failing"
	}) {
		t.Fatalf("pools not failing within %v: %+v", eventTimeout, cgiStatus(t, a))
	}

	// Without fallback: 503 at once.
	t0 := time.Now()
	resp, body := in.get(t, "/nofb/x?pid")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || time.Since(t0) > 2*time.Second {
		t.Errorf("failing pool without cgi_fallback: %d (Retry-After %q) %q after %v, want 503 at once with Retry-After: 1",
			resp.StatusCode, resp.Header.Get("Retry-After"), clip(body), time.Since(t0).Round(time.Millisecond))
	}

	// With fallback: php-cgi run as CGI answers, at once (not after the
	// 10 s queue_timeout), in a process that is gone afterwards.
	t0 = time.Now()
	body = in.expect(t, "/fb/x?pid", 200, "")
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("fallback of a failing pool answered after %v, want at once", d.Round(time.Millisecond))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(body)))
	if err != nil || pid <= 0 {
		t.Fatalf("?pid through the fallback: %q", body)
	}
	if slices.Contains(cgiStatus(t, a)["fb"].workers, pid) {
		t.Errorf("?pid %d through the fallback is a pool worker", pid)
	}
	if !waitFor(5*time.Second, func() bool { _, _, _, err := procStat(pid); return err != nil }) {
		t.Errorf("fallback process %d still exists 5s after its answer", pid)
	}

	// The CGI variables, as php sees them ($_SERVER) and as the process
	// environment: meta-variables plus the route's and the pool's env, nothing of
	// fcgivisor's own; no FCGI_ROLE: php-cgi ran as plain CGI.
	vars := envOf(t, "?vars", in.expect(t, "/fb/x?vars", 200, ""))
	for k, v := range map[string]string{
		"SCRIPT_NAME":       "/index.php",
		"SCRIPT_FILENAME":   documentRoot() + "/index.php",
		"PATH_INFO":         "/fb/x",
		"REQUEST_METHOD":    "GET",
		"QUERY_STRING":      "vars",
		"REQUEST_URI":       "/fb/x?vars",
		"GATEWAY_INTERFACE": "CGI/1.1",
		"REDIRECT_STATUS":   "200",
		"PHP_CGI":           phpCGI,
		"ROUTE_MARK":        "route-env",
	} {
		if vars[k] != v {
			t.Errorf("fallback ?vars: %s = %q, want %q", k, vars[k], v)
		}
	}
	if v, ok := vars["FCGI_ROLE"]; ok {
		t.Errorf("fallback ?vars has FCGI_ROLE=%q: php-cgi ran as FastCGI, not CGI", v)
	}
	penv := envOf(t, "?penv", in.expect(t, "/fb/x?penv", 200, ""))
	if penv["SCRIPT_NAME"] != "/index.php" || penv["PHP_CGI"] != phpCGI || penv["PHP_FCGI_MAX_REQUESTS"] != "0" {
		t.Errorf("fallback process environment lacks the meta-variables or the pool's env: %v", penv)
	}
	for _, k := range []string{"FCGIVISOR_SECRET", "GORACE", "HOME"} {
		if v, ok := penv[k]; ok {
			t.Errorf("fallback process environment has %s=%q from fcgivisor's environment", k, v)
		}
	}

	// A body reaches stdin.
	data := randomBytes(t, 200<<10)
	resp, body, err = in.do(context.Background(), http.MethodPost, "/fb/x?echo", data, nil)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Errorf("POST ?echo through the fallback: %v %v, %d bytes back of %d", err, resp, len(body), len(data))
	}

	// request_timeout bounds the run: 504, and the process is killed.
	ch := in.goDo(http.MethodGet, "/fb/x?sleep=10000", nil)
	var running []procID
	waitFor(5*time.Second, func() bool {
		for _, p := range in.snapshot() {
			if len(p.argv) > 0 && p.argv[0] == phpCGI {
				running = append(running, p)
			}
		}
		return len(running) > 0
	})
	if len(running) == 0 {
		t.Error("no php-cgi process while ?sleep=10000 runs through the fallback")
	}
	for _, p := range running {
		cwd, _ := os.ReadFile(filepath.Join(tr.out, fmt.Sprintf("cwd.%d", p.pid)))
		if uid, _, _ := procIDs(t, p.pid); (os.Geteuid() == 0 && uid != wantUID) || string(cwd) != tr.out+"\n" {
			t.Errorf("fallback %v runs as uid %s in %q, want the pool's user %s (uid %s) and dir %q", p, uid, cwd, fbUser, wantUID, tr.out)
		}
	}
	r := await(t, "GET /fb/x?sleep=10000", ch, 15*time.Second)
	if r.resp.StatusCode != http.StatusGatewayTimeout || r.elapsed > 6*time.Second {
		t.Errorf("fallback past request_timeout 2s: %d %q after %v, want 504", r.resp.StatusCode, clip(r.body), r.elapsed.Round(time.Millisecond))
	}
	for _, p := range running {
		if !waitFor(5*time.Second, func() bool { return !p.exists() }) {
			t.Errorf("fallback %v still exists 5s after its request_timeout", p)
		}
	}

	// Each run is counted and logged.
	const runs = 5 // pid, vars, penv, echo, sleep
	for _, uri := range []string{"/fb/x?pid", "/fb/x?vars", "/fb/x?penv", "/fb/x?echo", "/fb/x?sleep=10000"} {
		in.waitLog(t, "CGI fallback of "+uri, func(r map[string]any) bool { return fallbackLogged(r, "fb", uri) })
	}
	st := cgiStatus(t, a)
	if st["fb"].fallbacks != runs || st["nofb"].fallbacks != 0 || st["fb"].refused != 0 {
		t.Errorf("/status: fb cgi_fallbacks %d (refused %d), nofb cgi_fallbacks %d; want %d (0) and 0", st["fb"].fallbacks, st["fb"].refused, st["nofb"].fallbacks, runs)
	}
}

// TestCGIFallbackSaturatedPool: when no slot frees within queue_timeout the
// request runs as CGI; at most max_workers fallback runs at once.
func TestCGIFallbackSaturatedPool(t *testing.T) {
	php := lang{"php"}
	php.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"php"}, pool: func(l lang, p *poolOpts) {
		p.workers = 1
		p.extra = append(p.extra, `queue_timeout = "500ms"`, `cgi_fallback = true`)
	}})
	a := newAdminClient(t, "unix", filepath.Join(in.runtimeDir, "admin.sock"))
	worker := in.workerPid(t, php)

	// A holds the only worker for 6 s.
	uriA := php.path("/a?sleep=6000")
	doneA := inFlight(in, uriA)
	waitBusy(t, a, "php", uriA, doneA)

	// B waits 500 ms, then runs as CGI for 2 s.
	uriB := php.path("/b?sleep=2000")
	chB := in.goDo(http.MethodGet, uriB, nil)
	var fallback procID
	if !waitFor(5*time.Second, func() bool {
		for _, p := range in.snapshot() {
			if p.pid != worker && slices.Equal(p.argv, php.command()) {
				fallback = p
				return true
			}
		}
		return false
	}) {
		t.Fatal("no php-cgi process besides the worker while B waits for the fallback")
	}

	// C: the fallback limit (max_workers = 1) is reached: 503.
	t0 := time.Now()
	resp, body := in.get(t, php.path("/c?pid"))
	dC := time.Since(t0)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("a second fallback while one runs (max_workers 1): %d (Retry-After %q) %q, want 503 with Retry-After: 1",
			resp.StatusCode, resp.Header.Get("Retry-After"), clip(body))
	}
	if dC > 1500*time.Millisecond {
		t.Errorf("503 for the refused fallback after %v, want about queue_timeout (500ms)", dC.Round(time.Millisecond))
	}
	if !fallback.alive() {
		t.Errorf("fallback %v of B ended before C was answered: the limit was not what refused C", fallback)
	}

	rB := await(t, "GET "+uriB, chB, 15*time.Second)
	if rB.resp.StatusCode != 200 || string(rB.body) != "slept 2000\n" || rB.elapsed < 2400*time.Millisecond {
		t.Errorf("B through the fallback: %d %q after %v, want 200 \"slept 2000\" after queue_timeout + 2s", rB.resp.StatusCode, clip(rB.body), rB.elapsed.Round(time.Millisecond))
	}

	// D, with A still on the worker: a fallback again, in another process.
	t0 = time.Now()
	body = in.expect(t, php.path("/d?pid"), 200, "")
	dD := time.Since(t0)
	pidD, _ := strconv.Atoi(strings.TrimSpace(string(body)))
	if pidD <= 0 || pidD == worker || dD < 450*time.Millisecond {
		t.Errorf("D while the worker is busy: pid %q after %v, want a pid other than the worker's %d after queue_timeout", body, dD.Round(time.Millisecond), worker)
	}
	select {
	case err := <-doneA:
		t.Fatalf("A ended (%v) before D was answered: the timing of this test is off", err)
	default:
	}

	select {
	case err := <-doneA:
		if err != nil {
			t.Errorf("A: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("A not answered")
	}
	// The worker serves again; no fallback.
	if pid := in.workerPid(t, php); pid != worker {
		t.Errorf("after A, ?pid answered %d, want the worker %d", pid, worker)
	}

	for _, uri := range []string{uriB, php.path("/d?pid")} {
		in.waitLog(t, "CGI fallback of "+uri, func(r map[string]any) bool { return fallbackLogged(r, "php", uri) })
	}
	if st := cgiStatus(t, a)["php"]; st.fallbacks != 2 || st.refused != 1 {
		t.Errorf("/status cgi_fallbacks = %d, cgi_fallbacks_refused = %d; want 2 (B and D) and 1 (C)", st.fallbacks, st.refused)
	}
	metrics := metricLines(t, a)
	for _, want := range []string{`fcgivisor_cgi_fallbacks_total{pool="php"} 2`, `fcgivisor_cgi_fallbacks_refused_total{pool="php"} 1`} {
		if !slices.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestCGIPHPNoPathTranslated: a php-cgi script on a cgi route with
// cgi.fix_pathinfo=0 (the usual hardening) runs the file PATH_TRANSLATED
// names, when it is set, instead of its own script. fcgivisor sends no
// PATH_TRANSLATED, so /cgi-bin/hello.php/upload.txt runs hello.php with
// PATH_INFO /upload.txt, never the upload.
func TestCGIPHPNoPathTranslated(t *testing.T) {
	lang{"php"}.need(t)
	if _, err := os.Stat("/usr/bin/php-cgi"); err != nil {
		t.Skip("not installed: /usr/bin/php-cgi (the script's shebang)")
	}
	t.Parallel()
	tr := newCGITree(t)
	docRoot := filepath.Join(tr.root, "www")
	iniDir := filepath.Join(tr.root, "ini")
	for _, d := range []string{docRoot, iniDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	canary := filepath.Join(tr.out, "upload-ran")
	if err := os.Chmod(tr.out, 0o777); err != nil {
		t.Fatal(err)
	}
	tr.write(t, filepath.Join(docRoot, "upload.txt"), "<?php file_put_contents("+strconv.Quote(canary)+", 'ran'); echo 'upload.txt ran';", 0o644)
	tr.write(t, filepath.Join(iniDir, "zz-hardening.ini"), "cgi.fix_pathinfo=0\n", 0o644)
	in := start(t, options{langs: []string{}, docRoot: docRoot,
		routes: cgiRoute("/cgi-bin/", tr.dir, "env = { PHP_INI_SCAN_DIR = "+tomlString(iniDir)+" }")})

	resp, body := in.get(t, "/cgi-bin/hello.php/upload.txt?q=x")
	if strings.Contains(string(body), "upload.txt ran") {
		t.Errorf("GET /cgi-bin/hello.php/upload.txt ran upload.txt: %d %q", resp.StatusCode, clip(body))
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("upload.txt ran as PHP (its canary exists)")
	}
	if resp.StatusCode != 200 || !strings.Contains(string(body), "script_name=/cgi-bin/hello.php\n") {
		t.Errorf("GET /cgi-bin/hello.php/upload.txt: %d %q, want hello.php's answer", resp.StatusCode, clip(body))
	}
}
