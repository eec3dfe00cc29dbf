package integration

// The harness: TestMain builds fcgivisor and the example workers once;
// start runs `fcgivisor run` on a config of its own (runtime_dir, port) and
// registers a cleanup that stops it with SIGTERM, asserts exit status 0, no
// data race, and that no process fcgivisor ever had as a descendant outlives
// it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/internal/testlog"
	"golang.org/x/sys/unix"
)

// Paths fixed by TestMain.
var (
	repoRoot     string // the module root
	fcgivisorBin string
	builtVersion string // the version linked into fcgivisorBin; "" when prebuilt
	goWorkerBin  string
	cWorkerBin   string
	cWorkerErr   string // why the C worker cannot run: missing library (skip) ...
	cWorkerSkip  bool   // ... or a failed build (fail)
	phpCGI       string
	phpSkip      string
	perlBin      string
	perlSkip     string
)

// Deadlines. They bound waits; nothing waits for them to pass.
const (
	startTimeout = 30 * time.Second // config written → HTTP port answers
	stopTimeout  = 30 * time.Second // SIGTERM → exit
	eventTimeout = 15 * time.Second // a log line, a respawn, a process death
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	// Orphans below a fcgivisor under test become our children, so that
	// checkExit sees a worker that outlived it instead of losing it to init.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "prctl(PR_SET_CHILD_SUBREAPER):", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "fcgivisor-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// Workers running as another user (TestPoolRunsAsItsUser) exec the
	// binaries built here, as they would from /usr/local/bin.
	if err := os.Chmod(tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	build := func(what string, args ...string) error {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("build %s: %s: %v\n%s", what, strings.Join(args, " "), err, out)
		}
		return nil
	}
	goTool := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if os.Getenv("GOROOT") == "" {
		if goTool, err = exec.LookPath("go"); err != nil {
			goTool = "/usr/local/go/bin/go"
		}
	}

	if fcgivisorBin = os.Getenv("FCGIVISOR_BIN"); fcgivisorBin == "" {
		fcgivisorBin = filepath.Join(tmp, "fcgivisor")
		builtVersion = "integration-test-version"
		args := []string{goTool, "build", "-o", fcgivisorBin, "-ldflags", "-X main.version=" + builtVersion}
		if raceEnabled {
			args = append(args, "-race")
		}
		if err := build("fcgivisor", append(args, "./cmd/fcgivisor")...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if goWorkerBin = os.Getenv("FCGIVISOR_GO_WORKER"); goWorkerBin == "" {
		goWorkerBin = filepath.Join(tmp, "go-worker")
		if err := build("go worker", goTool, "build", "-o", goWorkerBin, "./examples/go-worker"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if cWorkerBin = os.Getenv("FCGIVISOR_C_WORKER"); cWorkerBin == "" {
		cc, ccErr := exec.LookPath("cc")
		switch _, hdrErr := os.Stat("/usr/include/fcgiapp.h"); {
		case hdrErr != nil:
			cWorkerSkip, cWorkerErr = true, "libfcgi-dev is not installed (/usr/include/fcgiapp.h missing)"
		case ccErr != nil:
			cWorkerSkip, cWorkerErr = true, "no C compiler (cc) in PATH"
		default:
			cWorkerBin = filepath.Join(tmp, "c-worker")
			if err := build("C worker", cc, "-O2", "-Wall", "-o", cWorkerBin, "examples/c-worker/worker.c", "-lfcgi"); err != nil {
				cWorkerErr = err.Error()
			}
		}
	}
	if phpCGI, err = exec.LookPath("php-cgi"); err != nil {
		phpSkip = "php-cgi: " + err.Error()
	}
	if perlBin, err = exec.LookPath("perl"); err != nil {
		perlSkip = "perl: " + err.Error()
	} else if out, err := exec.Command(perlBin, "-MFCGI", "-e1").CombinedOutput(); err != nil {
		perlSkip = fmt.Sprintf("Perl module FCGI (libfcgi-perl): %v: %s", err, bytes.TrimSpace(out))
	}
	return m.Run()
}

// ---------------------------------------------------------------------------
// Languages

// lang is one example worker and the pool and route that serve it.
type lang struct {
	name string // also the pool name and the route prefix /NAME/
}

var langs = []lang{{"go"}, {"c"}, {"perl"}, {"php"}}

// need skips t, with the reason, when the language's runtime is missing,
// and fails it when the worker exists but could not be built.
func (l lang) need(t testing.TB) {
	t.Helper()
	switch l.name {
	case "c":
		if cWorkerSkip {
			t.Skip("C worker: a build tool is not installed: " + cWorkerErr)
		}
		if cWorkerErr != "" {
			t.Fatal(cWorkerErr)
		}
	case "perl":
		if perlSkip != "" {
			t.Skip("not installed: " + perlSkip)
		}
	case "php":
		if phpSkip != "" {
			t.Skip("not installed: " + phpSkip)
		}
	}
}

// eachLang runs f for every language as a parallel subtest named after it;
// need skips (or fails) the languages that cannot run here.
func eachLang(t *testing.T, f func(t *testing.T, l lang)) {
	t.Helper()
	for _, l := range langs {
		t.Run(l.name, func(t *testing.T) {
			l.need(t)
			t.Parallel()
			f(t, l)
		})
	}
}

// availableLangs lists the languages that can run here, in langs' order.
func availableLangs() []lang {
	return slices.DeleteFunc(slices.Clone(langs), func(l lang) bool { return !l.available() })
}

func (l lang) available() bool {
	switch l.name {
	case "c":
		return cWorkerErr == ""
	case "perl":
		return perlSkip == ""
	case "php":
		return phpSkip == ""
	}
	return true
}

// command is the pool's argv.
func (l lang) command() []string {
	switch l.name {
	case "go":
		return []string{goWorkerBin}
	case "c":
		return []string{cWorkerBin}
	case "perl":
		return []string{perlBin, filepath.Join(repoRoot, "examples/perl-worker/worker.pl")}
	case "php":
		return []string{phpCGI}
	}
	panic("unknown language " + l.name)
}

// path is a URL path served by the language's pool.
func (l lang) path(rest string) string { return "/" + l.name + "/" + strings.TrimPrefix(rest, "/") }

// scriptName and pathInfo are what the route of l makes of l.path("/some/path").
func (l lang) scriptName() string {
	if l.name == "php" {
		return "/index.php" // the route runs a front controller
	}
	return "/" + l.name
}

func (l lang) pathInfo(urlPath string) string {
	if l.name == "php" {
		return urlPath
	}
	return strings.TrimPrefix(urlPath, "/"+l.name)
}

func documentRoot() string { return filepath.Join(repoRoot, "examples/php") }

// ---------------------------------------------------------------------------
// Configs

// poolOpts is one [pool.NAME] table.
type poolOpts struct {
	workers     int
	concurrency int
	env         map[string]string
	inheritEnv  []string
	user        string   // "" means "root": as root, fcgivisor runs workers as root only when told so
	extra       []string // more `key = value` lines, not user
}

// options describe one fcgivisor instance.
type options struct {
	langs      []string                  // pools to configure; default: every available language
	pool       func(l lang, p *poolOpts) // adjusts each pool
	routes     string                    // [[http.route]] blocks placed before the language routes
	pools      string                    // more [pool.NAME] tables, after the language pools
	env        []string                  // added to (or replacing in) fcgivisor's own environment
	runtimeDir string                    // default: a new short temp dir
	docRoot    string                    // http.document_root; default: documentRoot()
	server     []string                  // more [server] lines
	listen     []string                  // more http.listen addresses, after the TCP one start waits on
	http       []string                  // more [http] lines (not listen)
	port       int                       // default: a free one
	// noHTTP turns the HTTP front off ([http] listen = [], no language
	// routes): the pools are reached on their own listen sockets (a
	// `listen = ...` line in poolOpts.extra), and start waits for the
	// "fcgivisor running" log record instead of an HTTP answer.
	noHTTP bool
	// launcher is argv run in front of `fcgivisor run -c CONF` (it must
	// exec fcgivisor in its place, e.g. systemd-socket-activate ... --).
	launcher []string
	// ready, when set, replaces start's readiness wait: start polls it
	// until it returns nil.
	ready func(in *instance) error
}

func (o *options) langList() []lang {
	ls := availableLangs()
	if o.langs != nil {
		ls = slices.DeleteFunc(ls, func(l lang) bool { return !slices.Contains(o.langs, l.name) })
	}
	return ls
}

// oneSlot adjusts every pool to one worker with one slot, plus lines (more
// `key = value` lines): tests that need to know which request waits.
func oneSlot(lines ...string) func(lang, *poolOpts) {
	return func(_ lang, p *poolOpts) {
		p.workers, p.concurrency = 1, 1
		p.extra = append(p.extra, lines...)
	}
}

func defaultPool(l lang) poolOpts {
	p := poolOpts{workers: 2, concurrency: 1}
	if l.name == "go" {
		p = poolOpts{workers: 1, concurrency: 8}
	}
	if l.name == "php" {
		// php-cgi exits after 500 requests unless told otherwise.
		p.env = map[string]string{"PHP_FCGI_MAX_REQUESTS": "0"}
	}
	return p
}

func tomlString(s string) string { return strconv.Quote(s) }

func tomlStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = tomlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// renderConfig writes the TOML for o with the given runtime dir and port.
func renderConfig(o *options, runtimeDir string, port int) string {
	var b strings.Builder
	level := "info"
	if v := os.Getenv("FCGIVISOR_TEST_LOG_LEVEL"); v != "" {
		level = v // debug, to see why a test failed
	}
	fmt.Fprintf(&b, "[server]\nruntime_dir = %s\nshutdown_timeout = \"10s\"\nlog_level = %s\nlog_format = \"json\"\n", tomlString(runtimeDir), tomlString(level))
	for _, l := range o.server {
		b.WriteString(l + "\n")
	}
	docRoot := o.docRoot
	if docRoot == "" {
		docRoot = documentRoot()
	}
	listen := append([]string{fmt.Sprintf("127.0.0.1:%d", port)}, o.listen...)
	if o.noHTTP {
		listen = []string{}
	}
	fmt.Fprintf(&b, "\n[http]\nlisten = %s\ndocument_root = %s\n", tomlStrings(listen), tomlString(docRoot))
	for _, l := range o.http {
		b.WriteString(l + "\n")
	}
	if o.routes != "" {
		b.WriteString("\n" + o.routes + "\n")
	}
	for _, l := range o.langList() {
		if o.noHTTP {
			break
		}
		fmt.Fprintf(&b, "\n[[http.route]]\nprefix = %s\n", tomlString("/"+l.name+"/"))
		if l.name == "php" {
			b.WriteString("script = \"/index.php\"\n")
		}
		fmt.Fprintf(&b, "pool = %s\n", tomlString(l.name))
	}
	for _, l := range o.langList() {
		p := defaultPool(l)
		if o.pool != nil {
			o.pool(l, &p)
		}
		fmt.Fprintf(&b, "\n[pool.%s]\ncommand = %s\nworkers = %d\nconcurrency = %d\n", l.name, tomlStrings(l.command()), p.workers, p.concurrency)
		if len(p.env) > 0 {
			keys := make([]string, 0, len(p.env))
			for k := range p.env {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var kv []string
			for _, k := range keys {
				kv = append(kv, k+" = "+tomlString(p.env[k]))
			}
			fmt.Fprintf(&b, "env = { %s }\n", strings.Join(kv, ", "))
		}
		if p.inheritEnv != nil {
			fmt.Fprintf(&b, "inherit_env = %s\n", tomlStrings(p.inheritEnv))
		}
		for _, e := range p.extra {
			b.WriteString(e + "\n")
		}
		user := p.user
		if user == "" {
			user = "root"
		}
		fmt.Fprintf(&b, "user = %s\n", tomlString(user))
	}
	if o.pools != "" {
		b.WriteString("\n" + o.pools + "\n")
	}
	return b.String()
}

// shortTempDir is a new directory under os.TempDir: worker socket paths
// must stay under 108 bytes, and t.TempDir() paths can be long.
func shortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "fv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ---------------------------------------------------------------------------
// Output capture

// records parses the JSON log records in text; other lines are skipped.
func records(text string) []map[string]any {
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			recs = append(recs, m)
		}
	}
	return recs
}

// ---------------------------------------------------------------------------
// Processes

// procID names one process: a pid and its start time, so a reused pid is
// not mistaken for the process we saw.
type procID struct {
	pid   int
	start string
	argv  []string
}

// procStat reads state, ppid and start time from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, start string, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, "", err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, "", fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, 0, "", fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0][0], ppid, f[19], nil
}

func procArgv(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

func identify(pid int) (procID, bool) {
	state, _, start, err := procStat(pid)
	if err != nil || state == 'Z' || state == 'X' {
		return procID{}, false
	}
	return procID{pid: pid, start: start, argv: procArgv(pid)}, true
}

// alive reports whether p still runs: its pid exists with the same start
// time and is not a zombie (a zombie is dead; its parent has not reaped it).
func (p procID) alive() bool {
	state, _, start, err := procStat(p.pid)
	return err == nil && start == p.start && state != 'Z' && state != 'X'
}

// exists reports whether p still has a /proc entry, zombie or not.
func (p procID) exists() bool {
	_, _, start, err := procStat(p.pid)
	return err == nil && start == p.start
}

func (p procID) String() string {
	return fmt.Sprintf("pid %d (%s)", p.pid, strings.Join(p.argv, " "))
}

// children lists the live (non-zombie) children of pid by scanning /proc.
func children(pid int) []procID {
	ents, _ := os.ReadDir("/proc")
	var out []procID
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, ppid, start, err := procStat(c)
		if err != nil || ppid != pid || state == 'Z' || state == 'X' {
			continue
		}
		out = append(out, procID{pid: c, start: start, argv: procArgv(c)})
	}
	return out
}

// descendants lists every live process below pid.
func descendants(pid int) []procID {
	var out []procID
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children(p) {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

func fdCount(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// waitFor polls cond until it holds or timeout passes. It is for states
// only the kernel can tell (a process died, a port answers); the poll is
// short and bounded.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Instances

// instance is one running `fcgivisor run`.
type instance struct {
	t          testing.TB
	opts       options
	cmd        *exec.Cmd
	pid        int
	port       int
	base       string // http://127.0.0.1:PORT
	runtimeDir string
	configPath string
	out        *testlog.Buffer // fcgivisor's stdout and stderr
	client     *http.Client
	transport  *http.Transport

	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done

	mu       sync.Mutex
	seen     map[int]procID // every descendant observed
	signaled bool           // a stop signal was sent by the test
	killed   bool           // SIGKILLed by the test: any exit status goes
	checked  bool           // exit assertions done

	baseFDs string // TestNoFDLeak: the fds counted first, for the report
}

// start runs fcgivisor on a config built from o, waits until its HTTP port
// answers, and registers the stop-and-check cleanup.
func start(t testing.TB, o options) *instance {
	t.Helper()
	runtimeDir := o.runtimeDir
	if runtimeDir == "" {
		runtimeDir = shortTempDir(t)
	}
	cfgDir := t.TempDir()
	for attempt := 1; ; attempt++ {
		port := o.port
		if port == 0 {
			port = freePort(t)
		}
		in := &instance{
			t:          t,
			opts:       o,
			port:       port,
			base:       fmt.Sprintf("http://127.0.0.1:%d", port),
			runtimeDir: runtimeDir,
			configPath: filepath.Join(cfgDir, fmt.Sprintf("fcgivisor-%d.toml", attempt)),
			out:        &testlog.Buffer{},
			done:       make(chan struct{}),
			seen:       map[int]procID{},
		}
		if err := os.WriteFile(in.configPath, []byte(renderConfig(&o, runtimeDir, port)), 0o644); err != nil {
			t.Fatal(err)
		}
		in.transport = &http.Transport{
			DisableCompression:  true,
			MaxIdleConnsPerHost: 32,
		}
		in.client = &http.Client{
			Transport:     in.transport,
			Timeout:       60 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		argv := append(slices.Clone(o.launcher), fcgivisorBin, "run", "-c", in.configPath)
		in.cmd = exec.Command(argv[0], argv[1:]...)
		in.cmd.Env = mergeEnv(os.Environ(), append(raceEnv(), o.env...))
		in.cmd.Stdout = in.out
		in.cmd.Stderr = in.out
		// If the test binary dies, fcgivisor dies with it (and takes its
		// workers along, which is what the product promises).
		in.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := in.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		in.pid = in.cmd.Process.Pid
		go func() {
			in.waitErr = in.cmd.Wait()
			close(in.done)
		}()
		t.Cleanup(in.cleanup)
		waitReady := in.waitReady
		switch {
		case o.ready != nil:
			waitReady = in.waitReadyFunc
		case o.noHTTP:
			waitReady = in.waitRunning
		}
		err := waitReady()
		if err == nil {
			in.snapshot()
			return in
		}
		in.checked = true // a failed start is judged here, not in cleanup
		if attempt < 3 && o.port == 0 && strings.Contains(in.out.String(), "address already in use") {
			t.Logf("port %d was taken meanwhile; retrying on another", port)
			continue
		}
		t.Fatalf("fcgivisor did not start: %v\nconfig:\n%s\noutput:\n%s", err, renderConfig(&o, runtimeDir, port), in.out)
	}
}

// raceEnv keeps a -race fcgivisor from sleeping 1 s at every exit (the
// race runtime's atexit_sleep_ms), unless GORACE is set already.
func raceEnv() []string {
	if _, ok := os.LookupEnv("GORACE"); ok {
		return nil
	}
	return []string{"GORACE=atexit_sleep_ms=50"}
}

func mergeEnv(base, extra []string) []string {
	env := slices.Clone(base)
	for _, kv := range extra {
		name, _, _ := strings.Cut(kv, "=")
		env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, name+"=") })
		env = append(env, kv)
	}
	return env
}

// waitReady polls the HTTP port until it answers; an exit ends the wait.
func (in *instance) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	c := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-in.done:
			return fmt.Errorf("exited before serving: %v", in.waitErr)
		default:
		}
		resp, err := c.Get(in.base + "/fcgivisor-readiness-probe")
		if err == nil {
			resp.Body.Close()
			c.CloseIdleConnections()
			return nil
		}
		if time.Now().After(deadline) {
			in.signal(syscall.SIGKILL)
			<-in.done
			return fmt.Errorf("no HTTP answer on %s within %v: %v", in.base, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRunning waits for the "fcgivisor running" log record (logged once
// every listener, the pools' sockets included, is open); an exit ends the
// wait.
func (in *instance) waitRunning() error {
	timeout := time.After(startTimeout)
	for {
		text, changed := in.out.Snapshot()
		for _, r := range records(text) {
			if r["msg"] == "fcgivisor running" {
				return nil
			}
		}
		select {
		case <-changed:
		case <-in.done:
			return fmt.Errorf("exited before logging \"fcgivisor running\": %v", in.waitErr)
		case <-timeout:
			in.signal(syscall.SIGKILL)
			<-in.done
			return fmt.Errorf("no \"fcgivisor running\" log record within %v", startTimeout)
		}
	}
}

// waitReadyFunc polls opts.ready until it returns nil; an exit ends the
// wait.
func (in *instance) waitReadyFunc() error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-in.done:
			return fmt.Errorf("exited before serving: %v", in.waitErr)
		default:
		}
		err := in.opts.ready(in)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			in.signal(syscall.SIGKILL)
			<-in.done
			return fmt.Errorf("not ready within %v: %v", startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// snapshot records every live descendant of fcgivisor, for the leak check.
func (in *instance) snapshot() []procID {
	ds := descendants(in.pid)
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, d := range ds {
		in.seen[d.pid] = d
	}
	return ds
}

// remember records a worker pid learnt from ?pid.
func (in *instance) remember(pid int) {
	if p, ok := identify(pid); ok {
		in.mu.Lock()
		if _, dup := in.seen[pid]; !dup {
			in.seen[pid] = p
		}
		in.mu.Unlock()
	}
}

// poolWorkers lists fcgivisor's live children running l's command.
func (in *instance) poolWorkers(l lang) []procID {
	var ws []procID
	for _, c := range in.snapshot() {
		if slices.Equal(c.argv, l.command()) && in.isChild(c.pid) {
			ws = append(ws, c)
		}
	}
	return ws
}

func (in *instance) isChild(pid int) bool {
	_, ppid, _, err := procStat(pid)
	return err == nil && ppid == in.pid
}

func (in *instance) signal(sig syscall.Signal) {
	if sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGQUIT {
		in.mu.Lock()
		in.signaled = true
		in.mu.Unlock()
	}
	if sig == syscall.SIGKILL {
		in.mu.Lock()
		in.killed = true
		in.mu.Unlock()
	}
	_ = in.cmd.Process.Signal(sig)
}

// checkExit waits for fcgivisor to exit and asserts exit status 0 (unless
// the test SIGKILLed it), no data race report, and that no descendant it
// ever had is alive.
func (in *instance) checkExit(t testing.TB) {
	t.Helper()
	in.mu.Lock()
	if in.checked {
		in.mu.Unlock()
		return
	}
	in.checked = true
	killed := in.killed
	in.mu.Unlock()

	select {
	case <-in.done:
	case <-time.After(stopTimeout):
		in.snapshot()
		t.Errorf("fcgivisor (pid %d) did not exit within %v of SIGTERM; killing it", in.pid, stopTimeout)
		in.cmd.Process.Kill()
		<-in.done
	}
	if !killed {
		if in.waitErr != nil {
			t.Errorf("fcgivisor exited with %v, want status 0", in.waitErr)
		}
	}
	// fcgivisor's own stderr (not its JSON log records, which carry worker
	// output) must not show a race report or a crash.
	for _, line := range strings.Split(in.out.String(), "\n") {
		if strings.HasPrefix(line, "{") {
			continue
		}
		for _, bad := range []string{"WARNING: DATA RACE", "panic: ", "fatal error: "} {
			if strings.Contains(line, bad) {
				t.Errorf("fcgivisor printed %q", line)
			}
		}
	}

	// The test process is a child subreaper (TestMain): a process that
	// was below fcgivisor and still exists when fcgivisor has exited is
	// now our child. Alive, it outlived fcgivisor; a zombie, fcgivisor
	// exited without reaping it.
	if killed {
		// Workers die by PDEATHSIG a moment after their parent.
		waitFor(eventTimeout, func() bool { return len(in.survivors()) == 0 })
	}
	in.mu.Lock()
	seen := slices.Collect(maps.Values(in.seen))
	in.mu.Unlock()
	sort.Slice(seen, func(i, j int) bool { return seen[i].pid < seen[j].pid })
	for _, p := range seen {
		if !p.exists() {
			continue
		}
		state, ppid, _, _ := procStat(p.pid)
		switch {
		case state == 'Z' && killed:
			// Died with its killed parent: fine.
		case state == 'Z':
			t.Errorf("fcgivisor exited without reaping %v", p)
		default:
			t.Errorf("%v outlived fcgivisor (state %c, now a child of %d)", p, state, ppid)
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		if ppid == os.Getpid() {
			var ws syscall.WaitStatus
			syscall.Wait4(p.pid, &ws, 0, nil)
		}
	}
}

func (in *instance) survivors() []procID {
	in.mu.Lock()
	defer in.mu.Unlock()
	var s []procID
	for _, p := range in.seen {
		if p.alive() {
			s = append(s, p)
		}
	}
	sort.Slice(s, func(i, j int) bool { return s[i].pid < s[j].pid })
	return s
}

func (in *instance) cleanup() {
	t := in.t
	in.client.CloseIdleConnections()
	select {
	case <-in.done:
	default:
		in.snapshot()
		if in.checked {
			// A failed start already reported; just make sure it is gone.
			in.cmd.Process.Kill()
			<-in.done
		} else {
			in.signal(syscall.SIGTERM)
		}
	}
	in.checkExit(t)
	if t.Failed() {
		t.Logf("fcgivisor (pid %d, config %s) output:\n%s", in.pid, in.configPath, in.out)
	}
}

// ---------------------------------------------------------------------------
// Requests

// do sends a request and reads the whole answer; it does not fail t, so it
// may run in any goroutine.
func (in *instance) do(ctx context.Context, method, path string, body []byte, hdr http.Header) (*http.Response, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	return in.doReader(ctx, method, path, r, hdr)
}

// doReader is do with a body of unknown length unless r is a
// *bytes.Reader and the like: the request goes out chunked.
func (in *instance) doReader(ctx context.Context, method, path string, r io.Reader, hdr http.Header) (*http.Response, []byte, error) {
	return doHTTP(ctx, in.client, method, in.base, path, r, hdr)
}

// doHTTP sends method base+path with body r and the headers hdr through
// client and reads the whole answer; errors name method and path.
func doHTTP(ctx context.Context, client *http.Client, method, base, path string, r io.Reader, hdr http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, base+path, r)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, data, fmt.Errorf("%s %s: read body after %d bytes: %w", method, path, len(data), err)
	}
	return resp, data, nil
}

// get fails t on a transport error.
func (in *instance) get(t testing.TB, path string) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := in.do(context.Background(), http.MethodGet, path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// expect GETs path and fails t unless the answer is code with body want
// ("" = any body).
func (in *instance) expect(t testing.TB, path string, code int, want string) []byte {
	t.Helper()
	resp, body := in.get(t, path)
	if resp.StatusCode != code || (want != "" && string(body) != want) {
		t.Fatalf("GET %s: %d %q, want %d %q", path, resp.StatusCode, clip(body), code, want)
	}
	return body
}

// workerPid asks l's pool which worker answers (?pid) and remembers it.
func (in *instance) workerPid(t testing.TB, l lang) int {
	t.Helper()
	body := in.expect(t, l.path("/pid?pid"), http.StatusOK, "")
	pid, err := strconv.Atoi(strings.TrimSpace(string(body)))
	if err != nil || pid <= 0 {
		t.Fatalf("?pid answered %q", clip(body))
	}
	in.remember(pid)
	return pid
}

// waitLog waits until a log record satisfies match and returns it.
func (in *instance) waitLog(t testing.TB, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	timeout := time.After(eventTimeout)
	for {
		text, changed := in.out.Snapshot()
		for _, r := range records(text) {
			if match(r) {
				return r
			}
		}
		select {
		case <-changed:
		case <-in.done:
			t.Fatalf("fcgivisor exited before logging %s", what)
		case <-timeout:
			t.Fatalf("no log record %s within %v", what, eventTimeout)
		}
	}
}

// parseLines turns "NAME=VALUE\n" lines into a map; a name seen twice
// keeps every value, in order.
func parseLines(body []byte) map[string][]string {
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(body), "\n"), "\n") {
		if line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		m[k] = append(m[k], v)
	}
	return m
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + fmt.Sprintf("... (%d bytes)", len(b))
	}
	return string(b)
}

// runCLI runs fcgivisor with args (not `run` in the foreground), bounded,
// and returns its exit code and combined output.
func runCLI(t testing.TB, env []string, dir string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fcgivisorBin, args...)
	cmd.Env = mergeEnv(os.Environ(), append(raceEnv(), env...))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("fcgivisor %s did not exit within 20s; output:\n%s", strings.Join(args, " "), out.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("fcgivisor %s: %v", strings.Join(args, " "), err)
	return 0, ""
}

// waitGone waits until p has died and been reaped: no /proc entry left.
func waitGone(t testing.TB, p procID, why string) {
	t.Helper()
	if !waitFor(eventTimeout, func() bool { return !p.exists() }) {
		state, ppid, _, _ := procStat(p.pid)
		t.Fatalf("%s: %v still exists after %v (state %c, parent %d)", why, p, eventTimeout, state, ppid)
	}
}
