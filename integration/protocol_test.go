package integration

// What a client sees through fcgivisor in front of each example worker:
// bodies both ways byte for byte, status and Location, the RFC 3875
// variables, the path split, and worker stderr in the log.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// splitRoutes exercise the path-split rules with the Go worker, which shows
// its params exactly as sent; a route with suffix forwards only scripts
// that exist (splitTree).
const splitRoutes = `
[[http.route]]
prefix = "/app/"
suffix = ".php"
pool = "go"

[[http.route]]
prefix = "/front/"
script = "/index.php"
pool = "go"

[[http.route]]
prefix = "/idx/"
suffix = ".php"
index = "index.php"
pool = "go"
`

func TestProtocol(t *testing.T) {
	t.Parallel()
	in := start(t, options{})

	eachLang(t, func(t *testing.T, l lang) {
		t.Run("hello", func(t *testing.T) { testHello(t, in, l) })
		t.Run("echo", func(t *testing.T) { testEcho(t, in, l) })
		t.Run("echo-chunked", func(t *testing.T) { testEchoChunked(t, in, l) })
		t.Run("crc32", func(t *testing.T) { testCRC32(t, in, l) })
		t.Run("size", func(t *testing.T) { testSize(t, in, l) })
		t.Run("status", func(t *testing.T) { testStatus(t, in, l) })
		t.Run("location", func(t *testing.T) { testLocation(t, in, l) })
		t.Run("vars-get", func(t *testing.T) { testVars(t, in, l, http.MethodGet) })
		t.Run("vars-post", func(t *testing.T) { testVars(t, in, l, http.MethodPost) })
		t.Run("stderr", func(t *testing.T) { testStderr(t, in, l) })
	})
}

func testHello(t *testing.T, in *instance, l lang) {
	resp, body := in.get(t, l.path("/"))
	if resp.StatusCode != http.StatusOK || string(body) != "hello from "+l.name+"\n" {
		t.Fatalf("GET %s: %d %q, want 200 %q", l.path("/"), resp.StatusCode, clip(body), "hello from "+l.name+"\n")
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type %q, want text/plain (the worker's header)", ct)
	}
}

func testEcho(t *testing.T, in *instance, l lang) {
	body := make([]byte, 1<<20)
	rand.Read(body)
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, got, err := in.do(context.Background(), http.MethodPost, l.path("/echo?echo"), body, hdr)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST ?echo: %d %q", resp.StatusCode, clip(got))
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("POST ?echo: got %d bytes back, want the 1 MiB sent; first difference at %d", len(got), firstDiff(got, body))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type %q, want application/octet-stream", ct)
	}
}

// testEchoChunked: a body without Content-Length (chunked), larger than
// what fcgivisor keeps in memory, still arrives whole with its length.
func testEchoChunked(t *testing.T, in *instance, l lang) {
	body := make([]byte, 3<<19) // 1.5 MiB
	rand.Read(body)
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	hidden := struct{ io.Reader }{bytes.NewReader(body)} // no Len: sent chunked
	resp, got, err := in.doReader(context.Background(), http.MethodPost, l.path("/echo?echo"), hidden, hdr)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chunked POST ?echo: %d %q", resp.StatusCode, clip(got))
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("chunked POST ?echo: got %d bytes back, want the %d sent; first difference at %d", len(got), len(body), firstDiff(got, body))
	}
}

// testCRC32: ?crc32 reads the whole body and answers its length and CRC-32.
func testCRC32(t *testing.T, in *instance, l lang) {
	for _, n := range []int{0, 1 << 20} {
		body := make([]byte, n)
		rand.Read(body)
		resp, got, err := in.do(context.Background(), http.MethodPost, l.path("/c?crc32"), body, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := crc32Line(body); resp.StatusCode != http.StatusOK || string(got) != want {
			t.Errorf("POST ?crc32 with %d bytes: %d %q, want 200 %q", n, resp.StatusCode, clip(got), want)
		}
	}
}

// crc32Line is what ?crc32 answers for body.
func crc32Line(body []byte) string {
	return fmt.Sprintf("%d %08x\n", len(body), crc32.ChecksumIEEE(body))
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func testSize(t *testing.T, in *instance, l lang) {
	const n = 5 << 20
	_, body := in.get(t, l.path(fmt.Sprintf("/size?size=%d", n)))
	if len(body) != n {
		t.Fatalf("?size=%d: got %d bytes", n, len(body))
	}
	for i, c := range body {
		if c != byte('a'+i%26) {
			t.Fatalf("?size=%d: byte %d is %q, want %q", n, i, c, byte('a'+i%26))
		}
	}
}

func testStatus(t *testing.T, in *instance, l lang) {
	resp, body := in.get(t, l.path("/s?status=404"))
	if resp.StatusCode != http.StatusNotFound || string(body) != "status 404\n" {
		t.Fatalf("?status=404: %d %q, want 404 %q", resp.StatusCode, clip(body), "status 404\n")
	}
	if h := resp.Header.Get("Status"); h != "" {
		t.Errorf("the CGI Status header leaked into the HTTP response: Status: %s", h)
	}
	resp, body = in.get(t, l.path("/s?status=503"))
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "status 503\n" {
		t.Fatalf("?status=503: %d %q, want 503 %q", resp.StatusCode, clip(body), "status 503\n")
	}
}

func testLocation(t *testing.T, in *instance, l lang) {
	const target = "http://example.invalid/x"
	resp, body := in.get(t, l.path("/l?location="+target))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("?location: %d %q, want 302", resp.StatusCode, clip(body))
	}
	if loc := resp.Header.Get("Location"); loc != target {
		t.Fatalf("?location: Location %q, want %q", loc, target)
	}
}

// testVars checks the RFC 3875 variables the worker received.
func testVars(t *testing.T, in *instance, l lang, method string) {
	urlPath := l.path("/some/path")
	query := "vars&x=1&y=a%20b"
	var reqBody []byte
	hdr := http.Header{
		"X-Custom": {"custom-" + l.name},
		"Proxy":    {"http://attacker.invalid:3128"}, // httpoxy: must not become HTTP_PROXY
	}
	if method == http.MethodPost {
		reqBody = []byte("a=1&b=2")
		hdr.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	var clientAddr string
	trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { clientAddr = ci.Conn.LocalAddr().String() }}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	resp, body, err := in.do(ctx, method, urlPath+"?"+query, reqBody, hdr)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s ?vars: %d %q", method, resp.StatusCode, clip(body))
	}
	vars := parseLines(body)
	_, clientPort, _ := net.SplitHostPort(clientAddr)

	want := map[string]string{
		"REQUEST_METHOD":  method,
		"QUERY_STRING":    query,
		"SCRIPT_NAME":     l.scriptName(),
		"PATH_INFO":       l.pathInfo(urlPath),
		"SCRIPT_FILENAME": documentRoot() + l.scriptName(),
		"REMOTE_ADDR":     "127.0.0.1",
		"REMOTE_PORT":     clientPort,
		"SERVER_NAME":     "127.0.0.1",
		"SERVER_PORT":     strconv.Itoa(in.port),
		"SERVER_PROTOCOL": "HTTP/1.1",
		"HTTP_X_CUSTOM":   "custom-" + l.name,
		"REDIRECT_STATUS": "200",
		"CONTENT_LENGTH":  "0",
	}
	if method == http.MethodPost {
		want["CONTENT_LENGTH"] = strconv.Itoa(len(reqBody))
		want["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
	}
	for k, v := range want {
		got, ok := vars[k]
		switch {
		case !ok:
			t.Errorf("%s not sent (want %q)", k, v)
		case len(got) != 1:
			t.Errorf("%s sent %d times: %q", k, len(got), got)
		case got[0] != v:
			t.Errorf("%s = %q, want %q", k, got[0], v)
		}
	}
	if v, ok := vars["HTTP_PROXY"]; ok {
		t.Errorf("the Proxy request header became HTTP_PROXY=%q (httpoxy)", v)
	}
	if v, ok := vars["CONTENT_TYPE"]; ok && method == http.MethodGet && v[0] != "" {
		t.Errorf("CONTENT_TYPE = %q on a GET without body", v[0])
	}
	if t.Failed() {
		t.Logf("vars received:\n%s", body)
	}
}

// splitTree is a document root holding the scripts splitRoutes name.
func splitTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range []string{"app/x.php", "app/sub/y.php", "app/a.phpx/b.php", "idx/sub/index.php"} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestPathSplit: SCRIPT_NAME, PATH_INFO and SCRIPT_FILENAME as a worker
// gets them from each kind of pool route, and no PATH_TRANSLATED.
func TestPathSplit(t *testing.T) {
	t.Parallel()
	root := splitTree(t)
	in := start(t, options{langs: []string{"go"}, routes: splitRoutes, docRoot: root})
	for _, tc := range []struct {
		path, scriptName, pathInfo string
	}{
		{"/app/x.php/extra", "/app/x.php", "/extra"},
		{"/app/x.php", "/app/x.php", ""},
		{"/app/sub/y.php/a/b.php", "/app/sub/y.php", "/a/b.php"}, // the FIRST segment ending in .php
		{"/app/a.phpx/b.php/c", "/app/a.phpx/b.php", "/c"},       // a segment must END in .php
		{"/front/a/b", "/index.php", "/front/a/b"},               // script: PATH_INFO is the whole path
		{"/front/", "/index.php", "/front/"},
		{"/idx/sub/", "/idx/sub/index.php", ""}, // index appended to a directory path
		{"/go/deep/er", "/go", "/deep/er"},      // prefix only: SCRIPT_NAME is the prefix
		{"/go/", "/go", "/"},
	} {
		t.Run(strings.ReplaceAll(strings.Trim(tc.path, "/"), "/", "_"), func(t *testing.T) {
			resp, body := in.get(t, tc.path+"?vars")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s?vars: %d %q", tc.path, resp.StatusCode, clip(body))
			}
			vars := parseLines(body)
			for k, v := range map[string]string{
				"SCRIPT_NAME":     tc.scriptName,
				"PATH_INFO":       tc.pathInfo,
				"SCRIPT_FILENAME": root + tc.scriptName,
			} {
				if got := vars[k]; !slices.Equal(got, []string{v}) {
					t.Errorf("GET %s: %s = %q, want %q", tc.path, k, got, v)
				}
			}
			if v, ok := vars["PATH_TRANSLATED"]; ok {
				t.Errorf("GET %s: PATH_TRANSLATED = %q sent to a pool", tc.path, v)
			}
		})
	}
	// A route with suffix forwards only scripts that exist, whatever the
	// worker: the Go worker would have answered each of these.
	for _, p := range []string{"/app/missing.php", "/app/missing.php/x", "/app/sub/", "/idx/", "/app/sub/y.PHP"} {
		in.expect(t, p+"?vars", http.StatusNotFound, "")
	}
}

// testStderr: a line the worker writes to FastCGI stderr (Go: to its own
// stderr, net/http/fcgi has no FCGI_STDERR writer) is one log record
// tagged with the pool and the worker's pid.
func testStderr(t *testing.T, in *instance, l lang) {
	marker := fmt.Sprintf("marker123-%s-%s", l.name, rand.Text()[:8])
	in.expect(t, l.path("/e?stderr="+marker), http.StatusOK, "ok\n")
	rec := in.waitLog(t, "containing "+marker, func(r map[string]any) bool { return recordMentions(r, marker) })
	if pool, _ := rec["pool"].(string); pool != l.name {
		t.Errorf("record %v: pool %v, want %q", rec, rec["pool"], l.name)
	}
	pid, _ := rec["pid"].(float64)
	var workers []int
	for _, w := range in.poolWorkers(l) {
		workers = append(workers, w.pid)
	}
	if !slices.Contains(workers, int(pid)) {
		t.Errorf("record %v: pid %v is not one of the pool's workers %v", rec, rec["pid"], workers)
	}
}

// recordMentions reports whether some string in the record contains s.
func recordMentions(v any, s string) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, s)
	case map[string]any:
		for _, x := range v {
			if recordMentions(x, s) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if recordMentions(x, s) {
				return true
			}
		}
	}
	return false
}

// A body the application does not read (a POST to a handler that answers
// without reading STDIN) must not cost the next request on the worker's
// kept connection: libfcgi (C, Perl) takes leftovers for the start of the
// next request, drains the connection, our next request with it, and
// closes it unanswered. One worker, so every request meets the last one's
// connection; a short body (sent with the request's head) and one over
// 8 KiB (streamed; the connection is not reused after it).
func TestUnreadBodyThenNextRequest(t *testing.T) {
	t.Parallel()
	in := start(t, options{pool: oneSlot()})
	eachLang(t, func(t *testing.T, l lang) {
		for i := range 30 {
			body := []byte("a=1&b=2")
			if i%3 == 2 {
				body = bytes.Repeat([]byte("x"), 20<<10)
			}
			hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
			resp, got, err := in.do(context.Background(), http.MethodPost, l.path("/p?pid"), body, hdr)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: POST %d bytes to ?pid: %v %v %q", i, len(body), err, resp, clip(got))
			}
			resp, got, err = in.do(context.Background(), http.MethodGet, l.path("/g?pid"), nil, nil)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: GET ?pid after a POST whose body the worker did not read: %v %v %q", i, err, resp, clip(got))
			}
		}
	})
}
