package supervisor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/fastcgi"
	"github.com/fcgivisor/fcgivisor/internal/testkit"
)

// Workers that exit by themselves (issue 11).

// dropWorker answers like rawWorker(true, 0), except that as long as the
// workers writing $DROP_FILE dropped fewer than $DROP_COUNT requests (no
// limit when unset), a request's BEGIN_REQUEST makes it close the
// connection with the rest of the request unread (the kernel resets it)
// and exit: a worker exiting by itself as a request arrives.
func dropWorker() {
	ln, err := net.FileListener(os.Stdin)
	if err != nil {
		os.Exit(2)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		serveDropping(c)
	}
}

func serveDropping(c net.Conn) {
	defer c.Close()
	for {
		var h [8]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		if h[1] == 1 && dropNow() { // BEGIN_REQUEST, its content unread
			c.Close()
			os.Exit(0)
		}
		n := int(binary.BigEndian.Uint16(h[4:6])) + int(h[6])
		if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
			return
		}
		switch {
		case h[1] == 9: // GET_VALUES: an empty GET_VALUES_RESULT
			c.Write([]byte{1, 10, 0, 0, 0, 0, 0, 0})
		case h[1] == 5 && n == 0: // empty STDIN: the request is complete
			body := fmt.Sprintf("Content-Type: text/plain\r\n\r\npid=%d", os.Getpid())
			out := []byte{1, 6, 0, 1, 0, byte(len(body)), 0, 0}
			out = append(out, body...)
			out = append(out, 1, 6, 0, 1, 0, 0, 0, 0)
			out = append(out, 1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
			c.Write(out)
		}
	}
}

// dropNow reports whether to drop the request: it appends a byte to
// $DROP_FILE (O_APPEND: each write lands at its own offset) and checks
// that the file is no longer than $DROP_COUNT. Once that is exceeded the
// file keeps its length.
func dropNow() bool {
	limit, _ := strconv.Atoi(os.Getenv("DROP_COUNT"))
	name := os.Getenv("DROP_FILE")
	if fi, err := os.Stat(name); limit > 0 && err == nil && fi.Size() >= int64(limit) {
		return false
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		os.Exit(2)
	}
	defer f.Close()
	if _, err := f.Write([]byte{1}); err != nil {
		os.Exit(2)
	}
	return true
}

// drops is how many requests the dropWorkers writing file dropped.
func drops(t *testing.T, file string) int64 {
	t.Helper()
	fi, err := os.Stat(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Two workers in a row drop the request unread as they exit by
// themselves: each reset proves the request was not read, so it is sent a
// third time (re-sends: within 2 × the pool's workers + 1) and served. One re-send, the
// rule before issue 11, answered 502. (Two, not more: a worker that exits
// young without serving counts toward the crash-loop limit of 3.)
func TestResetUnreadIsResentToEachNextWorker(t *testing.T) {
	file := filepath.Join(t.TempDir(), "drops")
	tp := newTestPool(t, "dropper", func(c *conf.Pool) {
		c.Workers, c.MaxWorkers = 2, 2
		c.Env["DROP_FILE"] = file
		c.Env["DROP_COUNT"] = "2"
	})
	body, err := tp.get(context.Background(), "")
	if err != nil {
		t.Fatalf("request dropped unread by 2 exiting workers in a row: %v", err)
	}
	pidOf(t, body)
	if n := drops(t, file); n != 2 {
		t.Fatalf("%d drops, want 2", n)
	}
}

// The re-sends stay bounded: with every worker dropping every request, the
// request is sent again at most 2 × workers + 1 times, then it fails (502, or
// 503 once the workers dying at start mark the pool failing).
func TestResetUnreadResendsAreBounded(t *testing.T) {
	file := filepath.Join(t.TempDir(), "drops")
	tp := newTestPool(t, "dropper", func(c *conf.Pool) {
		c.Workers, c.MaxWorkers = 2, 2
		c.Env["DROP_FILE"] = file
	})
	if _, err := tp.get(context.Background(), ""); err == nil {
		t.Fatal("a request every worker dropped succeeded")
	}
	if n := drops(t, file); n < 2 || n > 6 {
		t.Fatalf("the request was sent %d times, want 2 to 6 (re-sent at most 2 × 2 workers + 1 times)", n)
	}
}

// A worker that closed its kept connection after its answer (it exits or
// closes kept connections) does not get the next request while another
// worker is idle, although its slot was put back last.
func TestClosedKeptConnectionPrefersAnotherIdleWorker(t *testing.T) {
	tp, first := closedKeptConnection(t)
	body, err := tp.get(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if pidOf(t, body) == first {
		t.Fatalf("worker %d, whose kept connection was closed, got the next request while another was idle", first)
	}
}

// A request re-sent because the worker had closed its kept connection
// (EPIPE on the first write: nothing sent) carries its whole body again,
// though the body was read to go out with the request's head.
func TestResentRequestKeepsItsBody(t *testing.T) {
	tp, first := closedKeptConnection(t)
	const payload = "a=1&b=two"
	req := &fastcgi.Request{Params: []fastcgi.Param{
		{Name: "REQUEST_METHOD", Value: "POST"},
		{Name: "REQUEST_URI", Value: "/post"},
		{Name: "CONTENT_LENGTH", Value: strconv.Itoa(len(payload))},
	}, Body: strings.NewReader(payload)}
	var got string
	err := tp.Serve(context.Background(), "/post", req, func(resp *fastcgi.Response) error {
		b, err := io.ReadAll(resp)
		_, got, _ = strings.Cut(string(b), "\r\n\r\n")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got, " stdin="+payload) || strings.HasPrefix(got, fmt.Sprintf("pid=%d ", first)) {
		t.Errorf("answer %q: want another worker than %d, with the body %q", got, first, payload)
	}
}

// closedKeptConnection starts a pool of two "closer" workers (they close
// each connection after their answer), serves one request, and waits until
// the slot taken next holds the kept connection its worker (pid first) has
// closed.
func closedKeptConnection(t *testing.T) (tp *testPool, first int) {
	t.Helper()
	tp = newTestPool(t, "closer", func(c *conf.Pool) { c.Workers, c.MaxWorkers = 2, 2 })
	body, err := tp.get(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	first = pidOf(t, body)
	testkit.Eventually(t, "the worker closing its kept connection", func() bool {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		s := tp.idle[len(tp.idle)-1]
		return s.w.proc.Pid() == first && s.conn != nil && s.conn.Closed()
	})
	return tp, first
}
