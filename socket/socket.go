// Package socket creates the listeners fcgivisor needs: the private runtime
// directory with one listening Unix socket per worker, and the HTTP/admin
// listeners. It cleans up stale sockets left by a killed earlier run and
// refuses to take over a socket another live process is serving.
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

// OpenRuntimeDir creates dir if needed (mode 0700), locks it against a
// second instance, and removes worker sockets a killed earlier run left in
// dir/w. A dir locked by a live instance is an error. Errors name the
// paths, not the config key: the caller adds it.
func OpenRuntimeDir(dir string) (*RuntimeDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
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

// Listen opens a stream listener on network ("tcp" or "unix") and address.
// A Unix socket path that exists is removed only when nothing accepts on it
// (a stale socket of a killed run); one that a live process serves is an
// error. New Unix sockets get mode (0 = keep the umask's).
func Listen(network, address string, mode os.FileMode) (net.Listener, error) {
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
	if mode == 0 {
		l, err := net.Listen("unix", address)
		if err != nil {
			return nil, fmt.Errorf("listen unix:%s: %w", address, err)
		}
		return l, nil
	}
	// Bind under a temporary name, set the mode, then rename into place:
	// no client can connect while the socket still has the umask's mode.
	tmp := fmt.Sprintf("%s.%d.tmp", address, os.Getpid())
	os.Remove(tmp)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen unix:%s: %w", address, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, mode); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("chmod %s: %w", address, err)
	}
	if err := os.Rename(tmp, address); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("listen unix:%s: %w", address, err)
	}
	return &unixListener{UnixListener: ul, path: address}, nil
}

// unixListener removes its socket file on Close (the one the net package
// would remove is the temporary name).
type unixListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

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
