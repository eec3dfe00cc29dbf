package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// procIDs reads the Uid, Gid and Groups lines of /proc/PID/status.
func procIDs(t *testing.T, pid int) (uid, gid, groups string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		switch k {
		case "Uid":
			uid = f[1] // effective
		case "Gid":
			gid = f[1]
		case "Groups":
			groups = strings.Join(f, " ")
		}
	}
	return uid, gid, groups
}

// As root, a pool with user = "nobody" runs its workers as nobody (uid,
// primary gid, supplementary groups), with rlimit_nofile applied.
func TestPoolRunsAsItsUser(t *testing.T) {
	// The C worker is built into the harness's world-readable temp dir; a
	// script in the repository may not be readable by nobody (a clone
	// under /root).
	c := lang{"c"}
	c.need(t)
	if os.Geteuid() != 0 {
		t.Skip("requires root: workers can only change user when fcgivisor runs as root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("user nobody not found: ", err)
	}
	t.Parallel()
	in := start(t, options{langs: []string{"c"}, pool: func(l lang, p *poolOpts) {
		p.extra = append(p.extra, `user = "nobody"`, `rlimit_nofile = 777`)
	}})
	resp, body, err := in.do(context.Background(), http.MethodGet, c.path("/x?pid"), nil, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v %q", err, resp, body)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(body)))
	uid, gid, groups := procIDs(t, pid)
	if uid != nobody.Uid || gid != nobody.Gid {
		t.Fatalf("worker %d runs as uid %s gid %s, want nobody (%s/%s)", pid, uid, gid, nobody.Uid, nobody.Gid)
	}
	if strings.Contains(" "+groups+" ", " 0 ") {
		t.Fatalf("worker kept root's supplementary groups: %q", groups)
	}
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if !strings.Contains(string(limits), "Max open files            777                  777") {
		t.Fatalf("rlimit_nofile not applied:\n%s", limits)
	}
}

// As root, a pool that does not name its user is refused at start, with
// the key and the fix.
func TestRootRefusesPoolWithoutUser(t *testing.T) {
	lang{"c"}.need(t)
	if os.Geteuid() != 0 {
		t.Skip("requires root: the refusal only applies when fcgivisor runs as root")
	}
	t.Parallel()
	o := options{langs: []string{"c"}}
	cfg := renderConfig(&o, shortTempDir(t), freePort(t))
	cfg = strings.Replace(cfg, "user = \"root\"\n", "", 1)
	path := filepath.Join(t.TempDir(), "f.toml")
	os.WriteFile(path, []byte(cfg), 0o644)
	out, err := exec.Command(fcgivisorBin, "run", "-c", path).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("run: %v, want exit 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "pool.c.user") || !strings.Contains(string(out), `user = "root"`) {
		t.Fatalf("output does not name the key and the fix:\n%s", out)
	}
}
