package signals

import (
	"context"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestOf(t *testing.T) {
	for sig, want := range map[syscall.Signal]Action{
		unix.SIGTERM: Stop, unix.SIGINT: Stop, unix.SIGQUIT: StopNow,
		unix.SIGHUP: Reload, unix.SIGUSR1: Reopen, unix.SIGUSR2: Roll, unix.SIGWINCH: 0,
	} {
		if got := Of(sig); got != want {
			t.Errorf("Of(%v) = %v, want %v", sig, got, want)
		}
	}
}

// A real signal to this process arrives as its action; the channel closes
// when the context ends.
func TestNotifyDeliversRealSignals(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	actions := Notify(ctx)
	for _, sig := range []syscall.Signal{unix.SIGHUP, unix.SIGUSR2} {
		if err := unix.Kill(unix.Getpid(), sig); err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-actions:
			if a != Of(sig) {
				t.Fatalf("%v delivered %v", sig, a)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%v not delivered", sig)
		}
	}
	cancel()
	select {
	case _, ok := <-actions:
		if ok {
			t.Fatal("action after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}
