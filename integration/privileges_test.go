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
	c := lang{"c"}
	c.need(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal("user nobody: ", err)
	}
	t.Parallel()
	in := start(t, options{langs: []string{"c"}, pool: func(l lang, p *poolOpts) {
		p.user = "nobody"
		p.extra = append(p.extra, `rlimit_nofile = 777`)
	}})
	resp, body, err := in.do(context.Background(), http.MethodGet, c.path("/x?pid"), nil, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v %q", err, resp, body)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(body)))
	uid, gid, groups := procIDs(t, pid)
	if os.Geteuid() == 0 {
		if uid != nobody.Uid || gid != nobody.Gid {
			t.Fatalf("worker %d runs as uid %s gid %s, want nobody (%s/%s)", pid, uid, gid, nobody.Uid, nobody.Gid)
		}
		if strings.Contains(" "+groups+" ", " 0 ") {
			t.Fatalf("worker kept root's supplementary groups: %q", groups)
		}
	} else {
		// Not root: user is ignored with a warning, as PHP-FPM does.
		if uid != strconv.Itoa(os.Getuid()) {
			t.Fatalf("worker %d runs as uid %s, want fcgivisor's own %d", pid, uid, os.Getuid())
		}
		in.waitLog(t, "the warning that user is ignored", func(r map[string]any) bool {
			return strings.Contains(fmt.Sprint(r["msg"]), "user and group are ignored")
		})
	}
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if !strings.Contains(string(limits), "Max open files            777                  777") {
		t.Fatalf("rlimit_nofile not applied:\n%s", limits)
	}
}

// As root, a pool that does not name its user is refused at start, with
// the key and the fix; as another user, the file is fine.
func TestPoolWithoutUser(t *testing.T) {
	lang{"c"}.need(t)
	t.Parallel()
	o := options{langs: []string{"c"}}
	cfg := renderConfig(&o, shortTempDir(t), freePort(t))
	cfg = strings.Replace(cfg, "user = \"root\"\n", "", 1)
	path := filepath.Join(t.TempDir(), "f.toml")
	os.WriteFile(path, []byte(cfg), 0o644)
	if os.Geteuid() != 0 {
		if code, out := runCLI(t, nil, "", "check", "-c", path); code != 0 {
			t.Fatalf("check of a pool without user, not as root: exit %d, want 0\n%s", code, out)
		}
		return
	}
	out, err := exec.Command(fcgivisorBin, "run", "-c", path).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("run: %v, want exit 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "pool.c.user") || !strings.Contains(string(out), `user = "root"`) {
		t.Fatalf("output does not name the key and the fix:\n%s", out)
	}
}
