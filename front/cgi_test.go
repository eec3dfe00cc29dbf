package front

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/internal/testlog"
	"github.com/fcgivisor/fcgivisor/spawner"
)

func writeScript(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestFindScript(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "cgi")
	writeScript(t, filepath.Join(dir, "a.sh"), "#!/bin/sh\n")
	writeScript(t, filepath.Join(dir, "sub", "b.sh"), "#!/bin/sh\n")
	writeScript(t, filepath.Join(dir, ".hidden.sh"), "#!/bin/sh\n")
	writeScript(t, filepath.Join(base, "outside.sh"), "#!/bin/sh\n")
	os.WriteFile(filepath.Join(dir, "data.txt"), []byte("x"), 0o644)
	os.Symlink("../outside.sh", filepath.Join(dir, "out.sh"))
	os.Symlink(filepath.Join(base, "outside.sh"), filepath.Join(dir, "abs.sh"))
	os.Symlink("a.sh", filepath.Join(dir, "in.sh"))
	os.Symlink("..", filepath.Join(dir, "up"))
	os.Symlink(".", filepath.Join(dir, "self"))
	os.Symlink("gone.sh", filepath.Join(dir, "dangling.sh"))
	for _, tc := range []struct {
		rest, script, pathInfo string
		status                 int
		link                   string // the symlink leading outside, for 404
	}{
		{rest: "/a.sh", script: "a.sh"},
		{rest: "/a.sh/x/y", script: "a.sh", pathInfo: "/x/y"},
		{rest: "/a.sh/", script: "a.sh", pathInfo: "/"},
		{rest: "/sub/b.sh/p", script: "sub/b.sh", pathInfo: "/p"},
		{rest: "/in.sh/p", script: "in.sh", pathInfo: "/p"}, // a symlink that stays inside
		{rest: "", status: 403},
		{rest: "/", status: 403},
		{rest: "/sub", status: 403},
		{rest: "/sub/", status: 403},
		{rest: "/data.txt", status: 403},
		{rest: "/data.txt/x", status: 403},
		{rest: "/missing.sh", status: 404},
		{rest: "/sub/missing/x", status: 404},
		{rest: "//a.sh", status: 404},
		{rest: "/sub//b.sh", status: 404},
		{rest: "/.hidden.sh", status: 404},
		{rest: "/../outside.sh", status: 404},
		{rest: "/sub/../a.sh", status: 404},
		{rest: "/./a.sh", status: 404},
		{rest: "/out.sh", status: 404, link: "out.sh"},   // relative symlink leading outside
		{rest: "/abs.sh/x", status: 404, link: "abs.sh"}, // absolute symlink leading outside
		{rest: "/up/outside.sh", status: 404, link: "up"},
		{rest: "/self/self/out.sh", status: 404, link: "self/self/out.sh"}, // another path to the same link
		{rest: "/dangling.sh", status: 404},                                // inside, missing: not a link outside
		{rest: "a.sh", status: 404},                                        // prefix without its slash glued to a name
	} {
		script, pathInfo, status, link := findScript(dir, tc.rest)
		if tc.rest == "/a.sh" {
			if _, _, st, _ := findScript(filepath.Join(base, "missing"), tc.rest); st != 404 {
				t.Errorf("findScript in a missing directory: %d, want 404", st)
			}
		}
		if script != tc.script || pathInfo != tc.pathInfo || status != tc.status || link != tc.link {
			t.Errorf("findScript(%q) = (%q, %q, %d, %q), want (%q, %q, %d, %q)", tc.rest, script, pathInfo, status, link, tc.script, tc.pathInfo, tc.status, tc.link)
		}
	}
}

func TestCGIEnvIsMetaVarsPlusRouteEnv(t *testing.T) {
	r := httptest.NewRequest("GET", "/cgi-bin/x.sh/p?q=1", nil)
	r.Header.Set("Proxy", "http://evil")
	r.Header.Set("X-Y", "z")
	q := &request{r: r, scriptName: "/cgi-bin/x.sh", scriptFilename: "/srv/cgi/x.sh", pathInfo: "/p", documentRoot: "/srv/www", serverSoftware: "fcgivisor/t"}
	env := spawner.CGIEnv(metaVars(nil, q), []string{"PATH=/bin", "QUERY_STRING=shadowed", "ZZ=1"})
	got := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := got[k]; dup {
			t.Errorf("%s twice in the environment", k)
		}
		got[k] = v
	}
	for k, want := range map[string]string{
		"SCRIPT_NAME": "/cgi-bin/x.sh", "SCRIPT_FILENAME": "/srv/cgi/x.sh", "PATH_INFO": "/p",
		"QUERY_STRING": "q=1", "GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_SOFTWARE": "fcgivisor/t", "HTTP_X_Y": "z", "PATH": "/bin", "ZZ": "1",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	if _, ok := got["HTTP_PROXY"]; ok {
		t.Error("HTTP_PROXY set from a Proxy header (httpoxy)")
	}
	if v, ok := got["PATH_TRANSLATED"]; ok {
		t.Errorf("PATH_TRANSLATED = %q: php-cgi with cgi.fix_pathinfo=0 would run that file", v)
	}
}

func TestIsLocalRedirect(t *testing.T) {
	for loc, want := range map[string]bool{
		"/x": true, "/x?y=1": true, "//evil/x": false, "http://h/x": false, "x": false, "": false,
	} {
		if got := isLocalRedirect(loc); got != want {
			t.Errorf("isLocalRedirect(%q) = %v", loc, got)
		}
	}
}

func TestCheckPrivilegesCGIRoutes(t *testing.T) {
	cfg := &conf.Config{HTTP: conf.HTTP{Routes: []*conf.Route{
		{Prefix: "/p/", Pool: "php"},
		{Prefix: "/a/", CGI: "/a"},
		{Prefix: "/b/", CGI: "/b", User: "root"},
		{Prefix: "/c/", CGI: "/c", User: "no-such-user-fcgivisor"},
		{Prefix: "/d/", CGI: "/d", User: "root", Group: "no-such-group-fcgivisor"},
	}}}
	log := slog.New(slog.DiscardHandler)
	err := errors.Join(CheckPrivileges(cfg, true, log)...)
	if err == nil {
		t.Fatal("no error as root")
	}
	msg := err.Error()
	for _, want := range []string{"http.route[1].user: fcgivisor runs as root", "http.route[3].user:", "http.route[4].group:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "route[0]") || strings.Contains(msg, "route[2]") {
		t.Errorf("error names a good route:\n%s", msg)
	}
	if err := errors.Join(CheckPrivileges(cfg, false, log)...); err != nil {
		t.Errorf("not root: %v", err)
	}
}

// testParent is the one Parent of the test process: two would reap each
// other's children.
var testParent = sync.OnceValue(func() *spawner.Parent {
	r, err := spawner.NewParent()
	if err != nil {
		panic(err)
	}
	go r.Run(context.Background())
	return r
})

// cgiServer serves dir's scripts under /cgi-bin/ with a real Parent.
func cgiServer(t *testing.T, dir string, timeout time.Duration, maxConcurrent int) (*Server, *testlog.Buffer) {
	t.Helper()
	return cgiServerWith(t, dir, timeout, maxConcurrent, Options{})
}

// cgiServerWith is cgiServer with o's fields besides Log, Software and
// Parent.
func cgiServerWith(t *testing.T, dir string, timeout time.Duration, maxConcurrent int, o Options) (*Server, *testlog.Buffer) {
	t.Helper()
	logs := &testlog.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	cfg := &conf.Config{HTTP: conf.HTTP{DocumentRoot: "/srv/www", MaxBodyBytes: 1 << 20, Routes: []*conf.Route{
		{Prefix: "/cgi-bin/", CGI: dir, Timeout: timeout, MaxConcurrent: maxConcurrent},
		{Prefix: "/static/", Static: dir},
	}}}
	o.Log, o.Software, o.Parent = log, "fcgivisor/test", testParent()
	s, err := New(cfg, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

func TestCGIRunsScripts(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, filepath.Join(dir, "env.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nenv | sort\necho cwd=$(pwd)\necho oops >&2\n")
	writeScript(t, filepath.Join(dir, "echo.sh"), "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\n\\n'\nexec cat\n")
	writeScript(t, filepath.Join(dir, "status.sh"), "#!/bin/sh\nprintf 'Status: 418 Teapot\\nX-A: b\\n\\nteapot\\n'\n")
	writeScript(t, filepath.Join(dir, "away.sh"), "#!/bin/sh\nprintf 'Location: http://example.test/x\\n\\n'\n")
	writeScript(t, filepath.Join(dir, "local.sh"), "#!/bin/sh\nprintf 'Location: /static/file.txt\\n\\n'\n")
	writeScript(t, filepath.Join(dir, "loop.sh"), "#!/bin/sh\nprintf 'Location: /cgi-bin/loop.sh\\n\\n'\n")
	writeScript(t, filepath.Join(dir, "garbage.sh"), "#!/bin/sh\necho 'not a header'\n")
	writeScript(t, filepath.Join(dir, "silent.sh"), "#!/bin/sh\nexit 3\n")
	os.WriteFile(filepath.Join(dir, "file.txt"), []byte("static body\n"), 0o644)
	s, logs := cgiServer(t, dir, 5*time.Second, 4)

	do := func(method, target string, body []byte) *httptest.ResponseRecorder {
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req := httptest.NewRequest(method, target, r)
		req.Header.Set("Proxy", "http://evil")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}

	rec := do("GET", "/cgi-bin/env.sh/p/q?x=1", nil)
	out := rec.Body.String()
	for _, want := range []string{"SCRIPT_NAME=/cgi-bin/env.sh\n", "SCRIPT_FILENAME=" + dir + "/env.sh\n", "PATH_INFO=/p/q\n",
		"QUERY_STRING=x=1\n", "GATEWAY_INTERFACE=CGI/1.1\n", "SERVER_SOFTWARE=fcgivisor/test\n", "PATH=" + defaultCGIPath + "\n", "cwd=" + dir + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("env.sh lacks %q:\n%s", want, out)
		}
	}
	if rec.Code != 200 || strings.Contains(out, "HTTP_PROXY") {
		t.Errorf("env.sh: %d, HTTP_PROXY present: %v", rec.Code, strings.Contains(out, "HTTP_PROXY"))
	}
	// stderr is read to its end after the answer went out (the exit is
	// awaited off the request): give it a moment.
	logged := func() bool {
		return strings.Contains(logs.String(), "msg=oops") && strings.Contains(logs.String(), "script="+dir+"/env.sh")
	}
	for deadline := time.Now().Add(2 * time.Second); !logged() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !logged() {
		t.Errorf("stderr line not logged with the script:\n%s", logs)
	}

	body := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640 KiB: more than a pipe holds
	if rec := do("POST", "/cgi-bin/echo.sh", body); rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), body) {
		t.Errorf("echo: %d, %d bytes back of %d", rec.Code, rec.Body.Len(), len(body))
	}
	if rec := do("GET", "/cgi-bin/status.sh", nil); rec.Code != 418 || rec.Header().Get("X-A") != "b" || rec.Body.String() != "teapot\n" {
		t.Errorf("status.sh: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	if rec := do("GET", "/cgi-bin/away.sh", nil); rec.Code != 302 || rec.Header().Get("Location") != "http://example.test/x" {
		t.Errorf("away.sh: %d %v", rec.Code, rec.Header())
	}
	if rec := do("POST", "/cgi-bin/local.sh", []byte("dropped")); rec.Code != 200 || rec.Body.String() != "static body\n" || rec.Header().Get("Location") != "" {
		t.Errorf("local redirect: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	if rec := do("GET", "/cgi-bin/loop.sh", nil); rec.Code != 500 {
		t.Errorf("redirect loop: %d, want 500", rec.Code)
	}
	if rec := do("GET", "/cgi-bin/garbage.sh", nil); rec.Code != 502 {
		t.Errorf("garbage.sh: %d, want 502", rec.Code)
	}
	if rec := do("GET", "/cgi-bin/silent.sh", nil); rec.Code != 502 || !strings.Contains(logs.String(), "exit status 3") {
		t.Errorf("silent.sh: %d, want 502 and the exit status logged", rec.Code)
	}
	if rec := do("GET", "/cgi-bin/file.txt", nil); rec.Code != 403 {
		t.Errorf("non-executable: %d, want 403", rec.Code)
	}
}

// A script past its timeout is killed with what it forked, and the client
// gets 504.
func TestCGITimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	writeScript(t, filepath.Join(dir, "hang.sh"), "#!/bin/sh\nsleep 300 &\necho $! > "+pidFile+"\nsleep 300\n")
	s, _ := cgiServer(t, dir, 300*time.Millisecond, 4)
	rec := httptest.NewRecorder()
	start := time.Now()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/cgi-bin/hang.sh", nil))
	if rec.Code != 504 || time.Since(start) > 3*time.Second {
		t.Fatalf("hang.sh: %d after %v, want 504 after ~300ms", rec.Code, time.Since(start))
	}
	pid, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child := "/proc/" + strings.TrimSpace(string(pid))
	deadline := time.Now().Add(2 * time.Second)
	for {
		st, err := os.ReadFile(child + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			break // gone (or a zombie about to be reaped)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the forked child %s outlived the timeout", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// max_concurrent: a request beyond it waits for a place.
func TestCGIMaxConcurrentQueues(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, filepath.Join(dir, "slow.sh"), "#!/bin/sh\nsleep 0.3\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n")
	s, _ := cgiServer(t, dir, 5*time.Second, 1)
	start := time.Now()
	codes := make(chan int, 3)
	for range 3 {
		go func() {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest("GET", "/cgi-bin/slow.sh", nil))
			codes <- rec.Code
		}()
	}
	var got []int
	for range 3 {
		got = append(got, <-codes)
	}
	if !slices.Equal(got, []int{200, 200, 200}) {
		t.Fatalf("codes %v", got)
	}
	if d := time.Since(start); d < 850*time.Millisecond {
		t.Fatalf("3 runs of 0.3 s with max_concurrent 1 took %v: they ran at once", d)
	}
}

// A response the program writes at once goes out with a Content-Length,
// not chunked (pipeReady). The program's exit races with our read, so of
// several runs at least one must show it (a pipeReady that never waited
// would give none).
func TestCGISmallResponseHasContentLength(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, filepath.Join(dir, "one.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhello\\n'\n")
	s, _ := cgiServer(t, dir, 5*time.Second, 4)
	srv := httptest.NewServer(s)
	defer srv.Close()
	withLength := 0
	for range 10 {
		resp, err := http.Get(srv.URL + "/cgi-bin/one.sh")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello\n" {
			t.Fatalf("body %q", b)
		}
		if resp.ContentLength == 6 {
			withLength++
		}
	}
	if withLength == 0 {
		t.Fatal("no response of 10 had a Content-Length: every one was flushed chunked")
	}
}

// A client that stalls mid-body, talking to a script that does not read
// it, does not hold the route's only place once the script is done.
func TestCGIStalledUploadReleasesPlace(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, filepath.Join(dir, "noread.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n")
	s, _ := cgiServer(t, dir, 5*time.Second, 1)
	srv := httptest.NewServer(s)
	defer srv.Close()
	conn := stalledUpload(t, srv, "/cgi-bin/noread.sh")
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response while the upload stalls: %v", err)
	}
	resp.Body.Close()
	start := time.Now()
	r2, err := http.Get(srv.URL + "/cgi-bin/noread.sh")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 200 || time.Since(start) > 2*time.Second {
		t.Fatalf("second request: %d after %v; the stalled upload kept the place", r2.StatusCode, time.Since(start))
	}
}

// With request_buffering the body is read before the script starts: a
// stalled upload runs nothing and holds no place.
func TestCGIBufferedStalledUploadHoldsNothing(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	writeScript(t, filepath.Join(dir, "mark.sh"), "#!/bin/sh\n: > "+marker+"\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n")
	writeScript(t, filepath.Join(dir, "ok.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n")
	s, _ := cgiServer(t, dir, 5*time.Second, 1)
	s.table.Load().cfg.RequestBuffering = true
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer stalledUpload(t, srv, "/cgi-bin/mark.sh").Close()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	resp, err := http.Get(srv.URL + "/cgi-bin/ok.sh")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || time.Since(start) > 2*time.Second {
		t.Fatalf("while an upload stalls: %d after %v (max_concurrent 1)", resp.StatusCode, time.Since(start))
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the script ran before its body had arrived")
	}
}

// A client that stops sending its body gets 408 after BodyReadTimeout,
// and the script never runs; a kept connection after a whole body goes on
// working (no deadline stays behind).
func TestStalledBodyTimesOut(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	writeScript(t, filepath.Join(dir, "mark.sh"), "#!/bin/sh\n: > "+marker+"\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n")
	writeScript(t, filepath.Join(dir, "echo.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nexec cat\n")
	s, _ := cgiServerWith(t, dir, 5*time.Second, 4, Options{BodyReadTimeout: 200 * time.Millisecond})
	s.table.Load().cfg.RequestBuffering = true
	srv := httptest.NewServer(s)
	defer srv.Close()

	conn := stalledUpload(t, srv, "/cgi-bin/mark.sh")
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled upload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled upload: %d, want 408", resp.StatusCode)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the script ran without its body")
	}

	// Whole bodies on one kept connection, with pauses longer than the
	// body timeout between requests.
	tp := &http.Transport{MaxConnsPerHost: 1}
	defer tp.CloseIdleConnections()
	client := &http.Client{Transport: tp}
	for i := range 3 {
		resp, err := client.Post(srv.URL+"/cgi-bin/echo.sh", "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "body" {
			t.Fatalf("request %d on a kept connection: %d %q", i, resp.StatusCode, b)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// A program that has answered and closed its stdout but has not exited:
// the client has its answer at once, and the route's place stays taken
// until the program exits.
func TestCGIAnswerDoesNotWaitForExit(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, filepath.Join(dir, "linger.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok\\n'\nexec >&- 2>&-\nsleep 1\n")
	s, _ := cgiServer(t, dir, 5*time.Second, 1)
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func() time.Duration {
		start := time.Now()
		resp, err := http.Get(srv.URL + "/cgi-bin/linger.sh")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok\n" {
			t.Fatalf("%d %q", resp.StatusCode, b)
		}
		return time.Since(start)
	}
	start := time.Now()
	if d := get(); d > 900*time.Millisecond {
		t.Errorf("the answer took %v: it waited for the program's exit (1 s after it)", d)
	}
	get()
	if d := time.Since(start); d < time.Second {
		t.Errorf("two runs took %v: the first one's place (max_concurrent 1) was given back before it exited", d)
	}
}

// stalledUpload opens a connection to srv and sends a POST of path that
// announces 100000 bytes of body and sends 10. Close it before srv (whose
// Close waits for the handler reading that body).
func stalledUpload(t *testing.T, srv *httptest.Server, path string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789", path)
	return conn
}

// setSendTimeout stores a copy of s's table with http.send_timeout d, as a
// reload would.
func setSendTimeout(s *Server, d time.Duration) {
	tb := *s.table.Load()
	httpCfg := *tb.cfg
	httpCfg.SendTimeout = d
	tb.cfg = &httpCfg
	s.table.Store(&tb)
}

// A client that stops reading its answer is cut after http.send_timeout,
// and the CGI place its program held is free again: with max_concurrent
// 1, a second client is served at once, not after the first gives up.
// Without the send timeout the second request waits 5 s for the place and
// gets 503.
func TestSendTimeoutFreesPlace(t *testing.T) {
	dir := t.TempDir()
	// 64 MiB: far more than the socket buffers of both ends hold.
	writeScript(t, filepath.Join(dir, "big.sh"), "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\n\\n'\nhead -c 67108864 /dev/zero\n")
	writeScript(t, filepath.Join(dir, "small.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n")
	s, logs := cgiServer(t, dir, time.Minute, 1)
	setSendTimeout(s, 300*time.Millisecond)
	srv := httptest.NewServer(s)
	defer srv.Close()

	// The client that never reads: a raw connection, the request sent.
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /cgi-bin/big.sh HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // big.sh takes the place and fills the buffers

	start := time.Now()
	resp, err := http.Get(srv.URL + "/cgi-bin/small.sh")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("second client: %d %q, want 200 ok (the stalled client's place not freed)\n%s", resp.StatusCode, body, logs)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("second client served after %v, want about the send timeout (300 ms)", d)
	}
}

// The send deadline a response leaves on its connection does not reach
// the connection's next response, even one written without copyBody (a
// 404), after the deadline passed: net/http clears it once the response
// is finished.
func TestSendTimeoutKeptConnection(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, filepath.Join(dir, "small.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok\\n'\n")
	s, _ := cgiServer(t, dir, time.Minute, 1)
	setSendTimeout(s, 100*time.Millisecond)
	srv := httptest.NewServer(s)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i, path := range []string{"/cgi-bin/small.sh", "/nothing/here"} {
		if i > 0 {
			time.Sleep(300 * time.Millisecond) // past the first response's deadline
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s on the kept connection: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if want := []int{200, 404}[i]; resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestCGISymlinkOutsideWarnsOnce: a script that is a symlink leading out of
// the cgi directory is still 404, and the log says why at WARN, with the
// target and the fix, once per link path; the set of paths remembered is
// bounded (issue 11).
func TestCGISymlinkOutsideWarnsOnce(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "cgi")
	writeScript(t, filepath.Join(base, "share", "gitweb.cgi"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nran\\n'\n")
	os.Mkdir(dir, 0o755)
	if err := os.Symlink(filepath.Join(base, "share", "gitweb.cgi"), filepath.Join(dir, "gitweb.cgi")); err != nil {
		t.Fatal(err)
	}
	os.Symlink(".", filepath.Join(dir, "self"))
	s, logs := cgiServer(t, dir, 5*time.Second, 2)
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func(p string) {
		t.Helper()
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("GET %s: %d %q, want 404", p, resp.StatusCode, body)
		}
	}
	for range 3 {
		get("/cgi-bin/gitweb.cgi?a=opml")
		get("/cgi-bin/gitweb.cgi/x")
	}
	out := logs.String()
	if n := strings.Count(out, "leads outside the directory"); n != 1 {
		t.Fatalf("%d warnings for one link, want 1:\n%s", n, out)
	}
	for _, want := range []string{"level=WARN", "link=" + filepath.Join(dir, "gitweb.cgi"), "target=" + filepath.Join(base, "share", "gitweb.cgi"), "route=/cgi-bin/", "cgi directory is the target's"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// Endless spellings of one link through "self" are as many paths:
	// the set of paths remembered stays bounded.
	if _, _, st, link := findScript(dir, "/self/self/gitweb.cgi"); st != 404 || link != "self/self/gitweb.cgi" {
		t.Fatalf("/self/self/gitweb.cgi: %d, link %q", st, link)
	}
	rt := &route{cfg: &conf.Route{Prefix: "/cgi-bin/"}, cgi: &cgiRoute{dir: dir}}
	for i := range maxLinksWarned + 10 {
		s.warnLink(rt, strings.Repeat("self/", i+2)+"gitweb.cgi")
	}
	s.linksWarned.mu.Lock()
	n := len(s.linksWarned.seen)
	s.linksWarned.mu.Unlock()
	if n > maxLinksWarned {
		t.Errorf("%d link paths remembered, more than %d", n, maxLinksWarned)
	}
}

// TestCGISymlinkRecipe: the way docs/configuration.md gives to run a
// program whose link in the cgi directory leads outside it (Debian's
// gitweb.cgi): a route on the target's directory, narrowed by suffix,
// before the general one, keeps the URL and SCRIPT_NAME.
func TestCGISymlinkRecipe(t *testing.T) {
	base := t.TempDir()
	share, dir := filepath.Join(base, "share"), filepath.Join(base, "cgi")
	writeScript(t, filepath.Join(share, "gitweb.cgi"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n%s %s %s\\n' \"$SCRIPT_NAME\" \"$PATH_INFO\" \"$QUERY_STRING\"\n")
	writeScript(t, filepath.Join(dir, "other.cgi"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nother\\n'\n")
	if err := os.Symlink(filepath.Join(share, "gitweb.cgi"), filepath.Join(dir, "gitweb.cgi")); err != nil {
		t.Fatal(err)
	}
	cfg := &conf.Config{HTTP: conf.HTTP{DocumentRoot: "/srv/www", MaxBodyBytes: 1 << 20, Routes: []*conf.Route{
		{Prefix: "/cgi-bin/", Suffix: "gitweb.cgi", CGI: share, Timeout: 5 * time.Second, MaxConcurrent: 2},
		{Prefix: "/cgi-bin/", CGI: dir, Timeout: 5 * time.Second, MaxConcurrent: 2},
	}}}
	s, err := New(cfg, nil, Options{Log: slog.New(slog.DiscardHandler), Software: "fcgivisor/test", Parent: testParent()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	for p, want := range map[string]string{
		"/cgi-bin/gitweb.cgi/p?a=opml": "/cgi-bin/gitweb.cgi /p a=opml\n",
		"/cgi-bin/other.cgi":           "other\n",
	} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("GET %s: %d %q, want 200 %q", p, resp.StatusCode, body, want)
		}
	}
}
