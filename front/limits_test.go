package front

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
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
