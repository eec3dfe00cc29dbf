// Command testsum shows a `go test -json` run as plain `go test` does, and
// keeps count of the tests that passed, failed and were skipped, with the
// reason each skip gave, so that `make test` can end by saying what did
// not run and why:
//
//	go test -json ./... | testsum -record tmp/tests.jsonl   # exit 1 if anything failed
//	testsum -summary tmp/tests.jsonl                        # the closing lines
//
// The first form prints what go test without -v prints: one line per
// package, and the whole output of a failed test or package (a build
// error, a panic, a timeout); it appends one JSON line per test that ended
// to the record file. The second prints
//
//	tests: 812 passed, 0 failed, 3 skipped
//	skipped 3: TestA/php, TestB/php (not installed: php-cgi: ...); TestC (not root)
//
// or "skipped: 0". -label names the run in the record (e.g. "as nobody"),
// and the summary puts it after each test's name.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Output     string
}

// result is one line of the record file.
type result struct {
	Label  string `json:"label,omitempty"`
	Pkg    string `json:"pkg"`
	Test   string `json:"test"`
	Action string `json:"action"` // pass, fail, skip
	Reason string `json:"reason,omitempty"`
}

func main() {
	record := flag.String("record", "", "read go test -json from stdin, append each test's result to this file")
	label := flag.String("label", "", "with -record: the run's name in the summary")
	summary := flag.String("summary", "", "print the summary of the results recorded in this file")
	flag.Parse()
	switch {
	case *summary != "":
		results, err := readResults(*summary)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testsum:", err)
			os.Exit(2)
		}
		fmt.Print(summarize(results))
	case *record != "":
		f, err := os.OpenFile(*record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testsum:", err)
			os.Exit(2)
		}
		ok := newReporter(os.Stdout, json.NewEncoder(f), *label).run(os.Stdin)
		if err := f.Close(); err != nil || !ok {
			os.Exit(1)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}

// reporter prints a run as plain go test would and records its results.
type reporter struct {
	out     io.Writer
	rec     *json.Encoder
	label   string
	tests   map[string][]string // package + "\x00" + test → its output lines
	pkgs    map[string][]string // package → its own output lines
	started int                 // packages that started
	ended   int                 // packages that ended (pass, fail, skip)
	failed  bool
	written error
}

func newReporter(out io.Writer, rec *json.Encoder, label string) *reporter {
	return &reporter{out: out, rec: rec, label: label, tests: map[string][]string{}, pkgs: map[string][]string{}}
}

// run reads the events of r and reports whether everything passed: no
// test, package or build failed, at least one package ended, and each
// package that started ended (go test was not cut short).
func (r *reporter) run(in io.Reader) bool {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(r.out, "%s\n", line) // go test's own errors, not JSON
			r.failed = r.failed || len(line) > 0
			continue
		}
		r.event(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(r.out, "testsum:", err)
		return false
	}
	if r.written != nil {
		fmt.Fprintln(r.out, "testsum:", r.written)
		return false
	}
	if r.ended < r.started {
		fmt.Fprintf(r.out, "testsum: %d of %d packages never ended\n", r.started-r.ended, r.started)
		return false
	}
	return !r.failed && r.ended > 0
}

func (r *reporter) event(e event) {
	switch {
	case e.Action == "build-output":
		fmt.Fprint(r.out, e.Output)
	case e.Action == "build-fail":
		r.failed = true
	case e.Test == "":
		r.packageEvent(e)
	default:
		r.testEvent(e)
	}
}

func (r *reporter) packageEvent(e event) {
	switch e.Action {
	case "start":
		r.started++
	case "output":
		r.pkgs[e.Package] = append(r.pkgs[e.Package], e.Output)
	case "pass", "skip":
		r.ended++
		said := false
		for _, l := range r.pkgs[e.Package] {
			if strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "?   ") {
				fmt.Fprint(r.out, l)
				said = true
			}
		}
		if !said && e.Action == "pass" { // a test binary run by test2json: no go test to say it
			fmt.Fprintf(r.out, "ok  \t%s\n", e.Package)
		}
		delete(r.pkgs, e.Package)
	case "fail":
		r.ended++
		r.failed = true
		for _, l := range r.pkgs[e.Package] {
			if !strings.HasPrefix(l, "=== ") {
				fmt.Fprint(r.out, l)
			}
		}
		if len(r.pkgs[e.Package]) == 0 {
			fmt.Fprintf(r.out, "FAIL\t%s\n", e.Package)
		}
		delete(r.pkgs, e.Package)
	}
}

func (r *reporter) testEvent(e event) {
	key := e.Package + "\x00" + e.Test
	switch e.Action {
	case "output":
		r.tests[key] = append(r.tests[key], e.Output)
		return
	case "pass", "fail", "skip":
	default:
		return
	}
	res := result{Label: r.label, Pkg: e.Package, Test: e.Test, Action: e.Action}
	switch e.Action {
	case "fail":
		r.failed = true
		for _, l := range r.tests[key] {
			if !strings.HasPrefix(l, "=== ") {
				fmt.Fprint(r.out, l)
			}
		}
	case "skip":
		res.Reason = skipReason(r.tests[key])
	}
	delete(r.tests, key)
	if err := r.rec.Encode(res); err != nil && r.written == nil {
		r.written = err
	}
}

// logPrefix is what t.Log puts before a message: "    file_test.go:12: ".
var logPrefix = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)

// skipReason is the message t.Skip logged: the test's last output line
// before "--- SKIP".
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "--- SKIP") || strings.HasPrefix(l, "=== ") {
			continue
		}
		return logPrefix.ReplaceAllString(l, "")
	}
	return "no reason given"
}
