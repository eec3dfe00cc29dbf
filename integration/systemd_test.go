package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifySocket is a test-owned NOTIFY_SOCKET collecting sd_notify messages.
type notifySocket struct {
	path string
	conn *net.UnixConn
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	path := filepath.Join(shortTempDir(t), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ns := &notifySocket{path: path, conn: c, msgs: make(chan string, 256)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(ns.msgs)
				return
			}
			ns.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close() })
	return ns
}

// next returns the next message that is not a watchdog ping.
func (ns *notifySocket) next(t *testing.T) string {
	t.Helper()
	for {
		select {
		case m := <-ns.msgs:
			if m == "WATCHDOG=1" {
				continue
			}
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no sd_notify message within 10 s")
		}
	}
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Sec*1e6 + ts.Nsec/1e3
}

// READY=1 once serving, RELOADING=1 (with MONOTONIC_USEC) then READY=1 on a
// reload, READY=1 with the error in STATUS= on a refused one, STOPPING=1;
// WATCHDOG=1 pings at half of WATCHDOG_USEC.
func TestSdNotifyAndWatchdog(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	ns := newNotifySocket(t)
	in := start(t, options{langs: []string{"c"}, env: []string{"NOTIFY_SOCKET=" + ns.path, "WATCHDOG_USEC=200000"}})
	if m := ns.next(t); !strings.HasPrefix(m, "READY=1\nSTATUS=1 pools") {
		t.Fatalf("first message %q, want READY=1 with a status", m)
	}
	before := monotonicUsec()
	in.signal(syscall.SIGHUP)
	m := ns.next(t)
	usec, ok := strings.CutPrefix(m, "RELOADING=1\nMONOTONIC_USEC=")
	if !ok {
		t.Fatalf("message %q, want RELOADING=1 with MONOTONIC_USEC", m)
	}
	if n, err := strconv.ParseInt(usec, 10, 64); err != nil || n < before || n > monotonicUsec() {
		t.Fatalf("MONOTONIC_USEC=%s not between %d and now", usec, before)
	}
	if m := ns.next(t); !strings.HasPrefix(m, "READY=1") {
		t.Fatalf("after a reload %q, want READY=1", m)
	}
	in.editConfig(t, "[pool.c]", "[pool.c]\nworkerz = 3")
	in.signal(syscall.SIGHUP)
	if m := ns.next(t); !strings.HasPrefix(m, "RELOADING=1") {
		t.Fatalf("%q, want RELOADING=1", m)
	}
	if m := ns.next(t); !strings.HasPrefix(m, "READY=1\nSTATUS=reload refused") || !strings.Contains(m, "workerz") {
		t.Fatalf("after a refused reload %q, want READY=1 and the error", m)
	}
	// Watchdog pings keep coming while the loop is healthy.
	pings := 0
	deadline := time.After(time.Second)
count:
	for {
		select {
		case m := <-ns.msgs:
			if m == "WATCHDOG=1" {
				pings++
			}
		case <-deadline:
			break count
		}
	}
	if pings < 5 || pings > 15 {
		t.Fatalf("%d watchdog pings in 1 s with WATCHDOG_USEC=200000, want ~10", pings)
	}
	in.signal(syscall.SIGTERM)
	if m := ns.next(t); m != "STOPPING=1" {
		t.Fatalf("%q, want STOPPING=1", m)
	}
	in.checkExit(t)
}

// Socket activation: fcgivisor serves on a listening socket it inherits
// (LISTEN_FDS), matched to http.listen, instead of binding its own.
func TestSocketActivation(t *testing.T) {
	c := lang{"c"}
	c.need(t)
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // f keeps the socket listening
	o := options{langs: []string{"c"}}
	runtimeDir := shortTempDir(t)
	cfg := filepath.Join(t.TempDir(), "fcgivisor.toml")
	os.WriteFile(cfg, []byte(renderConfig(&o, runtimeDir, port)), 0o644)
	// LISTEN_PID must be the pid of fcgivisor itself: sh exports its own pid
	// and execs fcgivisor in its place.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" run -c "$1"`, fcgivisorBin, cfg)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=http", "GORACE=atexit_sleep_ms=50")
	cmd.ExtraFiles = []*os.File{f}
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	log := make(chan string, 1)
	go func() { b, _ := io.ReadAll(bufio.NewReader(out)); log <- string(b) }()
	var body []byte
	if !waitFor(10*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/c/x?pid", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == 200
	}) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no answer on the inherited socket; fcgivisor output:\n%s", <-log)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(body)))
	// The worker did not inherit the socket or the variables.
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if strings.Contains(string(env), "LISTEN_") {
		t.Errorf("worker environment has LISTEN_*: %q", env)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fcgivisor exit: %v\n%s", err, <-log)
	}
	if s := <-log; strings.Contains(s, "address already in use") || strings.Contains(s, "matches no http.listen") {
		t.Fatalf("fcgivisor did not use the inherited socket:\n%s", s)
	}
}
