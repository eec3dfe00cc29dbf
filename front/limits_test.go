package front

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// allocated runs f and returns the bytes the test process allocated
// meanwhile (all goroutines: the front, the pool, the client).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// getURL asks for url and returns the status and body; a cut connection is
// an error.
func getURL(t *testing.T, url string) (int, string, error) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// TestResponseHeaderLimit: a worker or CGI program that sends 10 MiB of
// header lines gets its request a 502 after at most maxResponseHeader
// bytes were read: the front allocates far less than what was sent. The
// FastCGI worker's connection is closed and the worker, not at fault
// otherwise, serves on; the CGI program is killed.
func TestResponseHeaderLimit(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, filepath.Join(dir, "endless.sh"),
		"#!/bin/sh\nprintf 'Content-Type: text/plain\\n'\nwhile :; do printf 'X-Big: %s\\n' aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa || exit; done\n")
	f := startWorkerFront(t, dir, nil, nil)
	pid := f.pid()
	const sent = 10 << 20

	// Under the limit, the header gets through whole.
	code, body, err := getURL(t, fmt.Sprintf("%s/w/?header=%d", f.url, maxResponseHeader/2))
	if err != nil || code != http.StatusOK || body != "body" {
		t.Fatalf("a 32 KiB header: %d %q %v, want 200 \"body\"", code, body, err)
	}

	for _, path := range []string{fmt.Sprintf("/w/?header=%d", sent), "/cgi-bin/endless.sh"} {
		var code int
		var body string
		var err error
		n := allocated(func() { code, body, err = getURL(t, f.url+path) })
		if err != nil || code != http.StatusBadGateway {
			t.Fatalf("GET %s: %d %q %v, want 502", path, code, body, err)
		}
		// What is read of the header is held: 64 KiB and one map entry
		// per line, a few hundred KiB with the client's and the pool's
		// allocations; reading all 10 MiB would take over 10 MiB.
		t.Logf("GET %s: %d KiB allocated", path, n>>10)
		if n > 4<<20 {
			t.Errorf("GET %s: %d KiB allocated while the program sent %d MiB of header", path, n>>10, sent>>20)
		}
	}
	logs := f.log.String()
	if strings.Count(logs, fmt.Sprintf("header block over %d bytes", maxResponseHeader)) != 2 {
		t.Errorf("the log does not name the limit for both:\n%s", logs)
	}
	if !strings.Contains(logs, `exit="killed by signal killed"`) {
		t.Errorf("the CGI program was not killed:\n%s", logs)
	}
	if code, body, err := getURL(t, f.url+"/w/"); err != nil || code != http.StatusOK || body != fmt.Sprint(pid) {
		t.Errorf("after the 502: %d %q %v, want 200 from the same worker %d", code, body, err, pid)
	}
}

// TestRequestTimeoutCoversHeaderAndBody: request_timeout bounds the whole
// exchange with a worker. One that sleeps before its header gets the
// request a 504; one that stalls after sending its header and part of the
// body gets the client connection cut. Either way at the timeout, and the
// worker is killed and replaced.
func TestRequestTimeoutCoversHeaderAndBody(t *testing.T) {
	f := startWorkerFront(t, "", nil, []string{`request_timeout = "300ms"`})
	for _, tc := range []struct {
		path string
		code int // 0: the connection is cut after the header
	}{
		{"/w/?sleep=5000", http.StatusGatewayTimeout},
		{"/w/?stall", 0},
	} {
		pid := f.pid()
		start := time.Now()
		c := &http.Client{Timeout: 20 * time.Second}
		resp, err := c.Get(f.url + tc.path)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		took := time.Since(start)
		switch {
		case tc.code != 0 && (err != nil || resp.StatusCode != tc.code):
			t.Errorf("GET %s: %v %v, want %d", tc.path, resp, err, tc.code)
		case tc.code == 0 && (err == nil || string(body) != "partial"):
			t.Errorf("GET %s: body %q, error %v; want \"partial\", then the connection cut\n%s", tc.path, body, err, f.log)
		}
		if took > 3*time.Second {
			t.Errorf("GET %s: answered after %v, want about request_timeout (300ms)", tc.path, took)
		}
		waitDead(t, pid)
		if _, body, err := getURL(t, f.url+"/w/"); err != nil || body == fmt.Sprint(pid) {
			t.Errorf("after GET %s: %q %v, want a new worker's pid", tc.path, body, err)
		}
	}
}

// waitDead waits until pid no longer exists (killed and reaped).
func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("worker %d still exists 10 s after its request timed out", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
