package integration

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// php-cgi exits by itself after PHP_FCGI_MAX_REQUESTS requests, closing its
// kept connection. Under a concurrent loop that costs no failed request:
// fcgivisor stops sending to a worker at its limit and starts its
// replacement (and re-sends the rare request a worker dropped unread).
// The bar: 5 s of a concurrent loop, zero failed requests.
func TestPHPExitingByItselfLosesNothing(t *testing.T) {
	php := lang{"php"}
	php.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"php"}, pool: func(l lang, p *poolOpts) {
		p.workers = 3
		p.env = map[string]string{"PHP_FCGI_MAX_REQUESTS": "3"}
	}})
	var ok, failed atomic.Int64
	pids := sync.Map{}
	deadline := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				resp, body, err := in.do(context.Background(), http.MethodGet, php.path("/x?pid"), nil, nil)
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					if err == nil {
						t.Logf("status %d: %q", resp.StatusCode, body)
					} else {
						t.Log(err)
					}
					continue
				}
				ok.Add(1)
				pids.Store(string(body), true)
			}
		}()
	}
	wg.Wait()
	n := 0
	pids.Range(func(any, any) bool { n++; return true })
	t.Logf("%d requests ok, %d failed, %d distinct workers", ok.Load(), failed.Load(), n)
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed while workers exited by themselves", failed.Load())
	}
	if ok.Load() < 100 || int64(n) < ok.Load()/3 {
		t.Fatalf("%d requests by %d workers: want every worker to serve at most 3", ok.Load(), n)
	}
}
