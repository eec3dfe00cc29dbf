package public

import (
	"io"
	"testing"

	"github.com/fcgivisor/fcgivisor/fastcgi"
)

// BenchmarkPublicRoundTrip: one GET with FCGI_KEEP_CONN on a kept client
// connection through public.Serve -> supervisor.Pool -> the test worker
// (a child process on its own kept connection; it answers the params it
// received). Allocations are this process's: the client Conn, the public
// socket's relay and the pool; not the worker's. Figures in
// bench/README.md, "Go benchmarks of the hot path".
func BenchmarkPublicRoundTrip(b *testing.B) {
	ts := startSocket(b, nil, nil)
	c := ts.dial(b)
	req := &fastcgi.Request{Params: params(), KeepConn: true}
	buf := make([]byte, 16<<10)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		// The answer is shorter than buf: read whole, ReadFull stops at
		// its end with ErrUnexpectedEOF.
		if n, err := io.ReadFull(resp, buf); err != io.ErrUnexpectedEOF || n == 0 || !resp.Close() {
			b.Fatalf("read %d bytes, %v; or not reusable", n, err)
		}
	}
}
