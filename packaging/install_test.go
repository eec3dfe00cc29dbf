// Package packaging holds the tests of what `make install` and `make deb`
// ship (issue 13): the file lists, the static binary, the example
// configuration, the logrotate snippet, and the .deb installed and removed
// with dpkg. nfpm.yaml and the maintainer scripts (deb/) are beside them.
package packaging

import (
	"bytes"
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const repoRoot = ".."

// makeCmd runs make in the repository root with args, without the
// MAKEFLAGS of a make that runs these tests (its jobserver is not ours).
func makeCmd(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	cmd := exec.Command("make", append([]string{"--no-print-directory"}, args...)...)
	cmd.Dir = repoRoot
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		for _, k := range []string{"MAKEFLAGS=", "MFLAGS=", "MAKELEVEL=", "MAKEOVERRIDES="} {
			if strings.HasPrefix(kv, k) {
				return true
			}
		}
		return false
	})
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tree lists the files under root as "MODE path" (octal permissions), and
// the empty directories as "MODE path/".
func tree(t *testing.T, root string) []string {
	t.Helper()
	var list []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if entries, err := os.ReadDir(path); err != nil || len(entries) > 0 {
				return err
			}
			rel += "/"
		}
		list = append(list, modeString(fi.Mode())+" "+rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(list)
	return list
}

func modeString(m fs.FileMode) string {
	const digits = "01234567"
	p := m.Perm()
	return "0" + string(digits[p>>6&7]) + string(digits[p>>3&7]) + string(digits[p&7])
}

func diffLists(t *testing.T, what string, got, want []string) {
	t.Helper()
	slices.Sort(want)
	if slices.Equal(got, want) {
		return
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s: missing %s", what, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("%s: unexpected %s", what, g)
		}
	}
}

// installed is what make install puts under PREFIX=/usr/local.
var installed = []string{
	"0644 etc/fcgivisor/fcgivisor.toml",
	"0644 etc/logrotate.d/fcgivisor",
	"0755 usr/local/bin/fcgivisor",
	"0644 usr/local/lib/systemd/system/fcgivisor-php.socket",
	"0644 usr/local/lib/systemd/system/fcgivisor.service",
	"0644 usr/local/lib/systemd/system/fcgivisor.socket",
	"0644 usr/local/share/bash-completion/completions/fcgivisor",
	"0644 usr/local/share/fish/vendor_completions.d/fcgivisor.fish",
	"0644 usr/local/share/man/man1/fcgivisor.1.gz",
	"0644 usr/local/share/man/man5/fcgivisor.toml.5.gz",
	"0644 usr/local/share/zsh/site-functions/_fcgivisor",
	"0750 var/log/fcgivisor/",
}

// TestMakeInstall installs into a fresh DESTDIR and checks the exact file
// list, the units' ExecStart, a second install that keeps an edited
// configuration, PREFIX=/usr, and make uninstall.
func TestMakeInstall(t *testing.T) {
	dest := t.TempDir()
	makeCmd(t, "install", "DESTDIR="+dest)
	diffLists(t, "make install DESTDIR="+dest, tree(t, dest), installed)
	checkExecStart(t, filepath.Join(dest, "usr/local/lib/systemd/system"), "/usr/local/bin/fcgivisor")
	if b, err := os.ReadFile(filepath.Join(dest, "etc/fcgivisor/fcgivisor.toml")); err != nil || !bytes.Equal(b, readFile(t, "../contrib/fcgivisor.toml")) {
		t.Errorf("installed fcgivisor.toml is not contrib/fcgivisor.toml (%v)", err)
	}

	// Again, over an edited configuration: kept, and the example beside it.
	conf := filepath.Join(dest, "etc/fcgivisor/fcgivisor.toml")
	edited := []byte("# edited\n")
	if err := os.WriteFile(conf, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	makeCmd(t, "install", "DESTDIR="+dest)
	if b, _ := os.ReadFile(conf); !bytes.Equal(b, edited) {
		t.Errorf("a second make install replaced the edited %s: %q", conf, b)
	}
	diffLists(t, "second make install", tree(t, dest), append(slices.Clone(installed), "0644 etc/fcgivisor/fcgivisor.toml.example"))

	makeCmd(t, "uninstall", "DESTDIR="+dest)
	var left []string
	for _, f := range tree(t, dest) {
		if !strings.HasSuffix(f, "/") {
			left = append(left, f)
		}
	}
	diffLists(t, "after make uninstall", left, []string{"0644 etc/fcgivisor/fcgivisor.toml", "0644 etc/fcgivisor/fcgivisor.toml.example"})

	usr := t.TempDir()
	makeCmd(t, "install", "DESTDIR="+usr, "PREFIX=/usr")
	checkExecStart(t, filepath.Join(usr, "lib/systemd/system"), "/usr/bin/fcgivisor")
	if _, err := os.Stat(filepath.Join(usr, "usr/bin/fcgivisor")); err != nil {
		t.Errorf("PREFIX=/usr: %v", err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkExecStart: each installed unit that runs fcgivisor names bin, and
// no unit names another fcgivisor binary.
func checkExecStart(t *testing.T, unitDir, bin string) {
	t.Helper()
	service := string(readFile(t, filepath.Join(unitDir, "fcgivisor.service")))
	for _, want := range []string{
		"ExecStartPre=" + bin + " check -c /etc/fcgivisor/fcgivisor.toml",
		"ExecStart=" + bin + " run -c /etc/fcgivisor/fcgivisor.toml",
	} {
		if !strings.Contains(service, "\n"+want+"\n") {
			t.Errorf("%s/fcgivisor.service has no line %q", unitDir, want)
		}
	}
	for _, u := range []string{"fcgivisor.service", "fcgivisor.socket", "fcgivisor-php.socket"} {
		for _, l := range strings.Split(string(readFile(t, filepath.Join(unitDir, u))), "\n") {
			if strings.HasPrefix(l, "Exec") && strings.Contains(l, "/fcgivisor ") && !strings.Contains(l, "="+bin+" ") {
				t.Errorf("%s/%s: %q does not run %s", unitDir, u, l, bin)
			}
		}
	}
}

// TestStaticBinary: make builds bin/fcgivisor without cgo, so it has no
// program interpreter and needs no shared library, with the version of
// git describe stamped in.
func TestStaticBinary(t *testing.T) {
	makeCmd(t, "bin/fcgivisor")
	bin := filepath.Join(repoRoot, "bin/fcgivisor")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a %v program header: it is dynamically linked", bin, p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s imports libraries %v (%v)", bin, libs, err)
	}
	if out, err := exec.Command("ldd", bin).CombinedOutput(); err == nil || !strings.Contains(string(out), "not a dynamic executable") {
		if _, lookErr := exec.LookPath("ldd"); lookErr == nil {
			t.Errorf("ldd %s: %v\n%s", bin, err, out)
		}
	}
	want, err := exec.Command("git", "-C", repoRoot, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Fatalf("git describe: %v: the version cannot be compared (make builds from a git clone)", err)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "fcgivisor "+strings.TrimSpace(string(want))+" (") {
		t.Errorf("%s version: %q (%v); want fcgivisor %s (goX)", bin, out, err, bytes.TrimSpace(want))
	}
}
