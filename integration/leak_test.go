package integration

// File descriptors: many requests of every kind leave fcgivisor with the
// descriptors it had before them.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNoFDLeak(t *testing.T) {
	t.Parallel()
	in := start(t, options{})
	pools := availableLangs()

	// Warm up: every slot of every pool busy at once, so that every
	// per-slot FastCGI connection fcgivisor keeps is open before counting.
	var wg sync.WaitGroup
	var warmErr atomic.Value
	for _, l := range pools {
		p := defaultPool(l)
		for range p.workers * p.concurrency {
			wg.Go(func() {
				resp, body, err := in.do(context.Background(), http.MethodGet, l.path("/warm?sleep=300"), nil, nil)
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%d %q", resp.StatusCode, clip(body))
				}
				if err != nil {
					warmErr.Store(err)
				}
			})
		}
	}
	wg.Wait()
	if err, _ := warmErr.Load().(error); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	runLoad(t, in, pools, 200, 8)
	base := in.settledFDs(t)

	const n = 2000
	t0 := time.Now()
	runLoad(t, in, pools, n, 8)
	took := time.Since(t0)
	t.Logf("%d requests in %v", n, took)
	if took > 60*time.Second {
		t.Errorf("%d requests took %v", n, took)
	}

	const slack = 2
	after := in.settledFDs(t)
	if after > base+slack {
		t.Errorf("fcgivisor has %d fds after %d requests, %d before (slack %d): a leak\nbefore: %s\nafter: %s",
			after, n, base, slack, in.baseFDs, fdList(in.pid))
	}
}

// runLoad sends n requests of mixed kinds across the pools, conc at a time,
// and fails t on any unexpected answer.
func runLoad(t *testing.T, in *instance, pools []lang, n, conc int) {
	t.Helper()
	type kind struct {
		method, path string
		body         []byte
		code         int
		check        func([]byte) bool
	}
	post := []byte(strings.Repeat("0123456789abcdef", 64)) // 1 KiB
	kinds := func(l lang) []kind {
		return []kind{
			{"GET", l.path("/"), nil, 200, func(b []byte) bool { return string(b) == "hello from "+l.name+"\n" }},
			{"POST", l.path("/e?echo"), post, 200, func(b []byte) bool { return string(b) == string(post) }},
			{"GET", l.path("/z?size=100000"), nil, 200, func(b []byte) bool { return len(b) == 100000 && b[99999] == byte('a'+99999%26) }},
			{"GET", l.path("/s?status=404"), nil, 404, func(b []byte) bool { return string(b) == "status 404\n" }},
			{"GET", l.path("/v?vars"), nil, 200, func(b []byte) bool { return strings.Contains(string(b), "REDIRECT_STATUS=200\n") }},
		}
	}
	var next atomic.Int64
	var failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr string
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				l := pools[i%len(pools)]
				ks := kinds(l)
				k := ks[(i/len(pools))%len(ks)]
				var r io.Reader
				if k.body != nil {
					r = bytes.NewReader(k.body)
					if i%2 == 0 {
						r = struct{ io.Reader }{r} // half of them chunked
					}
				}
				resp, body, err := in.doReader(ctx, k.method, k.path, r, nil)
				if err == nil && (resp.StatusCode != k.code || !k.check(body)) {
					err = fmt.Errorf("%s %s: %d %q", k.method, k.path, resp.StatusCode, clip(body))
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == "" {
						firstErr = err.Error()
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("load of %d requests not done within 90s", n)
	}
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d requests failed; first: %s", f, n, firstErr)
	}
}

// settledFDs closes the client's idle connections, waits until fcgivisor
// has closed its side of every one of them (no socket on the HTTP port in
// ESTABLISHED or CLOSE_WAIT), and counts fcgivisor's fds.
func (in *instance) settledFDs(t *testing.T) int {
	t.Helper()
	in.client.CloseIdleConnections()
	if !waitFor(eventTimeout, func() bool { return serverConns(in.port) == 0 }) {
		t.Fatalf("fcgivisor kept %d client connections open after the client closed them", serverConns(in.port))
	}
	n, err := fdCount(in.pid)
	if err != nil {
		t.Fatal(err)
	}
	if in.baseFDs == "" {
		in.baseFDs = fdList(in.pid)
	}
	return n
}

// serverConns counts TCP sockets whose local port is port (fcgivisor's
// side) and that are ESTABLISHED (01) or CLOSE_WAIT (08), from /proc/net/tcp.
func serverConns(port int) int {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 {
			continue
		}
		_, portHex, ok := strings.Cut(fs[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		if fs[3] == "01" || fs[3] == "08" {
			n++
		}
	}
	return n
}

// fdList describes fcgivisor's fds for a failure message.
func fdList(pid int) string {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		fmt.Fprintf(&b, "\n  %s -> %s", e.Name(), target)
	}
	return b.String()
}

// CGI runs (pipes, processes, timers, a killed script, local redirects,
// bodies) leave fcgivisor with the descriptors it had before them.
func TestNoFDLeakCGI(t *testing.T) {
	t.Parallel()
	tr := newCGITree(t)
	in := start(t, options{langs: []string{}, routes: cgiRoute("/cgi-bin/", tr.dir, `timeout = "300ms"`, "max_concurrent = 4", "env = { OUT = "+tomlString(tr.out)+" }")})
	body := bytes.Repeat([]byte("x"), 100<<10)
	type req struct {
		method, path string
		body         []byte
		code         int
	}
	kinds := []req{
		{http.MethodGet, "/cgi-bin/env.sh/a?b=c", nil, 200},
		{http.MethodPost, "/cgi-bin/echo.sh", body, 200},
		{http.MethodGet, "/cgi-bin/stderr.sh", nil, 200},
		{http.MethodGet, "/cgi-bin/location-local.sh", nil, 200},
		{http.MethodGet, "/cgi-bin/status.sh", nil, 404},
		{http.MethodGet, "/cgi-bin/missing.sh", nil, 404},
		{http.MethodGet, "/cgi-bin/badheader.sh", nil, 502},
		{http.MethodGet, "/cgi-bin/sleep.sh?5-leak", nil, 504}, // killed at 300 ms
	}
	load := func(n int) {
		var wg sync.WaitGroup
		var failed atomic.Value
		next := atomic.Int64{}
		for range 4 {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						return
					}
					k := kinds[i%int64(len(kinds))]
					resp, got, err := in.do(context.Background(), k.method, k.path, k.body, nil)
					if err == nil && resp.StatusCode != k.code {
						err = fmt.Errorf("%s %s: %d %q, want %d", k.method, k.path, resp.StatusCode, clip(got), k.code)
					}
					if err != nil {
						failed.Store(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			t.Fatal(err)
		}
	}
	load(40)
	base := in.settledFDs(t)
	load(400)
	const slack = 2
	// Killed scripts are reaped and their pipes closed within stderrGrace.
	var after int
	if !waitFor(5*time.Second, func() bool { after = in.settledFDs(t); return after <= base+slack }) {
		t.Errorf("fcgivisor has %d fds after 400 CGI requests, %d before (slack %d): a leak\nbefore: %s\nafter: %s",
			after, base, slack, in.baseFDs, fdList(in.pid))
	}
}
