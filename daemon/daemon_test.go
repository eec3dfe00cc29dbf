package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/internal/testkit"
	"github.com/fcgivisor/fcgivisor/internal/testlog"
	"github.com/fcgivisor/fcgivisor/signals"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/spawner"
)

// The test binary is the worker: with DAEMON_TEST_WORKER set it serves
// FastCGI on fd 0, answering each request with its pid and the value of
// $GREETING, instead of running the tests.
func TestMain(m *testing.M) {
	if os.Getenv("DAEMON_TEST_WORKER") != "" {
		l, err := net.FileListener(os.Stdin)
		if err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		fcgi.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%d %s", os.Getpid(), os.Getenv("GREETING"))
		}))
		os.Exit(0)
	}
	os.Exit(testkit.RunWithParent(m, &testParent))
}

// testParent is the test process's one Parent (a second is an error).
var testParent *spawner.Parent

// pool is a [pool.NAME] table of the test worker.
type pool struct {
	name     string
	greeting string   // env GREETING: a change starts a new generation
	workers  int      // 1 when 0
	timeout  string   // request_timeout: a change applies live
	command  []string // the test binary when nil
	listen   string   // a public socket's path; "" for none
}

func (p pool) toml() string {
	cmd := p.command
	if cmd == nil {
		exe, _ := os.Executable()
		cmd = []string{exe}
	}
	var quoted []string
	for _, a := range cmd {
		quoted = append(quoted, strconv.Quote(a))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[pool.%s]\ncommand = [%s]\nuser = \"root\"\nscaling = \"static\"\nworkers = %d\n",
		p.name, strings.Join(quoted, ", "), max(p.workers, 1))
	fmt.Fprintf(&b, "env = { DAEMON_TEST_WORKER = \"1\", GREETING = %q }\n", p.greeting)
	if p.timeout != "" {
		fmt.Fprintf(&b, "request_timeout = %q\n", p.timeout)
	}
	if p.listen != "" {
		fmt.Fprintf(&b, "listen = %q\n", "unix:"+p.listen)
	}
	return b.String()
}

// fixture is a config file in a directory of its own, rewritten by write.
type fixture struct {
	t    *testing.T
	dir  string
	path string
	log  *testlog.Buffer
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	return &fixture{t: t, dir: dir, path: filepath.Join(dir, "fcgivisor.toml"), log: &testlog.Buffer{}}
}

// sock is a Unix socket path in the fixture's directory.
func (f *fixture) sock(name string) string { return filepath.Join(f.dir, name+".sock") }

// write writes a config with the given http.listen sockets (by name) and
// pools, one route per pool at /NAME/.
func (f *fixture) write(listen []string, pools ...pool) {
	f.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\nruntime_dir = %q\nshutdown_timeout = \"5s\"\n", filepath.Join(f.dir, "run"))
	fmt.Fprintf(&b, "[admin]\nlisten = %q\n", "unix:"+f.sock("admin"))
	var ls []string
	for _, l := range listen {
		ls = append(ls, strconv.Quote("unix:"+f.sock(l)))
	}
	fmt.Fprintf(&b, "[http]\nlisten = [%s]\n", strings.Join(ls, ", "))
	for _, p := range pools {
		fmt.Fprintf(&b, "[[http.route]]\nprefix = \"/%s/\"\npool = %q\n", p.name, p.name)
	}
	for _, p := range pools {
		b.WriteString(p.toml())
	}
	if err := os.WriteFile(f.path, []byte(b.String()), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) options(actions <-chan signals.Action) Options {
	f.t.Helper()
	cfg, err := conf.Load(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	return Options{
		Path: f.path, Config: cfg, Version: "test", Parent: testParent, Actions: actions,
		Log:        slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Privileged: os.Geteuid() == 0, Pid: os.Getpid(),
		Getenv: func(k string) (string, bool) { return "", false },
	}
}

// start starts an instance on the fixture's file and shuts it down at the
// end of the test.
func (f *fixture) start() *instance {
	f.t.Helper()
	in, err := start(f.options(nil))
	if err != nil {
		f.t.Fatalf("start: %v\n%s", err, f.log)
	}
	f.t.Cleanup(func() { in.shutdown(false) })
	return in
}

// get asks GET /name/ on the listener socket sock and returns the body.
func get(t *testing.T, sock, name string) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
	resp, err := c.Get("http://test/" + name + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /%s/: %s: %s", name, resp.Status, body)
	}
	return string(body), err
}

// loadPools is the pools of a config written by f.write.
func loadPools(t *testing.T, f *fixture) map[string]*conf.Pool {
	t.Helper()
	cfg, err := conf.Load(f.path)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]*conf.Pool)
	for _, pc := range cfg.Pools() {
		m[pc.Name] = pc
	}
	return m
}

func TestPlanPools(t *testing.T) {
	f := newFixture(t)
	f.write([]string{"http"},
		pool{name: "same", greeting: "a"},
		pool{name: "live", greeting: "a", timeout: "10s"},
		pool{name: "renew", greeting: "a"},
		pool{name: "gone", greeting: "a"})
	running := loadPools(t, f)
	f.write([]string{"http"},
		pool{name: "same", greeting: "a"},
		pool{name: "live", greeting: "a", timeout: "20s"},
		pool{name: "renew", greeting: "b"},
		pool{name: "added", greeting: "a"})
	cfg, err := conf.Load(f.path)
	if err != nil {
		t.Fatal(err)
	}
	pl := planPools(running, cfg.Pools())
	check := func(what string, got, want []string) {
		t.Helper()
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	check("keep", pl.keep, []string{"same"})
	check("update", names(pl.update), []string{"live"})
	check("renew", names(pl.renew), []string{"renew"})
	check("start", names(pl.start), []string{"added"})
	check("remove", pl.remove, []string{"gone"})

	// The same file again changes nothing.
	pl = planPools(loadPools(t, f), cfg.Pools())
	check("keep (same file)", pl.keep, []string{"added", "live", "renew", "same"})
	if n := len(pl.update) + len(pl.renew) + len(pl.start) + len(pl.remove); n != 0 {
		t.Errorf("same file: %d changes, want 0: %+v", n, pl)
	}
}

// pidOf is the pid of the worker that answered body.
func pidOf(t *testing.T, body string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.Fields(body)[0])
	if err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	return pid
}

// TestReload drives one reload through every fate a pool can meet and
// every change to the listeners, against real worker processes.
func TestReload(t *testing.T) {
	f := newFixture(t)
	f.write([]string{"kept", "closed"},
		pool{name: "same", greeting: "a"},
		pool{name: "live", greeting: "a", timeout: "10s"},
		pool{name: "renew", greeting: "a"},
		pool{name: "gone", greeting: "a"})
	in := f.start()
	before := make(map[string]*poolRun)
	for name, pr := range in.pools {
		before[name] = pr
	}
	samePid := pidOf(t, mustGet(t, f.sock("kept"), "same"))

	f.write([]string{"kept", "opened"},
		pool{name: "same", greeting: "a"},
		pool{name: "live", greeting: "a", timeout: "20s"},
		pool{name: "renew", greeting: "b"},
		pool{name: "added", greeting: "new"})
	if err := in.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, f.log)
	}

	if in.pools["same"] != before["same"] {
		t.Error("unchanged pool: replaced, want kept")
	}
	if got := pidOf(t, mustGet(t, f.sock("kept"), "same")); got != samePid {
		t.Errorf("unchanged pool: answered by pid %d, want its worker %d", got, samePid)
	}
	if in.pools["live"] != before["live"] {
		t.Error("live change: pool replaced, want updated in place")
	} else if got := in.pools["live"].cfg.RequestTimeout; got != 20*time.Second {
		t.Errorf("live change: request_timeout %v, want 20s", got)
	}
	if in.pools["renew"] == before["renew"] {
		t.Error("env change: pool kept, want a new generation")
	}
	if body := mustGet(t, f.sock("kept"), "renew"); !strings.HasSuffix(body, " b") {
		t.Errorf("new generation answered %q, want the new env (b)", body)
	}
	for _, name := range []string{"renew", "gone"} {
		select {
		case <-before[name].pool.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("pool %q: the old generation did not drain and stop", name)
		}
	}
	if _, ok := in.pools["gone"]; ok {
		t.Error("removed pool is still current")
	}
	if body := mustGet(t, f.sock("opened"), "added"); !strings.HasSuffix(body, " new") {
		t.Errorf("added pool on the opened listener answered %q", body)
	}
	if _, err := get(t, f.sock("closed"), "same"); err == nil {
		t.Error("removed listen address still answers")
	}
	keys := make([]string, 0, len(in.listeners))
	for k := range in.listeners {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"unix " + f.sock("kept"), "unix " + f.sock("opened")}; !slices.Equal(keys, want) {
		t.Errorf("listeners %q, want %q", keys, want)
	}
}

// mustGet is get, failing the test on an error.
func mustGet(t *testing.T, sock, name string) string {
	t.Helper()
	body, err := get(t, sock, name)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestReloadRefused: an invalid file, a listen address that cannot be
// opened, a command that is not installed and a new generation whose
// workers die at start each refuse the reload and leave the running pools
// and listeners as they were.
func TestReloadRefused(t *testing.T) {
	f := newFixture(t)
	f.write([]string{"http"}, pool{name: "a", greeting: "a"})
	in := f.start()
	running := in.pools["a"]
	pid := pidOf(t, mustGet(t, f.sock("http"), "a"))

	refuse := func(what, file, want string) {
		t.Helper()
		if err := os.WriteFile(f.path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		err := in.reload()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: reload error %v, want one naming %q", what, err, want)
		}
		if in.pools["a"] != running || len(in.pools) != 1 {
			t.Errorf("%s: the running pool was replaced", what)
		}
		if got := pidOf(t, mustGet(t, f.sock("http"), "a")); got != pid {
			t.Errorf("%s: answered by pid %d, want the running worker %d", what, got, pid)
		}
	}
	f.write([]string{"http"}, pool{name: "a", greeting: "a"})
	good, _ := os.ReadFile(f.path)
	refuse("unknown key", string(good)+"workerz = 3\n", "workerz")

	// A listen address in a directory that does not exist.
	f.write([]string{"http", "nodir/x"}, pool{name: "a", greeting: "a"})
	bad, _ := os.ReadFile(f.path)
	refuse("listen address", string(bad), "http.listen[1]")
	if len(in.listeners) != 1 {
		t.Errorf("listeners after a refused reload: %d, want 1", len(in.listeners))
	}

	// A command that is not installed (Check).
	f.write([]string{"http"}, pool{name: "a", greeting: "a", command: []string{"/nonexistent-fcgivisor/worker"}})
	bad, _ = os.ReadFile(f.path)
	refuse("missing command", string(bad), f.path+": pool.a.command: /nonexistent-fcgivisor/worker: no such file")

	// A live change to a beside the broken new generation of b: the
	// refused reload applies neither.
	f.write([]string{"http"}, pool{name: "a", greeting: "a"}, pool{name: "b", greeting: "a"})
	if err := in.reload(); err != nil {
		t.Fatal(err)
	}
	running = in.pools["a"]
	f.write([]string{"http"}, pool{name: "a", greeting: "a", timeout: "33s"}, pool{name: "b", greeting: "b", command: []string{"/bin/false"}})
	if err := in.reload(); err == nil || !strings.Contains(err.Error(), "died at start") {
		t.Errorf("workers die at start: reload error %v, want one naming \"died at start\"", err)
	}
	if got := in.pools["a"].cfg.RequestTimeout; got == 33*time.Second {
		t.Error("a refused reload applied its live change to another pool")
	}
	if in.pools["a"] != running {
		t.Error("a refused reload replaced another pool")
	}
}

// TestRunLoop drives Run through its requests: a reload by signal, one by
// the admin endpoint, a reopen of the log file, then a stop; Run returns
// nil, and the pid file and every worker are gone.
func TestRunLoop(t *testing.T) {
	f := newFixture(t)
	f.write([]string{"http"}, pool{name: "a", greeting: "a"})
	pidFile := filepath.Join(f.dir, "fcgivisor.pid")
	text, _ := os.ReadFile(f.path)
	text = bytes.Replace(text, []byte("[server]\n"), []byte("[server]\npid_file = "+strconv.Quote(pidFile)+"\n"), 1)
	if err := os.WriteFile(f.path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	actions := make(chan signals.Action)
	o := f.options(actions)
	logPath := filepath.Join(f.dir, "log")
	lf, err := OpenLogFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	o.LogFile = lf
	done := make(chan error, 1)
	go func() { done <- Run(o) }()

	var pid int
	testkit.Eventually(t, "the front answers", func() bool {
		body, err := get(t, f.sock("http"), "a")
		if err == nil {
			pid = pidOf(t, body)
		}
		return err == nil
	})
	if got, _ := os.ReadFile(pidFile); string(got) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("pid file holds %q", got)
	}
	send := func(a signals.Action) {
		select {
		case actions <- a:
		case <-time.After(10 * time.Second):
			t.Fatalf("the loop did not take %v", a)
		}
	}
	f.write([]string{"http"}, pool{name: "a", greeting: "by-signal"})
	send(signals.Reload)
	testkit.Eventually(t, "the reload by signal", func() bool { return strings.HasSuffix(mustGet(t, f.sock("http"), "a"), " by-signal") })

	f.write([]string{"http"}, pool{name: "a", greeting: "by-admin"})
	if err := postAdmin(f.sock("admin"), "/reload"); err != nil {
		t.Fatalf("POST /reload: %v", err)
	}
	if body := mustGet(t, f.sock("http"), "a"); !strings.HasSuffix(body, " by-admin") {
		t.Errorf("after POST /reload: %q", body)
	}

	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	send(signals.Reopen)
	testkit.Eventually(t, "the log file reopened", func() bool { return strings.Contains(f.log.String(), "log file reopened") })
	fmt.Fprintln(lf, "after the reopen")
	if b, err := os.ReadFile(logPath); err != nil || string(b) != "after the reopen\n" {
		t.Errorf("log_file after SIGUSR1: %q, %v; want a new file with what was written since", b, err)
	}

	send(signals.Stop)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after a stop")
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file after the stop: %v, want it removed", err)
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("worker %d after the stop: kill 0 = %v, want ESRCH", pid, err)
	}
}

func postAdmin(sock, path string) error {
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := c.Post("http://admin"+path, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return nil
}

// TestStartFails: a start that fails (here, the admin address is taken)
// returns the error naming the key and leaves nothing open: the http
// socket it had opened is gone, and another start on the same file works.
func TestStartFails(t *testing.T) {
	f := newFixture(t)
	f.write([]string{"http"}, pool{name: "a", greeting: "a"})
	taken, err := net.Listen("unix", f.sock("admin"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = start(f.options(nil))
	if err == nil || !strings.Contains(err.Error(), "admin.listen") {
		t.Fatalf("start with the admin socket taken: %v, want an admin.listen error", err)
	}
	if _, err := os.Stat(f.sock("http")); !os.IsNotExist(err) {
		t.Errorf("http socket after a failed start: %v, want it closed and removed", err)
	}
	taken.Close()
	f.start()
	if _, err := get(t, f.sock("http"), "a"); err != nil {
		t.Errorf("a second start: %v", err)
	}
}

// TestStartChecks: start refuses what Check refuses before it opens
// anything, and an unusable runtime_dir is named by its key.
func TestStartChecks(t *testing.T) {
	f := newFixture(t)
	f.write([]string{"http"}, pool{name: "a", greeting: "a", command: []string{"/nonexistent-fcgivisor/worker"}})
	_, err := start(f.options(nil))
	if want := f.path + ": pool.a.command: /nonexistent-fcgivisor/worker: no such file"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("start with a missing command: %v, want an error starting %q", err, want)
	}
	for _, p := range []string{filepath.Join(f.dir, "run"), f.sock("http"), f.sock("admin")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after a start refused by Check: %v, want it never made", p, err)
		}
	}

	f.write([]string{"http"}, pool{name: "a", greeting: "a"})
	rt, err := socket.OpenRuntimeDir(filepath.Join(f.dir, "run"))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	_, err = start(f.options(nil))
	if want := f.path + ": server.runtime_dir: "; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("start on a runtime_dir in use: %v, want an error starting %q that says it is in use", err, want)
	}
}

// TestHideSystemd: workers cannot inherit systemd's variables.
func TestHideSystemd(t *testing.T) {
	env := map[string]string{"LISTEN_FDS": "1", "NOTIFY_SOCKET": "/x", "PATH": "/bin"}
	getenv := hideSystemd(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	for _, k := range []string{"LISTEN_FDS", "NOTIFY_SOCKET", "LISTEN_PID", "WATCHDOG_USEC"} {
		if v, ok := getenv(k); ok {
			t.Errorf("%s = %q passed on to workers", k, v)
		}
	}
	if v, ok := getenv("PATH"); !ok || v != "/bin" {
		t.Errorf("PATH = %q, %v; want /bin", v, ok)
	}
}
