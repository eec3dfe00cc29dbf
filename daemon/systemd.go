package daemon

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/fcgivisor/fcgivisor/systemd"
)

// fromSystemd is what systemd told the service through its environment.
type fromSystemd struct {
	notifier  *systemd.Notifier  // disabled outside systemd
	watchdog  time.Duration      // interval of WATCHDOG=1 pings; 0: none
	inherited []systemd.Listener // socket activation, kept for reloads
}

// readSystemd reads systemd's variables through getenv. A NOTIFY_SOCKET
// that cannot be used disables notifications with a warning; malformed
// LISTEN_* variables are an error.
func readSystemd(getenv func(string) (string, bool), pid int, log *slog.Logger) (fromSystemd, error) {
	get := func(k string) string { v, _ := getenv(k); return v }
	var sd fromSystemd
	var err error
	if sd.notifier, err = systemd.NewNotifier(get("NOTIFY_SOCKET")); err != nil {
		log.Warn("sd_notify disabled", "err", err)
		sd.notifier, _ = systemd.NewNotifier("")
	}
	if every, on := systemd.WatchdogInterval(get("WATCHDOG_USEC"), get("WATCHDOG_PID"), pid); on {
		sd.watchdog = every
	}
	if sd.inherited, err = systemd.Inherited(get("LISTEN_PID"), get("LISTEN_FDS"), get("LISTEN_FDNAMES"), pid); err != nil {
		sd.notifier.Close()
		return fromSystemd{}, fmt.Errorf("socket activation: %w", err)
	}
	return sd, nil
}

// hideSystemd is getenv without systemd's variables: they are meant for
// fcgivisor, and inherit_env must not pass them on to a worker (one that
// took LISTEN_FDS for its own would serve fcgivisor's sockets).
func hideSystemd(getenv func(string) (string, bool)) func(string) (string, bool) {
	return func(k string) (string, bool) {
		switch k {
		case "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID", "WATCHDOG_USEC", "WATCHDOG_PID", "NOTIFY_SOCKET":
			return "", false
		}
		return getenv(k)
	}
}
