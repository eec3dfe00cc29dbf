package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// debFiles is what the .deb holds, as `dpkg-deb -c` lists it (directories
// that hold files left out).
var debFiles = []string{
	"-rw-r--r-- ./etc/fcgivisor/fcgivisor.toml",
	"-rw-r--r-- ./etc/logrotate.d/fcgivisor",
	"-rw-r--r-- ./lib/systemd/system/fcgivisor-php.socket",
	"-rw-r--r-- ./lib/systemd/system/fcgivisor.service",
	"-rw-r--r-- ./lib/systemd/system/fcgivisor.socket",
	"-rwxr-xr-x ./usr/bin/fcgivisor",
	"-rw-r--r-- ./usr/share/bash-completion/completions/fcgivisor",
	"-rw-r--r-- ./usr/share/fish/vendor_completions.d/fcgivisor.fish",
	"-rw-r--r-- ./usr/share/man/man1/fcgivisor.1.gz",
	"-rw-r--r-- ./usr/share/man/man5/fcgivisor.toml.5.gz",
	"-rw-r--r-- ./usr/share/zsh/vendor-completions/_fcgivisor",
	"drwxr-x--- ./var/log/fcgivisor/",
}

// TestDeb builds the .deb (make deb), checks its files, then installs it
// with dpkg on this machine: the shipped config passes fcgivisor check, man
// finds both pages, the units run /usr/bin/fcgivisor; dpkg -r removes all
// but the conffiles, dpkg -P those too. It fails rather than replace an
// installed fcgivisor. Not as root, the package is built and checked the
// same, and dpkg refuses to install it. dpkg is part of every Debian and
// Ubuntu system, which CI and hack/setup.sh require.
func TestDeb(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Fatal("no dpkg: the packaging tests need a Debian or Ubuntu machine, as hack/setup.sh does")
	}
	if os.Geteuid() != 0 {
		deb := buildDeb(t)
		out, err := exec.Command("dpkg", "-i", deb).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "requires superuser privilege") {
			t.Errorf("dpkg -i %s not as root: %v\n%s; want refused: requires superuser privilege", deb, err, out)
		}
		return
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "fcgivisor").Output(); err == nil && len(out) > 0 && string(out) != "not-installed" {
		t.Fatalf("a fcgivisor package is on this machine (%s): the test would replace it; run it where none is (CI)", out)
	}
	for _, p := range []string{"/usr/bin/fcgivisor", "/etc/fcgivisor", "/var/log/fcgivisor"} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists: the test would replace it; run it where no fcgivisor is installed (CI)", p)
		}
	}
	deb := buildDeb(t)
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "fcgivisor").Run() })
	dpkg(t, "-i", deb)

	for _, f := range debFiles {
		if _, err := os.Stat(strings.TrimPrefix(strings.Fields(f)[1], ".")); err != nil {
			t.Errorf("after dpkg -i: %v", err)
		}
	}
	if out, err := exec.Command("/usr/bin/fcgivisor", "check", "-c", "/etc/fcgivisor/fcgivisor.toml").CombinedOutput(); err != nil {
		t.Errorf("fcgivisor check -c /etc/fcgivisor/fcgivisor.toml: %v\n%s", err, out)
	}
	checkExecStart(t, "/lib/systemd/system", "/usr/bin/fcgivisor")
	if _, err := exec.LookPath("man"); err == nil {
		for page, want := range map[string]string{"fcgivisor": "/usr/share/man/man1/fcgivisor.1.gz", "fcgivisor.toml": "/usr/share/man/man5/fcgivisor.toml.5.gz"} {
			if out, err := exec.Command("man", "-w", page).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != want {
				t.Errorf("man -w %s: %q, %v; want %s", page, out, err, want)
			}
		}
	} else {
		t.Log("man is not installed: man -w not tried")
	}

	dpkg(t, "-r", "fcgivisor")
	for _, f := range debFiles {
		p := strings.TrimPrefix(strings.Fields(f)[1], ".")
		_, err := os.Stat(p)
		if conffile := strings.HasPrefix(p, "/etc/"); conffile != (err == nil) {
			t.Errorf("after dpkg -r: %s: %v (a conffile stays until a purge; the rest goes)", p, err)
		}
	}
	dpkg(t, "-P", "fcgivisor")
	for _, p := range []string{"/etc/fcgivisor", "/etc/logrotate.d/fcgivisor", "/var/log/fcgivisor", "/usr/bin/fcgivisor"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("after dpkg -P: %s is still there", p)
		}
	}
}

// buildDeb runs make deb and checks the file list of the one .deb it made.
func buildDeb(t *testing.T) string {
	t.Helper()
	makeCmd(t, "deb")
	debs, _ := filepath.Glob(filepath.Join(repoRoot, "dist/fcgivisor_*.deb"))
	arch, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		t.Fatal(err)
	}
	if len(debs) != 1 || !strings.HasSuffix(debs[0], "_"+strings.TrimSpace(string(arch))+".deb") {
		t.Fatalf("make deb made %v, want one dist/fcgivisor_VERSION_%s.deb", debs, arch)
	}
	out, err := exec.Command("dpkg-deb", "-c", debs[0]).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -c %s: %v", debs[0], err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[1] != "root/root" {
			t.Errorf("dpkg-deb -c: %q: want a root/root entry", l)
			continue
		}
		if entry := f[0] + " " + f[5]; f[0][0] != 'd' || !hasChild(string(out), f[5]) {
			got = append(got, entry)
		}
	}
	slices.Sort(got)
	diffLists(t, "dpkg-deb -c "+debs[0], got, slices.Clone(debFiles))
	info, err := exec.Command("dpkg-deb", "-f", debs[0], "Package", "Version", "Depends").Output()
	if err != nil || !strings.Contains(string(info), "Package: fcgivisor\n") || strings.Contains(string(info), "Depends:") {
		t.Errorf("dpkg-deb -f: %v\n%s; want Package: fcgivisor and no Depends (the binary is static)", err, info)
	}
	if describe, err := exec.Command("git", "-C", repoRoot, "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		if want := debVersion(strings.TrimSpace(string(describe))); !strings.Contains(string(info), "\nVersion: "+want+"\n") {
			t.Errorf("dpkg-deb -f: %s; want Version: %s (git describe: %s)", info, want, describe)
		}
	}
	abs, err := filepath.Abs(debs[0])
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// debVersion is git describe's version in Debian's syntax, as the
// Makefile's DEB_VERSION makes it: v1.2.3-4-gabc-dirty → 1.2.3+4.gabc.dirty;
// without a tag, abc → 0.0.0+git.abc.
func debVersion(v string) string {
	if !regexp.MustCompile(`^v?[0-9]+\.[0-9]`).MatchString(v) {
		v = "0.0.0+git." + v
	}
	v = strings.Replace(strings.TrimPrefix(v, "v"), "-", "+", 1)
	return strings.ReplaceAll(v, "-", ".")
}

// hasChild reports whether listing (dpkg-deb -c) has an entry below dir.
func hasChild(listing, dir string) bool {
	for _, l := range strings.Split(listing, "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && f[5] != dir && strings.HasPrefix(f[5], dir) {
			return true
		}
	}
	return false
}

func dpkg(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("dpkg", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("dpkg %s:\n%s", strings.Join(args, " "), out)
}
