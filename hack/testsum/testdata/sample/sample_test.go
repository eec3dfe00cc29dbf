// Package sample is what TestRun runs with go test -json: a pass, a skip
// with a reason, subtests that pass and skip, and, with SAMPLE_FAIL=1, a
// failure. It lives in testdata, so ./... never runs it.
package sample

import (
	"os"
	"testing"
)

func TestPass(t *testing.T) { t.Log("a log line of a passing test") }

func TestSkip(t *testing.T) {
	t.Log("looked for the tool")
	t.Skip("not installed: frobnicator")
}

func TestSub(t *testing.T) {
	t.Run("a", func(t *testing.T) {})
	t.Run("b", func(t *testing.T) { t.Skipf("not installed: %s", "frobnicator") })
}

func TestFail(t *testing.T) {
	if os.Getenv("SAMPLE_FAIL") == "1" {
		t.Error("the failure's message")
	}
}
