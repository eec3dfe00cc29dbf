// Package socket creates the listeners fcgivisor needs: the private runtime
// directory with one listening Unix socket per worker, and the HTTP, admin
// and status listeners, each Unix one bound in a private directory and
// given its mode and owner before its path appears. It cleans up stale
// sockets left by a killed earlier run and refuses to take over a socket
// another live process is serving.
package socket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// workerBacklog is the listen backlog of a worker socket. Only fcgivisor
// connects to it, at most once per slot plus a reconnect, so it stays small.
const workerBacklog = 128

// RuntimeDir is fcgivisor's private runtime directory (mode 0700), held
// with an exclusive lock for the life of the instance.
type RuntimeDir struct {
	Path string
	lock *os.File
	seq  atomic.Uint64 // worker socket numbers, unique for the instance
}

// OpenRuntimeDir creates dir if needed (mode 0711: others may reach a
// socket in it by name, such as a pool's public socket, which has its own
// mode, but not list it), locks it against a
// second instance, and removes worker sockets a killed earlier run left in
// dir/w. A dir locked by a live instance is an error. Errors name the
// paths, not the config key: the caller adds it.
func OpenRuntimeDir(dir string) (*RuntimeDir, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	lockPath := filepath.Join(dir, "fcgivisor.lock")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by another running fcgivisor (lock %s held; stop it, or choose another runtime_dir)", dir, lockPath)
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	wdir := filepath.Join(dir, "w")
	// The lock proves no live instance uses dir/w: everything in it is stale.
	if err := os.RemoveAll(wdir); err != nil {
		f.Close()
		return nil, fmt.Errorf("remove stale worker sockets: %w", err)
	}
	if err := os.Mkdir(wdir, 0o700); err != nil {
		f.Close()
		return nil, err
	}
	return &RuntimeDir{Path: dir, lock: f}, nil
}

// Close releases the lock. Worker sockets are removed by their owners.
func (d *RuntimeDir) Close() error { return d.lock.Close() }

// NewWorkerPath returns a socket path for a new worker of pool, never used
// before by this instance: generations of a pool across reloads must not
// share one (the exit of an old worker removes its path).
func (d *RuntimeDir) NewWorkerPath(pool string) string {
	return filepath.Join(d.Path, "w", fmt.Sprintf("%s-%d.sock", pool, d.seq.Add(1)))
}

// WorkerListener creates a listening Unix socket at path for one worker and
// returns it as a file, to become the worker's fd 0. The caller closes its
// copy once the worker has started, so that the socket dies with the worker.
func WorkerListener(path string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	_ = os.Remove(path)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", path, err)
	}
	if err := unix.Listen(fd, workerBacklog); err != nil {
		unix.Close(fd)
		os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Perm is what a new Unix socket gets before its path appears: Mode, and
// the owner and group given by chown. UID or GID -1 keeps what the kernel
// gave the socket (fcgivisor's effective uid; its effective gid, or the
// directory's group when the directory has the setgid bit). The zero Perm
// is mode 0000 owned by root: it fails closed.
type Perm struct {
	Mode     os.FileMode
	UID, GID int
}

// Mode is a Perm with mode m and the owner and group the kernel gives.
func Mode(m os.FileMode) Perm { return Perm{Mode: m, UID: -1, GID: -1} }

// tmpDirName is the pattern of the private directory a Unix socket is
// bound in (os.MkdirTemp replaces the * with up to 10 digits), and
// tmpSocketName the socket's name in it. They are short because the
// temporary path must fit where the final one does.
const (
	tmpDirName    = ".fv*"
	tmpSocketName = "s"
)

// maxUnixPath is the longest path bind accepts: sun_path holds 108 bytes
// including the terminating NUL.
const maxUnixPath = 107

// MaxDirLen is the longest directory a Unix socket of Listen may be in:
// the temporary path dir + "/.fv" + 10 digits + "/s" must fit in
// maxUnixPath. conf checks listen addresses against the same number.
const MaxDirLen = maxUnixPath - len("/.fv0123456789/s")

// Listen opens a stream listener on network ("tcp" or "unix") and address.
// A Unix socket path that exists is removed only when nothing accepts on it
// (a stale socket of a killed run); one that a live process serves is an
// error. A new Unix socket gets perm before its path appears.
func Listen(network, address string, perm Perm) (net.Listener, error) {
	if network != "unix" {
		l, err := net.Listen(network, address)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", address, err)
		}
		return l, nil
	}
	if err := removeStale(address); err != nil {
		return nil, err
	}
	// Bind in a new 0700 directory beside the path, set the mode and
	// owner there, then rename the socket into place: no client can
	// connect while the socket has the umask's mode or fcgivisor's owner,
	// and no one else can swap the name for a symlink between bind and
	// chmod, which would make a root fcgivisor chmod the link's target.
	dir, err := os.MkdirTemp(filepath.Dir(address), tmpDirName)
	if err != nil {
		return nil, fmt.Errorf("listen unix:%s: %w", address, err)
	}
	defer os.Remove(dir)
	tmp := filepath.Join(dir, tmpSocketName)
	if len(tmp) > maxUnixPath {
		return nil, fmt.Errorf("listen unix:%s: the directory is over %d bytes long, too long for the temporary socket %s: use a shorter one",
			address, MaxDirLen, tmp)
	}
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen unix:%s: %w", address, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	if err := placeSocket(tmp, address, perm); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, err
	}
	return &unixListener{UnixListener: ul, path: address}, nil
}

// placeSocket gives the socket at tmp its mode, owner and group, and
// renames it to address.
func placeSocket(tmp, address string, perm Perm) error {
	if err := os.Chmod(tmp, perm.Mode.Perm()); err != nil {
		return fmt.Errorf("chmod %s: %w", address, err)
	}
	if perm.UID != -1 || perm.GID != -1 {
		if err := os.Lchown(tmp, perm.UID, perm.GID); err != nil {
			return fmt.Errorf("chown %s to uid %d gid %d: %w", address, perm.UID, perm.GID, err)
		}
	}
	if err := os.Rename(tmp, address); err != nil {
		return fmt.Errorf("listen unix:%s: %w", address, err)
	}
	return nil
}

// unixListener removes its socket file on Close (the one the net package
// would remove is the temporary name), and gives its path as its address
// (the net package knows the temporary one).
type unixListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { os.Remove(l.path) })
	return err
}

// removeStale removes path if it is a Unix socket nobody accepts on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("listen unix:%s: the path exists and is not a socket", path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("listen unix:%s: socket in use by another process", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("listen unix:%s: cannot tell whether the existing socket is in use: %w", path, err)
	}
	return os.Remove(path)
}
