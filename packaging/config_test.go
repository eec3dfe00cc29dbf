package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const shippedConfig = "../contrib/fcgivisor.toml"

// fcgivisorBin builds bin/fcgivisor as make does and returns its path.
func fcgivisorBin(t *testing.T) string {
	t.Helper()
	makeCmd(t, "bin/fcgivisor")
	p, err := filepath.Abs(filepath.Join(repoRoot, "bin/fcgivisor"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// uncomment turns on every commented setting of the shipped config: a line
// of "#" and a key or table ("#[pool.php]", "#user = ..."); "# " lines are
// explanations.
func uncomment(config string) string {
	setting := regexp.MustCompile(`^#[A-Za-z_\[]`)
	lines := strings.Split(config, "\n")
	for i, l := range lines {
		if setting.MatchString(l) {
			lines[i] = l[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// TestShippedConfig: the configuration make install and the .deb put in
// /etc/fcgivisor passes `fcgivisor check` as the service runs it (root),
// as shipped on any machine, and with its PHP example uncommented where
// php-cgi is installed, without a warning. Not as root, the paths under
// /run/fcgivisor and /var/log/fcgivisor move to a temporary directory: as
// shipped it passes the same; the PHP example is refused, since only root
// may give the pool's socket to group www-data (listen_group), after a
// warning that the pool's user and group are ignored.
func TestShippedConfig(t *testing.T) {
	bin := fcgivisorBin(t)
	root := os.Geteuid() == 0
	// check runs fcgivisor check on text and returns its output and error.
	check := func(t *testing.T, text string) (string, error) {
		t.Helper()
		dir := t.TempDir()
		if !root {
			text = strings.NewReplacer(`"/run/fcgivisor`, `"`+filepath.Join(dir, "run"),
				`"/var/log/fcgivisor/`, `"`+dir+"/").Replace(text)
		}
		p := filepath.Join(dir, "fcgivisor.toml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "check", "-c", p).CombinedOutput()
		t.Logf("fcgivisor check -c %s: %v\n%s", p, err, out)
		return string(out), err
	}
	t.Run("as shipped", func(t *testing.T) {
		if out, err := check(t, string(readFile(t, shippedConfig))); err != nil || strings.Contains(out, "level=WARN") {
			t.Errorf("want it passed without a warning")
		}
	})
	t.Run("php uncommented", func(t *testing.T) {
		if _, err := os.Stat("/usr/bin/php-cgi"); err != nil {
			t.Skip("php-cgi is not installed (/usr/bin/php-cgi): the PHP example names it")
		}
		text := uncomment(string(readFile(t, shippedConfig)))
		if !strings.Contains(text, "\n[pool.php]\n") || !strings.Contains(text, "\nlog_file = ") {
			t.Fatalf("uncommenting found no [pool.php] or log_file:\n%s", text)
		}
		out, err := check(t, text)
		switch {
		case root && (err != nil || strings.Contains(out, "level=WARN")):
			t.Errorf("as root: want it passed without a warning")
		case !root && (err == nil || !strings.Contains(out, "user and group are ignored: fcgivisor does not run as root") ||
			!strings.Contains(out, `pool.php.listen_group: fcgivisor runs as uid`) || strings.Count(out, "fcgivisor.toml: ") != 1):
			t.Errorf("not as root: want the user ignored with a warning and listen_group refused, nothing else")
		}
	})
}

// TestLogrotate runs the shipped snippet with logrotate on a copy of
// /var/log/fcgivisor: the file is rotated and recreated, and the
// postrotate script, which signals fcgivisor only where systemd runs,
// succeeds where it does not. The signal goes to fcgivisor alone.
func TestLogrotate(t *testing.T) {
	snippet := string(readFile(t, "../contrib/logrotate/fcgivisor"))
	if !strings.Contains(snippet, "systemctl kill --kill-who=main --signal=USR1 fcgivisor.service") {
		t.Errorf("the postrotate script does not send SIGUSR1 to fcgivisor's main process alone:\n%s", snippet)
	}
	logrotate, err := exec.LookPath("logrotate")
	if err != nil {
		if logrotate, err = exec.LookPath("/usr/sbin/logrotate"); err != nil {
			t.Skip("logrotate is not installed")
		}
	}
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	if err := os.Mkdir(logDir, 0o750); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(logDir, "fcgivisor.log")
	if err := os.WriteFile(logFile, []byte("time=... level=INFO msg=ready\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "logrotate.conf")
	text := strings.Replace(snippet, "/var/log/fcgivisor/", logDir+"/", 1)
	if !strings.Contains(text, logDir) {
		t.Fatal("the snippet does not rotate /var/log/fcgivisor/*.log")
	}
	// create names root:root, which only root may give; as another user
	// the file is created with the mode alone.
	if os.Geteuid() != 0 {
		text = strings.Replace(text, "create 0640 root root", "create 0640", 1)
	}
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(logrotate, "--force", "--verbose", "--state", filepath.Join(dir, "state"), conf).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	if _, err := os.Stat(logFile + ".1"); err != nil {
		t.Errorf("no %s.1 after logrotate: %v\n%s", logFile, err, out)
	}
	if fi, err := os.Stat(logFile); err != nil || fi.Mode().Perm() != 0o640 || fi.Size() != 0 {
		t.Errorf("%s after logrotate: %v, %v; want an empty file, mode 0640\n%s", logFile, fi, err, out)
	}
}
