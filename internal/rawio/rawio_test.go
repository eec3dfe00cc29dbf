package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns the two ends of a connection of network ("unix" or
// "tcp"), the first wrapped, the second a plain net.Conn.
func pair(t *testing.T, network string) (*Conn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	d, err := net.Dial(network, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.FailNow()
	}
	w, ok := Wrap(d).(*Conn)
	if !ok {
		t.Fatalf("Wrap(%T) is not a *Conn", d)
	}
	t.Cleanup(func() { w.Close(); peer.Close() })
	return w, peer
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// TestRoundTrip sends more than the socket buffers hold both ways, so
// that writes meet EAGAIN and wait in the poller, and reads in small and
// large pieces.
func TestRoundTrip(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			c, peer := pair(t, network)
			want := pattern(4 << 20)

			// c -> peer with Write, peer reading slowly at first.
			got := make(chan []byte, 1)
			go func() {
				var buf bytes.Buffer
				time.Sleep(50 * time.Millisecond) // let the socket fill
				io.CopyN(&buf, peer, int64(len(want)))
				got <- buf.Bytes()
			}()
			if n, err := c.Write(want); n != len(want) || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
			}
			if g := <-got; !bytes.Equal(g, want) {
				t.Fatalf("peer read %d bytes, not the %d written", len(g), len(want))
			}

			// peer -> c, read in 1000-byte pieces.
			go func() { peer.Write(want) }()
			var buf bytes.Buffer
			p := make([]byte, 1000)
			for buf.Len() < len(want) {
				n, err := c.Read(p)
				if err != nil {
					t.Fatalf("Read after %d bytes: %v", buf.Len(), err)
				}
				buf.Write(p[:n])
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatal("Read got other bytes than the peer wrote")
			}
			if n, err := c.Read(nil); n != 0 || err != nil {
				t.Fatalf("Read(nil) = %d, %v", n, err)
			}
		})
	}
}

// TestWriteBuffers writes more buffers than one writev takes, empty ones
// among them, and more bytes than the socket holds, so that writev is
// partial and resumes inside a buffer; the caller's buffers stay whole.
func TestWriteBuffers(t *testing.T) {
	c, peer := pair(t, "unix")
	var bufs net.Buffers
	var want []byte
	for i := 0; i < 40; i++ {
		b := pattern(i * 7919 % 200000)
		if i%5 == 0 {
			b = nil
		}
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	lens := make([]int, len(bufs))
	for i, b := range bufs {
		lens[i] = len(b)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(want))))
		got <- b
	}()
	n, err := c.WriteBuffers(bufs)
	if n != int64(len(want)) || err != nil {
		t.Fatalf("WriteBuffers = %d, %v; want %d, nil", n, err, len(want))
	}
	if g := <-got; !bytes.Equal(g, want) {
		t.Fatalf("peer read %d bytes, not the %d written in order", len(g), len(want))
	}
	for i, b := range bufs {
		if len(b) != lens[i] {
			t.Fatalf("buffer %d changed length: %d, was %d", i, len(b), lens[i])
		}
	}
	if n, err := c.WriteBuffers(net.Buffers{nil, {}}); n != 0 || err != nil {
		t.Fatalf("WriteBuffers of empty buffers = %d, %v", n, err)
	}
}

// TestErrors: the errors are net.Conn's: EOF, EPIPE or ECONNRESET after
// the peer closed, a timeout at the deadline, net.ErrClosed after Close
// and for a Read that Close interrupts.
func TestErrors(t *testing.T) {
	t.Run("eof and epipe", func(t *testing.T) {
		c, peer := pair(t, "unix")
		peer.Close()
		if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("Read after the peer closed = %d, %v; want 0, EOF", n, err)
		}
		_, err := c.Write([]byte("x"))
		var oe *net.OpError
		if !errors.Is(err, syscall.EPIPE) || !errors.As(err, &oe) || oe.Op != "write" {
			t.Fatalf("Write after the peer closed: %v (%T); want a write *net.OpError for EPIPE", err, err)
		}
		_, err = c.WriteBuffers(net.Buffers{[]byte("x")})
		if !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("WriteBuffers after the peer closed: %v; want EPIPE", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		c, _ := pair(t, "tcp")
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 8))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past the deadline: %v; want a timeout", err)
		}
		c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
		_, err = c.Write(make([]byte, 64<<20)) // more than the socket holds; nobody reads
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write past the deadline: %v; want a timeout", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		c, _ := pair(t, "unix")
		done := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 8))
			done <- err
		}()
		time.Sleep(20 * time.Millisecond)
		c.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Read interrupted by Close: %v; want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not end a blocked Read")
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after Close: %v; want net.ErrClosed", err)
		}
	})
}

// TestConcurrentWrites: Writes from several goroutines each go out
// whole, as on a net.Conn.
func TestConcurrentWrites(t *testing.T) {
	c, peer := pair(t, "unix")
	const writers, size = 8, 300 << 10
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Write(bytes.Repeat([]byte{byte('a' + i)}, size)); err != nil {
				t.Error(err)
			}
		}()
	}
	all, err := io.ReadAll(io.LimitReader(peer, writers*size))
	wg.Wait()
	if err != nil || len(all) != writers*size {
		t.Fatalf("read %d bytes, %v", len(all), err)
	}
	for i := 0; i < writers; i++ {
		run := all[i*size : (i+1)*size]
		if bytes.Count(run, run[:1]) != size {
			t.Fatalf("write %d is not one run of one byte: the writes interleaved", i)
		}
	}
}

// TestWrap: only Unix and TCP connections are wrapped; the wrapper keeps
// what net/http and the fastcgi package look for on a connection.
func TestWrap(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap wrapped a net.Pipe")
	}
	c, peer := pair(t, "tcp")
	if Wrap(c) != net.Conn(c) {
		t.Fatal("Wrap wrapped a *Conn again")
	}
	if _, err := c.SyscallConn(); err != nil {
		t.Fatal(err)
	}
	// ReadFrom: the TCP connection's (sendfile from a file).
	f, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	want := pattern(100 << 10)
	f.Write(want)
	f.Seek(0, io.SeekStart)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(want))))
		got <- b
	}()
	if n, err := c.ReadFrom(f); n != int64(len(want)) || err != nil {
		t.Fatalf("ReadFrom = %d, %v", n, err)
	}
	if !bytes.Equal(<-got, want) {
		t.Fatal("ReadFrom sent other bytes")
	}
	// CloseWrite: the peer reads EOF, and can still write back.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := peer.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("peer Read after CloseWrite = %d, %v; want EOF", n, err)
	}
	peer.Write([]byte("z"))
	p := make([]byte, 1)
	if n, err := c.Read(p); n != 1 || p[0] != 'z' || err != nil {
		t.Fatalf("Read after CloseWrite = %d %q, %v", n, p[:n], err)
	}
}
