package systemd

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestWatchdogInterval(t *testing.T) {
	const self = 4242
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"", "", 0, false},
		{"30000000", "", 15 * time.Second, true},
		{"30000000", "4242", 15 * time.Second, true},
		{"30000000", "4243", 0, false}, // meant for another process
		{"30000000", "x", 0, false},
		{"1000", "", 500 * time.Microsecond, true},
		{"1", "", 500 * time.Nanosecond, true},
		{"0", "", 0, false},
		{"-5", "", 0, false},
		{"30s", "", 0, false},
		{"18446744073709551615", "", 0, false}, // overflows time.Duration
		{"", "4242", 0, false},
	} {
		got, ok := WatchdogInterval(tc.usec, tc.pid, self)
		if got != tc.want || ok != tc.ok {
			t.Errorf("WatchdogInterval(%q, %q, %d) = %v, %v; want %v, %v", tc.usec, tc.pid, self, got, ok, tc.want, tc.ok)
		}
	}
}

// TestRunWatchdog: pings at about the interval while healthy, none while
// unhealthy, again once healthy, and none after ctx ends.
func TestRunWatchdog(t *testing.T) {
	sock := listenNotify(t, filepath.Join(shortDir(t), "notify"))
	n, err := NewNotifier(sock.name)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	const every = 50 * time.Millisecond
	var healthy atomic.Bool
	healthy.Store(true)
	calls := make(chan bool, 10000) // each answer of healthy(), in order
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunWatchdog(ctx, n, every, func() bool {
			h := healthy.Load()
			calls <- h
			return h
		})
	}()

	// About the interval: 6 pings span at least 5 intervals less the
	// first, immediate one, and are not wildly late.
	var first time.Time
	for i := range 6 {
		if got, _ := sock.recv(t); got != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", got)
		}
		if i == 0 {
			first = time.Now()
		}
	}
	if d := time.Since(first); d < 4*every || d > 5*every+2*time.Second {
		t.Errorf("6 pings took %v, want about %v", d, 5*every)
	}

	// Unhealthy: once healthy() answered false, no ping may follow.
	healthy.Store(false)
	waitAnswers := func(want bool, count int) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for count > 0 {
			select {
			case h := <-calls:
				if h == want {
					count--
				}
			case <-timeout:
				t.Fatalf("healthy() not called %d more times", count)
			}
		}
	}
	waitAnswers(false, 1)
	n.Status("mark 1") // after every ping that healthy() allowed
	waitAnswers(false, 3)
	n.Status("mark 2")
	expectMarks(t, sock, "STATUS=mark 1", "STATUS=mark 2")

	// Healthy again: pings resume.
	healthy.Store(true)
	if got, _ := sock.recv(t); got != "WATCHDOG=1" {
		t.Fatalf("after healthy() turned true: got %q, want WATCHDOG=1", got)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunWatchdog did not return after ctx ended")
	}
	n.Status("mark 3")
	time.Sleep(3 * every) // time for pings that must not come
	n.Status("mark 4")
	expectMarks(t, sock, "STATUS=mark 3", "STATUS=mark 4")
	for len(calls) > 0 { // answered before RunWatchdog returned
		<-calls
	}
	time.Sleep(2 * every)
	if len(calls) != 0 {
		t.Errorf("healthy() called %d times after RunWatchdog returned", len(calls))
	}
}

// expectMarks skips datagrams up to mark a and fails unless mark b is the
// very next one.
func expectMarks(t *testing.T, sock *notifySocket, a, b string) {
	t.Helper()
	for {
		got, _ := sock.recv(t)
		if got == a {
			break
		}
		if got != "WATCHDOG=1" {
			t.Fatalf("unexpected datagram %q before %q", got, a)
		}
	}
	if got, _ := sock.recv(t); got != b {
		t.Errorf("got %q between %q and %q, want nothing", got, a, b)
	}
}

// TestRunWatchdogOff: every <= 0 returns at once, never asking healthy().
func TestRunWatchdogOff(t *testing.T) {
	n, err := NewNotifier("")
	if err != nil {
		t.Fatal(err)
	}
	var called atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunWatchdog(context.Background(), n, 0, func() bool { called.Store(true); return true })
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunWatchdog with every=0 did not return")
	}
	if called.Load() {
		t.Error("healthy() called with the watchdog off")
	}
}
