package supervisor

import (
	"context"
	"net"
	"testing"

	"github.com/fcgivisor/fcgivisor/fastcgi"
	"github.com/fcgivisor/fcgivisor/internal/testkit"
)

// A client that goes away just after its answer (its context ends before
// the watch is stopped) has the watch close the worker connection: that
// connection must not be kept for the next request, which would fail
// writing to it ("use of closed network connection": a 502 seen in a
// benchmark). Without the client going away it is kept.
func TestGuardClientGoneMeansNotKept(t *testing.T) {
	for _, gone := range []bool{false, true} {
		ours, theirs := net.Pipe()
		defer theirs.Close()
		conn := fastcgi.NewConn(ours)
		ctx, cancel := context.WithCancel(context.Background())
		g := watchRequest(ctx, conn, 0)
		if gone {
			cancel()
		}
		if g.expired() {
			t.Fatal("request_timeout reported without one")
		}
		if g.fired != gone {
			t.Errorf("client gone %v: fired %v", gone, g.fired)
		}
		cancel()
		if gone {
			testkit.Eventually(t, "the watch closing the connection", func() bool { return !conn.Usable() })
		} else if !conn.Usable() {
			t.Error("the watch closed the connection after it was stopped")
		}
		conn.Close()
	}
}
