package integration

// The one-shot commands: check and version.

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

func nonEmptyLines(s string) []string {
	var ls []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

func TestCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	valid := filepath.Join(dir, "fcgivisor.toml")
	if err := os.WriteFile(valid, []byte(renderConfig(&options{}, "/tmp/fv-check-not-used", 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		code, out := runCLI(t, nil, "", "check", "-c", valid)
		if code != 0 {
			t.Fatalf("check on a valid file: exit %d, want 0; output:\n%s", code, out)
		}
		// One summary line; not as root, also one warning per pool that
		// names a user (ignored).
		var summary []string
		for _, l := range nonEmptyLines(out) {
			if !strings.Contains(l, "level=WARN") {
				summary = append(summary, l)
			}
		}
		if len(summary) != 1 {
			t.Errorf("check on a valid file printed %d lines besides warnings, want 1:\n%s", len(summary), out)
		}
	})
	// -c defaults to $FCGIVISOR_CONFIG, then ./fcgivisor.toml.
	t.Run("env", func(t *testing.T) {
		t.Parallel()
		code, out := runCLI(t, []string{"FCGIVISOR_CONFIG=" + valid}, t.TempDir(), "check")
		if code != 0 || !strings.Contains(out, valid) {
			t.Errorf("check with FCGIVISOR_CONFIG=%s: exit %d, want 0 and the file named; output:\n%s", valid, code, out)
		}
	})
	t.Run("cwd", func(t *testing.T) {
		t.Parallel()
		code, out := runCLI(t, []string{"FCGIVISOR_CONFIG="}, dir, "check")
		if code != 0 || !strings.Contains(out, "fcgivisor.toml") {
			t.Errorf("check in a directory with fcgivisor.toml: exit %d, want 0; output:\n%s", code, out)
		}
	})

	// As root, check refuses what run would refuse: a pool or cgi route
	// that does not name its user, a user that does not exist. As another
	// user, users are ignored with a warning, as run ignores them.
	t.Run("privileges", func(t *testing.T) {
		t.Parallel()
		f := filepath.Join(t.TempDir(), "users.toml")
		const text = `[server]
runtime_dir = "/tmp/fv-check-not-used"

[[http.route]]
prefix = "/cgi-bin/"
cgi = "/tmp"

[[http.route]]
pool = "x"

[pool.x]
command = ["/bin/true"]

[pool.y]
command = ["/bin/true"]
user = "no-such-user-fcgivisor"
`
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out := runCLI(t, nil, "", "check", "-c", f)
		if os.Geteuid() != 0 {
			if code != 0 || !strings.Contains(out, "user and group are ignored") {
				t.Errorf("check not as root: exit %d, want 0 and a warning that user is ignored\n%s", code, out)
			}
			return
		}
		if code != 1 {
			t.Errorf("check as root with pools and a cgi route without users: exit %d, want 1", code)
		}
		for _, want := range []string{f + ": http.route[0].user:", f + ": pool.x.user:", f + ": pool.y.user:"} {
			if !strings.Contains(out, want) {
				t.Errorf("no error %q", want)
			}
		}
		if t.Failed() {
			t.Logf("output:\n%s", out)
		}
	})

	t.Run("invalid", func(t *testing.T) {
		t.Parallel()
		bad := filepath.Join(t.TempDir(), "bad.toml")
		const text = `[server]
runtime_dir = "/tmp/fv-check-not-used"
bogus_key = 1

[http]
listen = ["127.0.0.1:1"]

[[http.route]]
prefix = "/"
pool = "missing"

[pool.real]
command = ["/bin/true"]
`
		if err := os.WriteFile(bad, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out := runCLI(t, nil, "", "check", "-c", bad)
		if code != 1 {
			t.Errorf("check on an invalid file: exit %d, want 1", code)
		}
		// FILE:LINE: for each error. The missing pool is on line 10 (its
		// route's table starts on line 8; either names the place).
		unknown := regexp.MustCompile(regexp.QuoteMeta(bad) + `:3:.*bogus_key`)
		missing := regexp.MustCompile(regexp.QuoteMeta(bad) + `:(8|10):.*missing`)
		if !unknown.MatchString(out) {
			t.Errorf("no error %q for the unknown key", unknown)
		}
		if !missing.MatchString(out) {
			t.Errorf("no error %q for the route to a missing pool", missing)
		}
		if t.Failed() {
			t.Logf("output:\n%s", out)
		}
	})
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out := runCLI(t, nil, "", "version")
	if code != 0 {
		t.Fatalf("version: exit %d; output:\n%s", code, out)
	}
	goVersion := runtime.Version() // built here by this toolchain
	if builtVersion == "" {
		goVersion = "go1." // prebuilt: by some Go 1
	}
	if !strings.Contains(out, goVersion) {
		t.Errorf("version output %q lacks the Go version %s", out, goVersion)
	}
	if builtVersion != "" && !strings.Contains(out, builtVersion) {
		t.Errorf("version output %q lacks the version linked in (-X main.version=%s)", out, builtVersion)
	}
}
