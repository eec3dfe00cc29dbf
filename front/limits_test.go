package front

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/supervisor"
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

// TestMaxConnections: with max_connections = 2 a listener holds two
// connections; a third waits unanswered, and is served once one of the
// two closes, or at once when a kept-alive one idles (which is closed
// for it), or when a reload raises the limit. Every descriptor is given
// back.
func TestMaxConnections(t *testing.T) {
	f := startWorkerFront(t, "", []string{"max_connections = 2"}, nil)
	addr := strings.TrimPrefix(f.url, "http://")
	if _, _, err := getURL(t, f.url+"/w/"); err != nil { // the pool's kept connection is open
		t.Fatal(err)
	}
	fds := openFDs(t)

	// Two connections that have sent nothing hold both places.
	a, b := dialHTTP(t, addr), dialHTTP(t, addr)
	c := dialHTTP(t, addr)
	c.send(t)
	c.waits(t)
	a.Close()
	c.answered(t)

	// b sent nothing, c is idle: d takes c's place.
	d := dialHTTP(t, addr)
	d.send(t)
	d.answered(t)
	c.closedByServer(t)

	// e takes idle d's place; then b and e hold both again. A reload
	// to 3 lets the waiting g in.
	e := dialHTTP(t, addr)
	d.closedByServer(t)
	g := dialHTTP(t, addr)
	g.send(t)
	g.waits(t)
	cfg := *f.cfg
	cfg.HTTP.MaxConnections = 3
	if err := f.srv.Update(&cfg, map[string]*supervisor.Pool{"w": f.pool}); err != nil {
		t.Fatal(err)
	}
	g.answered(t)

	for _, x := range []*httpConn{b, c, d, e, g} {
		x.Close()
	}
	// At most as many as before: the warm-up's server end may have been
	// open still when they were counted.
	deadline := time.Now().Add(10 * time.Second)
	for openFDs(t) > fds {
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors open, %d before the connections", openFDs(t), fds)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// httpConn is a client connection sending GET /w/ by hand.
type httpConn struct {
	net.Conn
	br *bufio.Reader
}

func dialHTTP(t *testing.T, addr string) *httpConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &httpConn{Conn: c, br: bufio.NewReader(c)}
}

func (c *httpConn) send(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(c, "GET /w/ HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
}

// waits checks that no answer comes within 300 ms.
func (c *httpConn) waits(t *testing.T) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.br.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("over max_connections: %v, want no answer yet", err)
	}
	c.SetReadDeadline(time.Time{})
}

// answered reads a 200 answer, the connection kept alive.
func (c *httpConn) answered(t *testing.T) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("answer: %d %q %v, close %v; want 200, kept alive", resp.StatusCode, body, err, resp.Close)
	}
}

// closedByServer checks that the server closed the connection.
func (c *httpConn) closedByServer(t *testing.T) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.br.Peek(1); err != io.EOF {
		t.Fatalf("idle connection: %v, want it closed by the server (EOF)", err)
	}
}

// openFDs counts the test process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
