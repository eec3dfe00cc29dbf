// Package signals turns the OS signals fcgivisor handles into typed actions
// for the daemon's loop (docs/design.md lists what each one does). It never
// exits the process.
package signals

import (
	"context"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// Action is what a signal asks of fcgivisor.
type Action int

// Actions.
const (
	Stop    Action = iota + 1 // SIGTERM, SIGINT: graceful stop (a second one: immediate)
	StopNow                   // SIGQUIT: immediate stop
	Reload                    // SIGHUP: reload the config file
	Reopen                    // SIGUSR1: reopen log files
	Roll                      // SIGUSR2: rolling restart of every worker
)

func (a Action) String() string {
	switch a {
	case Stop:
		return "stop"
	case StopNow:
		return "stop now"
	case Reload:
		return "reload"
	case Reopen:
		return "reopen logs"
	case Roll:
		return "rolling restart"
	}
	return "unknown"
}

// Of maps a signal to its action; 0 for a signal fcgivisor does not handle.
func Of(sig os.Signal) Action {
	switch sig {
	case unix.SIGTERM, unix.SIGINT:
		return Stop
	case unix.SIGQUIT:
		return StopNow
	case unix.SIGHUP:
		return Reload
	case unix.SIGUSR1:
		return Reopen
	case unix.SIGUSR2:
		return Roll
	}
	return 0
}

// Notify delivers the action of every handled signal on the returned
// channel until ctx is done; the channel is closed then.
func Notify(ctx context.Context) <-chan Action {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGQUIT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2)
	out := make(chan Action)
	go func() {
		defer close(out)
		defer signal.Stop(sigs)
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-sigs:
				select {
				case out <- Of(sig):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
