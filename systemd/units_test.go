package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const unitDir = "../contrib/systemd"

// unitFile is a unit's settings: section → key → values, in order.
type unitFile map[string]map[string][]string

func readUnit(t *testing.T, name string) unitFile {
	t.Helper()
	f, err := os.Open(filepath.Join(unitDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: cannot parse %q", name, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unitFile) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// TestServiceUnit pins the choices fcgivisor.service explains, so an edit
// that breaks pools, reload or stop shows up here.
func TestServiceUnit(t *testing.T) {
	u := readUnit(t, "fcgivisor.service")
	for key, want := range map[string]string{
		"Type":                 "notify",
		"NotifyAccess":         "main",
		"ExecStart":            "/usr/local/bin/fcgivisor run -c /etc/fcgivisor/fcgivisor.toml",
		"ExecReload":           "/bin/kill -HUP $MAINPID",
		"KillMode":             "mixed", // fcgivisor drains, then stops its workers itself
		"WatchdogSec":          "30s",
		"RuntimeDirectory":     "fcgivisor",
		"RuntimeDirectoryMode": "0711", // what socket.OpenRuntimeDir enforces anyway
		"NoNewPrivileges":      "yes",
		"Restart":              "on-failure",
	} {
		if got := u.get("Service", key); got != want {
			t.Errorf("[Service] %s=%q, want %q", key, got, want)
		}
	}
	// The drain (shutdown_timeout, default 30s) and the workers' stop
	// (stop_timeout, default 10s) must fit before systemd's SIGKILL.
	stop, err := time.ParseDuration(u.get("Service", "TimeoutStopSec"))
	if err != nil || stop < 40*time.Second {
		t.Errorf("TimeoutStopSec=%q (%v): want at least shutdown_timeout + stop_timeout = 40s", u.get("Service", "TimeoutStopSec"), err)
	}
	// Pools with `user` need these; the bounding set also caps workers.
	caps := strings.Fields(u.get("Service", "CapabilityBoundingSet"))
	for _, c := range []string{"CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"} {
		if !slices.Contains(caps, c) {
			t.Errorf("CapabilityBoundingSet lacks %s: %v", c, caps)
		}
	}
	for _, c := range []string{"CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_PTRACE", "CAP_NET_ADMIN"} {
		if slices.Contains(caps, c) {
			t.Errorf("CapabilityBoundingSet keeps %s, which fcgivisor never needs", c)
		}
	}
	// Settings that would break pools running as another user.
	for key, why := range map[string]string{
		"User":                   "fcgivisor must be root to start workers as a pool's user",
		"DynamicUser":            "fcgivisor must be root to start workers as a pool's user",
		"PrivateUsers":           "pools could not switch to their user",
		"ProtectProc":            "invisible hides workers' /proc entries from fcgivisor",
		"MemoryDenyWriteExecute": "breaks JITs in workers",
		"SystemCallFilter":       "pools run arbitrary programs",
	} {
		if v := u.get("Service", key); v != "" {
			t.Errorf("[Service] %s=%s is set: %s", key, v, why)
		}
	}
	if got := u.get("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%q", got)
	}
}

// TestSocketUnit: the example socket is the quickstart's HTTP address, named
// http, and matched by Match as main will match it.
func TestSocketUnit(t *testing.T) {
	u := readUnit(t, "fcgivisor.socket")
	if got := u.get("Socket", "FileDescriptorName"); got != "http" {
		t.Errorf("FileDescriptorName=%q, want http", got)
	}
	streams := u["Socket"]["ListenStream"]
	if len(streams) != 1 || streams[0] != "127.0.0.1:8080" {
		t.Fatalf("ListenStream=%q, want [127.0.0.1:8080]", streams)
	}
	ls := []Listener{{Name: "http", Network: "tcp", Addr: streams[0]}}
	if _, ok := Match(ls, "tcp", "127.0.0.1:8080"); !ok {
		t.Error("the socket's address does not match http.listen 127.0.0.1:8080")
	}
	if got := u.get("Install", "WantedBy"); got != "sockets.target" {
		t.Errorf("[Install] WantedBy=%q, want sockets.target", got)
	}
}

// TestPoolSocketUnit: the example pool socket is named after its pool
// (php), which is how fcgivisor matches it whatever the pool's listen
// says, belongs to the web server's group, and starts fcgivisor.service.
func TestPoolSocketUnit(t *testing.T) {
	u := readUnit(t, "fcgivisor-php.socket")
	for key, want := range map[string]string{
		"FileDescriptorName": "php",
		"ListenStream":       "/run/fcgivisor-php.sock",
		"SocketGroup":        "www-data",
		"SocketMode":         "0660",
		"Service":            "fcgivisor.service",
	} {
		if got := u.get("Socket", key); got != want {
			t.Errorf("[Socket] %s=%q, want %q", key, got, want)
		}
	}
	ls := []Listener{{Name: "php", Network: "unix", Addr: "/run/fcgivisor-php.sock"}}
	if _, ok := Match(ls, "unix", "/run/fcgivisor-php.sock"); !ok {
		t.Error("the socket's address does not match pool listen /run/fcgivisor-php.sock")
	}
}

// TestUnitsVerify runs `systemd-analyze verify` on both units. It copies
// them with ExecStart= pointing at /bin/true, so verify checks the units
// and not whether fcgivisor is installed. verify exits 0 on most mistakes
// (an unknown key, a bad value) and only prints them: any line naming our
// units fails the test.
func TestUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("systemd-analyze not installed (Debian package systemd): %v", err)
	}
	dir := t.TempDir()
	for _, name := range []string{"fcgivisor.service", "fcgivisor.socket", "fcgivisor-php.socket"} {
		b, err := os.ReadFile(filepath.Join(unitDir, name))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/local/bin/fcgivisor", "/bin/true")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(sa, "verify", "--man=no",
		filepath.Join(dir, "fcgivisor.service"), filepath.Join(dir, "fcgivisor.socket"), filepath.Join(dir, "fcgivisor-php.socket"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case line == "":
		case strings.Contains(line, "fcgivisor.service") || strings.Contains(line, "fcgivisor.socket"):
			t.Errorf("systemd-analyze verify: %s", line)
		default:
			t.Logf("systemd-analyze verify (not about our units): %s", line)
		}
	}
}
