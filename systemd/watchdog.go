// This file implements the service watchdog (WatchdogSec=): systemd passes
// WATCHDOG_USEC (and WATCHDOG_PID) and expects WATCHDOG=1 more often than
// that, or it kills and, per Restart=, restarts the service.

package systemd

import (
	"context"
	"math"
	"strconv"
	"time"
)

// WatchdogInterval returns how often to send WATCHDOG=1, given the values of
// WATCHDOG_USEC and WATCHDOG_PID as main read them and main's own pid: half
// of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, so one late ping is
// not fatal. It returns false when the watchdog is off: WATCHDOG_USEC unset,
// zero or malformed, or WATCHDOG_PID set to another process (the variables
// were meant for a parent that leaked them).
func WatchdogInterval(usec, pid string, self int) (time.Duration, bool) {
	if usec == "" {
		return 0, false
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p != self {
			return 0, false
		}
	}
	u, err := strconv.ParseUint(usec, 10, 64)
	if err != nil || u == 0 || u > math.MaxInt64/uint64(time.Microsecond) {
		return 0, false
	}
	every := time.Duration(u) * time.Microsecond / 2
	if every <= 0 {
		return 0, false
	}
	return every, true
}

// RunWatchdog sends WATCHDOG=1 through n at once and then every `every`, but
// only when healthy() returns true at that moment, so a supervisor loop that
// hangs stops the pings and systemd's watchdog fires. healthy is called from
// RunWatchdog's goroutine; one that blocks also stops the pings, which is
// what a hung loop should do. RunWatchdog returns when ctx ends, and at once
// when every <= 0. Send errors are not fatal: a missed ping is what the
// watchdog is there to notice.
func RunWatchdog(ctx context.Context, n *Notifier, every time.Duration, healthy func() bool) {
	if every <= 0 {
		return
	}
	ping := func() {
		if ctx.Err() == nil && healthy() {
			_ = n.Watchdog()
		}
	}
	ping()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ping()
		}
	}
}
