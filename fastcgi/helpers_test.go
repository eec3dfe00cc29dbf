// This file holds what the tests share: records built by hand, a strict fake
// FastCGI application on one end of a socket pair, and Go's own
// net/http/fcgi server on a Unix socket.

package fastcgi

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// testTimeout bounds every blocking step, so that a bug fails a test instead
// of hanging it. Nothing waits for it to pass.
const testTimeout = 20 * time.Second

// makeRecord builds a record by hand, as net/http/fcgi's fcgi_test.go does,
// with pad padding bytes of 0xEE (receivers must skip whatever they hold).
func makeRecord(t recType, id uint16, content []byte, pad int) []byte {
	b := []byte{1, byte(t), byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(pad), 0}
	b = append(b, content...)
	return append(b, bytes.Repeat([]byte{0xEE}, pad)...)
}

// endRequest builds an END_REQUEST record for request 1.
func endRequest(appStatus uint32, protocolStatus uint8) []byte {
	body := binary.BigEndian.AppendUint32(nil, appStatus)
	body = append(body, protocolStatus, 0, 0, 0)
	return makeRecord(typeEndRequest, 1, body, 0)
}

// stdout builds STDOUT records for request 1 holding s, unpadded.
func stdout(s string) []byte { return makeRecord(typeStdout, 1, []byte(s), 0) }

// okEnd is the usual end of a response: the empty STDOUT record and
// END_REQUEST with REQUEST_COMPLETE.
func okEnd() []byte { return cat(stdout(""), endRequest(0, 0)) }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// pattern returns n reproducible pseudo-random bytes.
func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// socketPair returns both ends of a connected Unix stream socket pair.
func socketPair(t testing.TB) (client, server *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// rawRecord is one record as a fake application read it.
type rawRecord struct {
	typ     recType
	content []byte
}

// fakeApp is the application end of a connection. It checks what the spec
// asks of the client: version 1, request ID 1, reserved byte 0, content
// padded with zeros to a multiple of 8 bytes.
type fakeApp struct {
	conn    net.Conn
	br      *bufio.Reader
	records []rawRecord // every record read so far
}

func (a *fakeApp) readRecord() (rawRecord, error) {
	var h [8]byte
	if _, err := io.ReadFull(a.br, h[:]); err != nil {
		return rawRecord{}, err
	}
	if h[0] != 1 || h[2] != 0 || h[3] != 1 || h[7] != 0 {
		return rawRecord{}, fmt.Errorf("bad header % x: want version 1, request ID 1, reserved 0", h)
	}
	n, pad := int(h[4])<<8|int(h[5]), int(h[6])
	if pad != -n&7 {
		return rawRecord{}, fmt.Errorf("%d content bytes with %d padding bytes: not aligned to 8", n, pad)
	}
	b := make([]byte, n+pad)
	if _, err := io.ReadFull(a.br, b); err != nil {
		return rawRecord{}, err
	}
	if !bytes.Equal(b[n:], make([]byte, pad)) {
		return rawRecord{}, fmt.Errorf("padding % x is not zeros", b[n:])
	}
	rec := rawRecord{typ: recType(h[1]), content: b[:n]}
	a.records = append(a.records, rec)
	return rec, nil
}

// readStream reads records of type t up to the empty one that ends the
// stream, and returns the stream's content.
func (a *fakeApp) readStream(t recType) ([]byte, error) {
	var s []byte
	for {
		rec, err := a.readRecord()
		if err != nil {
			return s, err
		}
		if rec.typ != t {
			return s, fmt.Errorf("got a %v record inside the %v stream", rec.typ, t)
		}
		if len(rec.content) == 0 {
			return s, nil
		}
		s = append(s, rec.content...)
	}
}

// readHead reads BEGIN_REQUEST and the PARAMS stream.
func (a *fakeApp) readHead() (keepConn bool, params []Param, err error) {
	rec, err := a.readRecord()
	if err != nil {
		return false, nil, err
	}
	if rec.typ != typeBeginRequest || !bytes.Equal(rec.content[:2], []byte{0, 1}) || len(rec.content) != 8 {
		return false, nil, fmt.Errorf("first record %v % x, want BEGIN_REQUEST for RESPONDER", rec.typ, rec.content)
	}
	keepConn = rec.content[2] == 1
	s, err := a.readStream(typeParams)
	if err != nil {
		return false, nil, err
	}
	params, err = parseParams(nil, s)
	return keepConn, params, err
}

// readRequest reads a whole request: head and STDIN.
func (a *fakeApp) readRequest() (keepConn bool, params []Param, stdin []byte, err error) {
	if keepConn, params, err = a.readHead(); err != nil {
		return
	}
	stdin, err = a.readStream(typeStdin)
	return
}

func (a *fakeApp) write(bs ...[]byte) error {
	_, err := a.conn.Write(cat(bs...))
	return err
}

// startApp runs app as the application end of a new Unix socket pair and
// returns a Conn to it. The test's cleanup closes the client end, which ends
// any read the app is blocked in, then waits for app to return and reports
// its error.
func startApp(t *testing.T, app func(a *fakeApp) error) *Conn {
	t.Helper()
	cc, sc := socketPair(t)
	return startAppOn(t, cc, sc, app)
}

func startAppOn(t *testing.T, cc, sc net.Conn, app func(a *fakeApp) error) *Conn {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	cc.SetDeadline(deadline)
	sc.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		defer sc.Close()
		done <- app(&fakeApp{conn: sc, br: bufio.NewReader(sc)})
	}()
	c := NewConn(cc)
	t.Cleanup(func() {
		c.Close()
		if err := <-done; err != nil {
			t.Errorf("fake application: %v", err)
		}
	})
	return c
}

// readAll reads resp to its end and returns STDOUT and the error that ended
// it (nil for io.EOF).
func readAll(resp *Response) ([]byte, error) { return io.ReadAll(resp) }

// goServer is Go's net/http/fcgi server on a Unix socket in a temporary
// directory.
type goServer struct {
	path     string
	accepted chan *serverConn // every connection accepted, in order

	started  atomic.Int64
	finished chan struct{} // one value each time a handler returns
}

// serverConn is a connection as the Go server sees it. failed is closed
// once a Read on it has failed: the server has stopped reading it, and if it
// was closed, its file descriptor is closed by then too.
type serverConn struct {
	net.Conn
	once   sync.Once
	failed chan struct{}
}

func (c *serverConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() { close(c.failed) })
	}
	return n, err
}

type trackingListener struct {
	net.Listener
	accepted chan *serverConn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &serverConn{Conn: nc, failed: make(chan struct{})}
	select {
	case l.accepted <- sc:
	default:
		nc.Close()
		return nil, errors.New("test server: too many connections")
	}
	return sc, nil
}

// startGoServer serves h with fcgi.Serve. The test's cleanup stops the
// server and checks that every handler that started has returned.
func startGoServer(t *testing.T, h http.HandlerFunc) *goServer {
	t.Helper()
	s := &goServer{
		path:     filepath.Join(t.TempDir(), "app.sock"),
		accepted: make(chan *serverConn, 64),
		finished: make(chan struct{}, 1024),
	}
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- fcgi.Serve(&trackingListener{Listener: ln, accepted: s.accepted}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.started.Add(1)
			defer func() { s.finished <- struct{}{} }()
			h(w, r)
		}))
	}()
	t.Cleanup(func() {
		ln.Close()
		<-served
		for range s.started.Load() {
			select {
			case <-s.finished:
			case <-time.After(testTimeout):
				t.Fatal("a handler of the Go FastCGI server is still running")
			}
		}
		for len(s.accepted) > 0 {
			sc := <-s.accepted
			sc.Close()
			<-sc.failed // its serve goroutine has stopped reading
		}
	})
	return s
}

// dial connects to the server; the test's cleanup closes the Conn.
func (s *goServer) dial(t *testing.T) *Conn {
	t.Helper()
	nc, err := net.Dial("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(testTimeout))
	c := NewConn(nc)
	t.Cleanup(func() { c.Close() })
	return c
}

// cgiParams are the params Go's cgi.RequestFromMap needs for a request.
func cgiParams(method, uri string, contentLength int, extra ...Param) []Param {
	p := []Param{
		{"REQUEST_METHOD", method},
		{"SERVER_PROTOCOL", "HTTP/1.1"},
		{"REQUEST_URI", uri},
		{"HTTP_HOST", "example.test"},
		{"CONTENT_LENGTH", fmt.Sprint(contentLength)},
	}
	return append(p, extra...)
}

// splitCGI splits a CGI response into its header block and body.
func splitCGI(t *testing.T, out []byte) (head string, body []byte) {
	t.Helper()
	h, b, ok := bytes.Cut(out, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no end of CGI headers in %.200q", out)
	}
	return string(h), b
}
