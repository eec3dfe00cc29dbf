package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/internal/testkit"
	"github.com/fcgivisor/fcgivisor/signals"
	"github.com/fcgivisor/fcgivisor/socket"
)

// appendConf adds lines to the end of the fixture's file (after f.write).
func (f *fixture) appendConf(lines ...string) {
	f.t.Helper()
	fh, err := os.OpenFile(f.path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fmt.Fprintln(fh, strings.Join(lines, "\n")); err != nil {
		f.t.Fatal(err)
	}
}

// setHTTP inserts lines into the [http] table of the fixture's file.
func (f *fixture) setHTTP(lines ...string) {
	f.t.Helper()
	text, err := os.ReadFile(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	text = []byte(strings.Replace(string(text), "[http]\n", "[http]\n"+strings.Join(lines, "\n")+"\n", 1))
	if err := os.WriteFile(f.path, text, 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// unixDo sends method path to the HTTP server on the Unix socket sock.
func unixDo(sock, method, path string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequest(method, "http://x"+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func sockMode(t *testing.T, path string) (mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("%s is %v, not a socket", path, fi.Mode())
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode().Perm(), int(st.Uid), int(st.Gid)
}

// TestStatusEndpoint: [status] listen opens with the instance (a Unix
// socket with mode 0660), answers /status, /metrics and /ping, does not
// reload or stop on POST, and closes with the instance (issue 10).
func TestStatusEndpoint(t *testing.T) {
	f := newFixture(t)
	f.write([]string{"http"}, pool{name: "a", greeting: "first"})
	f.appendConf("[status]", "listen = "+strconv.Quote("unix:"+f.sock("status")))
	actions := make(chan signals.Action)
	done := make(chan error, 1)
	go func() { done <- Run(f.options(actions)) }()
	testkit.Eventually(t, "the front answers", func() bool { _, err := get(t, f.sock("http"), "a"); return err == nil })

	st := f.sock("status")
	if mode, uid, gid := sockMode(t, st); mode != 0o660 || uid != os.Geteuid() || gid != os.Getegid() {
		t.Errorf("status socket: mode %04o uid %d gid %d, want 0660 and fcgivisor's uid %d gid %d", mode, uid, gid, os.Geteuid(), os.Getegid())
	}
	if code, body, err := unixDo(st, "GET", "/status"); err != nil || code != 200 || !strings.Contains(body, `"name": "a"`) {
		t.Errorf("GET /status on the status socket: %d %q %v", code, body, err)
	}
	if code, body, err := unixDo(st, "GET", "/metrics"); err != nil || code != 200 || !strings.Contains(body, `fcgivisor_pool_state{pool="a",state="running"} 1`) {
		t.Errorf("GET /metrics on the status socket: %d %q %v", code, body, err)
	}

	// The file now says "second": a reload would show it.
	f.write([]string{"http"}, pool{name: "a", greeting: "second"})
	f.appendConf("[status]", "listen = "+strconv.Quote("unix:"+f.sock("status")))
	for _, p := range []string{"/reload", "/stop"} {
		if code, body, err := unixDo(st, "POST", p); err != nil || code != http.StatusNotFound {
			t.Errorf("POST %s on the status socket: %d %q %v, want 404", p, code, body, err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) after POST /stop on the status socket", err)
	default:
	}
	if body := mustGet(t, f.sock("http"), "a"); !strings.HasSuffix(body, " first") {
		t.Errorf("after POST /reload on the status socket the front answers %q: it reloaded", body)
	}
	// The same POST on the admin socket reloads: the check above could
	// see one.
	if err := postAdmin(f.sock("admin"), "/reload"); err != nil {
		t.Fatal(err)
	}
	if body := mustGet(t, f.sock("http"), "a"); !strings.HasSuffix(body, " second") {
		t.Errorf("after POST /reload on the admin socket: %q", body)
	}

	select {
	case actions <- signals.Stop:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not take the stop")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(st); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("status socket after the stop: %v, want it removed", err)
	}
	if _, _, err := unixDo(st, "GET", "/ping"); err == nil {
		t.Error("the status endpoint answers after the stop")
	}
}

// TestStatusEndpointTCP: without status.listen no status listener is
// opened; a TCP one is served with the instance, read-only.
func TestStatusEndpointTCP(t *testing.T) {
	f := newFixture(t)
	f.write([]string{"http"}, pool{name: "a", greeting: "a"})
	admin, status, err := listenEndpoints(f.options(nil).Config, socket.Mode(0o660))
	if err != nil {
		t.Fatal(err)
	}
	admin.Close()
	if status != nil {
		status.Close()
		t.Fatalf("no status.listen, yet a status listener on %v", status.Addr())
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	f.appendConf("[status]", "listen = "+strconv.Quote(addr))
	in, err := start(f.options(nil))
	if err != nil {
		t.Fatalf("start: %v\n%s", err, f.log)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "pong\n" {
		t.Errorf("GET /ping on %s: %d %q", addr, resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/ping", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 32<<10))
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("GET /ping with 32 KiB of headers: %v %v, want 431", resp, err)
	} else {
		resp.Body.Close()
	}
	resp, err = c.Post("http://"+addr+"/stop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /stop on %s: %d, want 404", addr, resp.StatusCode)
	}
	select {
	case <-in.ctl.stops:
		t.Error("POST /stop on the status listener asked the loop to stop")
	default:
	}
	c.CloseIdleConnections()
	in.shutdown(false)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("%s still accepts after the shutdown", addr)
	}
}

// foreignUser and foreignGroup are a user fcgivisor does not run as and a
// group its process is not in, whoever runs the test.
func foreignUser(t *testing.T) string {
	for _, name := range []string{"root", "nobody", "daemon", "bin"} {
		if u, err := user.Lookup(name); err == nil && u.Uid != strconv.Itoa(os.Geteuid()) {
			return name
		}
	}
	t.Fatal("no user other than the test's own in /etc/passwd: root, nobody, daemon and bin are in every Debian system (base-passwd)")
	return ""
}

func foreignGroup(t *testing.T) string {
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"root", "daemon", "bin", "sys", "adm", "nogroup"} {
		if g, err := user.LookupGroup(name); err == nil {
			gid, _ := strconv.Atoi(g.Gid)
			if gid != os.Getegid() && !slices.Contains(groups, gid) {
				return name
			}
		}
	}
	t.Fatal("no group in /etc/group that the test process is not in: root, daemon, bin, sys, adm and nogroup are in every Debian system (base-passwd)")
	return ""
}

// TestSocketPerm: listen_owner and listen_group must exist, and when
// fcgivisor does not run as root they may name only its own user and its
// groups; each error names its key and the fix.
func TestSocketPerm(t *testing.T) {
	self, err := user.LookupId(strconv.Itoa(os.Geteuid()))
	if err != nil {
		t.Fatal("the test's uid has no name in /etc/passwd: ", err)
	}
	ownGroup, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		t.Fatal("the test's gid has no name in /etc/group: ", err)
	}
	other, foreign := foreignUser(t), foreignGroup(t)
	ou, _ := user.Lookup(other)
	fg, _ := user.LookupGroup(foreign)
	for _, tc := range []struct {
		name         string
		owner, group string
		privileged   bool
		uid, gid     string // want, "-1" for unset
		errs         []string
	}{
		{"defaults", "", "", false, "-1", "-1", nil},
		{"root: any user and group", other, foreign, true, ou.Uid, fg.Gid, nil},
		{"not root: its own user and group", self.Username, ownGroup.Name, false, self.Uid, ownGroup.Gid, nil},
		{"unknown user", "no-such-user-fv", "", true, "-1", "-1", []string{`http.listen_owner: user "no-such-user-fv": user: unknown user no-such-user-fv`}},
		{"unknown group", "", "no-such-group-fv", true, "-1", "-1", []string{`http.listen_group: group "no-such-group-fv": group: unknown group no-such-group-fv`}},
		{"not root: another user", other, "", false, "-1", "-1", []string{"http.listen_owner: fcgivisor runs as uid " + strconv.Itoa(os.Geteuid()) + ", not root, and cannot give its sockets to user " + strconv.Quote(other), "leave listen_owner empty, or run fcgivisor as root"}},
		{"not root: a foreign group", "", foreign, false, "-1", "-1", []string{"http.listen_group: fcgivisor runs as uid " + strconv.Itoa(os.Geteuid()) + ", not root, and is not in group " + strconv.Quote(foreign), "add fcgivisor's user to the group"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, errs := socketPerm("http", conf.FileMode(0o640), tc.owner, tc.group, tc.privileged)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			joined := strings.Join(got, "\n")
			for _, want := range tc.errs {
				if !strings.Contains(joined, want) {
					t.Errorf("errors %q lack %q", got, want)
				}
			}
			if tc.errs == nil && len(errs) > 0 {
				t.Errorf("errors %q, want none", got)
			}
			if p.Mode != 0o640 || strconv.Itoa(p.UID) != tc.uid || strconv.Itoa(p.GID) != tc.gid {
				t.Errorf("perm %+v, want mode 0640 uid %s gid %s", p, tc.uid, tc.gid)
			}
		})
	}
}

// TestCheckPrivilegesListenOwners: check (CheckPrivileges) reports the
// listen_owner and listen_group errors of [http] and [status] with the
// file, so that it refuses what run would.
func TestCheckPrivilegesListenOwners(t *testing.T) {
	f := newFixture(t)
	f.write([]string{"http"})
	f.setHTTP(`listen_owner = "no-such-user-fv"`)
	f.appendConf("[status]", "listen = "+strconv.Quote("unix:"+f.sock("status")), `listen_group = "no-such-group-fv"`)
	cfg, err := conf.Load(f.path)
	if err != nil {
		t.Fatal(err)
	}
	err = CheckPrivileges(cfg, os.Geteuid() == 0, f.options(nil).Log)
	for _, want := range []string{
		f.path + `: http.listen_owner: user "no-such-user-fv"`,
		f.path + `: status.listen_group: group "no-such-group-fv"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckPrivileges: %v, want it to contain %s", err, want)
		}
	}
	// start refuses it before opening anything.
	if _, err := start(f.options(nil)); err == nil || !strings.Contains(err.Error(), "http.listen_owner") {
		t.Errorf("start: %v, want the http.listen_owner error", err)
	}
	if _, err := os.Lstat(f.sock("http")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("http socket after the refused start: %v", err)
	}
}

// TestHTTPListenPerm: a Unix http.listen socket gets listen_mode (0660 by
// default) and listen_group; at a reload, a changed mode applies to the
// sockets the reload opens, and the kept ones keep theirs, with a warning.
func TestHTTPListenPerm(t *testing.T) {
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		t.Fatal("the test's gid has no name in /etc/group: ", err)
	}
	f := newFixture(t)
	f.write([]string{"http"}, pool{name: "a", greeting: "a"})
	in := f.start()
	if mode, uid, gid := sockMode(t, f.sock("http")); mode != 0o660 || uid != os.Geteuid() || gid != os.Getegid() {
		t.Errorf("default: mode %04o uid %d gid %d, want 0660 uid %d gid %d", mode, uid, gid, os.Geteuid(), os.Getegid())
	}

	f.write([]string{"http", "http2"}, pool{name: "a", greeting: "a"})
	f.setHTTP(`listen_mode = "0604"`, "listen_group = "+strconv.Quote(g.Name))
	if err := in.reload(); err != nil {
		t.Fatal(err)
	}
	if mode, _, _ := sockMode(t, f.sock("http")); mode != 0o660 {
		t.Errorf("kept socket after the reload: mode %04o, want 0660 kept", mode)
	}
	if mode, _, gid := sockMode(t, f.sock("http2")); mode != 0o604 || gid != os.Getegid() {
		t.Errorf("socket opened by the reload: mode %04o gid %d, want 0604 gid %d", mode, gid, os.Getegid())
	}
	if !strings.Contains(f.log.String(), "the sockets kept keep theirs until the next restart") {
		t.Errorf("no warning about the kept socket's mode:\n%s", f.log)
	}
	if body := mustGet(t, f.sock("http2"), "a"); body == "" {
		t.Error("the new socket does not serve")
	}
}

// TestReloadStatusChangeWarns: [status] takes effect at the next restart:
// a reload that changes it says so, and the status endpoint stays where
// it was.
func TestReloadStatusChangeWarns(t *testing.T) {
	f := newFixture(t)
	f.write([]string{"http"}, pool{name: "a", greeting: "a"})
	f.appendConf("[status]", "listen = "+strconv.Quote("unix:"+f.sock("status")))
	in := f.start()
	f.write([]string{"http"}, pool{name: "a", greeting: "a"})
	f.appendConf("[status]", "listen = "+strconv.Quote("unix:"+f.sock("status2")))
	if err := in.reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.log.String(), "[server], [admin] and [status] settings other than shutdown_timeout and max_procs take effect at the next restart") {
		t.Errorf("no restart warning for a changed [status]:\n%s", f.log)
	}
	if code, _, err := unixDo(f.sock("status"), "GET", "/ping"); err != nil || code != 200 {
		t.Errorf("the status endpoint after the reload: %d %v", code, err)
	}
	if _, err := os.Lstat(f.sock("status2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the reload opened the new status address: %v", err)
	}
}
