package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fcgivisor/fcgivisor/internal/testkit"
	"github.com/fcgivisor/fcgivisor/internal/testlog"
)

// lines is the lines of the file at path; none when it does not exist.
func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestAccessLogTargets: http.access_log goes to its file, reopened by
// name on SIGUSR1 (reopenLog); a reload applies a new format to the same
// file, a new path (the old file is closed), stderr and none; a reload
// refused after the new file was opened keeps the running one.
func TestAccessLogTargets(t *testing.T) {
	f := newFixture(t)
	access := filepath.Join(f.dir, "access.log")
	write := func(lines ...string) {
		t.Helper()
		f.write([]string{"http"}, pool{name: "a", greeting: "a"})
		f.setHTTP(lines...)
	}
	write(`access_log = "access.log"`) // relative: to the config's directory
	o := f.options(nil)
	var stderr testlog.Buffer
	o.Stderr = &stderr
	in, err := start(o)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, f.log)
	}
	t.Cleanup(func() { in.shutdown(false) })
	request := func(what, path string, n int) []string {
		t.Helper()
		mustGet(t, f.sock("http"), "a")
		var ls []string
		testkit.Eventually(t, what, func() bool { ls = lines(t, path); return len(ls) >= n })
		if len(ls) != n {
			t.Fatalf("%s: %d lines in %s, want %d:\n%s", what, len(ls), path, n, strings.Join(ls, "\n"))
		}
		return ls
	}

	ls := request("a combined line", access, 1)
	if !strings.HasPrefix(ls[0], "unix: - - [") || !strings.Contains(ls[0], `] "GET /a/ HTTP/1.1" 200 `) || !strings.HasSuffix(ls[0], ` "-" "Go-http-client/1.1"`) {
		t.Errorf("combined line for a Unix-socket client: %q", ls[0])
	}

	// logrotate: rename, SIGUSR1, the next line goes to a new file.
	if err := os.Rename(access, access+".1"); err != nil {
		t.Fatal(err)
	}
	in.reopenLog()
	request("a line after the reopen", access, 1)
	if n := len(lines(t, access+".1")); n != 1 {
		t.Errorf("the rotated file has %d lines, want 1", n)
	}
	if !strings.Contains(f.log.String(), "access log reopened") {
		t.Errorf("the reopen was not logged:\n%s", f.log)
	}

	// A new format, the same file: the file is kept.
	kept := in.access
	write(`access_log = "access.log"`, `access_log_format = "json"`)
	if err := in.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, f.log)
	}
	if in.access != kept {
		t.Error("a format change reopened the file")
	}
	ls = request("a json line", access, 2)
	var rec map[string]any
	if err := json.Unmarshal([]byte(ls[1]), &rec); err != nil || rec["pool"] != "a" || rec["route"] != "pool" {
		t.Errorf("json line %q: %v", ls[1], err)
	}

	// A reload refused after the new file was opened: it is closed, and
	// the running one goes on.
	other := filepath.Join(f.dir, "other.log")
	f.write([]string{"http", "nodir/x"}, pool{name: "a", greeting: "a"})
	f.setHTTP(`access_log = "other.log"`)
	if err := in.reload(); err == nil {
		t.Fatal("a reload with an address in a missing directory was accepted")
	}
	if in.access != kept {
		t.Error("a refused reload replaced the access log")
	}
	request("a line after a refused reload", access, 3)

	// Another file: the old one is closed.
	write(`access_log = "other.log"`)
	if err := in.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, f.log)
	}
	if _, err := kept.file.Write([]byte("x")); err == nil {
		t.Error("the replaced access log file is still open")
	}
	request("a line in the new file", other, 1)

	write(`access_log = "stderr"`)
	if err := in.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, f.log)
	}
	mustGet(t, f.sock("http"), "a")
	testkit.Eventually(t, "a line on stderr", func() bool { return strings.Contains(stderr.String(), `"GET /a/ HTTP/1.1" 200`) })

	write()
	if err := in.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, f.log)
	}
	if in.access != nil {
		t.Errorf("access_log removed: %+v, want none", in.access)
	}
}
