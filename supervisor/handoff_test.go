//go:build !race

// The race detector randomizes the scheduler's run queues (its runnext
// slot among them), so the order this test asserts holds only without
// it; make test runs this package without -race as well.

package supervisor

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/fcgivisor/fcgivisor/internal/testkit"
)

// TestReleaseLetsTheWaiterRunFirst: on one P, a slot handed to a queued
// request lets that request run before the releasing goroutine goes on
// (to write its own answer), so that the worker gets its next request at
// once. Without the yield in release the waiter never runs first.
func TestReleaseLetsTheWaiterRunFirst(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	tp := newTestPool(t, "fcgi", nil) // one worker, one slot
	ctx := context.Background()
	const rounds = 20
	first := 0
	for range rounds {
		s, err := tp.acquire(ctx, &request{method: "GET", uri: "/a"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ran atomic.Bool
		got := make(chan *slot, 1)
		go func() {
			s, err := tp.acquire(ctx, &request{method: "GET", uri: "/b"}, nil)
			if err != nil {
				t.Error(err)
			}
			ran.Store(true)
			got <- s
		}()
		testkit.Eventually(t, "the second request queued", func() bool {
			tp.mu.Lock()
			defer tp.mu.Unlock()
			return tp.queuedLocked() == 1
		})
		tp.release(s, notCounted, nil)
		if ran.Load() {
			first++
		}
		if s := <-got; s != nil {
			tp.release(s, notCounted, nil)
		}
	}
	// The scheduler looks at its global queue first one time in 61; the
	// rest of the time the waiter runs first.
	if first < rounds*3/4 {
		t.Fatalf("the waiter handed the slot ran before release returned in %d of %d rounds", first, rounds)
	}
}
