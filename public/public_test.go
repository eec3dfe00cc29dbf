package public

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/fastcgi"
	"github.com/fcgivisor/fcgivisor/internal/testkit"
	"github.com/fcgivisor/fcgivisor/internal/testlog"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/spawner"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// The test binary is the worker: with PUBLIC_TEST_WORKER set it serves
// FastCGI on fd 0 (with fastcgi.ServerConn), answering each request with
// the params it received, in order, and its body.
func TestMain(m *testing.M) {
	if os.Getenv("PUBLIC_TEST_WORKER") != "" {
		worker()
		os.Exit(0)
	}
	os.Exit(testkit.RunWithParent(m, &testParent))
}

// testParent is the test process's one Parent (a second is an error).
var testParent *spawner.Parent

func worker() {
	ln, err := net.FileListener(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go fastcgi.NewServerConn(nc, fastcgi.ServerOptions{}).Serve(context.Background(), workerHandler)
	}
}

// workerHandler answers with Status HTTP_X_STATUS (200 when absent) after
// sleeping HTTP_X_SLEEP milliseconds; the answer lists the params as
// NAME=VALUE lines (quoted), then the body.
func workerHandler(ctx context.Context, w *fastcgi.ResponseWriter, r *fastcgi.ServerRequest) (uint32, error) {
	status := "200 OK"
	for _, p := range r.Params {
		switch p.Name {
		case "HTTP_X_STATUS":
			status = p.Value
		case "HTTP_X_SLEEP":
			ms, _ := strconv.Atoi(p.Value)
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return 0, err
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "Status: %s\r\nContent-Type: text/plain\r\n\r\n", status)
	for _, p := range r.Params {
		fmt.Fprintf(&out, "%q=%q\n", p.Name, p.Value)
	}
	fmt.Fprintf(&out, "body=%s", body)
	w.WriteStderr([]byte("worker stderr line"))
	_, err = w.Write(out.Bytes())
	return 42, err
}

func TestStatusOf(t *testing.T) {
	long := strings.Repeat("x", 1000)
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\nbody", 404},
		{"Content-Type: text/html\r\nX-A: b\r\nStatus: 302 Found\r\n\r\n", 302},
		{"Content-Type: text/html\r\n\r\nStatus: 500 In The Body\r\n", 200},
		{"Content-Type: text/html\r\n\r\n", 200},
		{"status: 201 created\n\nbody", 201},
		{"STATUS:503\n\n", 503},
		{"X: y\nStatus: 410 Gone\n\n", 410},
		{"Status:    418 I'm a teapot  \r\n\r\n", 418},
		{"Status: 99\r\n\r\n", 200},
		{"Status: 099 x\r\n\r\n", 200},
		{"Status: abc\r\n\r\n", 200},
		{"Status: 1000\r\n\r\n", 100}, // three digits are read
		{"Statu: 404\r\n\r\n", 200},
		{"X-Status: 404\r\n\r\n", 200},
		{"", 200},
		{"\r\n", 200},
		// Cut: the first bytes of an answer only.
		{"Content-Type: text/html\r\nSta", 200},
		{"Content-Type: text/html\r\nStatus: 40", 200},
		{"Status: 404", 404},
		{"Content-Type: text/html\r\nStatus: 404", 404},
		// A header line longer than the look-ahead: given up, 200.
		{"X-Long: " + long + "\r\nStatus: 404\r\n\r\n", 200},
		// An answer longer than the look-ahead, its Status not first.
		{"Content-Type: text/html\r\nStatus: 404 Not Found\r\n\r\n" + long, 404},
		{"X-Powered-By: PHP/8.3\r\nStatus: 503 Service Unavailable\r\nContent-Type: text/html\r\n\r\n" + long + "\nStatus: 200\n", 503},
		{"X: 1\n" + strings.Repeat("Y: 2\n", 100) + "Status: 307\n\n" + long, 307},
	} {
		if got := statusOf([]byte(tc.in)); got != tc.want {
			t.Errorf("statusOf(%.60q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestCGIEnv(t *testing.T) {
	params := []fastcgi.Param{
		{Name: "SCRIPT_FILENAME", Value: "/srv/index.php"},
		{Name: "HTTP_PROXY", Value: "http://evil.example:8080"}, // httpoxy
		{Name: "A=B", Value: "x"},
		{Name: "NUL\x00NAME", Value: "x"},
		{Name: "", Value: "empty name"},
		{Name: "NUL_VALUE", Value: "a\x00b"},
		{Name: "PATH_INFO", Value: "/info"},
		{Name: "EMPTY", Value: ""},
		{Name: "WITH_EQ", Value: "a=b=c"},
		{Name: "HTTP_HOST", Value: "example.test"},
	}
	extra := []string{"PATH_INFO=/from-pool", "PATH=/usr/bin:/bin", "HTTP_PROXY=http://pool-proxy:3128", "PHPRC=/etc/php", "EMPTY=pool"}
	got := cgiEnv(params, extra)
	want := []string{
		"SCRIPT_FILENAME=/srv/index.php",
		"PATH_INFO=/info",
		"EMPTY=",
		"WITH_EQ=a=b=c",
		"HTTP_HOST=example.test",
		// The pool's env for names the params do not set; a proxy the
		// pool sets itself is not the client's.
		"PATH=/usr/bin:/bin",
		"HTTP_PROXY=http://pool-proxy:3128",
		"PHPRC=/etc/php",
	}
	if !slices.Equal(got, want) {
		t.Errorf("cgiEnv:\n got %q\nwant %q", got, want)
	}
	if got := cgiEnv(nil, nil); len(got) != 0 {
		t.Errorf("cgiEnv(nil, nil) = %q", got)
	}
	for _, kv := range cgiEnv(params, nil) {
		if strings.HasPrefix(kv, "HTTP_PROXY=") {
			t.Errorf("client's HTTP_PROXY passed: %q", kv)
		}
	}
}

func TestAllowed(t *testing.T) {
	loopback := (&conf.Pool{}).AllowedPrefixes()
	lan := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("2001:db8::/32")}
	tcp := func(ip string) net.Addr {
		a := netip.MustParseAddr(ip)
		return &net.TCPAddr{IP: a.AsSlice(), Port: 40000, Zone: a.Zone()}
	}
	for _, tc := range []struct {
		addr     net.Addr
		prefixes []netip.Prefix
		want     bool
	}{
		{tcp("127.0.0.1"), loopback, true},
		{tcp("127.3.4.5"), loopback, true},
		{tcp("::1"), loopback, true},
		{tcp("::ffff:127.0.0.1"), loopback, true}, // IPv4-mapped, as on a dual-stack socket
		{tcp("10.0.0.1"), loopback, false},
		{tcp("::2"), loopback, false},
		{tcp("10.1.2.3"), lan, true},
		{tcp("::ffff:10.1.2.3"), lan, true},
		{&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 1}, lan, true}, // 16-byte form of an IPv4 address
		{tcp("11.0.0.1"), lan, false},
		{tcp("192.168.1.7"), lan, true},
		{tcp("192.168.1.8"), lan, false},
		{tcp("2001:db8::1"), lan, true},
		{tcp("2001:db8:ffff::1"), lan, true},
		{tcp("2001:db9::1"), lan, false},
		{tcp("fe80::1%eth0"), []netip.Prefix{netip.MustParsePrefix("fe80::/10")}, true}, // a link-local client keeps its zone
		{tcp("fe80::1%eth0"), lan, false},
		{tcp("127.0.0.1"), lan, false},
		{tcp("127.0.0.1"), nil, false},
		{&net.UnixAddr{Name: "@", Net: "unix"}, loopback, false},
	} {
		if got := allowed(tc.addr, tc.prefixes); got != tc.want {
			t.Errorf("allowed(%v, %v) = %v, want %v", tc.addr, tc.prefixes, got, tc.want)
		}
	}
}

// serveOne runs h on a ServerConn over a socket pair and returns a client
// Conn to it.
func serveOne(t *testing.T, h fastcgi.Handler) *fastcgi.Conn {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}
	cc, sc := conn(fds[0]), conn(fds[1])
	done := make(chan struct{})
	go func() {
		defer close(done)
		fastcgi.NewServerConn(sc, fastcgi.ServerOptions{}).Serve(context.Background(), h)
	}()
	c := fastcgi.NewConn(cc)
	t.Cleanup(func() { c.Close(); <-done })
	return c
}

func TestAnswerBytes(t *testing.T) {
	for _, tc := range []struct {
		code int
		want string
	}{
		{502, "Status: 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBad Gateway\n"},
		{503, "Status: 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nService Unavailable\n"},
		{504, "Status: 504 Gateway Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGateway Timeout\n"},
	} {
		c := serveOne(t, func(ctx context.Context, w *fastcgi.ResponseWriter, r *fastcgi.ServerRequest) (uint32, error) {
			return 0, answer(w, tc.code)
		})
		resp, err := c.Do(&fastcgi.Request{Params: []fastcgi.Param{{Name: "REQUEST_METHOD", Value: "GET"}}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp)
		if err != nil {
			t.Fatalf("%d: %v (want REQUEST_COMPLETE)", tc.code, err)
		}
		if string(got) != tc.want {
			t.Errorf("answer(%d):\n got %q\nwant %q", tc.code, got, tc.want)
		}
		if statusOf(got) != tc.code {
			t.Errorf("statusOf(answer(%d)) = %d", tc.code, statusOf(got))
		}
	}
}

// A real pool behind a public socket.

type testSocket struct {
	pool *supervisor.Pool
	sock *Socket
	path string
	log  *testlog.Buffer
}

// startSocket runs a pool of the test worker (one static worker; edit
// changes its settings) and serves it on a Unix socket. The test's
// cleanup shuts both down.
func startSocket(t testing.TB, edit func(*conf.Pool), http *conf.HTTP) *testSocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "fvpub")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt, err := socket.OpenRuntimeDir(filepath.Join(dir, "rt"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	exe, _ := os.Executable()
	path := filepath.Join(dir, "pool.sock")
	cfg := &conf.Pool{
		Name:           "t",
		Command:        []string{exe},
		Env:            map[string]string{"PUBLIC_TEST_WORKER": "1", "GORACE": "atexit_sleep_ms=0"},
		Scaling:        conf.Static,
		Workers:        1,
		MaxWorkers:     1,
		Concurrency:    1,
		RequestTimeout: 10 * time.Second,
		QueueTimeout:   5 * time.Second,
		StopTimeout:    5 * time.Second,
		Listen:         "unix:" + path,
	}
	if edit != nil {
		edit(cfg)
	}
	if http == nil {
		http = &conf.HTTP{IdleTimeout: time.Minute, SendTimeout: time.Minute}
	}
	lb := &testlog.Buffer{}
	log := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pool := supervisor.NewPool(cfg, supervisor.Env{
		Parent: testParent, Runtime: rt, Logger: log,
		Getenv: func(string) (string, bool) { return "", false },
	})
	ctx, cancel := context.WithCancel(context.Background())
	poolDone := make(chan struct{})
	go func() { defer close(poolDone); pool.Run(ctx, context.Background()) }()
	<-pool.Ready()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testSocket{pool: pool, path: path, log: lb}
	ts.sock = Serve(l, pool, cfg, http, Options{Log: log, Parent: testParent})
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := ts.sock.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
		select {
		case <-poolDone:
		case <-time.After(20 * time.Second):
			t.Error("pool did not stop")
		}
		if t.Failed() {
			t.Logf("log:\n%s", lb.String())
		}
	})
	return ts
}

// dial connects to the public socket; the test's cleanup closes the Conn.
func (ts *testSocket) dial(t testing.TB) *fastcgi.Conn {
	t.Helper()
	nc, err := net.Dial("unix", ts.path)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := fastcgi.NewConn(nc)
	t.Cleanup(func() { c.Close() })
	return c
}

// do runs a request on c and returns STDOUT, STDERR and the app status;
// err is what ended STDOUT (nil for REQUEST_COMPLETE).
func do(t *testing.T, c *fastcgi.Conn, req *fastcgi.Request) (stdout, stderr string, appStatus uint32, err error) {
	t.Helper()
	var errb strings.Builder
	req.Stderr = func(p []byte) { errb.Write(p) }
	resp, err := c.Do(req)
	if err != nil {
		return "", "", 0, err
	}
	b, err := io.ReadAll(resp)
	resp.Close()
	return string(b), errb.String(), resp.AppStatus(), err
}

func params(extra ...fastcgi.Param) []fastcgi.Param {
	return append([]fastcgi.Param{
		{Name: "REQUEST_METHOD", Value: "GET"},
		{Name: "REQUEST_URI", Value: "/index.php"},
		{Name: "SCRIPT_FILENAME", Value: "/srv/index.php"},
	}, extra...)
}

func (ts *testSocket) busy() int { return ts.pool.Status().BusySlots }

func TestSocketPassesRequestThrough(t *testing.T) {
	ts := startSocket(t, nil, nil)
	c := ts.dial(t)
	ps := params(
		fastcgi.Param{Name: "CONTENT_LENGTH", Value: "6"},
		fastcgi.Param{Name: "HTTP_X_STATUS", Value: "201 Created"},
		fastcgi.Param{Name: "DUP", Value: "1"},
		fastcgi.Param{Name: "", Value: "empty name"},
		fastcgi.Param{Name: "DUP", Value: "2"},
		fastcgi.Param{Name: "HTTP_X_LONG", Value: strings.Repeat("v", 5000)},
		fastcgi.Param{Name: "HTTP_PROXY", Value: "passed to a worker as sent"},
	)
	var want strings.Builder
	want.WriteString("Status: 201 Created\r\nContent-Type: text/plain\r\n\r\n")
	for _, p := range ps {
		fmt.Fprintf(&want, "%q=%q\n", p.Name, p.Value)
	}
	want.WriteString("body=posted")
	for i := range 2 {
		stdout, stderr, appStatus, err := do(t, c, &fastcgi.Request{Params: ps, Body: strings.NewReader("posted"), KeepConn: true})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if stdout != want.String() {
			t.Fatalf("request %d: the worker's answer changed on the way:\n got %q\nwant %q", i, stdout, want.String())
		}
		if stderr != "worker stderr line" || appStatus != 42 {
			t.Errorf("request %d: stderr %q, app status %d; want the worker's", i, stderr, appStatus)
		}
		// The kept connection idles without a slot.
		testkit.Eventually(t, "0 busy slots", func() bool { return ts.busy() == 0 })
		if c.Closed() {
			t.Fatal("kept connection closed")
		}
	}
	st := ts.pool.Status()
	if st.Totals.Responses[201] != 2 {
		t.Errorf("responses by code %v, want 2 × 201", st.Totals.Responses)
	}
	vals, err := c.GetValues("FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS", "OTHER")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(vals) != "map[FCGI_MAX_CONNS:1 FCGI_MAX_REQS:1 FCGI_MPXS_CONNS:0]" {
		t.Errorf("GET_VALUES: %v", vals)
	}

	// Without FCGI_KEEP_CONN the connection closes after the answer.
	c2 := ts.dial(t)
	if _, _, _, err := do(t, c2, &fastcgi.Request{Params: params()}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the connection closed", c2.Closed)
}

func TestSocketQueueTimeout503(t *testing.T) {
	ts := startSocket(t, func(c *conf.Pool) { c.QueueTimeout = 100 * time.Millisecond }, nil)
	slow := make(chan error, 1)
	c1 := ts.dial(t)
	go func() {
		resp, err := c1.Do(&fastcgi.Request{Params: params(fastcgi.Param{Name: "HTTP_X_SLEEP", Value: "1500"})})
		if err == nil {
			_, err = io.ReadAll(resp)
		}
		slow <- err
	}()
	testkit.Eventually(t, "the worker busy", func() bool { return ts.busy() == 1 })
	c := ts.dial(t)
	start := time.Now()
	stdout, _, appStatus, err := do(t, c, &fastcgi.Request{Params: params(), KeepConn: true})
	if err != nil {
		t.Fatalf("503 answer: %v, want REQUEST_COMPLETE", err)
	}
	const want = "Status: 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nService Unavailable\n"
	if stdout != want || appStatus != 0 {
		t.Errorf("answer %q, app status %d; want %q, 0", stdout, appStatus, want)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 1200*time.Millisecond {
		t.Errorf("answered after %v, want about queue_timeout (100ms)", d)
	}
	if err := <-slow; err != nil {
		t.Errorf("the slow request: %v", err)
	}
	// The connection goes on.
	if stdout, _, _, err := do(t, c, &fastcgi.Request{Params: params()}); err != nil || !strings.HasPrefix(stdout, "Status: 200 OK") {
		t.Errorf("next request: %q, %v", stdout, err)
	}
	if n := ts.pool.Status().Totals.Responses[503]; n != 1 {
		t.Errorf("%d 503s counted, want 1", n)
	}
}

func TestSocketRequestTimeout504(t *testing.T) {
	ts := startSocket(t, func(c *conf.Pool) { c.RequestTimeout = 200 * time.Millisecond }, nil)
	c := ts.dial(t)
	stdout, _, _, err := do(t, c, &fastcgi.Request{Params: params(fastcgi.Param{Name: "HTTP_X_SLEEP", Value: "5000"}), KeepConn: true})
	if err != nil {
		t.Fatalf("504 answer: %v", err)
	}
	const want = "Status: 504 Gateway Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGateway Timeout\n"
	if stdout != want {
		t.Errorf("answer %q, want %q", stdout, want)
	}
	testkit.Eventually(t, "0 busy slots", func() bool { return ts.busy() == 0 })
}

// An ABORT_REQUEST frees the worker slot and gets END_REQUEST.
func TestSocketAbortFreesSlot(t *testing.T) {
	ts := startSocket(t, nil, nil)
	nc, err := net.Dial("unix", ts.path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	// A request whose worker sleeps, then its abort: by hand, as the
	// client Conn does not send aborts.
	ps := params(fastcgi.Param{Name: "HTTP_X_SLEEP", Value: "10000"})
	var content []byte
	for _, p := range ps {
		content = append(content, byte(len(p.Name)), byte(len(p.Value)))
		content = append(content, p.Name...)
		content = append(content, p.Value...)
	}
	rec := func(typ byte, b []byte) []byte {
		pad := -len(b) & 7
		r := []byte{1, typ, 0, 1, byte(len(b) >> 8), byte(len(b)), byte(pad), 0}
		r = append(r, b...)
		return append(r, make([]byte, pad)...)
	}
	var req []byte
	req = append(req, rec(1, []byte{0, 1, 1, 0, 0, 0, 0, 0})...) // BEGIN, RESPONDER, KEEP_CONN
	req = append(req, rec(4, content)...)
	req = append(req, rec(4, nil)...)
	req = append(req, rec(5, nil)...)
	if _, err := nc.Write(req); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the worker busy", func() bool { return ts.busy() == 1 })
	start := time.Now()
	if _, err := nc.Write(rec(2, nil)); err != nil {
		t.Fatal(err)
	}
	var end []byte
	buf := make([]byte, 4096)
	for {
		n, err := nc.Read(buf)
		end = append(end, buf[:n]...)
		if bytes.Contains(end, []byte{1, 3, 0, 1, 0, 8}) || err != nil {
			break
		}
	}
	if !bytes.Contains(end, []byte{1, 3, 0, 1, 0, 8}) {
		t.Fatalf("no END_REQUEST after ABORT_REQUEST: % x", end)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("END_REQUEST %v after the abort", d)
	}
	testkit.Eventually(t, "0 busy slots", func() bool { return ts.busy() == 0 })
}

// A client that goes away while its request runs frees the worker slot.
func TestSocketClientGoneFreesSlot(t *testing.T) {
	ts := startSocket(t, nil, nil)
	c := ts.dial(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Do(&fastcgi.Request{Params: params(fastcgi.Param{Name: "HTTP_X_SLEEP", Value: "10000"}), KeepConn: true})
		done <- err
	}()
	testkit.Eventually(t, "the worker busy", func() bool { return ts.busy() == 1 })
	c.Close()
	<-done
	start := time.Now()
	testkit.Eventually(t, "0 busy slots", func() bool { return ts.busy() == 0 })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("slot freed %v after the client went away", d)
	}
	// And the pool serves the next client.
	if stdout, _, _, err := do(t, ts.dial(t), &fastcgi.Request{Params: params()}); err != nil || !strings.HasPrefix(stdout, "Status: 200 OK") {
		t.Errorf("next request: %q, %v", stdout, err)
	}
}

// A TCP client not in allowed_clients is closed at accept.
func TestSocketAllowedClients(t *testing.T) {
	ts := startSocket(t, nil, nil)
	for _, tc := range []struct {
		clients []string
		ok      bool
	}{
		{nil, true}, // loopback only
		{[]string{"10.0.0.0/8"}, false},
		{[]string{"10.0.0.0/8", "127.0.0.1"}, true},
	} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := &conf.Pool{Name: "t", MaxWorkers: 1, Concurrency: 1, Listen: l.Addr().String(), AllowedClients: tc.clients}
		s := Serve(l, ts.pool, cfg, &conf.HTTP{IdleTimeout: time.Minute, SendTimeout: time.Minute}, Options{Log: slog.New(slog.NewTextHandler(ts.log, nil)), Parent: testParent})
		nc, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		c := fastcgi.NewConn(nc)
		_, _, _, err = do(t, c, &fastcgi.Request{Params: params()})
		if tc.ok && err != nil {
			t.Errorf("allowed_clients %q: %v", tc.clients, err)
		}
		if !tc.ok && (err == nil || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))) {
			t.Errorf("allowed_clients %q: %v, want the connection closed", tc.clients, err)
		}
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		cancel()
	}
	if !strings.Contains(ts.log.String(), "client not in allowed_clients") {
		t.Error("refused client not logged")
	}
}

// TestSocketMaxConnections: with http.max_connections 2, a third client
// waits in the backlog until a place frees, and a kept connection idle
// between two requests is closed to make room for it, as on the front's
// listeners.
func TestSocketMaxConnections(t *testing.T) {
	ts := startSocket(t, nil, &conf.HTTP{IdleTimeout: time.Minute, SendTimeout: time.Minute, MaxConnections: 2})
	// A: kept and idle after one request. B: connected, no request yet.
	a := ts.dial(t)
	if _, _, _, err := do(t, a, &fastcgi.Request{Params: params(), KeepConn: true}); err != nil {
		t.Fatal(err)
	}
	b := ts.dial(t)
	// C: over the limit. Its request is served once A (idle) is closed;
	// B, which has not sent a request yet, keeps its place.
	c := ts.dial(t)
	if _, _, _, err := do(t, c, &fastcgi.Request{Params: params()}); err != nil {
		t.Fatalf("the client over max_connections: %v", err)
	}
	testkit.Eventually(t, "the idle kept connection closed", a.Closed)
	if b.Closed() {
		t.Error("the connection that had not sent a request yet was closed")
	}
	if _, _, _, err := do(t, b, &fastcgi.Request{Params: params()}); err != nil {
		t.Errorf("B after C: %v", err)
	}
	ts.sock.mu.Lock()
	n := len(ts.sock.conns)
	ts.sock.mu.Unlock()
	if n > 2 {
		t.Errorf("%d connections open, max_connections is 2", n)
	}
}
