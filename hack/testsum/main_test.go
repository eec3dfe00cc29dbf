package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// goTestJSON runs go test -json on testdata/sample.
func goTestJSON(t *testing.T, fail bool) []byte {
	t.Helper()
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "test", "-json", "-count=1", "./testdata/sample")
	cmd.Env = append(os.Environ(), "SAMPLE_FAIL=0")
	if fail {
		cmd.Env = append(cmd.Env, "SAMPLE_FAIL=1")
	}
	out, _ := cmd.Output() // exit 1 when a test fails
	if !bytes.Contains(out, []byte(`"Action":"start"`)) {
		t.Fatalf("go test -json printed no events:\n%s", out)
	}
	return out
}

func report(t *testing.T, in []byte, label string) (string, []result, bool) {
	t.Helper()
	var out, rec bytes.Buffer
	ok := newReporter(&out, json.NewEncoder(&rec), label).run(bytes.NewReader(in))
	var results []result
	for _, l := range strings.Split(rec.String(), "\n") {
		if l == "" {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("record line %q: %v", l, err)
		}
		results = append(results, r)
	}
	return out.String(), results, ok
}

// TestRun: a passing run prints the package line only and records every
// test with the reason of each skip; a failing one prints the failure and
// reports it.
func TestRun(t *testing.T) {
	out, results, ok := report(t, goTestJSON(t, false), "")
	if !ok || !strings.HasPrefix(out, "ok  \t") || strings.Count(out, "\n") != 1 {
		t.Errorf("passing run: ok=%v, printed %q; want ok and one ok line", ok, out)
	}
	got := summarize(results)
	want := "tests: 4 passed, 0 failed, 2 skipped\n" +
		"skipped 2: TestSkip, TestSub/b (not installed: frobnicator)\n"
	if got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}

	out, results, ok = report(t, goTestJSON(t, true), "as nobody")
	if ok || !strings.Contains(out, "--- FAIL: TestFail") || !strings.Contains(out, "the failure's message") || !strings.Contains(out, "FAIL\t") {
		t.Errorf("failing run: ok=%v, printed:\n%s\nwant not ok, the failure and its message", ok, out)
	}
	if got := summarize(results); !strings.HasPrefix(got, "tests: 3 passed, 1 failed, 2 skipped\nskipped 2: TestSkip as nobody, TestSub/b as nobody (") {
		t.Errorf("failing run's summary: %q", got)
	}
}

// TestNotJSON: what go test prints when it cannot start (a bad flag, a
// package that does not exist) fails the run, and so does no package.
func TestNotJSON(t *testing.T) {
	if _, _, ok := report(t, []byte("go: unknown flag -bogus\n"), ""); ok {
		t.Error("a line that is not JSON passed")
	}
	if _, _, ok := report(t, nil, ""); ok {
		t.Error("a run without a package passed")
	}
}

func TestSummaryLimits(t *testing.T) {
	var rs []result
	for _, n := range []string{"A", "B", "C", "D", "E", "F", "G", "H"} {
		rs = append(rs, result{Test: "Test" + n, Action: "skip", Reason: "same"})
	}
	rs = append(rs, result{Test: "TestLong", Action: "skip", Reason: strings.Repeat("x", 200)}, result{Test: "TestOK", Action: "pass"})
	got := summarize(rs)
	want := "tests: 1 passed, 0 failed, 9 skipped\nskipped 9: TestA, TestB, TestC, TestD, TestE, TestF and 2 more (same); TestLong (" + strings.Repeat("x", 120) + "...)\n"
	if got != want {
		t.Errorf("summary:\n%q\nwant\n%q", got, want)
	}
	if got := summarize([]result{{Test: "TestOK", Action: "pass"}}); got != "tests: 1 passed, 0 failed, 0 skipped\nskipped: 0\n" {
		t.Errorf("no skip: %q", got)
	}
}
