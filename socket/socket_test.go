package socket

import (
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
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
	if err != nil || fi.Mode().Perm() != 0o711 {
		t.Fatalf("runtime dir mode %v, %v; want 0711 (reachable, not listable)", fi.Mode(), err)
	}
	// What fcgivisor keeps there for itself stays its own.
	for name, want := range map[string]os.FileMode{"w": 0o700, "fcgivisor.lock": 0o600} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: mode %v, %v; want %v", name, fi.Mode().Perm(), err, want)
		}
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
	l, err := Listen("unix", path, Mode(0o660))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o660 {
		t.Fatalf("mode %v, want 0660", fi.Mode().Perm())
	}
	// In use by a live listener: error, not stolen.
	if _, err := Listen("unix", path, Mode(0o600)); err == nil || !strings.Contains(err.Error(), "in use") {
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
	l2, err := Listen("unix", path, Mode(0o600))
	if err != nil {
		t.Fatalf("stale socket not reclaimed: %v", err)
	}
	l2.Close()

	// A path that is not a socket is never removed.
	plain := filepath.Join(shortDir(t), "file")
	os.WriteFile(plain, []byte("x"), 0o600)
	if _, err := Listen("unix", plain, Mode(0o600)); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listen on regular file: %v", err)
	}
	if _, err := os.Stat(plain); err != nil {
		t.Fatal("regular file removed")
	}
}

func TestListenTCPInUse(t *testing.T) {
	l, err := Listen("tcp", "127.0.0.1:0", Perm{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := Listen("tcp", l.Addr().String(), Perm{}); err == nil {
		t.Fatal("second listen on the same TCP address succeeded")
	}
}

// onlyEntry fails t unless dir holds exactly the one name want: Listen
// leaves no temporary directory behind, whether it succeeded or not.
func onlyEntry(t *testing.T, dir string, want ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("%s holds %q, want %q", dir, names, want)
	}
}

func statOwner(t *testing.T, path string) (mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("%s is %v, not a socket", path, fi.Mode())
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode().Perm(), int(st.Uid), int(st.Gid)
}

// TestListenUnixPerm: a socket gets its mode whatever the umask, keeps
// the creator's owner and group with -1, and leaves nothing beside it.
func TestListenUnixPerm(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "http.sock")
	for _, mode := range []os.FileMode{0o660, 0o600, 0o666, 0o000} {
		l, err := Listen("unix", path, Mode(mode))
		if err != nil {
			t.Fatal(err)
		}
		onlyEntry(t, dir, "http.sock")
		if a := l.Addr(); a.Network() != "unix" || a.String() != path {
			t.Errorf("Addr() = %s %s, want unix %s", a.Network(), a, path)
		}
		got, uid, gid := statOwner(t, path)
		if got != mode || uid != os.Geteuid() || gid != os.Getegid() {
			t.Errorf("Mode(%04o): socket has mode %04o uid %d gid %d, want %04o uid %d gid %d", mode, got, uid, gid, mode, os.Geteuid(), os.Getegid())
		}
		l.Close()
		onlyEntry(t, dir)
	}
}

// TestListenUnixOwner: as root the socket is given to the owner and group
// asked for; as another user, giving it away fails with EPERM and leaves
// no socket and no temporary directory.
func TestListenUnixOwner(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "http.sock")
	if os.Geteuid() != 0 {
		for _, p := range []Perm{{Mode: 0o660, UID: 0, GID: -1}, {Mode: 0o660, UID: -1, GID: 0}} {
			_, err := Listen("unix", path, p)
			if !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "chown "+path) {
				t.Errorf("Listen as uid %d with %+v: %v, want EPERM from chown %s", os.Geteuid(), p, err, path)
			}
			onlyEntry(t, dir)
		}
		// Its own group it may set.
		l, err := Listen("unix", path, Perm{Mode: 0o660, UID: os.Geteuid(), GID: os.Getegid()})
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		return
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal("no user nobody to give the socket to (every Debian system has one: base-passwd): ", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	for _, tc := range []struct {
		perm     Perm
		uid, gid int
	}{
		{Perm{Mode: 0o640, UID: uid, GID: gid}, uid, gid},
		{Perm{Mode: 0o660, UID: -1, GID: gid}, 0, gid},
		{Perm{Mode: 0o600, UID: uid, GID: -1}, uid, os.Getegid()},
	} {
		l, err := Listen("unix", path, tc.perm)
		if err != nil {
			t.Fatal(err)
		}
		onlyEntry(t, dir, "http.sock")
		mode, u, g := statOwner(t, path)
		if mode != tc.perm.Mode || u != tc.uid || g != tc.gid {
			t.Errorf("%+v: mode %04o uid %d gid %d, want %04o uid %d gid %d", tc.perm, mode, u, g, tc.perm.Mode, tc.uid, tc.gid)
		}
		l.Close()
	}
}

// TestListenUnixDirLen: a socket in a directory of MaxDirLen bytes can be
// created whatever digits the temporary directory gets; a longer one may
// not, and the error says why.
func TestListenUnixDirLen(t *testing.T) {
	if worst := MaxDirLen + len("/"+strings.Replace(tmpDirName, "*", "4294967295", 1)+"/"+tmpSocketName); worst != maxUnixPath {
		t.Fatalf("the longest temporary path for a directory of MaxDirLen bytes is %d bytes, want %d", worst, maxUnixPath)
	}
	base := shortDir(t)
	pad := func(n int) string {
		d := base + "/" + strings.Repeat("d", n-len(base)-1)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	l, err := Listen("unix", pad(MaxDirLen)+"/s.sock", Mode(0o600))
	if err != nil {
		t.Fatalf("directory of MaxDirLen bytes: %v", err)
	}
	l.Close()
	long := pad(MaxDirLen + 10) // over the limit whatever the digits
	if _, err := Listen("unix", long+"/s.sock", Mode(0o600)); err == nil || !strings.Contains(err.Error(), "too long for the temporary socket") {
		t.Fatalf("directory of %d bytes: %v, want the temporary path too long", len(long), err)
	}
	onlyEntry(t, long)
}
