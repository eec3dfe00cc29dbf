package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/front"
	"github.com/fcgivisor/fcgivisor/socket"
	"github.com/fcgivisor/fcgivisor/systemd"
)

// control turns admin commands into requests to the loop (front.Control).
type control struct {
	stops   chan struct{}   // buffered 1: a stop pending is enough
	reloads chan chan error // a reload request and where its outcome goes
}

func (c control) Stop() {
	select {
	case c.stops <- struct{}{}:
	default:
	}
}

// Reload asks the loop to reload and waits for the outcome.
func (c control) Reload() error {
	reply := make(chan error, 1)
	c.reloads <- reply
	return <-reply
}

// watchdog sends WATCHDOG=1 every Options.Watchdog while the loop answers
// its probe within half the interval; the returned func stops it and
// waits. A loop stuck in a reload or a deadlock stops the pings, and
// systemd restarts the service.
func (in *instance) watchdog() (stop func()) {
	every := in.sd.watchdog
	if every <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		systemd.RunWatchdog(ctx, in.sd.notifier, every, func() bool { return in.probe(ctx, every/2) })
	}()
	return func() { cancel(); <-done }
}

// probe reports whether the loop takes and answers a request within
// within.
func (in *instance) probe(ctx context.Context, within time.Duration) bool {
	reply := make(chan struct{})
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case in.health <- reply:
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
	select {
	case <-reply:
		return true
	case <-t.C:
		return false
	}
}

// listenEndpoints opens admin.listen and, when set, status.listen (else
// status is nil) before any worker starts. The admin socket gets mode
// 0600: the control endpoint is for fcgivisor's own user (and root). A
// Unix status socket gets statusPerm. On error nothing stays open.
func listenEndpoints(cfg *conf.Config, statusPerm socket.Perm) (admin, status net.Listener, err error) {
	if admin, err = listenOn("admin.listen", cfg.Admin.Listen, socket.Mode(0o600)); err != nil {
		return nil, nil, err
	}
	if cfg.Status.Listen == "" {
		return admin, nil, nil
	}
	if status, err = listenOn("status.listen", cfg.Status.Listen, statusPerm); err != nil {
		admin.Close()
		return nil, nil, err
	}
	return admin, status, nil
}

// listenOn opens the listen address addr of the config key key.
func listenOn(key, addr string, perm socket.Perm) (net.Listener, error) {
	network, address, err := conf.ParseAddr(addr)
	if err == nil {
		var l net.Listener
		if l, err = socket.Listen(network, address, perm); err == nil {
			return l, nil
		}
	}
	return nil, fmt.Errorf("%s %q: %w", key, addr, err)
}

// closeEndpoints closes what listenEndpoints opened, for a start that
// fails before they serve.
func closeEndpoints(admin, status net.Listener) func() {
	return sync.OnceFunc(func() {
		admin.Close()
		if status != nil {
			status.Close()
		}
	})
}

// serveEndpoints serves the control endpoint on admin and, when status is
// not nil, the read-only one on status; the returned func (idempotent)
// shuts both down and waits for them.
func (in *instance) serveEndpoints(admin, status net.Listener) (stop func()) {
	src := front.Source{Pools: in.statusPools, Version: in.o.Version, Started: in.started}
	stopAdmin := serveEndpoint(admin, front.NewAdmin(src, in.ctl, in.log), in.log)
	if status == nil {
		return stopAdmin
	}
	stopStatus := serveEndpoint(status, front.NewStatus(src, in.log), in.log)
	return func() { stopStatus(); stopAdmin() }
}

// serveEndpoint serves h on l with its own http.Server; the returned func
// (idempotent) shuts it down and waits for it.
func serveEndpoint(l net.Listener, h http.Handler, log *slog.Logger) (stop func()) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		// Requests here are a line and a few headers; the status listener
		// may face the internet, where 1 MiB headers per connection add up.
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin or status listener failed", "addr", l.Addr().String(), "err", err)
		}
	}()
	return sync.OnceFunc(func() {
		// Admin answers are small: give those in progress a moment, then cut.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	})
}
