package integration

// The access log (issue 13, item 4) and the config dump (item 5), with the
// real binary and real workers: combined lines parsed field by field with
// the format's own grammar, JSON lines decoded, a rotation by SIGUSR1, a
// format changed by a reload; `check --dump` accepted by check.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
)

// combinedLine is the combined format of nginx and Apache, as log analysers
// parse it: a quoted field holds no bare '"' or '\' (nginx writes them
// \x22 and \x5C).
var combinedLine = regexp.MustCompile(`^(\S+) - (\S+) \[([^\]]+)\] "((?:[^"\\]|\\x[0-9A-F]{2})*)" (\d{3}) (\d+) "((?:[^"\\]|\\x[0-9A-F]{2})*)" "((?:[^"\\]|\\x[0-9A-F]{2})*)"$`)

// fileLines is the lines of the file at path, none when it is missing,
// but those of the harness's readiness probe (start).
func fileLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) || len(b) == 0 {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if b[len(b)-1] != '\n' {
		return nil // a line being written: not whole yet
	}
	var ls []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if !strings.Contains(l, "/fcgivisor-readiness-probe") {
			ls = append(ls, l)
		}
	}
	return ls
}

// waitLines waits until the file at path has n lines: a line is written
// as the request ends, which may be just after the client has its answer.
func waitLines(t *testing.T, path string, n int) []string {
	t.Helper()
	var ls []string
	if !waitFor(eventTimeout, func() bool { ls = fileLines(t, path); return len(ls) >= n }) {
		t.Fatalf("%s: %d lines, want %d:\n%s", path, len(ls), n, strings.Join(ls, "\n"))
	}
	if len(ls) != n {
		t.Fatalf("%s: %d lines, want %d:\n%s", path, len(ls), n, strings.Join(ls, "\n"))
	}
	return ls
}

// accessRequest is one request of the access log tests and what its line
// must say.
type accessRequest struct {
	method, path string
	body         []byte
	hdr          http.Header
	unix         bool // through the Unix socket listener
	status       int
	user         string // "-" for none
}

// accessConfig starts fcgivisor with the go pool, a Unix listener, a
// static route at /static/ and a cgi route at /cgi-bin/, and lines more
// [http] lines. It returns the instance, the Unix socket and the static
// and cgi directories.
func accessConfig(t *testing.T, lines ...string) (in *instance, sock, static, cgi string) {
	t.Helper()
	static = docRoot(t, map[string]string{"hello.txt": "static hello\n"})
	cgi = docRoot(t, nil)
	if err := os.WriteFile(filepath.Join(cgi, "hi.sh"), []byte("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhi from cgi\\n'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(shortTempDir(t), "http.sock")
	in = start(t, options{langs: []string{"go"}, listen: []string{"unix:" + sock}, http: lines,
		routes: "[[http.route]]\nprefix = \"/static/\"\nstatic = " + tomlString(static) + "\nuser = \"root\"\n\n" +
			"[[http.route]]\nprefix = \"/cgi-bin/\"\ncgi = " + tomlString(cgi) + "\nuser = \"root\"\n"})
	return in, sock, static, cgi
}

func basicAuth(user, pass string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}}
}

// send makes rq and returns the bytes of the body received.
func (in *instance) send(t *testing.T, sock string, rq accessRequest) int {
	t.Helper()
	if rq.unix {
		code, body := unixGet(t, sock, rq.path)
		if code != rq.status {
			t.Fatalf("GET %s through %s: %d, want %d", rq.path, sock, code, rq.status)
		}
		return len(body)
	}
	resp, body, err := in.do(context.Background(), rq.method, rq.path, rq.body, rq.hdr)
	if err != nil || resp.StatusCode != rq.status {
		t.Fatalf("%s %s: %v %v, want %d", rq.method, rq.path, err, resp, rq.status)
	}
	return len(body)
}

// TestAccessLogCombined: each line parses with the combined format's
// grammar and each field says what the request was: address (unix: for
// the Unix socket), Basic auth user, time, request line, status, body
// bytes, referer and user agent ('"' escaped as nginx does).
func TestAccessLogCombined(t *testing.T) {
	t.Parallel()
	logPath := filepath.Join(shortTempDir(t), "access.log")
	in, sock, _, _ := accessConfig(t, "access_log = "+tomlString(logPath))
	hdr := http.Header{"Referer": {"http://example.org/page?a=1"}, "User-Agent": {`test-agent/1.0 "quoted" \back`}}
	auth := basicAuth("alice", "pw")
	auth.Set("User-Agent", "poster")
	reqs := []accessRequest{
		{method: "GET", path: "/go/hello?x=1", hdr: hdr, status: 200, user: "-"},
		{method: "POST", path: "/go/form?echo", body: []byte("name=value&more=1"), hdr: auth, status: 200, user: "alice"},
		{method: "GET", path: "/nowhere", status: 404, user: "-"},
		{method: "GET", path: "/static/hello.txt", status: 200, user: "-"},
		{method: "GET", path: "/cgi-bin/hi.sh", status: 200, user: "-"},
		{method: "GET", path: "/go/over-unix", unix: true, status: 200, user: "-"},
	}
	begin := time.Now().Add(-time.Second).Truncate(time.Second)
	for i, rq := range reqs {
		n := in.send(t, sock, rq)
		line := waitLines(t, logPath, i+1)[i]
		m := combinedLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %d does not parse as combined: %q", i, line)
		}
		remote, user, when, request, status, bytes, referer, agent := m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]
		wantRemote, wantAgent, wantReferer := "127.0.0.1", "Go-http-client/1.1", "-"
		if rq.unix {
			wantRemote = "unix:"
		}
		if ua := rq.hdr.Get("User-Agent"); ua != "" {
			wantAgent = strings.NewReplacer(`"`, `\x22`, `\`, `\x5C`).Replace(ua)
		}
		if ref := rq.hdr.Get("Referer"); ref != "" {
			wantReferer = ref
		}
		method := rq.method
		if method == "" {
			method = "GET"
		}
		for _, f := range []struct{ name, got, want string }{
			{"remote_addr", remote, wantRemote}, {"remote_user", user, rq.user},
			{"request", request, method + " " + rq.path + " HTTP/1.1"}, {"status", status, strconv.Itoa(rq.status)},
			{"body_bytes_sent", bytes, strconv.Itoa(n)}, {"http_referer", referer, wantReferer}, {"http_user_agent", agent, wantAgent},
		} {
			if f.got != f.want {
				t.Errorf("line %d (%s): %s = %q, want %q", i, line, f.name, f.got, f.want)
			}
		}
		at, err := time.Parse("02/Jan/2006:15:04:05 -0700", when)
		if err != nil || at.Before(begin) || at.After(time.Now().Add(time.Second)) {
			t.Errorf("line %d: time %q (%v, %v), want now, as $time_local", i, when, at, err)
		}
	}
}

// TestAccessLogJSON: each line is a JSON object with the request, the
// route and pool that answered, the worker's or program's pid, and
// durations in seconds.
func TestAccessLogJSON(t *testing.T) {
	t.Parallel()
	logPath := filepath.Join(shortTempDir(t), "access.log")
	in, sock, _, cgi := accessConfig(t, "access_log = "+tomlString(logPath), `access_log_format = "json"`)
	pidBody := in.expect(t, "/go/x?pid", 200, "")
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidBody)))
	type want struct {
		rq                   accessRequest
		route, pool, script  string
		pid, upstream, bytes bool // a pid, an upstream_time, a non-empty body
	}
	cases := []want{
		{rq: accessRequest{method: "POST", path: "/go/post?echo", body: []byte("0123456789"), hdr: basicAuth("bob", "x"), status: 200}, route: "pool", pool: "go", pid: true, upstream: true, bytes: true},
		{rq: accessRequest{method: "GET", path: "/go/slow?sleep=300", hdr: http.Header{"Referer": {"http://r.example/"}}, status: 200}, route: "pool", pool: "go", pid: true, upstream: true, bytes: true},
		{rq: accessRequest{method: "GET", path: "/nowhere", status: 404}, bytes: true},
		{rq: accessRequest{method: "GET", path: "/static/hello.txt", status: 200}, route: "static", bytes: true},
		{rq: accessRequest{method: "HEAD", path: "/static/hello.txt", status: 200}, route: "static"},
		{rq: accessRequest{method: "GET", path: "/cgi-bin/hi.sh", status: 200}, route: "cgi", script: filepath.Join(cgi, "hi.sh"), pid: true, upstream: true, bytes: true},
		{rq: accessRequest{path: "/go/unix", unix: true, status: 200}, route: "pool", pool: "go", pid: true, upstream: true, bytes: true},
	}
	ls := waitLines(t, logPath, 1)
	var first map[string]any
	if err := json.Unmarshal([]byte(ls[0]), &first); err != nil || first["pid"] != float64(pid) || first["uri"] != "/go/x?pid" {
		t.Errorf("the ?pid request: %s (%v), want pid %d", ls[0], err, pid)
	}
	for i, c := range cases {
		n := in.send(t, sock, c.rq)
		line := waitLines(t, logPath, i+2)[i+1]
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i+1, err, line)
		}
		method, remote, user := cmpOr(c.rq.method, "GET"), "127.0.0.1", ""
		if c.rq.unix {
			remote = "unix:"
		}
		if c.rq.hdr.Get("Authorization") != "" {
			user = "bob"
		}
		for k, v := range map[string]any{
			"method": method, "uri": c.rq.path, "protocol": "HTTP/1.1", "status": float64(c.rq.status), "bytes": float64(n),
			"remote_addr": remote, "remote_user": user, "referer": c.rq.hdr.Get("Referer"), "user_agent": "Go-http-client/1.1",
			"route": c.route, "pool": c.pool, "script": c.script,
		} {
			if c.rq.unix && k == "user_agent" {
				continue
			}
			if rec[k] != v {
				t.Errorf("%s %s: %s = %#v, want %#v\n%s", method, c.rq.path, k, rec[k], v, line)
			}
		}
		if host, _ := rec["host"].(string); host == "" {
			t.Errorf("%s: no host: %s", c.rq.path, line)
		}
		if (n > 0) != c.bytes {
			t.Errorf("%s: %d body bytes", c.rq.path, n)
		}
		at, err := time.Parse(time.RFC3339, rec["time"].(string))
		if err != nil || !regexp.MustCompile(`\.\d{3}(Z|[+-]\d{2}:\d{2})$`).MatchString(rec["time"].(string)) || time.Since(at) > time.Minute {
			t.Errorf("%s: time %v (%v), want RFC 3339 with ms, now", c.rq.path, rec["time"], err)
		}
		d, ok := rec["duration"].(float64)
		if !ok || d < 0 || d >= 5 {
			t.Errorf("%s: duration %#v, want seconds, < 5", c.rq.path, rec["duration"])
		}
		up, isNum := rec["upstream_time"].(float64)
		switch {
		case c.upstream && (!isNum || up < 0 || up > d):
			t.Errorf("%s: upstream_time %#v, want seconds up to duration %v", c.rq.path, rec["upstream_time"], d)
		case !c.upstream && rec["upstream_time"] != nil:
			t.Errorf("%s: upstream_time %#v, want null", c.rq.path, rec["upstream_time"])
		}
		if c.rq.path == "/go/slow?sleep=300" && (d < 0.3 || up < 0.3) {
			t.Errorf("a request of 300 ms: duration %v, upstream_time %v (seconds)", d, up)
		}
		p, isPid := rec["pid"].(float64)
		switch {
		case c.pid && (!isPid || p <= 0):
			t.Errorf("%s: pid %#v, want one", c.rq.path, rec["pid"])
		case c.pid && c.route == "pool" && p != float64(pid):
			t.Errorf("%s: pid %v, want the worker's %d", c.rq.path, p, pid)
		case !c.pid && rec["pid"] != nil:
			t.Errorf("%s: pid %#v, want null", c.rq.path, rec["pid"])
		}
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestAccessLogReopen: after logrotate's rename, SIGUSR1 makes fcgivisor
// write the next lines to a new file of the same name; a reload that
// changes the format writes the next line in it, to the same file.
func TestAccessLogReopen(t *testing.T) {
	t.Parallel()
	logPath := filepath.Join(shortTempDir(t), "access.log")
	in, sock, _, _ := accessConfig(t, "access_log = "+tomlString(logPath))
	get := accessRequest{method: "GET", path: "/go/x", status: 200}
	in.send(t, sock, get)
	in.send(t, sock, get)
	waitLines(t, logPath, 2)
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	in.signal(syscall.SIGUSR1)
	in.waitLog(t, "access log reopened", func(r map[string]any) bool { return r["msg"] == "access log reopened" })
	in.send(t, sock, get)
	ls := waitLines(t, logPath, 1)
	if !combinedLine.MatchString(ls[0]) || !strings.Contains(ls[0], `"GET /go/x HTTP/1.1" 200 `) {
		t.Errorf("the line after the reopen: %q", ls[0])
	}
	if old := fileLines(t, logPath+".1"); len(old) != 2 {
		t.Errorf("the rotated file has %d lines, want the 2 written before the reopen", len(old))
	}
	if fi, err := os.Stat(logPath); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the new file: %v %v, want mode 0640", fi, err)
	}

	in.editConfig(t, "access_log = ", `access_log_format = "json"`+"\naccess_log = ")
	in.reload(t)
	in.send(t, sock, get)
	ls = waitLines(t, logPath, 2)
	var rec map[string]any
	if err := json.Unmarshal([]byte(ls[1]), &rec); err != nil || rec["uri"] != "/go/x" || rec["pool"] != "go" {
		t.Errorf("after a reload to json: %q (%v)", ls[1], err)
	}
}

// TestCheckDump: `check --dump` prints the effective config, which check
// accepts and which loads into the config of the file it came from.
func TestCheckDump(t *testing.T) {
	t.Parallel()
	o := options{http: []string{`access_log = "stderr"`}, routes: "[[http.route]]\nprefix = \"/data/\"\nstatus = 404\n"}
	dir := t.TempDir()
	path := filepath.Join(dir, "fcgivisor.toml")
	if err := os.WriteFile(path, []byte(renderConfig(&o, filepath.Join(dir, "run"), freePort(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fcgivisorBin, "check", "--dump", "-c", path)
	cmd.Env = mergeEnv(os.Environ(), raceEnv())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("check --dump: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	dumped := filepath.Join(t.TempDir(), "dumped.toml")
	if err := os.WriteFile(dumped, stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runCLI(t, nil, "", "check", "-c", dumped); code != 0 {
		t.Fatalf("check of the dump: exit %d\n%s\ndump:\n%s", code, out, stdout.String())
	}
	orig, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	back, err := conf.Load(dumped)
	if err != nil {
		t.Fatal(err)
	}
	back.File = orig.File
	if !reflect.DeepEqual(orig, back) {
		t.Errorf("the dump loads into another config\ndump:\n%s", stdout.String())
	}
	for _, want := range []string{"# " + path + ": ok: ", "\naccess_log = \"stderr\"\n", "\naccess_log_format = \"combined\"\n", "\n[[http.route]]\nprefix = \"/data/\"\nsuffix = \"\"\nstatus = 404\n"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the dump lacks %q:\n%s", want, stdout.String())
		}
	}

	// An invalid file: the errors, exit 1, no dump.
	if err := os.WriteFile(path, []byte("[http]\naccess_log_format = \"xml\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, nil, "", "check", "--dump", "-c", path)
	if code != 1 || !strings.Contains(out, path+":2: http.access_log_format: \"xml\" is not a known format (combined, json)") || strings.Contains(out, "[server]") {
		t.Errorf("check --dump of an invalid file: exit %d\n%s", code, out)
	}
}
