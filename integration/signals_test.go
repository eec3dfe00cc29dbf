package integration

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// load is clients looping GET path until stopped, counting answers.
type load struct {
	ok, failed atomic.Int64
	done       chan struct{}
	wg         sync.WaitGroup
}

// startLoad starts n clients looping GET path; a non-200 or an error is a
// failure, logged.
func startLoad(t *testing.T, in *instance, n int, path string) *load {
	l := &load{done: make(chan struct{})}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.done:
					return
				default:
				}
				resp, body, err := in.do(context.Background(), http.MethodGet, path, nil, nil)
				if err != nil || resp.StatusCode != 200 {
					l.failed.Add(1)
					t.Logf("failed: %v %v %q", err, resp, body)
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// stop ends the clients and returns the counts.
func (l *load) stop() (ok, failed int64) {
	close(l.done)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load()
}

// SIGUSR2 restarts every worker while requests keep flowing: all pids
// change and no request fails.
func TestRollingRestartLosesNothing(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"c"}, pool: func(l lang, p *poolOpts) { p.workers = 3 }})
	before := map[int]bool{}
	for _, w := range in.poolWorkers(c) {
		before[w.pid] = true
	}
	load := startLoad(t, in, 6, c.path("/x?sleep=5"))
	time.Sleep(300 * time.Millisecond)
	for range 3 {
		in.signal(syscall.SIGUSR2)
		time.Sleep(400 * time.Millisecond)
	}
	ok, failed := load.stop()
	t.Logf("%d ok, %d failed across 3 rolling restarts", ok, failed)
	if failed != 0 {
		t.Fatalf("%d requests failed during rolling restarts", failed)
	}
	if !waitFor(5*time.Second, func() bool {
		ws := in.poolWorkers(c)
		for _, w := range ws {
			if before[w.pid] {
				return false
			}
		}
		return len(ws) == 3
	}) {
		t.Fatalf("workers after SIGUSR2: %v, before: %v", in.poolWorkers(c), before)
	}
}

// SIGUSR1 reopens log_file: after logrotate renames it, new records go to
// a new file of the same name.
func TestLogReopenAndPIDFile(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "fcgivisor.log")
	pidPath := filepath.Join(dir, "fcgivisor.pid")
	in := start(t, options{langs: []string{"c"}, server: []string{
		"log_file = " + tomlString(logPath), "pid_file = " + tomlString(pidPath),
	}})
	b, err := os.ReadFile(pidPath)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(in.pid) {
		t.Fatalf("pid file %q, %v; want %d", b, err, in.pid)
	}
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	in.signal(syscall.SIGUSR1)
	if !waitFor(5*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "log file reopened")
	}) {
		t.Fatal("no new log file after SIGUSR1")
	}
	// Worker output goes to the new file too.
	if resp, _, err := in.do(context.Background(), http.MethodGet, c.path("/x?stderr=after-reopen-marker"), nil, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("request: %v %v", err, resp)
	}
	if !waitFor(5*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "after-reopen-marker")
	}) {
		t.Fatal("worker stderr not in the reopened log file")
	}
	old, _ := os.ReadFile(logPath + ".1")
	if !strings.Contains(string(old), "fcgivisor running") {
		t.Fatal("the rotated file lost the records written before")
	}
	in.signal(syscall.SIGTERM)
	in.checkExit(t)
	if _, err := os.Stat(pidPath); !os.IsNotExist(err) {
		t.Fatalf("pid file left after exit: %v", err)
	}
}

// `fcgivisor stop` stops the instance gracefully through the admin socket.
func TestStopCommand(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	in := start(t, options{langs: []string{"c"}})
	done := make(chan int, 1)
	go func() {
		resp, body, err := in.do(context.Background(), http.MethodGet, c.path("/x?sleep=700"), nil, nil)
		if err != nil || resp.StatusCode != 200 || string(body) != "slept 700\n" {
			t.Errorf("in-flight request: %v %v %q", err, resp, body)
		}
		done <- 1
	}()
	time.Sleep(200 * time.Millisecond)
	in.mu.Lock()
	in.signaled = true // a stop is on its way: cleanup expects the exit
	in.mu.Unlock()
	out, err := exec.Command(fcgivisorBin, "stop", "-c", in.configPath).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "stopping" {
		t.Fatalf("fcgivisor stop: %v %q", err, out)
	}
	<-done
	in.checkExit(t)
}
