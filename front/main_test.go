package front

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/internal/testlog"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// The test binary is a FastCGI worker too: with FRONT_TEST_WORKER set it
// serves testWorker on fd 0 instead of running the tests.
func TestMain(m *testing.M) {
	if os.Getenv("FRONT_TEST_WORKER") != "" {
		l, err := net.FileListener(os.Stdin)
		if err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(2)
		}
		fcgi.Serve(l, http.HandlerFunc(testWorker))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testWorker answers by the first query key:
//
//	?header=N  about N bytes of header lines (X-Big: 58 × "a"), body "body"
//	?sleep=MS  sleeps MS ms before its header, then its pid
//	?stall     its header and "partial", flushed, then sleeps a minute
//	(else)     its pid
func testWorker(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case q.Has("header"):
		n, _ := strconv.Atoi(q.Get("header"))
		line := strings.Repeat("a", 58) // "X-Big: " + 58 + CRLF = 67 bytes
		vals := make([]string, n/67+1)
		for i := range vals {
			vals[i] = line
		}
		w.Header()["X-Big"] = vals
		if _, err := w.Write([]byte("body")); err != nil {
			fmt.Fprintln(os.Stderr, "header: write:", err)
		}
	case q.Has("sleep"):
		ms, _ := strconv.Atoi(q.Get("sleep"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprint(w, os.Getpid())
	case q.Has("stall"):
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		time.Sleep(time.Minute)
	default:
		fmt.Fprint(w, os.Getpid())
	}
}

// workerFront is a front with one pool of one testWorker behind it, at
// /w/, and a cgi route at /cgi-bin/ for the scripts in dir (when not "").
type workerFront struct {
	srv  *Server
	cfg  *conf.Config
	pool *supervisor.Pool
	log  *testlog.Buffer
	url  string // http://127.0.0.1:PORT, served by srv.Serve
}

// startWorkerFront starts it, serving on a listener of its own;
// httpLines are more [http] lines, poolLines are more [pool.w] lines. The pool
// and the front are stopped at the end of the test, and every process
// they started is reaped by then.
func startWorkerFront(t testing.TB, dir string, httpLines, poolLines []string) *workerFront {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run, err := os.MkdirTemp("", "fv") // worker socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\nruntime_dir = %q\n[http]\nlisten = []\n%s\n", run, strings.Join(httpLines, "\n"))
	fmt.Fprintf(&b, "[[http.route]]\nprefix = \"/w/\"\npool = \"w\"\n")
	if dir != "" {
		fmt.Fprintf(&b, "[[http.route]]\nprefix = \"/cgi-bin/\"\ncgi = %q\ntimeout = \"5s\"\n", dir)
	}
	fmt.Fprintf(&b, "[pool.w]\ncommand = [%q]\nenv = { FRONT_TEST_WORKER = \"1\" }\nstop_timeout = \"2s\"\n%s\n",
		exe, strings.Join(poolLines, "\n"))
	cfg, err := conf.Parse(filepath.Join(run, "test.toml"), []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	rt, err := socket.OpenRuntimeDir(cfg.Server.RuntimeDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	logs := &testlog.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	pool := supervisor.NewPool(cfg.Pool["w"], supervisor.Env{Parent: testParent(), Runtime: rt, Logger: log,
		Getenv: func(string) (string, bool) { return "", false }})
	ctx, cancel := context.WithCancel(context.Background())
	go pool.Run(ctx, ctx)
	t.Cleanup(func() { cancel(); <-pool.Done() })
	<-pool.Ready()
	if pool.StartFailed() {
		t.Fatalf("the test worker died at start\n%s", logs)
	}
	srv, err := New(cfg, map[string]*supervisor.Pool{"w": pool}, Options{Log: log, Software: "fcgivisor/test", Parent: testParent()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve([]net.Listener{l})
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return &workerFront{srv: srv, cfg: cfg, pool: pool, log: logs, url: "http://" + l.Addr().String()}
}

// pid is the pid of the pool's one live worker, 0 when none.
func (f *workerFront) pid() int {
	for _, w := range f.pool.Status().Workers {
		if w.State != "retiring" {
			return w.Pid
		}
	}
	return 0
}
