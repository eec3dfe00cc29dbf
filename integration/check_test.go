package integration

// check, run and a reload refuse a file that names what this machine does
// not have (issue 10, item 5): a command that is not installed or not
// executable, a missing document_root or route directory, a runtime_dir
// that cannot be used. Each error reads "FILE: KEY: problem (fix)".

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkFile writes a config into a new directory ({D} in text is that
// directory; runtime_dir is {D}/run unless text sets [server]) and returns
// its path and the directory.
func checkFile(t *testing.T, text string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	if !strings.Contains(text, "[server]") {
		text = "[server]\nruntime_dir = \"run\"\n" + text
	}
	if !strings.Contains(text, "[http]") {
		text = strings.Replace(text, "\n[", fmt.Sprintf("\n[http]\nlisten = [%q]\n\n[", fmt.Sprintf("127.0.0.1:%d", freePort(t))), 1)
	}
	path = filepath.Join(dir, "fcgivisor.toml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "{D}", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

// checkRefuses runs `fcgivisor check` on path and fails t unless it exits
// 1 and prints each of want ("{FILE}" stands for path, "{D}" for its
// directory).
func checkRefuses(t *testing.T, path string, want ...string) {
	t.Helper()
	code, out := runCLI(t, nil, "", "check", "-c", path)
	if code != 1 {
		t.Errorf("check: exit %d, want 1", code)
	}
	r := strings.NewReplacer("{FILE}", path, "{D}", filepath.Dir(path))
	for _, w := range want {
		if w = r.Replace(w); !strings.Contains(out, w) {
			t.Errorf("check did not print %q", w)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// runRefuses runs `fcgivisor run` on path and fails t unless it exits 1
// at once, before serving and before making runtime_dir, printing want.
func runRefuses(t *testing.T, path, want string) {
	t.Helper()
	begin := time.Now()
	code, out := runCLI(t, nil, "", "run", "-c", path)
	took := time.Since(begin)
	want = strings.NewReplacer("{FILE}", path, "{D}", filepath.Dir(path)).Replace(want)
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("run: exit %d, want 1 and %q", code, want)
	}
	// At once: the error comes before anything starts (5 s leaves room
	// for a loaded machine; it used to run on and retry forever).
	if took > 5*time.Second {
		t.Errorf("run took %v to refuse the file, want it at once", took)
	}
	if strings.Contains(out, "fcgivisor running") {
		t.Error("run said \"fcgivisor running\" before refusing the file")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "run")); !os.IsNotExist(err) {
		t.Errorf("run made runtime_dir before refusing the file (%v)", err)
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// Issue 10's row "pool command not installed": check passed it, and run
// logged "fcgivisor running" then respawned forever while clients got 503.
func TestCheckMissingCommand(t *testing.T) {
	t.Parallel()
	path, _ := checkFile(t, `
[[http.route]]
suffix = ".php"
pool = "php"

[pool.php]
command = ["/nonexistent-fcgivisor/php-cgi7.4"]
user = "root"
`)
	const want = "{FILE}: pool.php.command: /nonexistent-fcgivisor/php-cgi7.4: no such file (install it, or fix the path)"
	t.Run("check", func(t *testing.T) { t.Parallel(); checkRefuses(t, path, want) })
	t.Run("run", func(t *testing.T) { t.Parallel(); runRefuses(t, path, want) })
}

// Issue 10's row "document_root that does not exist": check passed it,
// and every request got "404 No input file specified.", with nothing
// logged.
func TestCheckMissingDocumentRoot(t *testing.T) {
	t.Parallel()
	path, _ := checkFile(t, `
[http]
listen = []
document_root = "www"

[[http.route]]
script = "/index.php"
pool = "php"

[pool.php]
command = ["/bin/true"]
user = "root"
`)
	const want = "{FILE}: http.document_root: {D}/www: no such directory; http.route[0] finds its scripts there (create it, or set document_root to the directory that holds them)"
	t.Run("check", func(t *testing.T) { t.Parallel(); checkRefuses(t, path, want) })
	t.Run("run", func(t *testing.T) { t.Parallel(); runRefuses(t, path, want) })
}

// A cgi or static route's directory that is missing was a warning at
// start and a 404 at every request; now check and run refuse it.
func TestCheckMissingRouteDirectories(t *testing.T) {
	t.Parallel()
	path, _ := checkFile(t, `
[[http.route]]
prefix = "/s/"
static = "static"

[[http.route]]
prefix = "/cgi-bin/"
cgi = "cgi-bin"
user = "root"
`)
	t.Run("check", func(t *testing.T) {
		t.Parallel()
		checkRefuses(t, path,
			"{FILE}: http.route[0].static: {D}/static: no such directory (create it, or fix the path)",
			"{FILE}: http.route[1].cgi: {D}/cgi-bin: no such directory (create it, or fix the path)")
	})
	t.Run("run", func(t *testing.T) {
		t.Parallel()
		runRefuses(t, path, "{FILE}: http.route[0].static: {D}/static: no such directory")
	})
}

// A command that exists but that the pool's user cannot execute.
func TestCheckCommandNotExecutable(t *testing.T) {
	t.Parallel()
	t.Run("mode 0644", func(t *testing.T) {
		t.Parallel()
		path, dir := checkFile(t, `
[[http.route]]
pool = "p"

[pool.p]
command = ["{D}/worker"]
user = "root"
`)
		if err := os.WriteFile(filepath.Join(dir, "worker"), []byte("#!/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		checkRefuses(t, path, "{FILE}: pool.p.command: {D}/worker: not executable (mode 0644) (chmod +x it, or fix the path)")
	})
	// The pool's user must be able to reach the command. As root, a 0700
	// root-owned directory keeps nobody (the pool's user) out. Not as root,
	// fcgivisor ignores user and runs workers as itself: a directory of its
	// own without search permission (0600) keeps it out.
	t.Run("directory its user cannot search", func(t *testing.T) {
		t.Parallel()
		path, dir := checkFile(t, `
[[http.route]]
pool = "p"

[pool.p]
command = ["{D}/private/worker"]
user = "nobody"
`)
		// t.TempDir's parent is 0700: let nobody reach dir.
		if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "private"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "private", "worker"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			checkRefuses(t, path, `{FILE}: pool.p.command: {D}/private/worker: user "nobody" cannot execute it: search {D}/private: permission denied for uid `)
			return
		}
		if err := os.Chmod(filepath.Join(dir, "private"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(filepath.Join(dir, "private"), 0o700) }) // let TempDir remove it
		checkRefuses(t, path, `{FILE}: pool.p.command: stat {D}/private/worker: permission denied (let fcgivisor's user search every directory above it, or fix the path)`)
	})
}

// A runtime_dir fcgivisor could neither create nor use.
func TestCheckRuntimeDirUnusable(t *testing.T) {
	t.Parallel()
	path, dir := checkFile(t, `
[server]
runtime_dir = "file/run"

[[http.route]]
pool = "p"

[pool.p]
command = ["/bin/true"]
user = "root"
`)
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const want = "{FILE}: server.runtime_dir: stat {D}/file/run: not a directory (a file stands where its path needs a directory: move it, or choose another runtime_dir)"
	t.Run("check", func(t *testing.T) { t.Parallel(); checkRefuses(t, path, want) })
	t.Run("run", func(t *testing.T) { t.Parallel(); runRefuses(t, path, want) })
}

// A pool that no route and no listen reaches is warned about; the file is
// valid.
func TestCheckUnreachablePool(t *testing.T) {
	t.Parallel()
	path, _ := checkFile(t, `
[[http.route]]
pool = "p"

[pool.p]
command = ["/bin/true"]
user = "root"

[pool.lonely]
command = ["/bin/true"]
user = "root"
`)
	code, out := runCLI(t, nil, "", "check", "-c", path)
	want := `pool \"lonely\" is unreachable: no route names it and it has no listen; its workers would serve nothing (add a [[http.route]] with pool = \"lonely\", or remove the pool)`
	if code != 0 || !strings.Contains(out, want) {
		t.Errorf("check: exit %d, want 0 and the warning %q; output:\n%s", code, want, out)
	}
	if strings.Contains(out, `pool \"p\"`) {
		t.Errorf("check warned about the routed pool p:\n%s", out)
	}
}

// A reload to a file whose command is not installed is refused before
// anything starts: the running workers keep serving.
func TestReloadToMissingCommandIsRefused(t *testing.T) {
	t.Parallel()
	goLang := lang{"go"}
	in := start(t, options{langs: []string{"go"}})
	before := pidSet(in.poolWorkers(goLang))
	in.editConfig(t, "command = "+tomlStrings(goLang.command()), `command = ["/nonexistent-fcgivisor/go-worker"]`)
	out, err := in.reloadCmd()
	want := in.configPath + ": pool.go.command: /nonexistent-fcgivisor/go-worker: no such file (install it, or fix the path)"
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("fcgivisor reload to a missing command: %v %q; want refused with %q", err, out, want)
	}
	in.keptServing(t, goLang, before)
}
