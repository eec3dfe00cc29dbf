package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// request_buffering (default on): a client that stalls in the middle of
// its upload holds no worker. With one php-cgi worker, another request is
// served at once; with request_buffering = false the upload streams to
// the worker, which waits for it, and the other request waits out
// queue_timeout.
func TestStalledUploadHoldsNoWorker(t *testing.T) {
	php := lang{"php"}
	php.need(t)
	t.Parallel()
	for _, buffering := range []bool{true, false} {
		t.Run(fmt.Sprintf("request_buffering=%v", buffering), func(t *testing.T) {
			t.Parallel()
			// Lines before the first [[http.route]] land in [http].
			routes := fmt.Sprintf("request_buffering = %v\n", buffering)
			in := start(t, options{langs: []string{"php"}, routes: routes, pool: func(l lang, p *poolOpts) {
				p.workers = 1
				p.extra = append(p.extra, `queue_timeout = "1s"`)
			}})
			conn, err := net.Dial("tcp", strings.TrimPrefix(in.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /php/?echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789")
			time.Sleep(200 * time.Millisecond)
			resp, body, err := in.do(context.Background(), http.MethodGet, "/php/?pid", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if buffering && resp.StatusCode != http.StatusOK {
				t.Fatalf("while an upload stalls: %d %q, want 200 (the worker must be free)", resp.StatusCode, clip(body))
			}
			if !buffering && resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("without request_buffering: %d %q, want 503 (the worker waits for the upload)", resp.StatusCode, clip(body))
			}
		})
	}
}
