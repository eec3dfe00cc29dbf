package front

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/internal/testlog"
)

// accessReq is a request as net/http hands it to the front: RequestURI
// as the client sent it, RemoteAddr as the listener gives it.
func accessReq(method, uri, remote string, hdr map[string]string) *http.Request {
	r := httptest.NewRequest(method, "http://example.org/", nil)
	r.RequestURI = uri
	r.RemoteAddr = remote
	r.Host = "example.org"
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return r
}

// TestAccessCombined checks the combined lines byte for byte against what
// nginx writes for the same request: its escaping (control bytes, '"',
// '\' and bytes from 0x7f on as \xHH, upper case), "-" for an empty
// user, referer or user agent, "unix:" for a Unix-socket client, the user
// of Basic auth, $time_local's layout.
func TestAccessCombined(t *testing.T) {
	at := time.Date(2026, time.December, 3, 9, 17, 18, 0, time.UTC)
	plus1 := time.FixedZone("", 3600)
	basic := func(user string) string {
		r := httptest.NewRequest("GET", "/", nil)
		r.SetBasicAuth(user, "secret")
		return r.Header.Get("Authorization")
	}
	for _, tc := range []struct {
		name   string
		r      *http.Request
		end    time.Time
		status int
		bytes  int64
		want   string
	}{
		{"tcp, referer and agent", accessReq("GET", "/a/b?x=1&y=2", "192.0.2.7:51234", map[string]string{"Referer": "http://example.org/start", "User-Agent": "curl/8.5.0"}),
			at, 200, 1234, `192.0.2.7 - - [03/Dec/2026:09:17:18 +0000] "GET /a/b?x=1&y=2 HTTP/1.1" 200 1234 "http://example.org/start" "curl/8.5.0"`},
		{"ipv6", accessReq("POST", "/form", "[2001:db8::1]:443", nil),
			at, 201, 0, `2001:db8::1 - - [03/Dec/2026:09:17:18 +0000] "POST /form HTTP/1.1" 201 0 "-" "-"`},
		{"unix client @", accessReq("GET", "/", "@", nil),
			at, 404, 9, `unix: - - [03/Dec/2026:09:17:18 +0000] "GET / HTTP/1.1" 404 9 "-" "-"`},
		{"unix client empty", accessReq("GET", "/", "", nil),
			at, 200, 1, `unix: - - [03/Dec/2026:09:17:18 +0000] "GET / HTTP/1.1" 200 1 "-" "-"`},
		{"basic auth user", accessReq("GET", "/private", "10.0.0.1:1", map[string]string{"Authorization": basic("alice")}),
			at, 200, 5, `10.0.0.1 - alice [03/Dec/2026:09:17:18 +0000] "GET /private HTTP/1.1" 200 5 "-" "-"`},
		{"user escaped", accessReq("GET", "/", "10.0.0.1:1", map[string]string{"Authorization": basic("a\"l ice\\")}),
			at, 200, 5, `10.0.0.1 - a\x22l ice\x5C [03/Dec/2026:09:17:18 +0000] "GET / HTTP/1.1" 200 5 "-" "-"`},
		{"request line escaped", accessReq("GET", "/q\"\\\x01\x1f\x7f\xc3\xa9 x", "10.0.0.1:1", nil),
			at, 200, 0, `10.0.0.1 - - [03/Dec/2026:09:17:18 +0000] "GET /q\x22\x5C\x01\x1F\x7F\xC3\xA9 x HTTP/1.1" 200 0 "-" "-"`},
		{"headers escaped", accessReq("GET", "/", "10.0.0.1:1", map[string]string{"Referer": "x\"y", "User-Agent": "evil\t\"agent\" 200 1 \"-\" \"-\""}),
			at, 200, 0, `10.0.0.1 - - [03/Dec/2026:09:17:18 +0000] "GET / HTTP/1.1" 200 0 "x\x22y" "evil\x09\x22agent\x22 200 1 \x22-\x22 \x22-\x22"`},
		{"time zone", accessReq("GET", "/", "10.0.0.1:1", nil),
			at.In(plus1), 304, 0, `10.0.0.1 - - [03/Dec/2026:10:17:18 +0100] "GET / HTTP/1.1" 304 0 "-" "-"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &accessRecord{r: tc.r, end: tc.end, status: tc.status, bytes: tc.bytes}
			got := string(rec.appendCombined(nil))
			if got != tc.want+"\n" {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// TestAccessRecordStatus: a handler that wrote nothing answered 200
// (net/http sends it), or nothing at all when the client went away (499,
// as nginx logs it); a HEAD answer sent no body bytes, whatever was
// written.
func TestAccessRecordStatus(t *testing.T) {
	start := time.Now()
	r := accessReq("GET", "/", "10.0.0.1:1", nil)
	if rec := newAccessRecord(r, &statusWriter{}, nil, start); rec.status != 200 {
		t.Errorf("nothing written: status %d, want 200", rec.status)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if rec := newAccessRecord(r.WithContext(ctx), &statusWriter{}, nil, start); rec.status != 499 {
		t.Errorf("client gone: status %d, want 499", rec.status)
	}
	head := accessReq("HEAD", "/", "10.0.0.1:1", nil)
	if rec := newAccessRecord(head, &statusWriter{status: 200, n: 42}, nil, start); rec.bytes != 0 || rec.status != 200 {
		t.Errorf("HEAD: status %d bytes %d, want 200 0", rec.status, rec.bytes)
	}
	if rec := newAccessRecord(r, &statusWriter{}, nil, start); rec.duration < 0 || rec.end.Before(start) {
		t.Errorf("duration %v end %v, for a start at %v", rec.duration, rec.end, start)
	}
}

// TestAccessJSON checks the json format: every field, durations in
// seconds, null upstream_time and pid when nothing was asked.
func TestAccessJSON(t *testing.T) {
	at := time.Date(2026, time.December, 3, 9, 17, 18, 123456789, time.UTC)
	r := accessReq("GET", "/w/x?y=\"1\"", "@", map[string]string{"Referer": "http://r/", "User-Agent": "ua <&>"})
	r.SetBasicAuth("bob", "pw")
	rec := &accessRecord{r: r, end: at, duration: 1500 * time.Millisecond, status: 502, bytes: 11,
		entry: &accessEntry{kind: "pool", pool: "php", pid: 4242, upstream: 1234567 * time.Nanosecond, ran: true}}
	a := &accessLog{}
	var out testlog.Buffer
	a.w, a.json = &out, true
	a.write(rec)
	line := out.String()
	if !strings.HasSuffix(line, "}\n") || strings.Count(line, "\n") != 1 {
		t.Fatalf("not one line: %q", line)
	}
	if !strings.Contains(line, `"ua <&>"`) {
		t.Errorf("HTML characters escaped: %s", line)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	want := map[string]any{
		"time": "2026-12-03T09:17:18.123Z", "remote_addr": "unix:", "remote_user": "bob", "method": "GET",
		"uri": `/w/x?y="1"`, "protocol": "HTTP/1.1", "status": 502.0, "bytes": 11.0, "host": "example.org",
		"referer": "http://r/", "user_agent": "ua <&>", "duration": 1.5, "upstream_time": 0.001235,
		"route": "pool", "pool": "php", "pid": 4242.0, "script": "",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %s = %#v", k, got[k])
		}
	}

	// A static file: no worker, no program.
	rec.entry = &accessEntry{kind: "static"}
	out = testlog.Buffer{}
	a.write(rec)
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatal(err)
	}
	if v, ok := got["upstream_time"]; !ok || v != nil {
		t.Errorf("static: upstream_time = %#v (present %v), want null", v, ok)
	}
	if v, ok := got["pid"]; !ok || v != nil {
		t.Errorf("static: pid = %#v (present %v), want null", v, ok)
	}
}

// waitLines waits until buf holds n lines and returns them.
func waitLines(t *testing.T, buf *testlog.Buffer, n int) []string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		text, changed := buf.Snapshot()
		if lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n"); text != "" && len(lines) >= n {
			return lines
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("want %d access lines, have:\n%s", n, text)
		}
	}
}

// TestAccessLogServes runs requests through a front with a real worker
// and CGI program: the JSON lines name the route, the pool, the worker's
// or program's pid, the script, and upstream times; parallel requests
// give whole lines; SetAccessLog switches format and target, and nil
// turns the log off.
func TestAccessLogServes(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, filepath.Join(dir, "pid.sh"), "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n%s' $$\n")
	f := startWorkerFront(t, dir, nil, nil)
	var out testlog.Buffer
	f.srv.SetAccessLog(&out, "json")

	for _, path := range []string{"/w/x", "/cgi-bin/pid.sh", "/nowhere"} {
		if _, _, err := getURL(t, f.url+path); err != nil {
			t.Fatal(err)
		}
	}
	lines := waitLines(t, &out, 3)
	recs := make([]map[string]any, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &recs[i]); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, l)
		}
	}
	pid := float64(f.pid())
	if r := recs[0]; r["route"] != "pool" || r["pool"] != "w" || r["pid"] != pid || r["status"] != 200.0 || r["upstream_time"] == nil {
		t.Errorf("pool request: %v, want route pool, pool w, pid %v, status 200, an upstream_time", r, pid)
	}
	script := filepath.Join(dir, "pid.sh")
	if r := recs[1]; r["route"] != "cgi" || r["script"] != script || r["pid"] == nil || r["upstream_time"] == nil || r["bytes"].(float64) < 1 {
		t.Errorf("cgi request: %v, want route cgi, script %s, a pid and upstream_time", r, script)
	}
	if r := recs[2]; r["route"] != "" || r["status"] != 404.0 || r["upstream_time"] != nil || r["pid"] != nil {
		t.Errorf("no route: %v, want route \"\", 404, no upstream_time or pid", r)
	}

	// Parallel requests: one whole line each.
	f.srv.SetAccessLog(&out, "combined")
	before := len(lines)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, _, err := getURL(t, fmt.Sprintf("%s/w/%d?%s", f.url, i, strings.Repeat("q", 2000))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	lines = waitLines(t, &out, before+20)
	for _, l := range lines[before:] {
		if !strings.HasPrefix(l, "127.0.0.1 - - [") || !strings.HasSuffix(l, ` 200 `+fmt.Sprint(len(fmt.Sprint(f.pid())))+` "-" "Go-http-client/1.1"`) {
			t.Errorf("combined line: %q", l)
		}
	}

	// Off: nothing more, and the writer is not touched.
	f.srv.SetAccessLog(nil, "combined")
	getURL(t, f.url+"/w/x")
	if n := strings.Count(out.String(), "\n"); n != before+20 {
		t.Errorf("%d lines after the log was turned off, want %d", n, before+20)
	}
}

// TestAccessLogWriteFails: a target that fails is reported once, not per
// line, and its recovery once.
func TestAccessLogWriteFails(t *testing.T) {
	var logs testlog.Buffer
	fw := &failWriter{fail: true}
	a := &accessLog{log: slog.New(slog.NewTextHandler(&logs, nil)), w: fw}
	rec := &accessRecord{r: accessReq("GET", "/", "10.0.0.1:1", nil), end: time.Now(), status: 200}
	for range 3 {
		a.write(rec)
	}
	fw.fail = false
	a.write(rec)
	a.write(rec)
	if n, m := strings.Count(logs.String(), "access log: write failed"), strings.Count(logs.String(), "access log: writing again"); n != 1 || m != 1 {
		t.Errorf("failure reported %d times and recovery %d times, want once each\n%s", n, m, &logs)
	}
	if fw.lines != 2 {
		t.Errorf("%d lines written, want 2", fw.lines)
	}
}

type failWriter struct {
	fail  bool
	lines int
}

func (w *failWriter) Write(p []byte) (int, error) {
	if w.fail {
		return 0, os.ErrClosed
	}
	w.lines++
	return len(p), nil
}
