package integration

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Workers that exit by themselves, as gitweb --fastcgi does (issue 11):
// testdata/selfexit/worker.{c,pl} exit after every error page (?fail, a 404)
// and after every EXIT_EVERY-th response, and ?crash reads the request and
// exits without answering.

// selfExitWorker is the argv of the self-exiting worker in l ("c" or "perl"),
// the C one built here.
func selfExitWorker(t *testing.T, l lang) []string {
	t.Helper()
	l.need(t)
	src := filepath.Join(repoRoot, "integration/testdata/selfexit/worker")
	if l.name == "perl" {
		return []string{perlBin, src + ".pl"}
	}
	bin := filepath.Join(t.TempDir(), "selfexit")
	if out, err := exec.Command("cc", "-O2", "-Wall", "-o", bin, src+".c", "-lfcgi").CombinedOutput(); err != nil {
		t.Fatalf("build %s.c: %v\n%s", src, err, out)
	}
	return []string{bin}
}

// startSelfExit runs fcgivisor with one pool "se" of workers of argv on /se/.
func startSelfExit(t *testing.T, argv []string, workers, every int) *instance {
	t.Helper()
	return start(t, options{
		langs:  []string{},
		routes: "[[http.route]]\nprefix = \"/se/\"\npool = \"se\"",
		pools: fmt.Sprintf("[pool.se]\ncommand = %s\nworkers = %d\nconcurrency = 1\nenv = { EXIT_EVERY = %s }\nuser = \"root\"",
			tomlStrings(argv), workers, tomlString(fmt.Sprint(every))),
	})
}

// The load: 8 clients for a few seconds, one request in four an
// error page after which its worker exits, every worker exiting after 5
// responses. The bar: every good request 200, every error request 404.
func TestSelfExitingWorkersLoseNothing(t *testing.T) {
	for _, name := range []string{"c", "perl"} {
		t.Run(name, func(t *testing.T) {
			argv := selfExitWorker(t, lang{name})
			t.Parallel()
			in := startSelfExit(t, argv, 3, 5)
			var ok, failed atomic.Int64
			deadline := time.Now().Add(4 * time.Second)
			var wg sync.WaitGroup
			for c := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := c; time.Now().Before(deadline); i++ {
						path, want := "/se/x", http.StatusOK
						if i%4 == 0 {
							path, want = "/se/x?fail", http.StatusNotFound
						}
						resp, body, err := in.do(context.Background(), http.MethodGet, path, nil, nil)
						if err != nil || resp.StatusCode != want {
							if failed.Add(1) <= 5 {
								if err == nil {
									t.Logf("%s: status %d: %q", path, resp.StatusCode, body)
								} else {
									t.Logf("%s: %v", path, err)
								}
							}
							continue
						}
						ok.Add(1)
					}
				}()
			}
			wg.Wait()
			t.Logf("%s: %d requests ok, %d failed", name, ok.Load(), failed.Load())
			if failed.Load() != 0 {
				t.Fatalf("%d of %d requests failed while workers exited by themselves", failed.Load(), ok.Load()+failed.Load())
			}
			if ok.Load() < 50 {
				t.Fatalf("only %d requests in 4 s", ok.Load())
			}
		})
	}
}

// A request that crashes its worker after reading it (plain EOF, no reset)
// is a 502 and is not sent to a second worker, however many could take it.
func TestSelfExitCrashIsNotResent(t *testing.T) {
	for _, name := range []string{"c", "perl"} {
		t.Run(name, func(t *testing.T) {
			argv := selfExitWorker(t, lang{name})
			t.Parallel()
			in := startSelfExit(t, argv, 3, 1000)
			// Warm the kept connections.
			for range 3 {
				in.expect(t, "/se/x", http.StatusOK, "")
			}
			in.expect(t, "/se/x?crash", http.StatusBadGateway, "")
			crashed := func(r map[string]any) bool {
				s, _ := r["status"].(string)
				return strings.Contains(s, "exit status 3")
			}
			in.waitLog(t, "the crashed worker's exit", crashed)
			for range 10 {
				in.expect(t, "/se/x", http.StatusOK, "")
			}
			n := 0
			for _, r := range records(in.out.String()) {
				if crashed(r) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d workers crashed on one request, want 1 (a plain EOF is never re-sent)", n)
			}
		})
	}
}
