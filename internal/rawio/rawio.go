// Package rawio gives a socket's reads and writes to the kernel without
// telling Go's scheduler they are system calls.
//
// A read or write on a non-blocking socket never waits in the kernel: it
// copies what is there and returns, or fails with EAGAIN. Go's syscall
// package still brackets it with the scheduler's entersyscall and
// exitsyscall, and under load that bookkeeping costs more than the call:
// a call that finds the scheduler's monitor thread (sysmon) asleep wakes
// it (a futex wake), sysmon then polls every 20 µs while the process is
// busy, and it hands the P of a call it sees in progress on two polls to
// another thread. Measured on fcgivisor's HTTP front with one client at a
// time: sysmon's nanosleeps went from 2.2 to 0.08 per request and futex
// calls from 0.12 to under 0.03, and the front's CPU per request from 104
// to 72 µs (bench/README.md).
//
// Conn makes the same calls with syscall.RawSyscall inside the
// connection's syscall.RawConn, so waiting (EAGAIN), deadlines and Close
// still go through Go's poller exactly as for a net.Conn, and the errors
// are the ones net.Conn returns. Under the race detector the calls go
// through the syscall package instead (race.go), which tells the detector
// what the kernel read and wrote.
package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Conn is a *net.UnixConn or *net.TCPConn whose Read, Write and
// WriteBuffers make raw system calls. Every other method is the wrapped
// connection's.
type Conn struct {
	net.Conn
	rc syscall.RawConn

	// The arguments and results of the read and of the write in progress,
	// held here so that the functions given to rc are made once, not per
	// call (a closure per call is an allocation). rmu and wmu keep
	// concurrent Reads (Writes) from sharing them.
	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	wmu     sync.Mutex
	one     [1][]byte // Write's buffer, as a net.Buffers without allocating
	wbufs   net.Buffers
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// Wrap returns nc as a *Conn when it is a Unix or TCP connection, nc
// itself otherwise (a *Conn included).
func Wrap(nc net.Conn) net.Conn {
	var sc syscall.Conn
	switch c := nc.(type) {
	case *net.UnixConn:
		sc = c
	case *net.TCPConn:
		sc = c
	default:
		return nc
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nc
	}
	c := &Conn{Conn: nc, rc: rc}
	c.readFn = c.read
	c.writeFn = c.writev
	return c
}

// read is the function Read gives to rc: false asks the poller to wait
// until the socket is readable.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, e := sysRead(fd, c.rbuf)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerrno = n, e
		return true
	}
}

// Read reads as net.Conn's Read does.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf = p
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rbuf, c.rn, c.rerrno = nil, 0, 0
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p, as net.Conn's Write does (one writev of one
// buffer: the same system call cost as a write).
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.one[0] = p
	n, err := c.writeAll(c.one[:], "write")
	c.one[0] = nil
	return int(n), err
}

// writev is the function the writes give to rc: it writes until c.wbufs
// is empty, an error, or EAGAIN (false: wait until writable, then again).
func (c *Conn) writev(fd uintptr) bool {
	for len(c.wbufs) > 0 {
		n, e := sysWritev(fd, c.wbufs)
		switch e {
		case 0:
			c.wn += n
			c.wbufs = consume(c.wbufs, n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// WriteBuffers writes all of bufs, in one writev when the socket takes
// it all, as net.Buffers.WriteTo does on a net.Conn (whose writev a
// wrapper does not reach: WriteTo would make a write per buffer). bufs
// itself is left unchanged.
func (c *Conn) WriteBuffers(bufs net.Buffers) (int64, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeAll(bufs, "writev")
}

// writeAll writes bufs under wmu; op names the call in an error.
func (c *Conn) writeAll(bufs net.Buffers, op string) (int64, error) {
	c.wbufs = consume(bufs, 0)
	if len(c.wbufs) == 0 {
		return 0, nil
	}
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werrno
	c.wbufs, c.wn, c.werrno = nil, 0, 0
	switch {
	case err != nil:
		return int64(n), c.opError(op, err)
	case errno != 0:
		return int64(n), c.opError(op, os.NewSyscallError("writev", errno))
	}
	return int64(n), nil
}

// consume drops the first n bytes of bufs and its leading empty buffers,
// slicing the first buffer left rather than changing bufs' elements.
func consume(bufs net.Buffers, n int) net.Buffers {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if n > 0 {
		// Another buffer list: the caller's first element stays whole.
		rest := make(net.Buffers, len(bufs))
		copy(rest, bufs)
		rest[0] = rest[0][n:]
		return rest
	}
	return bufs
}

// ReadFrom lets the wrapped connection copy from r (a *net.TCPConn
// sends a file with sendfile(2)).
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c}, r)
}

// writerOnly hides Conn's ReadFrom from io.Copy.
type writerOnly struct{ io.Writer }

// CloseWrite shuts down the writing side of the connection.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn returns the wrapped connection's syscall.RawConn.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// opError is err as the net package reports an error of op on the
// connection: a *net.OpError, whose Timeout and errors.Is (net.ErrClosed,
// os.ErrDeadlineExceeded, syscall.EPIPE, ...) answer as for net.Conn.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok { // RawConn's, made for this call
		oe.Op = op // not "raw-read", "raw-write"
		return oe
	}
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
