package integration

// Control apart from observation (issue 10): the read-only [status]
// listener, admin.listen kept to Unix sockets and loopback, and the mode,
// owner and group of the front's Unix sockets.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logged reports whether fcgivisor logged a record whose msg is msg.
func (in *instance) logged(msg string) bool {
	for _, r := range records(in.out.String()) {
		if r["msg"] == msg {
			return true
		}
	}
	return false
}

// TestStatusListenReadOnly: [status] listen on 0.0.0.0, reached through
// 127.0.0.1, serves /metrics, /status and /ping to anyone, and POST /stop
// and /reload there do nothing: the instance keeps serving, unreloaded.
// (Before, the only way to let Prometheus scrape was admin.listen on
// 0.0.0.0, which let anyone stop the instance.)
func TestStatusListenReadOnly(t *testing.T) {
	t.Parallel()
	l := adminLang(t)
	port := freePort(t)
	o := options{langs: []string{l.name}, server: []string{"", "[status]", "listen = " + tomlString(fmt.Sprintf("0.0.0.0:%d", port))}}
	in := start(t, o)
	st := newAdminClient(t, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	admin := newAdminClient(t, "unix", filepath.Join(in.runtimeDir, "admin.sock"))

	pids := pidsOf(in.poolWorkers(l))
	if got := st.status(t, l.name).pids(); !slices.Equal(got, pids) {
		t.Errorf("/status on the status listener lists workers %v, want %v", got, pids)
	}
	if lines := metricLines(t, st); !slices.Contains(lines, fmt.Sprintf(`fcgivisor_pool_state{pool=%q,state="running"} 1`, l.name)) {
		t.Errorf("/metrics on the status listener lacks the pool's state:\n%s", strings.Join(lines, "\n"))
	}
	if resp, body := st.get(t, "/ping"); resp.StatusCode != http.StatusOK || string(body) != "pong\n" {
		t.Errorf("GET /ping on the status listener: %d %q", resp.StatusCode, body)
	}

	// A file a reload would act on: the pool's environment changes, so a
	// reload would start a new generation (new pids).
	o.pool = func(_ lang, p *poolOpts) { p.env = map[string]string{"CHANGED": "1"} }
	if err := os.WriteFile(in.configPath, []byte(renderConfig(&o, in.runtimeDir, in.port)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodPut} {
		for _, p := range []string{"/stop", "/reload"} {
			resp, body, err := st.do(m, p)
			if err != nil || resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s on the status listener: %v %v %q, want 404", m, p, err, resp, clip(body))
			}
		}
	}
	for _, msg := range []string{"stop requested through the admin endpoint", "reload requested through the admin endpoint", "stopping", "reloaded"} {
		if in.logged(msg) {
			t.Errorf("after POST /stop and /reload on the status listener fcgivisor logged %q", msg)
		}
	}
	in.expect(t, l.path("/after"), http.StatusOK, "hello from "+l.name+"\n")
	if got := st.status(t, l.name).pids(); !slices.Equal(got, pids) {
		t.Errorf("workers after POST /reload on the status listener: %v, want the same %v (no reload)", got, pids)
	}

	// The admin socket does reload: the checks above would have seen one.
	if resp, body, err := admin.do(http.MethodPost, "/reload"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /reload on the admin socket: %v %v %q", err, resp, clip(body))
	}
	r := in.waitLog(t, "reloaded", func(r map[string]any) bool { return r["msg"] == "reloaded" })
	if ng := fmt.Sprint(r["new_generation"]); !strings.Contains(ng, l.name) {
		t.Errorf("the admin reload started new generations %s, want %s among them", ng, l.name)
	}
	in.expect(t, l.path("/after-reload"), http.StatusOK, "hello from "+l.name+"\n")
	select {
	case <-in.done:
		t.Fatalf("fcgivisor exited (%v) without being told to", in.waitErr)
	default:
	}
}

// TestAdminListenNotLoopback: admin.listen on 0.0.0.0 (the old way to let
// Prometheus scrape) is refused by check and run, naming the key, its line
// and the fix, and nothing listens; a reload to it is refused too.
func TestAdminListenNotLoopback(t *testing.T) {
	t.Parallel()
	l := adminLang(t)
	port := freePort(t)
	addr := fmt.Sprintf("0.0.0.0:%d", port)
	o := options{langs: []string{l.name}, server: []string{"", "[admin]", "listen = " + tomlString(addr)}}
	cfg := filepath.Join(t.TempDir(), "fcgivisor.toml")
	text := renderConfig(&o, shortTempDir(t), freePort(t))
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	line := 0
	for i, s := range strings.Split(text, "\n") {
		if strings.HasPrefix(s, "listen = "+tomlString(addr)) {
			line = i + 1
		}
	}
	want := fmt.Sprintf("%s:%d: admin.listen: %q: 0.0.0.0 is not a loopback address", cfg, line, addr)
	for _, cmd := range []string{"check", "run"} {
		code, out := runCLI(t, nil, "", cmd, "-c", cfg)
		if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "set [status] listen = "+strconv.Quote(addr)+" instead") {
			t.Errorf("fcgivisor %s: exit %d, want 1 and\n  %s ... set [status] listen = %q instead\noutput:\n%s", cmd, code, want, addr, out)
		}
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		c.Close()
		t.Errorf("something listens on port %d after the refused run", port)
	}

	// A running instance refuses a reload to it and keeps its admin socket.
	in := start(t, options{langs: []string{l.name}})
	o.runtimeDir = in.runtimeDir
	if err := os.WriteFile(in.configPath, []byte(renderConfig(&o, in.runtimeDir, in.port)), 0o644); err != nil {
		t.Fatal(err)
	}
	in.signal(syscall.SIGHUP)
	r := in.waitLog(t, "the reload refused", func(r map[string]any) bool {
		return strings.HasPrefix(fmt.Sprint(r["msg"]), "reload refused")
	})
	if e := fmt.Sprint(r["err"]); !strings.Contains(e, "admin.listen") || !strings.Contains(e, "not a loopback address") {
		t.Errorf("reload refused with %q, want the admin.listen error", e)
	}
	if resp, _ := newAdminClient(t, "unix", filepath.Join(in.runtimeDir, "admin.sock")).get(t, "/ping"); resp.StatusCode != http.StatusOK {
		t.Errorf("admin socket after the refused reload: %d", resp.StatusCode)
	}
}

// unixGet sends GET path to the front on the Unix socket sock.
func unixGet(t *testing.T, sock, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
	resp, err := c.Get("http://front" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func sockOwner(t *testing.T, path string) (mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("%s: %v, not a socket", path, fi.Mode())
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode().Perm(), int(st.Uid), int(st.Gid)
}

// TestHTTPUnixListenPerm: a unix: http.listen socket gets mode 0660 and
// fcgivisor's user and group by default, and listen_mode, listen_owner
// and listen_group when set (before, it was always 0666). As root any
// owner and group go; as another user, only its own: others are refused
// by check and run, naming the key.
func TestHTTPUnixListenPerm(t *testing.T) {
	l := adminLang(t)
	serve := func(t *testing.T, lines []string) string {
		sock := filepath.Join(shortTempDir(t), "http.sock")
		start(t, options{langs: []string{l.name}, listen: []string{"unix:" + sock}, http: lines})
		if code, body := unixGet(t, sock, l.path("/x")); code != 200 || body != "hello from "+l.name+"\n" {
			t.Errorf("GET through %s: %d %q", sock, code, body)
		}
		return sock
	}
	refused := func(t *testing.T, lines []string, want ...string) {
		o := options{langs: []string{l.name}, listen: []string{"unix:" + filepath.Join(shortTempDir(t), "http.sock")}, http: lines}
		cfg := filepath.Join(t.TempDir(), "fcgivisor.toml")
		if err := os.WriteFile(cfg, []byte(renderConfig(&o, shortTempDir(t), freePort(t))), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"check", "run"} {
			code, out := runCLI(t, nil, "", cmd, "-c", cfg)
			for _, w := range want {
				if code != 1 || !strings.Contains(out, w) {
					t.Errorf("fcgivisor %s with %q: exit %d, want 1 and %q; output:\n%s", cmd, lines, code, w, out)
				}
			}
		}
	}

	t.Run("default", func(t *testing.T) {
		t.Parallel()
		sock := serve(t, nil)
		if mode, uid, gid := sockOwner(t, sock); mode != 0o660 || uid != os.Geteuid() || gid != os.Getegid() {
			t.Errorf("%s: mode %04o uid %d gid %d, want 0660 uid %d gid %d (fcgivisor's)", sock, mode, uid, gid, os.Geteuid(), os.Getegid())
		}
	})
	t.Run("unknown owner", func(t *testing.T) {
		t.Parallel()
		refused(t, []string{`listen_owner = "no-such-user-fv"`, `listen_group = "no-such-group-fv"`},
			`: http.listen_owner: user "no-such-user-fv"`, `: http.listen_group: group "no-such-group-fv"`)
	})
	if os.Geteuid() == 0 {
		t.Run("root: mode, owner and group", func(t *testing.T) {
			t.Parallel()
			nobody, err := user.Lookup("nobody")
			if err != nil {
				t.Fatal("no user nobody (every Debian system has one: base-passwd): ", err)
			}
			g, err := user.LookupGroupId(nobody.Gid)
			if err != nil {
				t.Fatal("nobody's group has no name in /etc/group: ", err)
			}
			sock := serve(t, []string{`listen_mode = "0640"`, `listen_owner = "nobody"`, "listen_group = " + tomlString(g.Name)})
			mode, uid, gid := sockOwner(t, sock)
			if mode != 0o640 || strconv.Itoa(uid) != nobody.Uid || strconv.Itoa(gid) != nobody.Gid {
				t.Errorf("%s: mode %04o uid %d gid %d, want 0640 uid %s gid %s", sock, mode, uid, gid, nobody.Uid, nobody.Gid)
			}
		})
		return
	}
	t.Run("not root: its own group", func(t *testing.T) {
		t.Parallel()
		g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
		if err != nil {
			t.Fatal("the test's group has no name in /etc/group: ", err)
		}
		sock := serve(t, []string{`listen_mode = "0640"`, "listen_group = " + tomlString(g.Name)})
		if mode, uid, gid := sockOwner(t, sock); mode != 0o640 || uid != os.Geteuid() || gid != os.Getegid() {
			t.Errorf("%s: mode %04o uid %d gid %d, want 0640 uid %d gid %d", sock, mode, uid, gid, os.Geteuid(), os.Getegid())
		}
	})
	t.Run("not root: another owner or group", func(t *testing.T) {
		t.Parallel()
		refused(t, []string{`listen_owner = "root"`, `listen_group = "root"`},
			`: http.listen_owner: fcgivisor runs as uid `+strconv.Itoa(os.Geteuid())+`, not root, and cannot give its sockets to user "root"`,
			`: http.listen_group: fcgivisor runs as uid `+strconv.Itoa(os.Geteuid())+`, not root, and is not in group "root"`)
	})
}
