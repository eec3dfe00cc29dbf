package socket

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "fvs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestRuntimeDirLockAndStaleCleanup(t *testing.T) {
	dir := filepath.Join(shortDir(t), "run")
	rd, err := OpenRuntimeDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("runtime dir mode %v, %v; want 0700", fi.Mode(), err)
	}
	if a, b := rd.NewWorkerPath("php"), rd.NewWorkerPath("php"); a == b {
		t.Fatalf("two workers got the socket path %s", a)
	}
	// A second instance on the same dir is refused, not allowed to steal it.
	if _, err := OpenRuntimeDir(dir); err == nil || !strings.Contains(err.Error(), "in use by another running fcgivisor") {
		t.Fatalf("second open: %v, want in-use error", err)
	}
	// A socket left behind by a killed run...
	stale := rd.NewWorkerPath("php")
	f, err := WorkerListener(stale)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	rd.Close()
	// ...is removed by the next instance.
	rd2, err := OpenRuntimeDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rd2.Close()
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale worker socket still there: %v", err)
	}
}

func TestWorkerListenerAcceptsConnections(t *testing.T) {
	path := filepath.Join(shortDir(t), "w.sock")
	f, err := WorkerListener(path)
	if err != nil {
		t.Fatal(err)
	}
	// The connection waits in the backlog until a worker accepts.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Once the last copy of the listener is closed (the worker died),
	// connecting is refused: a request is never queued to a dead worker.
	f.Close()
	if _, err := net.Dial("unix", path); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after close: %v, want ECONNREFUSED", err)
	}
}

func TestListenUnixStaleAndInUse(t *testing.T) {
	path := filepath.Join(shortDir(t), "http.sock")
	l, err := Listen("unix", path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o660 {
		t.Fatalf("mode %v, want 0660", fi.Mode().Perm())
	}
	// In use by a live listener: error, not stolen.
	if _, err := Listen("unix", path, 0); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("listen on live socket: %v, want in-use error", err)
	}
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left after Close: %v", err)
	}
	// A socket file left behind as a killed process would.
	f, err := WorkerListener(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	l2, err := Listen("unix", path, 0)
	if err != nil {
		t.Fatalf("stale socket not reclaimed: %v", err)
	}
	l2.Close()

	// A path that is not a socket is never removed.
	plain := filepath.Join(shortDir(t), "file")
	os.WriteFile(plain, []byte("x"), 0o600)
	if _, err := Listen("unix", plain, 0); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listen on regular file: %v", err)
	}
	if _, err := os.Stat(plain); err != nil {
		t.Fatal("regular file removed")
	}
}

func TestListenTCPInUse(t *testing.T) {
	l, err := Listen("tcp", "127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := Listen("tcp", l.Addr().String(), 0); err == nil {
		t.Fatal("second listen on the same TCP address succeeded")
	}
}
