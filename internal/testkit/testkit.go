// Package testkit holds what the packages' tests share: waiting for a
// condition, and running a test binary that starts children as fcgivisor
// does (a child subreaper with the process's one spawner.Parent).
package testkit

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fcgivisor/fcgivisor/spawner"
)

// Eventually polls cond every 5 ms until it holds, and fails t when it has
// not within 15 s.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// RunWithParent makes the test process a child subreaper, starts its one
// spawner.Parent, sets *parent to it, runs the tests and returns m.Run's
// code once the Parent has stopped reaping.
func RunWithParent(m *testing.M, parent **spawner.Parent) int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "subreaper:", err)
		return 1
	}
	r, err := spawner.NewParent()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*parent = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	return m.Run()
}
