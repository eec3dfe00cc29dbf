package integration

// Issue 12: real web servers in front of fcgivisor's public FastCGI
// sockets (a pool's listen), with fcgivisor's HTTP front off: nginx,
// Apache 2.4 (mod_proxy_fcgi), Caddy (php_fastcgi) and lighttpd
// (mod_fastcgi), each run in the foreground on a config, pid file and logs
// of its own. The PHP app's configs are README.md's "Behind a web server"
// snippets, run as written but for their placeholders (the socket path,
// /srv/app, port 80); a second site of each server, the test's own, serves
// the C worker's pool with a custom variable (fastcgi_param, SetEnv, env,
// setenv.add-environment), and a third the same C worker run by the test
// without fcgivisor: what a web server sends it is what it must get
// through fcgivisor.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/internal/testlog"
)

// webServer is one web server the tests put in front of fcgivisor.
type webServer struct {
	name string   // also the README marker: <!-- webserver: NAME -->
	bins []string // where Debian installs it; the first found runs
	// config writes the server's config into dir for e and returns its argv
	// (after the binary) and extra environment.
	config func(t *testing.T, dir string, e *webEnv, p webPorts) (args, env []string)
}

// webPorts are a web server's three sites: the README's PHP app, the C
// pool, and the C worker without fcgivisor.
type webPorts struct{ php, c, direct int }

// webEnv is what the web servers are put in front of.
type webEnv struct {
	fv        *instance
	phpSock   string // the php pool's public socket ("" without php-cgi)
	cSock     string // the c pool's public socket ("" without the C worker)
	direct    string // the C worker's own socket, without fcgivisor
	docRoot   string // the PHP app: examples/php, README's /srv/app
	emptyRoot string // the C sites' document root: no files
	www       bool   // as root: web servers and sockets use www-data
}

const customVar, customValue = "FCGIVISOR_TEST", "a b=c"

var webServers = []webServer{
	{name: "nginx", bins: []string{"/usr/sbin/nginx"}, config: nginxConfig},
	{name: "apache", bins: []string{"/usr/sbin/apache2", "/usr/sbin/httpd"}, config: apacheConfig},
	{name: "caddy", bins: []string{"/usr/bin/caddy"}, config: caddyConfig},
	{name: "lighttpd", bins: []string{"/usr/sbin/lighttpd"}, config: lighttpdConfig},
}

func (w webServer) bin() string {
	for _, b := range w.bins {
		if _, err := os.Stat(b); err == nil {
			return b
		}
	}
	if p, err := exec.LookPath(filepath.Base(w.bins[0])); err == nil {
		return p
	}
	return ""
}

// TestWebServers: nginx, Apache, Caddy and lighttpd in front of a php-cgi
// pool (README.md's configs) and a C libfcgi pool, reached only on their
// public sockets: GET, a 1 MiB upload, a 5 MiB answer, the worker's Status
// and Location, the CGI variables as the web server sent them, and a
// crashed worker's 502 followed by a served request.
func TestWebServers(t *testing.T) {
	t.Parallel()
	for _, ws := range webServers {
		t.Run(ws.name, func(t *testing.T) {
			bin := ws.bin()
			if bin == "" {
				t.Skipf("%s is not installed (%s)", ws.name, strings.Join(ws.bins, ", "))
			}
			t.Parallel()
			e := newWebEnv(t)
			srv := startWebServer(t, ws.name, func(dir string, ports []int) ([]string, []string) {
				args, env := ws.config(t, dir, e, webPorts{ports[0], ports[1], ports[2]})
				return append([]string{bin}, args...), env
			}, 3)
			if e.phpSock != "" {
				t.Run("php", func(t *testing.T) {
					t.Parallel()
					testPHPSite(t, srv, e, srv.ports[0])
				})
			}
			if e.cSock != "" {
				t.Run("c", func(t *testing.T) {
					t.Parallel()
					testCSite(t, srv, e, srv.ports[1], srv.ports[2])
				})
			}
		})
	}
}

// newWebEnv starts fcgivisor with its HTTP front off and a php and a c
// pool, each on a public socket in a directory web servers can reach,
// plus the C worker on a socket of its own without fcgivisor. As root
// the php pool is README.md's (user and listen_group www-data); as
// another user, who cannot give a socket to www-data, the harness's php
// pool with a listen and no listen_group.
func newWebEnv(t *testing.T) *webEnv {
	t.Helper()
	php, c := lang{"php"}, lang{"c"}
	e := &webEnv{www: asWWW(), docRoot: webDocRoot(t)}
	sockDir := shortTempDir(t)
	e.emptyRoot = shortTempDir(t)
	for _, d := range []string{sockDir, e.emptyRoot} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	o := options{noHTTP: true, langs: []string{}}
	if php.available() {
		e.phpSock = filepath.Join(sockDir, "php.sock")
		if e.www {
			o.pools = readmePool(t, e.phpSock)
		} else {
			o.langs = append(o.langs, "php")
		}
	}
	if c.available() {
		e.cSock = filepath.Join(sockDir, "c.sock")
		e.direct = filepath.Join(sockDir, "direct.sock")
		o.langs = append(o.langs, "c")
	}
	if e.phpSock == "" && e.cSock == "" {
		t.Fatal("neither php-cgi nor the C worker can run here (hack/setup.sh installs php-cgi and libfcgi-dev): " + phpSkip + "; " + cWorkerErr)
	}
	o.pool = func(l lang, p *poolOpts) {
		p.extra = append(p.extra, "listen = "+tomlString("unix:"+filepath.Join(sockDir, l.name+".sock")))
		if e.www {
			p.extra = append(p.extra, `listen_group = "www-data"`)
		}
	}
	e.fv = start(t, o)
	for _, s := range []string{e.phpSock, e.cSock} {
		if s != "" {
			checkSocketPerm(t, s, e.www)
		}
	}
	if e.direct != "" {
		startDirectWorker(t, e.direct)
	}
	return e
}

// asWWW reports whether web servers run as www-data and sockets get its
// group: as root, where Debian's www-data exists.
func asWWW() bool {
	_, err := user.Lookup("www-data")
	return os.Geteuid() == 0 && err == nil
}

// checkSocketPerm: a pool socket has listen_mode 0660 (the default) and,
// with listen_group, the group www-data.
func checkSocketPerm(t *testing.T, sock string, www bool) {
	t.Helper()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatalf("pool socket: %v (fcgivisor logged \"fcgivisor running\")", err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("pool socket %s: mode %v, want a socket with listen_mode 0660", sock, fi.Mode())
	}
	if www {
		g, err := user.LookupGroup("www-data")
		if err != nil {
			t.Fatal(err)
		}
		if gid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)); gid != g.Gid {
			t.Errorf("pool socket %s: group %s, want www-data (%s): listen_group", sock, gid, g.Gid)
		}
	}
}

// webDocRoot is the PHP app's document root: examples/php, or, as root
// when www-data could not reach it (a checkout in a private home), a copy.
func webDocRoot(t *testing.T) string {
	t.Helper()
	root := documentRoot()
	if !asWWW() {
		return root
	}
	reachable := true
	for d := root; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o005 != 0o005 {
			reachable = false
		}
		if d == "/" || d == "." {
			break
		}
	}
	if reachable {
		return root
	}
	cp := shortTempDir(t)
	if err := os.Chmod(cp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(cp, root, func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	return cp
}

// readmeBlock returns the fenced code block that follows
// <!-- webserver: NAME --> in README.md.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	marker := "<!-- webserver: " + name + " -->\n"
	_, after, ok := strings.Cut(string(doc), marker)
	if !ok {
		t.Fatalf("README.md has no %q", strings.TrimSpace(marker))
	}
	after = strings.TrimLeft(after, "\n")
	if !strings.HasPrefix(after, "```") {
		t.Fatalf("README.md: %q is not followed by a fenced code block", strings.TrimSpace(marker))
	}
	_, after, _ = strings.Cut(after, "\n") // the fence and its language
	block, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatalf("README.md: the code block after %q is not closed", strings.TrimSpace(marker))
	}
	return block
}

// substitute replaces each placeholder (old, new pairs) in block, and
// fails t when one is missing: the README and the test must agree on them.
func substitute(t *testing.T, what, block string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(block, pairs[i]) {
			t.Fatalf("README.md's %s block has no %q to replace:\n%s", what, pairs[i], block)
		}
		block = strings.ReplaceAll(block, pairs[i], pairs[i+1])
	}
	return block
}

// readmeSnippet is README.md's config for web server ws, the PHP app on
// the php pool's socket, with the test's socket and document root, and
// port 80 replaced by more (old, new) pairs.
func readmeSnippet(t *testing.T, ws string, e *webEnv, port ...string) string {
	t.Helper()
	pairs := append([]string{"/run/fcgivisor/php.sock", e.phpSock, "/srv/app", e.docRoot}, port...)
	return substitute(t, ws, readmeBlock(t, ws), pairs...)
}

// readmePool is README.md's [pool.php] table with the test's socket (and
// php-cgi where it is installed).
func readmePool(t *testing.T, sock string) string {
	t.Helper()
	block := readmeBlock(t, "fcgivisor")
	_, pool, ok := strings.Cut(block, "[pool.php]\n")
	if !ok {
		t.Fatalf("README.md's fcgivisor block has no [pool.php]:\n%s", block)
	}
	http, _, _ := strings.Cut(block, "[pool.php]")
	if !strings.Contains(http, "[http]\nlisten = []") {
		t.Fatalf("README.md's fcgivisor block does not turn the HTTP front off ([http] listen = []):\n%s", block)
	}
	return substitute(t, "fcgivisor", "[pool.php]\n"+pool, "/run/fcgivisor/php.sock", sock, `"/usr/bin/php-cgi"`, tomlString(phpCGI))
}

// startDirectWorker runs the C worker as spawn-fcgi would, on a Unix
// socket of its own (fd 0), without fcgivisor: what a web server sends it
// there is the reference for what it must get through fcgivisor.
func startDirectWorker(t *testing.T, sock string) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	f, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Chmod(sock, 0o666); err != nil { // web servers as www-data connect
		t.Fatal(err)
	}
	out := &testlog.Buffer{}
	cmd := exec.Command(cWorkerBin)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("the C worker without fcgivisor (%s) wrote:\n%s", sock, out)
		}
	})
}

// ---------------------------------------------------------------------------
// Web server processes

// runningServer is a web server started by startWebServer.
type runningServer struct {
	name    string
	ports   []int
	client  *http.Client
	cmd     *exec.Cmd
	out     *testlog.Buffer
	dir     string
	done    chan struct{}
	waitErr error
}

// startWebServer runs the web server that config writes into a new
// directory for the given free ports, in the foreground, until every port
// accepts; a port taken meanwhile gets other ports, twice. Its cleanup
// stops it with SIGTERM and checks that no process of it outlives it.
func startWebServer(t *testing.T, name string, config func(dir string, ports []int) (argv, env []string), nports int) *runningServer {
	t.Helper()
	// Web servers running as www-data write their temporary files here
	// (nginx's client_body_temp_path): not a 0700 t.TempDir().
	dir := shortTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		s := &runningServer{name: name, out: &testlog.Buffer{}, done: make(chan struct{})}
		s.dir = filepath.Join(dir, strconv.Itoa(attempt))
		if err := os.Mkdir(s.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// lighttpd opens its error log once it runs as www-data.
		if www, err := user.Lookup("www-data"); err == nil && asWWW() {
			uid, _ := strconv.Atoi(www.Uid)
			gid, _ := strconv.Atoi(www.Gid)
			if err := os.Chown(s.dir, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		for range nports {
			s.ports = append(s.ports, freePort(t))
		}
		argv, env := config(s.dir, s.ports)
		s.cmd = exec.Command(argv[0], argv[1:]...)
		s.cmd.Dir = s.dir
		s.cmd.Env = mergeEnv(os.Environ(), env)
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { s.waitErr = s.cmd.Wait(); close(s.done) }()
		err := s.waitPorts()
		if err == nil {
			tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}
			s.client = &http.Client{
				Transport:     tr,
				Timeout:       30 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}
			procs := append(descendants(s.cmd.Process.Pid), procID{pid: s.cmd.Process.Pid})
			t.Cleanup(func() { tr.CloseIdleConnections(); s.stop(t, procs) })
			return s
		}
		s.cmd.Process.Kill()
		<-s.done
		logs := s.logs()
		if attempt < 3 && strings.Contains(logs, "in use") {
			t.Logf("%s: a port was taken meanwhile; retrying on others", name)
			continue
		}
		t.Fatalf("%s did not start: %v\n%s", name, err, logs)
	}
}

// waitPorts waits until every port accepts a connection; an exit ends the
// wait.
func (s *runningServer) waitPorts() error {
	deadline := time.Now().Add(startTimeout)
	for _, port := range s.ports {
		for {
			select {
			case <-s.done:
				return fmt.Errorf("exited: %v", s.waitErr)
			default:
			}
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("port %d not accepting within %v: %v", port, startTimeout, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// logs is the server's output, its config and log files, for a failure.
func (s *runningServer) logs() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s output:\n%s", s.name, s.out)
	files, _ := filepath.Glob(filepath.Join(s.dir, "*"))
	for _, f := range files {
		if fi, err := os.Lstat(f); err != nil || !fi.Mode().IsRegular() || strings.HasSuffix(f, ".pid") {
			continue
		}
		data, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "\n--- %s:\n%s", f, clip3k(data))
	}
	return b.String()
}

func clip3k(b []byte) string {
	if len(b) > 3000 {
		return fmt.Sprintf("(%d bytes, the last 3000:) ...%s", len(b), b[len(b)-3000:])
	}
	return string(b)
}

// stop sends SIGTERM, waits for the exit and for every process of the
// server (procs: the main one and its children) to be gone.
func (s *runningServer) stop(t *testing.T, procs []procID) {
	// Children started after the start (respawned workers) count too.
	procs = append(procs, descendants(s.cmd.Process.Pid)...)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		t.Errorf("%s did not exit within %v of SIGTERM; killing it", s.name, stopTimeout)
		s.cmd.Process.Kill()
		<-s.done
	}
	for _, p := range procs {
		if p.start == "" || p.pid == s.cmd.Process.Pid {
			continue
		}
		if !waitFor(eventTimeout, func() bool { st, _, _, err := procStat(p.pid); return !p.exists() || err != nil || st == 'Z' }) {
			t.Errorf("%s: %v outlived it", s.name, p)
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		// Our child now (a child subreaper adopts orphans): reap it.
		if _, ppid, _, err := procStat(p.pid); err == nil && ppid == os.Getpid() {
			var ws syscall.WaitStatus
			syscall.Wait4(p.pid, &ws, 0, nil)
		}
	}
	if t.Failed() {
		t.Log(s.logs())
	}
}

// do sends a request to the server's port and reads the whole answer; it
// does not fail t.
func (s *runningServer) do(port int, method, path string, body []byte, hdr http.Header) (*http.Response, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	return doHTTP(context.Background(), s.client, method, fmt.Sprintf("http://127.0.0.1:%d", port), path, r, hdr)
}

func (s *runningServer) must(t *testing.T, port int, method, path string, body []byte, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	resp, data, err := s.do(port, method, path, body, hdr)
	if err != nil {
		t.Fatalf("through %s: %v", s.name, err)
	}
	return resp, data
}

// ---------------------------------------------------------------------------
// The checks

// webVarsQuery is the query of the ?vars requests: a value with an
// escaped space, as the client sent it.
const webVarsQuery = "vars&x=1&y=a%20b"

// postVars POSTs a small form to path?webVarsQuery and returns the
// variables the worker got.
func (s *runningServer) postVars(t *testing.T, port int, path string) map[string][]string {
	t.Helper()
	hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Custom": {"yes"}}
	resp, body := s.must(t, port, http.MethodPost, path+"?"+webVarsQuery, []byte("a=1&b=2"), hdr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s?%s through %s: %d %q", path, webVarsQuery, s.name, resp.StatusCode, clip(body))
	}
	return parseLines(body)
}

// wantVars fails t unless each variable was received once with its value.
func wantVars(t *testing.T, vars map[string][]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := vars[k]; !slices.Equal(got, []string{v}) {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if t.Failed() {
		t.Logf("variables received: %q", vars)
	}
}

// testPHPSite checks the README's PHP app on the php pool.
func testPHPSite(t *testing.T, s *runningServer, e *webEnv, port int) {
	const hello = "hello from php\n"
	// The index and the front controller of each config, then the script.
	for _, p := range []string{"/", "/index.php"} {
		resp, body := s.must(t, port, http.MethodGet, p, nil, nil)
		if resp.StatusCode != http.StatusOK || string(body) != hello || resp.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("GET %s: %d %q %q, want 200 text/plain %q", p, resp.StatusCode, resp.Header.Get("Content-Type"), clip(body), hello)
		}
	}
	resp, body := s.must(t, port, http.MethodGet, "/no/such/page?vars", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /no/such/page?vars (the front controller): %d %q", resp.StatusCode, clip(body))
	} else {
		wantVars(t, parseLines(body), map[string]string{
			"SCRIPT_NAME":     "/index.php",
			"SCRIPT_FILENAME": e.docRoot + "/index.php",
			"REQUEST_URI":     "/no/such/page?vars",
			"QUERY_STRING":    "vars",
		})
	}

	wantVars(t, s.postVars(t, port, "/index.php"), map[string]string{
		"REQUEST_METHOD":  "POST",
		"SCRIPT_NAME":     "/index.php",
		"SCRIPT_FILENAME": e.docRoot + "/index.php",
		"QUERY_STRING":    webVarsQuery,
		"REQUEST_URI":     "/index.php?" + webVarsQuery,
		"CONTENT_LENGTH":  "7",
		"CONTENT_TYPE":    "application/x-www-form-urlencoded",
		"HTTP_X_CUSTOM":   "yes",
	})

	// php-cgi reads a body whole before the script runs: ?echo cannot
	// deadlock with a web server that sends it all before reading.
	upload := make([]byte, 1<<20)
	rand.Read(upload)
	resp, body = s.must(t, port, http.MethodPost, "/index.php?echo", upload, http.Header{"Content-Type": {"application/octet-stream"}})
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, upload) {
		t.Errorf("POST 1 MiB to ?echo: %d, %d bytes back, first difference at %d", resp.StatusCode, len(body), firstDiff(body, upload))
	}
	testWorkerAnswers(t, s, e.fv, "php", port, "/index.php", hello, upload)
}

// testCSite checks the C pool's site, against the same site on the C
// worker without fcgivisor.
func testCSite(t *testing.T, s *runningServer, e *webEnv, port, directPort int) {
	const hello = "hello from c\n"
	resp, body := s.must(t, port, http.MethodGet, "/app", nil, nil)
	if resp.StatusCode != http.StatusOK || string(body) != hello || resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("GET /app: %d %q %q, want 200 text/plain %q", resp.StatusCode, resp.Header.Get("Content-Type"), clip(body), hello)
	}
	vars := s.postVars(t, port, "/app")
	wantVars(t, vars, map[string]string{
		"REQUEST_METHOD": "POST",
		"QUERY_STRING":   webVarsQuery,
		"REQUEST_URI":    "/app?" + webVarsQuery,
		"CONTENT_LENGTH": "7",
		"CONTENT_TYPE":   "application/x-www-form-urlencoded",
		"HTTP_X_CUSTOM":  "yes",
		customVar:        customValue,
	})
	for _, k := range []string{"SCRIPT_NAME", "SCRIPT_FILENAME"} {
		if _, ok := vars[k]; !ok {
			t.Errorf("%s not received", k)
		}
	}
	// Every variable as the C worker gets it without fcgivisor: fcgivisor
	// adds, drops and changes nothing. The sites differ in their ports.
	direct := s.postVars(t, directPort, "/app")
	sameVars(t, vars, direct, port, directPort)

	upload := make([]byte, 1<<20)
	rand.Read(upload)
	testWorkerAnswers(t, s, e.fv, "c", port, "/app", hello, upload)
}

// sameVars fails t unless got (through fcgivisor, on port) and want (the
// worker without it, on directPort) hold the same variables, once each,
// with the same values but for the port of each site and the client's.
func sameVars(t *testing.T, got, want map[string][]string, port, directPort int) {
	t.Helper()
	var diff []string
	for _, k := range sortedKeys(got, want) {
		g, w := got[k], want[k]
		if k == "REMOTE_PORT" && len(g) == 1 && len(w) == 1 {
			continue
		}
		if k == "SERVER_PORT" || k == "HTTP_HOST" || k == "HTTP_X_FORWARDED_HOST" {
			w = slices.Clone(w)
			for i := range w {
				w[i] = strings.ReplaceAll(w[i], strconv.Itoa(directPort), strconv.Itoa(port))
			}
		}
		if !slices.Equal(g, w) {
			diff = append(diff, fmt.Sprintf("%s: through fcgivisor %q, without %q", k, g, w))
		}
	}
	if len(diff) > 0 {
		t.Errorf("the C worker got other variables through fcgivisor than without it:\n%s", strings.Join(diff, "\n"))
	}
}

func sortedKeys(ms ...map[string][]string) []string {
	var keys []string
	for _, m := range ms {
		for k := range m {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// testWorkerAnswers: a 1 MiB upload read whole (?crc32), a 5 MiB answer,
// the worker's Status and Location, then a crash mid-request: 502 with
// fcgivisor's body, one worker crashed (the request is not sent again),
// and the next requests are served.
func testWorkerAnswers(t *testing.T, s *runningServer, fv *instance, pool string, port int, script, hello string, upload []byte) {
	t.Helper()
	resp, body := s.must(t, port, http.MethodPost, script+"?crc32", upload, http.Header{"Content-Type": {"application/octet-stream"}})
	if want := crc32Line(upload); resp.StatusCode != http.StatusOK || string(body) != want {
		t.Errorf("POST 1 MiB to ?crc32: %d %q, want 200 %q", resp.StatusCode, clip(body), want)
	}

	const n = 5 << 20
	resp, body = s.must(t, port, http.MethodGet, fmt.Sprintf("%s?size=%d", script, n), nil, nil)
	if resp.StatusCode != http.StatusOK || len(body) != n {
		t.Errorf("GET ?size=%d: %d, %d bytes", n, resp.StatusCode, len(body))
	} else {
		for i, c := range body {
			if c != byte('a'+i%26) {
				t.Errorf("GET ?size=%d: byte %d is %q, want %q", n, i, c, byte('a'+i%26))
				break
			}
		}
	}

	resp, body = s.must(t, port, http.MethodGet, script+"?status=418", nil, nil)
	if resp.StatusCode != http.StatusTeapot || string(body) != "status 418\n" {
		t.Errorf("GET ?status=418: %d %q, want 418 %q", resp.StatusCode, clip(body), "status 418\n")
	}
	// Caddy 2.6 passes the Status header on as it is, fcgivisor or not
	// (its fastcgi transport takes the code from it and leaves it).
	if h := resp.Header.Get("Status"); h != "" && s.name != "caddy" {
		t.Errorf("GET ?status=418: the CGI Status header reached the client: Status: %s", h)
	}
	const target = "http://example.invalid/next?a=1"
	resp, body = s.must(t, port, http.MethodGet, script+"?location=http%3A%2F%2Fexample.invalid%2Fnext%3Fa%3D1", nil, nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != target {
		t.Errorf("GET ?location: %d Location %q %q, want 302 Location %q", resp.StatusCode, resp.Header.Get("Location"), clip(body), target)
	}

	// The worker exits mid-request: fcgivisor answers 502 itself (its
	// body, not the web server's error page), and replaces the worker.
	resp, body = s.must(t, port, http.MethodGet, script+"?exit", nil, nil)
	if resp.StatusCode != http.StatusBadGateway || string(body) != "Bad Gateway\n" {
		t.Errorf("GET ?exit (the worker crashes): %d %q, want 502 %q from fcgivisor", resp.StatusCode, clip(body), "Bad Gateway\n")
	}
	for i := range 3 {
		resp, body = s.must(t, port, http.MethodGet, script, nil, nil)
		if resp.StatusCode != http.StatusOK || string(body) != hello {
			t.Errorf("GET %s #%d after the crash: %d %q, want 200 %q", script, i+1, resp.StatusCode, clip(body), hello)
		}
	}
	crashed := func(r map[string]any) bool { return r["pool"] == pool && r["status"] == "exit status 3" }
	fv.waitLog(t, "of a "+pool+" worker's exit status 3", crashed)
	crashes := 0
	for _, r := range records(fv.out.String()) {
		if crashed(r) {
			crashes++
		}
	}
	if crashes != 1 {
		t.Errorf("?exit crashed %d %s workers, want 1: the request was sent again after the crash", crashes, pool)
	}
}

// ---------------------------------------------------------------------------
// The configs

// nginxConfig: nginx.conf with README.md's server, the C pool's and the
// direct worker's; fastcgi_params is Debian's, as `include fastcgi_params`
// finds it next to nginx.conf.
func nginxConfig(t *testing.T, dir string, e *webEnv, p webPorts) ([]string, []string) {
	if err := os.Symlink("/etc/nginx/fastcgi_params", filepath.Join(dir, "fastcgi_params")); err != nil {
		t.Fatal(err)
	}
	site := func(port int, sock string) string {
		return fmt.Sprintf(`server {
    listen 127.0.0.1:%d;
    root %s;
    location /app {
        include fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_param %s "%s";
        fastcgi_pass unix:%s;
    }
}
`, port, e.emptyRoot, customVar, customValue, sock)
	}
	var b strings.Builder
	nginxMain(&b, dir, e.www)
	b.WriteString(readmeSnippet(t, "nginx", e, "listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", p.php)))
	if e.cSock != "" {
		b.WriteString(site(p.c, e.cSock) + site(p.direct, e.direct))
	}
	b.WriteString("}\n")
	writeConfig(t, filepath.Join(dir, "nginx.conf"), b.String())
	return []string{"-p", dir + "/", "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")}, nil
}

// nginxMain writes nginx.conf up to its open http block.
func nginxMain(b *strings.Builder, dir string, www bool) {
	if www {
		b.WriteString("user www-data www-data;\n")
	}
	fmt.Fprintf(b, `daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log notice;
events { worker_connections 256; }
http {
    access_log off;
    client_max_body_size 16m;
    client_body_temp_path %[1]s/client_body;
    fastcgi_temp_path %[1]s/fastcgi;
    proxy_temp_path %[1]s/proxy;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
`, dir)
}

// apacheConfig: a ServerRoot of its own loading Debian's modules, with
// README.md's virtual host, the C pool's and the direct worker's.
func apacheConfig(t *testing.T, dir string, e *webEnv, p webPorts) ([]string, []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "ServerRoot %q\nDefaultRuntimeDir %q\nPidFile %q\nErrorLog %q\nLogLevel warn\nServerName 127.0.0.1\n",
		dir, dir, filepath.Join(dir, "apache.pid"), filepath.Join(dir, "error.log"))
	for _, m := range []string{"mpm_event", "authz_core", "dir", "env", "proxy", "proxy_fcgi"} {
		fmt.Fprintf(&b, "LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n", m, m)
	}
	for _, port := range []int{p.php, p.c, p.direct} {
		fmt.Fprintf(&b, "Listen 127.0.0.1:%d\n", port)
	}
	if e.www {
		b.WriteString("User www-data\nGroup www-data\n")
	}
	fmt.Fprintf(&b, "<Directory />\n    AllowOverride None\n    Require all denied\n</Directory>\n")
	b.WriteString(readmeSnippet(t, "apache", e, "<VirtualHost *:80>", fmt.Sprintf("<VirtualHost 127.0.0.1:%d>", p.php)))
	if e.cSock != "" {
		for _, s := range []struct {
			port int
			sock string
		}{{p.c, e.cSock}, {p.direct, e.direct}} {
			fmt.Fprintf(&b, `<VirtualHost 127.0.0.1:%d>
    DocumentRoot %q
    <Directory %q>
        Require all granted
    </Directory>
    SetEnv %s %q
    <Location /app>
        SetHandler "proxy:unix:%s|fcgi://localhost"
    </Location>
</VirtualHost>
`, s.port, e.emptyRoot, e.emptyRoot, customVar, customValue, s.sock)
		}
	}
	conf := filepath.Join(dir, "apache2.conf")
	writeConfig(t, conf, b.String())
	return []string{"-d", dir, "-f", conf, "-DFOREGROUND"}, nil
}

// caddyConfig: a Caddyfile with the admin API and automatic HTTPS off,
// README.md's site, the C pool's and the direct worker's; Caddy's data
// and config directories in dir.
func caddyConfig(t *testing.T, dir string, e *webEnv, p webPorts) ([]string, []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\tstorage file_system %s\n}\n\n", filepath.Join(dir, "data"))
	b.WriteString(readmeSnippet(t, "caddy", e, ":80 {", fmt.Sprintf(":%d {", p.php)))
	if e.cSock != "" {
		for _, s := range []struct {
			port int
			sock string
		}{{p.c, e.cSock}, {p.direct, e.direct}} {
			fmt.Fprintf(&b, "\n:%d {\n\troot * %s\n\treverse_proxy unix/%s {\n\t\ttransport fastcgi {\n\t\t\tenv %s %q\n\t\t}\n\t}\n}\n",
				s.port, e.emptyRoot, s.sock, customVar, customValue)
		}
	}
	conf := filepath.Join(dir, "Caddyfile")
	writeConfig(t, conf, b.String())
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config")}
	return []string{"run", "--config", conf, "--adapter", "caddyfile"}, env
}

// lighttpdConfig: lighttpd.conf with README.md's settings for the main
// port, and the C pool's and direct worker's on $SERVER["socket"].
func lighttpdConfig(t *testing.T, dir string, e *webEnv, p webPorts) ([]string, []string) {
	uploads := filepath.Join(dir, "uploads")
	if err := os.Mkdir(uploads, 0o1777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(uploads, 0o1777) // past the umask
	var b strings.Builder
	fmt.Fprintf(&b, "server.bind = \"127.0.0.1\"\nserver.port = %d\nserver.pid-file = %q\nserver.errorlog = %q\nserver.upload-dirs = ( %q )\n",
		p.php, filepath.Join(dir, "lighttpd.pid"), filepath.Join(dir, "error.log"), uploads)
	if e.www {
		b.WriteString("server.username = \"www-data\"\nserver.groupname = \"www-data\"\n")
	}
	b.WriteString("server.modules = ( \"mod_indexfile\", \"mod_access\", \"mod_setenv\" )\n")
	b.WriteString(readmeSnippet(t, "lighttpd", e))
	if e.cSock != "" {
		for _, s := range []struct {
			port int
			sock string
		}{{p.c, e.cSock}, {p.direct, e.direct}} {
			fmt.Fprintf(&b, `$SERVER["socket"] == "127.0.0.1:%d" {
    server.document-root = %q
    url.rewrite-if-not-file = ()
    setenv.add-environment = ( %q => %q )
    fastcgi.server = ( "/app" => (( "socket" => %q, "check-local" => "disable" )) )
}
`, s.port, e.emptyRoot, customVar, customValue, s.sock)
		}
	}
	conf := filepath.Join(dir, "lighttpd.conf")
	writeConfig(t, conf, b.String())
	return []string{"-D", "-f", conf}, nil
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// nginx keep-alive

// TestWebServerNginxKeepAlive: nginx keeps its FastCGI connections to the
// pool's socket (upstream keepalive, fastcgi_keep_conn): 8 concurrent
// requests of 300 ms on 2 workers take their share of time and no more,
// twice (the second time on kept connections), and while nginx holds its
// idle kept connections, /status shows no busy worker: a kept connection
// holds a worker slot only while a request runs. A worker crash then gets
// fcgivisor's 502 and the kept connections serve on. It measures times: it
// does not run in parallel with the package's other tests.
func TestWebServerNginxKeepAlive(t *testing.T) {
	bin := webServers[0].bin()
	if bin == "" {
		t.Skip("nginx is not installed (/usr/sbin/nginx)")
	}
	l := lang{"c"}
	if !l.available() {
		l = lang{"php"}
	}
	l.need(t)
	www := asWWW()
	sockDir := shortTempDir(t)
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, l.name+".sock")
	fv := start(t, options{noHTTP: true, langs: []string{l.name}, pool: func(_ lang, p *poolOpts) {
		p.workers, p.concurrency = 2, 1
		p.extra = append(p.extra, "listen = "+tomlString("unix:"+sock))
		if www {
			p.extra = append(p.extra, `listen_group = "www-data"`)
		}
	}})
	srv := startWebServer(t, "nginx", func(dir string, ports []int) ([]string, []string) {
		if err := os.Symlink("/etc/nginx/fastcgi_params", filepath.Join(dir, "fastcgi_params")); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		nginxMain(&b, dir, www)
		fmt.Fprintf(&b, `    upstream fcgivisor {
        server unix:%s;
        keepalive 4;
    }
    server {
        listen 127.0.0.1:%d;
        location / {
            include fastcgi_params;
            fastcgi_param SCRIPT_FILENAME %s/index.php;
            fastcgi_keep_conn on;
            fastcgi_pass fcgivisor;
        }
    }
}
`, sock, ports[0], documentRoot())
		writeConfig(t, filepath.Join(dir, "nginx.conf"), b.String())
		return []string{bin, "-p", dir + "/", "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")}, nil
	}, 1)
	port := srv.ports[0]

	const n, sleep, workers = 8, 300 * time.Millisecond, 2
	burst := func(round int) {
		t.Helper()
		t0 := time.Now()
		took := make([]time.Duration, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				path := fmt.Sprintf("/r%d-%d?sleep=%d", round, i, sleep.Milliseconds())
				resp, body, err := srv.do(port, http.MethodGet, path, nil, nil)
				took[i] = time.Since(t0)
				if err == nil && (resp.StatusCode != http.StatusOK || string(body) != fmt.Sprintf("slept %d\n", sleep.Milliseconds())) {
					err = fmt.Errorf("GET %s: %d %q", path, resp.StatusCode, clip(body))
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		total := time.Since(t0)
		t.Logf("round %d: %d requests of %v on %d workers in %v; each done after %v", round, n, sleep, workers, total, took)
		for _, err := range errs {
			if err != nil {
				t.Errorf("round %d: %v", round, err)
			}
		}
		// 8 × 300 ms over 2 workers is 1.2 s: less means the requests did
		// not each take a slot, much more that a slot stayed held.
		for i, d := range took {
			if d < sleep || d > 2500*time.Millisecond {
				t.Errorf("round %d: request %d done after %v, want between %v and 2.5s", round, i, d, sleep)
			}
		}
		if min := n * sleep / workers; total < min || total > 3*time.Second {
			t.Errorf("round %d: %d requests took %v, want between %v and 3s", round, n, total, min)
		}
	}
	burst(1)
	burst(2)
	if t.Failed() {
		return
	}

	// nginx keeps up to 4 idle connections to the socket open ...
	var conns int
	if !waitFor(eventTimeout, func() bool { conns = unixConns(t, sockDir); return conns >= 1 && conns <= 4 }) {
		t.Fatalf("fcgivisor holds %d connections on %s, want nginx's 1 to 4 kept ones", conns, sock)
	}
	// ... and they hold no worker: /status shows both idle.
	admin := newAdminClient(t, "unix", filepath.Join(fv.runtimeDir, "admin.sock"))
	var p *adminPool
	idle := func() bool {
		p = admin.status(t, l.name)
		for _, w := range p.Workers {
			if w.Request != nil {
				return false
			}
		}
		return p.BusySlots == 0 && p.IdleSlots == workers && len(p.Workers) == workers
	}
	if !waitFor(3*time.Second, idle) {
		t.Fatalf("with nginx's %d idle kept connections, /status shows %d busy and %d idle slots, workers %+v; want 0 busy, %d idle", conns, p.BusySlots, p.IdleSlots, p.Workers, workers)
	}
	t.Logf("nginx holds %d idle kept connections; /status: %d busy, %d idle slots", conns, p.BusySlots, p.IdleSlots)
	if after := unixConns(t, sockDir); after < 1 {
		t.Errorf("nginx's kept connections were gone when /status was read (%d before): the check proves nothing", conns)
	}
	if got := p.Totals.Accepted; got < 2*n {
		t.Errorf("/status counts %d requests accepted, want at least the %d sent", got, 2*n)
	}

	// A worker that crashes under a kept connection: fcgivisor's 502, and
	// the kept connections serve on.
	resp, body, err := srv.do(port, http.MethodGet, "/crash?exit", nil, nil)
	if err != nil || resp.StatusCode != http.StatusBadGateway || string(body) != "Bad Gateway\n" {
		t.Fatalf("GET ?exit on kept connections: %v %v %q, want 502 %q from fcgivisor", err, resp, body, "Bad Gateway\n")
	}
	for i := range 2 * workers {
		resp, body, err := srv.do(port, http.MethodGet, fmt.Sprintf("/after-%d", i), nil, nil)
		if want := "hello from " + l.name + "\n"; err != nil || resp.StatusCode != http.StatusOK || string(body) != want {
			t.Errorf("GET #%d after the crash: %v %v %q, want 200 %q", i+1, err, resp, body, want)
		}
	}
}

// unixConns counts the open connections accepted on the Unix sockets in
// dir: in /proc/net/unix they carry the path their listener was bound to
// and state 03 (connected). fcgivisor binds a socket in a temporary
// directory next to its path and renames it into place, so the path is
// one under dir, not the socket's.
func unixConns(t *testing.T, dir string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		// Num RefCount Protocol Flags Type St Inode Path
		f := strings.Fields(line)
		if len(f) == 8 && strings.HasPrefix(f[7], dir+"/") && f[5] == "03" {
			n++
		}
	}
	return n
}
