// Tests of ServerConn, the application side of a web server's connection:
// a test plays the web server with records built by hand on one end of a
// Unix socket pair, and checks every record that comes back (version,
// reserved byte, padding aligned to 8 and zeroed).

package fastcgi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// srv is a ServerConn serving h on one end of a socket pair, and the
// test's end, the web server's.
type srv struct {
	sc *ServerConn
	nc *net.UnixConn // the client end
	br *bufio.Reader

	served chan struct{} // closed when Serve has returned, err set
	err    error
}

// startServer serves h on a new socket pair. The test's cleanup closes the
// client end and checks that Serve returns.
func startServer(t *testing.T, opts ServerOptions, h Handler) *srv {
	t.Helper()
	cc, sn := socketPair(t)
	cc.SetDeadline(time.Now().Add(testTimeout))
	s := &srv{sc: NewServerConn(sn, opts), nc: cc, br: bufio.NewReader(cc), served: make(chan struct{})}
	go func() {
		defer close(s.served)
		s.err = s.sc.Serve(context.Background(), h)
	}()
	t.Cleanup(func() {
		cc.Close()
		select {
		case <-s.served:
		case <-time.After(testTimeout):
			t.Error("Serve did not return after the client closed")
		}
	})
	return s
}

// wait waits for Serve to return and returns its error.
func (s *srv) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-s.served:
		return s.err
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return")
		return nil
	}
}

// send writes records to the server.
func (s *srv) send(t *testing.T, bs ...[]byte) {
	t.Helper()
	if _, err := s.nc.Write(cat(bs...)); err != nil {
		t.Fatalf("client write: %v", err)
	}
}

// sendAsync writes b from a goroutine (the server may stop reading, or
// answer while it is written); the result comes on the channel.
func (s *srv) sendAsync(b []byte) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := s.nc.Write(b)
		ch <- err
	}()
	return ch
}

// srec is a record the server sent.
type srec struct {
	typ     recType
	id      uint16
	content []byte
}

// read reads one record, checking what the spec asks of a sender: version
// 1, reserved byte 0, and (as the spec recommends and the package does)
// padding to a multiple of 8 bytes, made of zeros.
func (s *srv) read() (srec, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(s.br, h[:]); err != nil {
		return srec{}, err
	}
	if h[0] != version1 || h[7] != 0 {
		return srec{}, fmt.Errorf("bad header % x: want version 1, reserved 0", h)
	}
	n, pad := int(binary.BigEndian.Uint16(h[4:6])), int(h[6])
	if pad != padLen(n) {
		return srec{}, fmt.Errorf("%d content bytes with %d padding bytes: not aligned to 8", n, pad)
	}
	b := make([]byte, n+pad)
	if _, err := io.ReadFull(s.br, b); err != nil {
		return srec{}, fmt.Errorf("inside a record: %w", err)
	}
	if !bytes.Equal(b[n:], make([]byte, pad)) {
		return srec{}, fmt.Errorf("padding % x is not zeros", b[n:])
	}
	return srec{typ: recType(h[1]), id: binary.BigEndian.Uint16(h[2:4]), content: b[:n]}, nil
}

func (s *srv) mustRead(t *testing.T) srec {
	t.Helper()
	r, err := s.read()
	if err != nil {
		t.Fatalf("reading a record from the server: %v", err)
	}
	return r
}

// answer is a request's answer as the client received it.
type answer struct {
	stdout, stderr []byte
	stdoutEnded    bool // an empty STDOUT record came
	appStatus      uint32
	protocolStatus uint8
}

// response reads records up to the END_REQUEST of id. Management records
// are skipped; a record for another request fails the test.
func (s *srv) response(t *testing.T, id uint16) answer {
	t.Helper()
	var a answer
	for {
		r := s.mustRead(t)
		if r.id == 0 && (r.typ == typeGetValuesResult || r.typ == typeUnknownType) {
			continue
		}
		if r.id != id {
			t.Fatalf("%v record for request %d while reading the answer to %d", r.typ, r.id, id)
		}
		switch r.typ {
		case typeStdout:
			if len(r.content) == 0 {
				a.stdoutEnded = true
			} else if a.stdoutEnded {
				t.Fatal("STDOUT content after the end of the STDOUT stream")
			}
			a.stdout = append(a.stdout, r.content...)
		case typeStderr:
			a.stderr = append(a.stderr, r.content...)
		case typeEndRequest:
			if len(r.content) != 8 {
				t.Fatalf("END_REQUEST with %d content bytes", len(r.content))
			}
			a.appStatus = binary.BigEndian.Uint32(r.content)
			a.protocolStatus = r.content[4]
			return a
		default:
			t.Fatalf("unexpected %v record for request %d", r.typ, id)
		}
	}
}

// expectClosed reads until the server's end is closed; any record before
// that fails the test.
func (s *srv) expectClosed(t *testing.T) {
	t.Helper()
	r, err := s.read()
	if err == nil {
		t.Fatalf("got a %v record for request %d (%q), want the connection closed", r.typ, r.id, r.content)
	}
	if !isClosedErr(err) {
		t.Fatalf("read: %v, want EOF or a reset", err)
	}
}

// last sends request id without FCGI_KEEP_CONN and checks that it is
// answered want and that the connection then closes, Serve returning nil.
func (s *srv) last(t *testing.T, id uint16, want string) {
	t.Helper()
	s.send(t, request(id, false, someParams, nil))
	if a := s.response(t, id); string(a.stdout) != want {
		t.Fatalf("next request: %q", a.stdout)
	}
	s.closedClean(t)
}

// closedClean checks that the connection closes and Serve returns nil.
func (s *srv) closedClean(t *testing.T) {
	t.Helper()
	s.expectClosed(t)
	if err := s.wait(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// request is a whole request: BEGIN_REQUEST, PARAMS, STDIN.
func request(id uint16, keep bool, params []Param, body []byte) []byte {
	b := head(id, keep, params)
	return appendStream(b, typeStdin, id, body)
}

// head is BEGIN_REQUEST and the PARAMS stream.
func head(id uint16, keep bool, params []Param) []byte {
	var flags uint8
	if keep {
		flags = flagKeepConn
	}
	b := appendBeginRequest(nil, id, roleResponder, flags)
	content, err := appendParams(nil, params)
	if err != nil {
		panic(err)
	}
	return appendStream(b, typeParams, id, content)
}

func abortRecord(id uint16) []byte { return appendRecord(nil, typeAbortRequest, id, nil) }

// echo answers with the request body.
func echo(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
	_, err := io.Copy(w, r.Body)
	return 0, err
}

// say answers s, reading no body.
func say(s string) Handler {
	return func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		_, err := io.WriteString(w, s)
		return 0, err
	}
}

var someParams = []Param{{"REQUEST_METHOD", "GET"}, {"SCRIPT_FILENAME", "/srv/index.php"}}

func TestServerParamsAndAnswer(t *testing.T) {
	params := []Param{
		{"REQUEST_METHOD", "POST"},
		{"HTTP_X_LONG", string(bytes.Repeat([]byte("v"), 300))}, // 4-byte length form
		{"", "empty name"},
		{"EMPTY", ""},
		{"DUP", "1"},
		{"DUP", "2"}, // duplicates and order kept
		{string(bytes.Repeat([]byte("N"), 200)), "x"},
		{"BIN", "a\x00b\xff"},
	}
	var got *ServerRequest
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		got = r
		io.WriteString(w, "Status: 201 Created\r\n\r\n")
		io.WriteString(w, "hello")
		return 7, nil
	})
	s.send(t, request(513, false, params, nil)) // an ID over 255: both bytes count
	a := s.response(t, 513)
	if string(a.stdout) != "Status: 201 Created\r\n\r\nhello" || a.appStatus != 7 || a.protocolStatus != statusRequestComplete {
		t.Fatalf("answer %q, app status %d, protocol status %d; want the handler's, 7, 0", a.stdout, a.appStatus, a.protocolStatus)
	}
	if len(a.stderr) != 0 {
		t.Errorf("stderr %q, want none", a.stderr)
	}
	s.expectClosed(t) // no FCGI_KEEP_CONN
	if err := s.wait(t); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if got.ID != 513 || got.KeepConn || !slices.Equal(got.Params, params) {
		t.Errorf("handler got ID %d, KeepConn %v, params %q; want 513, false, %q", got.ID, got.KeepConn, got.Params, params)
	}
}

// The STDOUT stream is a stream (spec 3.3): non-empty records, then an
// empty one, which the application sends before END_REQUEST (spec 6.2).
func TestServerEndsStdoutStream(t *testing.T) {
	for _, out := range []string{"", "hello"} {
		s := startServer(t, ServerOptions{}, say(out))
		s.send(t, request(1, false, someParams, nil))
		a := s.response(t, 1)
		if string(a.stdout) != out || !a.stdoutEnded {
			t.Errorf("answer %q with STDOUT ended %v, want %q and the empty STDOUT record before END_REQUEST", a.stdout, a.stdoutEnded, out)
		}
	}
}

func TestServerStdinStreams(t *testing.T) {
	body := pattern(1, 1<<20)
	var firstRead atomic.Bool
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				firstRead.Store(true)
				if _, werr := w.Write(buf[:n]); werr != nil {
					return 0, werr
				}
			}
			if err == io.EOF {
				return 0, nil
			}
			if err != nil {
				return 0, err
			}
		}
	})
	stdin := appendStream(nil, typeStdin, 1, body)
	first := appendRecord(nil, typeStdin, 1, body[:maxContent])
	if !bytes.HasPrefix(stdin, first) {
		t.Fatal("test bug: appendStream cut differently")
	}
	// The head and the first 64 KiB record only: the echo of that record
	// must come back before the rest of the body is sent.
	s.send(t, head(1, false, someParams), first)
	var echoed []byte
	for len(echoed) < maxContent {
		r := s.mustRead(t)
		if r.typ != typeStdout || r.id != 1 || len(r.content) == 0 {
			t.Fatalf("got %v for %d (%d bytes) before the body ended, want STDOUT", r.typ, r.id, len(r.content))
		}
		echoed = append(echoed, r.content...)
	}
	sent := s.sendAsync(stdin[len(first):])
	a := s.response(t, 1)
	echoed = append(echoed, a.stdout...)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(echoed, body) {
		t.Fatalf("echo of %d bytes differs from the %d-byte body", len(echoed), len(body))
	}
	if a.protocolStatus != 0 {
		t.Fatalf("protocol status %d", a.protocolStatus)
	}
	s.expectClosed(t)
}

func TestServerKeepConn(t *testing.T) {
	var n atomic.Int32
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return 0, err
		}
		if !r.KeepConn {
			return 0, errors.New("KeepConn false")
		}
		fmt.Fprintf(w, "%d:%s", n.Add(1), b)
		return uint32(r.ID), nil
	})
	for i, id := range []uint16{1, 2, 1} {
		s.send(t, request(id, true, someParams, []byte(fmt.Sprint("body", i))))
		a := s.response(t, id)
		if want := fmt.Sprintf("%d:body%d", i+1, i); string(a.stdout) != want || a.appStatus != uint32(id) {
			t.Fatalf("request %d: %q, app status %d; want %q, %d", i, a.stdout, a.appStatus, want, id)
		}
	}
	// Still open: a GET_VALUES is answered.
	s.send(t, appendRecord(nil, typeGetValues, 0, nil))
	if r := s.mustRead(t); r.typ != typeGetValuesResult {
		t.Fatalf("got %v, want GET_VALUES_RESULT", r.typ)
	}
	s.nc.CloseWrite()
	if err := s.wait(t); err != nil {
		t.Errorf("Serve = %v after the client closed between requests, want nil", err)
	}
	s.expectClosed(t)
}

func TestServerGetValues(t *testing.T) {
	values := map[string]string{"FCGI_MAX_CONNS": "8", "FCGI_MAX_REQS": "8", "FCGI_MPXS_CONNS": "0"}
	release := make(chan struct{})
	s := startServer(t, ServerOptions{Values: values}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		<-release
		io.WriteString(w, "done")
		return 0, nil
	})
	getValues := func(names ...string) []Param {
		t.Helper()
		ps := make([]Param, len(names))
		for i, n := range names {
			ps[i].Name = n
		}
		content, _ := appendParams(nil, ps)
		s.send(t, appendRecord(nil, typeGetValues, 0, content))
		r := s.mustRead(t)
		if r.typ != typeGetValuesResult || r.id != 0 {
			t.Fatalf("got %v for %d, want GET_VALUES_RESULT for 0", r.typ, r.id)
		}
		got, err := parseParams(nil, r.content)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := getValues("FCGI_MPXS_CONNS", "FOO", "FCGI_MAX_CONNS", "fcgi_max_reqs")
	want := []Param{{"FCGI_MPXS_CONNS", "0"}, {"FCGI_MAX_CONNS", "8"}}
	if !slices.Equal(got, want) {
		t.Errorf("GET_VALUES_RESULT %q, want %q", got, want)
	}
	if got := getValues("NOPE"); len(got) != 0 {
		t.Errorf("GET_VALUES_RESULT %q for an unknown name, want empty", got)
	}
	// Every other type with request ID 0: UNKNOWN_TYPE naming it.
	for _, typ := range []recType{typeBeginRequest, typeAbortRequest, typeEndRequest, typeParams, typeStdin, typeStdout, typeStderr, typeData, typeGetValuesResult, typeUnknownType} {
		s.send(t, appendRecord(nil, typ, 0, []byte("some content")))
		r := s.mustRead(t)
		if r.typ != typeUnknownType || r.id != 0 || len(r.content) != 8 || recType(r.content[0]) != typ || !bytes.Equal(r.content[1:], make([]byte, 7)) {
			t.Errorf("for %v with ID 0: %v for %d % x, want UNKNOWN_TYPE naming it", typ, r.typ, r.id, r.content)
		}
	}
	// Also during a request.
	s.send(t, request(1, false, someParams, nil))
	if got := getValues("FCGI_MAX_REQS"); !slices.Equal(got, []Param{{"FCGI_MAX_REQS", "8"}}) {
		t.Errorf("GET_VALUES_RESULT during a request: %q", got)
	}
	close(release)
	if a := s.response(t, 1); string(a.stdout) != "done" {
		t.Errorf("answer %q", a.stdout)
	}
	s.expectClosed(t)
}

func TestServerCantMpxConn(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		calls.Add(1)
		<-release
		b, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d got %q", r.ID, b)
		return 0, err
	})
	// Request 1 runs (its handler waits, and reads no body yet).
	s.send(t, head(1, true, someParams))
	// A second request while 1 runs: refused, its records skipped.
	s.send(t, request(2, true, someParams, []byte("two")), abortRecord(2), appendRecord(nil, typeData, 2, []byte("x")))
	r := s.mustRead(t)
	if r.typ != typeEndRequest || r.id != 2 || len(r.content) != 8 || r.content[4] != StatusCantMpxConn {
		t.Fatalf("got %v for %d % x, want END_REQUEST for 2 with CANT_MPX_CONN", r.typ, r.id, r.content)
	}
	close(release)
	s.send(t, appendRecord(nil, typeStdin, 1, []byte("one")), appendRecord(nil, typeStdin, 1, []byte("+")), appendRecord(nil, typeStdin, 1, nil))
	a := s.response(t, 1)
	if string(a.stdout) != `1 got "one+"` || a.protocolStatus != 0 {
		t.Fatalf("first request answered %q, protocol status %d", a.stdout, a.protocolStatus)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
	// The connection goes on: request 2, again, now runs.
	s.send(t, request(2, false, someParams, []byte("again")))
	if a := s.response(t, 2); string(a.stdout) != `2 got "again"` {
		t.Fatalf("answer %q", a.stdout)
	}
	s.closedClean(t)
}

func TestServerBeginSameIDCloses(t *testing.T) {
	cause := make(chan error, 1)
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return 0, context.Cause(ctx) // as public's handler does
	})
	s.send(t, head(1, true, someParams), appendBeginRequest(nil, 1, roleResponder, flagKeepConn))
	if err := s.wait(t); !errors.Is(err, ErrProtocol) {
		t.Fatalf("Serve = %v, want ErrProtocol", err)
	}
	if c := <-cause; !errors.Is(c, ErrClientGone) {
		t.Errorf("handler's context cause %v, want ErrClientGone", c)
	}
	s.expectClosed(t)
}

func TestServerUnknownRole(t *testing.T) {
	ran := make(chan struct{}, 4)
	h := func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		ran <- struct{}{}
		io.WriteString(w, "ok")
		return 0, nil
	}
	for _, keep := range []bool{true, false} {
		s := startServer(t, ServerOptions{}, h)
		var flags uint8
		if keep {
			flags = flagKeepConn
		}
		params, _ := appendParams(nil, someParams)
		s.send(t, appendBeginRequest(nil, 1, 2 /* AUTHORIZER */, flags), appendStream(nil, typeParams, 1, params), appendStream(nil, typeStdin, 1, nil))
		a := s.response(t, 1)
		if a.protocolStatus != StatusUnknownRole || len(a.stdout) != 0 {
			t.Fatalf("keep %v: protocol status %d, stdout %q; want UNKNOWN_ROLE and nothing", keep, a.protocolStatus, a.stdout)
		}
		if keep {
			s.last(t, 1, "ok")
		} else {
			s.closedClean(t)
		}
	}
	if len(ran) != 1 {
		t.Errorf("handler ran %d times, want once", len(ran))
	}
}

func TestServerAbort(t *testing.T) {
	type seen struct {
		cause, body error
	}
	ch := make(chan seen, 1)
	started := make(chan struct{})
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		if r.ID != 1 {
			io.WriteString(w, "next")
			return 0, nil
		}
		close(started)
		_, err := io.ReadAll(r.Body)
		<-ctx.Done()
		ch <- seen{context.Cause(ctx), err}
		return 5, nil
	})
	// The body is not ended: the handler waits in Read.
	s.send(t, head(1, true, someParams), appendRecord(nil, typeStdin, 1, []byte("part")))
	<-started
	s.send(t, abortRecord(1))
	a := s.response(t, 1)
	if a.protocolStatus != statusRequestComplete || a.appStatus != 5 {
		t.Errorf("END_REQUEST app status %d, protocol status %d; want 5, REQUEST_COMPLETE", a.appStatus, a.protocolStatus)
	}
	got := <-ch
	if !errors.Is(got.cause, ErrAborted) || !errors.Is(got.body, ErrAborted) {
		t.Errorf("context cause %v, body error %v; want ErrAborted", got.cause, got.body)
	}
	// The rest of its STDIN, sent before the client saw the END_REQUEST,
	// is skipped; the kept connection serves the next request.
	s.send(t, appendRecord(nil, typeStdin, 1, []byte("late")), appendRecord(nil, typeStdin, 1, nil), abortRecord(1))
	s.last(t, 3, "next")
}

func TestServerAbortRunningThenNext(t *testing.T) {
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		if r.ID == 1 {
			<-ctx.Done()
			return 0, nil
		}
		io.WriteString(w, "second")
		return 0, nil
	})
	s.send(t, request(1, true, someParams, nil))
	s.send(t, abortRecord(1))
	if a := s.response(t, 1); a.protocolStatus != 0 || len(a.stdout) != 0 {
		t.Fatalf("aborted request: %+v", a)
	}
	s.send(t, request(2, false, someParams, nil))
	if a := s.response(t, 2); string(a.stdout) != "second" {
		t.Fatalf("next request: %q", a.stdout)
	}
	s.expectClosed(t)
}

func TestServerAbortBeforeParamsEnd(t *testing.T) {
	for _, keep := range []bool{true, false} {
		var ran atomic.Int32
		s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
			ran.Add(1)
			io.WriteString(w, "ran "+fmt.Sprint(r.ID))
			return 0, nil
		})
		content, _ := appendParams(nil, someParams)
		var flags uint8
		if keep {
			flags = flagKeepConn
		}
		s.send(t, appendBeginRequest(nil, 1, roleResponder, flags), appendRecord(nil, typeParams, 1, content), abortRecord(1))
		a := s.response(t, 1)
		if a.protocolStatus != statusRequestComplete || len(a.stdout) != 0 {
			t.Fatalf("keep %v: %+v, want an empty REQUEST_COMPLETE", keep, a)
		}
		if keep {
			// What the client sent of it before seeing END_REQUEST is skipped.
			s.send(t, appendRecord(nil, typeParams, 1, content), appendRecord(nil, typeParams, 1, nil), appendStream(nil, typeStdin, 1, []byte("x")))
			s.send(t, request(2, false, someParams, nil))
			if a := s.response(t, 2); string(a.stdout) != "ran 2" {
				t.Fatalf("next request: %q", a.stdout)
			}
		}
		s.expectClosed(t)
		if err := s.wait(t); err != nil {
			t.Errorf("keep %v: Serve = %v", keep, err)
		}
		if want := map[bool]int32{true: 1, false: 0}[keep]; ran.Load() != want {
			t.Errorf("keep %v: handler ran %d times, want %d", keep, ran.Load(), want)
		}
	}
}

func TestServerClientGone(t *testing.T) {
	for _, bodyEnded := range []bool{true, false} {
		cause := make(chan error, 1)
		returned := make(chan time.Time, 1)
		started := make(chan struct{})
		s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
			close(started)
			io.ReadAll(r.Body)
			<-ctx.Done()
			cause <- context.Cause(ctx)
			time.Sleep(50 * time.Millisecond) // Serve waits for this
			returned <- time.Now()
			return 0, nil
		})
		b := head(1, true, someParams)
		if bodyEnded {
			b = appendStream(b, typeStdin, 1, []byte("body"))
		}
		s.send(t, b)
		<-started
		s.nc.Close()
		s.wait(t)
		served := time.Now()
		if c := <-cause; !errors.Is(c, ErrClientGone) {
			t.Errorf("body ended %v: cause %v, want ErrClientGone", bodyEnded, c)
		}
		select {
		case at := <-returned:
			if served.Before(at) {
				t.Errorf("Serve returned before the handler")
			}
		default:
			t.Errorf("Serve returned before the handler")
		}
	}
}

// The reader must see FCGI_ABORT_REQUEST, and the client going away,
// while the handler has not read the body yet (public's handler waits for
// a worker slot first, up to queue_timeout): the package doc says the
// reader "still sees FCGI_ABORT_REQUEST and the client going away while
// the request runs".
//
// The body pipe holds up to bodyBuffer bytes for that (with an unbuffered
// io.Pipe the reader saw nothing until the handler read).
func TestServerSeesAbortWhileBodyUnread(t *testing.T) {
	for _, how := range []string{"abort", "close"} {
		cause := make(chan error, 1)
		started := make(chan struct{})
		giveUp := make(chan struct{})
		s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
			close(started)
			select {
			case <-ctx.Done(): // waiting for a worker slot, say
			case <-giveUp:
			}
			cause <- context.Cause(ctx)
			return 0, nil
		})
		s.send(t, head(1, true, someParams), appendRecord(nil, typeStdin, 1, []byte("a small body")))
		<-started
		want := ErrAborted
		if how == "abort" {
			s.send(t, abortRecord(1))
		} else {
			s.nc.Close()
			want = ErrClientGone
		}
		select {
		case c := <-cause:
			if !errors.Is(c, want) {
				t.Errorf("%s: cause %v, want %v", how, c, want)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%s: the handler's context is not done 2s after the client's %s (the reader is blocked writing the body to the handler)", how, how)
			s.sc.Close()
			select {
			case <-s.served:
				t.Errorf("%s: Close ended Serve", how)
			case <-time.After(time.Second):
				t.Errorf("%s: Close does not end Serve either", how)
			}
			close(giveUp) // the handler returns: Serve can
		}
	}
}

func TestServerMalformed(t *testing.T) {
	params, _ := appendParams(nil, someParams)
	big := make([]byte, maxContent)
	var endless []byte
	endless = appendBeginRequest(endless, 1, roleResponder, 0)
	for range MaxParamsBytes/maxContent + 1 {
		endless = appendRecord(endless, typeParams, 1, big)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"version 0", append([]byte{0}, appendRecord(nil, typeGetValues, 0, nil)[1:]...)},
		{"version 2", append([]byte{2}, appendRecord(nil, typeGetValues, 0, nil)[1:]...)},
		{"type 0", makeRecord(0, 1, nil, 0)},
		{"type 12", makeRecord(12, 0, nil, 0)},
		{"type 255", makeRecord(255, 1, []byte("x"), 7)},
		{"BEGIN with 7 bytes", makeRecord(typeBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0}, 1)},
		{"BEGIN with 9 bytes", makeRecord(typeBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0, 0}, 7)},
		{"STDIN never begun", appendRecord(nil, typeStdin, 4, []byte("x"))},
		{"PARAMS never begun", appendRecord(nil, typeParams, 4, params)},
		{"ABORT never begun", abortRecord(4)},
		{"STDIN other ID", cat(appendBeginRequest(nil, 1, roleResponder, 0), appendRecord(nil, typeStdin, 2, nil))},
		{"PARAMS over MaxParamsBytes", endless},
		{"STDIN before PARAMS end", cat(appendBeginRequest(nil, 1, roleResponder, 0), appendRecord(nil, typeParams, 1, params), appendRecord(nil, typeStdin, 1, []byte("x")))},
		{"empty STDIN before PARAMS end", cat(appendBeginRequest(nil, 1, roleResponder, 0), appendRecord(nil, typeStdin, 1, nil))},
		{"PARAMS after PARAMS end", cat(head(1, false, someParams), appendRecord(nil, typeParams, 1, params))},
		{"STDOUT from the client", cat(head(1, false, someParams), appendRecord(nil, typeStdout, 1, []byte("x")))},
		{"END_REQUEST from the client", cat(head(1, false, someParams), appendRecord(nil, typeEndRequest, 1, make([]byte, 8)))},
		{"GET_VALUES with an ID", appendRecord(nil, typeGetValues, 1, nil)},
		{"bad pair in PARAMS", cat(appendBeginRequest(nil, 1, roleResponder, 0), appendStream(nil, typeParams, 1, []byte{5, 5, 'a'}))},
		{"bad pair in GET_VALUES", appendRecord(nil, typeGetValues, 0, []byte{0x80, 0})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ran atomic.Int32
			s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
				ran.Add(1)
				<-ctx.Done()
				return 0, context.Cause(ctx) // as public's handler does
			})
			sent := s.sendAsync(tc.data)
			if err := s.wait(t); !errors.Is(err, ErrProtocol) {
				t.Errorf("Serve = %v, want an error wrapping ErrProtocol", err)
			}
			s.expectClosed(t)
			<-sent
		})
	}
}

func TestServerTruncatedRecord(t *testing.T) {
	for _, data := range [][]byte{
		appendRecord(nil, typeGetValues, 0, nil)[:5],
		appendRecord(nil, typeGetValues, 0, []byte("abcdefgh"))[:12],
		head(1, false, someParams)[:20],
		appendRecord(nil, typeAbortRequest, 0, []byte("x"))[:12], // cut in the padding
	} {
		s := startServer(t, ServerOptions{}, echo)
		s.send(t, data)
		s.nc.CloseWrite()
		if err := s.wait(t); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("% x then EOF: Serve = %v, want io.ErrUnexpectedEOF", data, err)
		}
	}
}

func TestServerIdleTimeout(t *testing.T) {
	const idle = 50 * time.Millisecond
	s := startServer(t, ServerOptions{IdleTimeout: idle, ReadTimeout: time.Minute}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		// Longer than IdleTimeout: a request running is not idle.
		time.Sleep(3 * idle)
		io.WriteString(w, "slow")
		return 0, nil
	})
	s.send(t, request(1, true, someParams, nil))
	if a := s.response(t, 1); string(a.stdout) != "slow" {
		t.Fatalf("answer %q", a.stdout)
	}
	start := time.Now()
	s.expectClosed(t)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle connection closed after %v, want about %v", d, idle)
	}
	if err := s.wait(t); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Serve = %v, want a timeout", err)
	}
	if d := time.Since(start); d < idle*8/10 {
		t.Errorf("closed after %v, before IdleTimeout %v", d, idle)
	}

	// A connection idle from the start too.
	s = startServer(t, ServerOptions{IdleTimeout: idle}, echo)
	if err := s.wait(t); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Serve = %v, want a timeout", err)
	}
}

func TestServerReadTimeout(t *testing.T) {
	const rt = 50 * time.Millisecond
	var ran atomic.Int32
	h := func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		ran.Add(1)
		_, err := io.ReadAll(r.Body)
		return 0, err
	}
	params, _ := appendParams(nil, someParams)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"mid-PARAMS", cat(appendBeginRequest(nil, 1, roleResponder, flagKeepConn), appendRecord(nil, typeParams, 1, params))},
		{"after BEGIN", appendBeginRequest(nil, 1, roleResponder, flagKeepConn)},
		{"mid-STDIN", cat(head(1, true, someParams), appendRecord(nil, typeStdin, 1, []byte("part")))},
		{"mid-record", head(1, true, someParams)[:20]},
	} {
		s := startServer(t, ServerOptions{ReadTimeout: rt}, h)
		start := time.Now()
		s.send(t, tc.data)
		err := s.wait(t)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: Serve = %v, want a timeout", tc.name, err)
		}
		if d := time.Since(start); d < rt*8/10 || d > 2*time.Second {
			t.Errorf("%s: closed after %v, want about %v", tc.name, d, rt)
		}
		s.expectClosed(t)
	}
	if ran.Load() != 1 { // only mid-STDIN got to run
		t.Errorf("handler ran %d times, want 1", ran.Load())
	}

	// ReadTimeout does not apply to an idle connection.
	s := startServer(t, ServerOptions{ReadTimeout: rt}, h)
	s.send(t, request(1, true, someParams, nil))
	s.response(t, 1)
	time.Sleep(4 * rt)
	s.send(t, request(1, false, someParams, []byte("x")))
	s.response(t, 1)
	s.expectClosed(t)
	if err := s.wait(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
}

// A handler that returns before reading the body: the rest of STDIN is
// discarded and the kept connection carries the next request.
func TestServerUnreadBodyDiscarded(t *testing.T) {
	body := pattern(2, 1<<20)
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		if r.ID == 1 {
			io.WriteString(w, "early")
			return 1, nil
		}
		return echo(ctx, w, r)
	})
	sent := s.sendAsync(request(1, true, someParams, body))
	if a := s.response(t, 1); string(a.stdout) != "early" || a.appStatus != 1 {
		t.Fatalf("first answer %q, %d", a.stdout, a.appStatus)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	sent = s.sendAsync(request(2, false, someParams, body[:100000]))
	if a := s.response(t, 2); !bytes.Equal(a.stdout, body[:100000]) {
		t.Fatalf("second answer: %d bytes, want the echo of the body", len(a.stdout))
	}
	<-sent
	s.expectClosed(t)
	if err := s.wait(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
}

// The same without FCGI_KEEP_CONN: the client sends the whole request at
// once and the handler answers at once; END_REQUEST must come before the
// connection closes, whichever of the handler's return and the end of
// STDIN is first.
func TestServerUnreadBodyEndRequestNotLost(t *testing.T) {
	body := pattern(3, 200<<10)
	for i := range 300 {
		s := startServer(t, ServerOptions{}, say("early"))
		sent := s.sendAsync(request(1, false, someParams, body))
		a := s.response(t, 1)
		if string(a.stdout) != "early" {
			t.Fatalf("run %d: answer %q", i, a.stdout)
		}
		s.expectClosed(t)
		<-sent
		if err := s.wait(t); err != nil {
			t.Fatalf("run %d: Serve = %v", i, err)
		}
		if t.Failed() {
			return
		}
	}
}

func TestServerHandlerErrorCloses(t *testing.T) {
	for _, written := range []string{"", "partial"} {
		s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
			io.WriteString(w, written)
			return 0, errors.New("worker failed")
		})
		s.send(t, request(1, true, someParams, nil))
		var got []byte
		for {
			r, err := s.read()
			if err != nil {
				if !isClosedErr(err) {
					t.Fatal(err)
				}
				break
			}
			if r.typ != typeStdout {
				t.Fatalf("got %v, want STDOUT then the connection closed without END_REQUEST", r.typ)
			}
			got = append(got, r.content...)
		}
		if string(got) != written {
			t.Errorf("stdout %q, want %q", got, written)
		}
		s.wait(t)
	}
}

func TestServerCloseIdle(t *testing.T) {
	// Idle, after a request on a kept connection.
	s := startServer(t, ServerOptions{}, say("a"))
	s.send(t, request(1, true, someParams, nil))
	s.response(t, 1)
	s.sc.CloseIdle()
	s.expectClosed(t)
	if err := s.wait(t); err != nil {
		t.Errorf("Serve = %v after CloseIdle, want nil", err)
	}

	// Idle, no request yet.
	s = startServer(t, ServerOptions{}, say("a"))
	s.sc.CloseIdle()
	s.expectClosed(t)
	if err := s.wait(t); err != nil {
		t.Errorf("Serve = %v after CloseIdle, want nil", err)
	}

	// Busy: closed after END_REQUEST.
	release := make(chan struct{})
	started := make(chan struct{})
	s = startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		close(started)
		<-release
		if ctx.Err() != nil {
			return 0, context.Cause(ctx)
		}
		io.WriteString(w, "finished")
		return 0, nil
	})
	s.send(t, request(1, true, someParams, nil))
	<-started
	s.sc.CloseIdle()
	time.Sleep(20 * time.Millisecond)
	close(release)
	if a := s.response(t, 1); string(a.stdout) != "finished" {
		t.Errorf("answer %q", a.stdout)
	}
	s.expectClosed(t)
	if err := s.wait(t); err != nil {
		t.Errorf("Serve = %v", err)
	}

	// Busy, its body still coming: closed once the body ended.
	started2 := make(chan struct{})
	s = startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		close(started2)
		b, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s", b)
		return 0, err
	})
	s.send(t, head(1, true, someParams), appendRecord(nil, typeStdin, 1, []byte("abc")))
	<-started2
	s.sc.CloseIdle()
	s.send(t, appendRecord(nil, typeStdin, 1, []byte("def")), appendRecord(nil, typeStdin, 1, nil))
	if a := s.response(t, 1); string(a.stdout) != "abcdef" {
		t.Errorf("answer %q", a.stdout)
	}
	s.expectClosed(t)
}

// CloseIdle racing with the end of a request: the request was in
// progress, so its END_REQUEST must reach the client whatever the order.
func TestServerCloseIdleRace(t *testing.T) {
	for i := range 500 {
		release := make(chan struct{})
		started := make(chan struct{})
		s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
			close(started)
			<-release
			return 0, nil
		})
		s.send(t, request(1, true, someParams, nil))
		<-started
		close(release)
		// CloseIdle lands anywhere from before the handler returns to
		// after END_REQUEST was written.
		for t0 := time.Now(); time.Since(t0) < time.Duration(i%50)*time.Microsecond; {
		}
		s.sc.CloseIdle()
		for {
			r, err := s.read()
			if err != nil {
				t.Fatalf("run %d: %v before END_REQUEST (the request was in progress when CloseIdle was called)", i, err)
			}
			if r.typ == typeEndRequest {
				break
			}
		}
		s.expectClosed(t)
		s.wait(t)
	}
}

func TestServerWriteStderr(t *testing.T) {
	long := pattern(4, maxContent+100)
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		w.WriteStderr([]byte("warning: x"))
		if w.Written() {
			return 0, errors.New("Written after STDERR only")
		}
		io.WriteString(w, "out")
		if !w.Written() {
			return 0, errors.New("not Written after STDOUT")
		}
		w.WriteStderr(long)
		return 0, nil
	})
	s.send(t, request(1, false, someParams, nil))
	var stderr [][]byte
	for {
		r := s.mustRead(t)
		if r.typ == typeStderr {
			stderr = append(stderr, r.content)
		}
		if r.typ == typeEndRequest {
			break
		}
	}
	if len(stderr) != 3 || string(stderr[0]) != "warning: x" || !bytes.Equal(cat(stderr[1:]...), long) || len(stderr[1]) != maxContent {
		t.Errorf("STDERR records %d, want 3: the warning, then the long text in 2 records", len(stderr))
	}
}

// Every record the server writes, parsed by the package's own reader:
// aligned padding, content as written, whatever the write sizes.
func TestServerRecordPadding(t *testing.T) {
	sizes := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 255, 256, 1000, maxContent - 1, maxContent, maxContent + 1, 3*maxContent + 5}
	var want []byte
	for i, n := range sizes {
		want = append(want, pattern(uint64(10+i), n)...)
	}
	s := startServer(t, ServerOptions{Values: map[string]string{"FCGI_MPXS_CONNS": "0"}}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		for i, n := range sizes {
			w.Write(pattern(uint64(10+i), n))
			w.WriteStderr(pattern(uint64(10+i), n))
		}
		return 0, nil
	})
	names, _ := appendParams(nil, []Param{{"FCGI_MPXS_CONNS", ""}})
	s.send(t, appendRecord(nil, typeGetValues, 0, names), appendRecord(nil, typeData, 0, nil), request(1, false, someParams, nil))
	all, err := io.ReadAll(s.nc)
	if err != nil {
		t.Fatal(err)
	}
	rr := recordReader{br: bufio.NewReader(bytes.NewReader(all))}
	var stdout, stderr []byte
	types := map[recType]int{}
	for {
		h, err := rr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if int(h.paddingLength) != padLen(int(h.contentLength)) {
			t.Errorf("%v record of %d bytes with %d padding bytes", h.typ, h.contentLength, h.paddingLength)
		}
		b, err := io.ReadAll(&rr)
		if err != nil || len(b) != int(h.contentLength) {
			t.Fatalf("content: %d bytes, %v", len(b), err)
		}
		types[h.typ]++
		switch h.typ {
		case typeStdout:
			stdout = append(stdout, b...)
		case typeStderr:
			stderr = append(stderr, b...)
		}
	}
	if rr.n != int64(len(all)) {
		t.Errorf("read %d of %d bytes", rr.n, len(all))
	}
	if !bytes.Equal(stdout, want) || !bytes.Equal(stderr, want) {
		t.Errorf("stdout %d bytes, stderr %d bytes, want %d each as written", len(stdout), len(stderr), len(want))
	}
	if types[typeGetValuesResult] != 1 || types[typeUnknownType] != 1 || types[typeEndRequest] != 1 {
		t.Errorf("record types %v", types)
	}
	// The bytes checked once more by the strict reader (zero padding).
	s2 := &srv{br: bufio.NewReader(bytes.NewReader(all))}
	for {
		if _, err := s2.read(); err != nil {
			if err != io.EOF {
				t.Error(err)
			}
			break
		}
	}
}

// WriteTimeout bounds a write to a client that does not read: the
// handler's write fails, and the connection closes.
func TestServerWriteTimeout(t *testing.T) {
	werr := make(chan error, 1)
	s := startServer(t, ServerOptions{WriteTimeout: 50 * time.Millisecond}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		big := make([]byte, 8<<20)
		_, err := w.Write(big)
		werr <- err
		return 0, err
	})
	s.send(t, request(1, false, someParams, nil))
	select {
	case err := <-werr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("write = %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's write to a client that does not read did not time out")
	}
	s.wait(t)
}

// After connections of every kind have been served, no goroutine is left.
func TestServerNoGoroutineLeft(t *testing.T) {
	base := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for i := range 40 {
		cc, sn := socketPair(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cc.Close()
			cc.SetDeadline(time.Now().Add(testTimeout))
			sc := NewServerConn(sn, ServerOptions{IdleTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
			done := make(chan struct{})
			go func() {
				defer close(done)
				sc.Serve(context.Background(), func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
					if r.ID == 9 {
						<-ctx.Done()
					}
					return echo(ctx, w, r)
				})
			}()
			go io.Copy(io.Discard, cc)
			switch i % 5 {
			case 0: // a request, the client closes
				cc.Write(request(1, false, someParams, []byte("x")))
			case 1: // a kept connection, then the client closes
				cc.Write(cat(request(1, true, someParams, []byte("x")), request(2, true, someParams, nil)))
			case 2: // aborted
				cc.Write(cat(head(9, true, someParams), abortRecord(9)))
			case 3: // protocol error with a request running
				cc.Write(cat(head(9, true, someParams), makeRecord(0, 1, nil, 0)))
			case 4: // CloseIdle while running
				cc.Write(head(9, true, someParams))
				sc.CloseIdle()
			}
			time.Sleep(10 * time.Millisecond)
			cc.Close()
			<-done
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Idle is true only once the END_REQUEST of the last request is written:
// closing a connection Idle reports (as public's max_connections does to
// make room) loses no answer.
func TestServerIdleRace(t *testing.T) {
	for i := range 500 {
		release := make(chan struct{})
		started := make(chan struct{})
		s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
			close(started)
			<-release
			return 0, nil
		})
		if s.sc.Idle() {
			t.Fatal("Idle before any request")
		}
		s.send(t, request(1, true, someParams, nil))
		<-started
		if s.sc.Idle() {
			t.Fatal("Idle while a request runs")
		}
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			for !s.sc.Idle() {
				runtime.Gosched()
			}
			s.sc.Close()
		}()
		close(release)
		for {
			r, err := s.read()
			if err != nil {
				t.Fatalf("run %d: %v before END_REQUEST (Idle was true too early)", i, err)
			}
			if r.typ == typeEndRequest {
				break
			}
		}
		<-closed
		s.expectClosed(t)
		s.wait(t)
	}
}

// TestServerBodyBackpressure: a body larger than bodyBuffer that the
// handler does not read stops the reader (the memory a request holds is
// bounded); Close still ends the request and Serve.
func TestServerBodyBackpressure(t *testing.T) {
	cause := make(chan error, 1)
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return 0, nil
	})
	var body []byte
	chunk := make([]byte, maxContent)
	for range 32 { // 2 MiB
		body = appendRecord(body, typeStdin, 1, chunk)
	}
	s.sendAsync(cat(head(1, true, someParams), body))
	time.Sleep(200 * time.Millisecond) // the reader fills the pipe and waits
	s.sc.smu.Lock()
	pipe := s.sc.pipe
	s.sc.smu.Unlock()
	if pipe == nil {
		t.Fatal("no request began")
	}
	if n := pipe.queued(); n > bodyBuffer+maxContent {
		t.Errorf("%d bytes of body queued for a handler that does not read, want at most %d", n, bodyBuffer+maxContent)
	}
	s.sc.Close()
	select {
	case c := <-cause:
		if !errors.Is(c, ErrClientGone) {
			t.Errorf("cause %v, want ErrClientGone", c)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end the request of a reader blocked on a full body")
	}
	s.wait(t)
}

// TestServerWriteLast: WriteLast's bytes come after what Write sent, as
// STDOUT, then the end of the stream and END_REQUEST; more than one
// record's worth is split.
func TestServerWriteLast(t *testing.T) {
	big := string(bytes.Repeat([]byte("x"), maxContent+10))
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		w.Write([]byte("first "))
		w.WriteLast([]byte(big))
		return 7, nil
	})
	s.send(t, head(1, true, someParams), appendRecord(nil, typeStdin, 1, nil))
	var out []byte
	for {
		r := s.mustRead(t)
		if r.typ == typeStdout && len(r.content) == 0 {
			break
		}
		if r.typ != typeStdout {
			t.Fatalf("%v record before the end of STDOUT", r.typ)
		}
		out = append(out, r.content...)
	}
	if string(out) != "first "+big {
		t.Errorf("STDOUT: %d bytes, want %d", len(out), len("first "+big))
	}
	if r := s.mustRead(t); r.typ != typeEndRequest || binary.BigEndian.Uint32(r.content) != 7 {
		t.Errorf("after STDOUT: %v %x, want END_REQUEST with appStatus 7", r.typ, r.content)
	}
}

// TestServerInline: a request whose empty STDIN came with its PARAMS runs
// on the reader's goroutine (no watcher for a quick one); one that runs
// past watchAfter hands the read loop to a watcher, which sees the
// client going away, and the connection serves on until then.
func TestServerInline(t *testing.T) {
	release := make(chan struct{})
	cause := make(chan error, 1)
	s := startServer(t, ServerOptions{}, func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
		switch r.ID {
		case 2:
			select { // slow: a watcher takes over
			case <-release:
			case <-ctx.Done():
			}
		case 4:
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return 0, nil
		}
		io.WriteString(w, fmt.Sprint("ok ", r.ID))
		return 0, nil
	})
	s.send(t, request(1, true, someParams, nil))
	if a := s.response(t, 1); string(a.stdout) != "ok 1" {
		t.Fatalf("request 1: %q", a.stdout)
	}
	// The reader goroutine writes END_REQUEST and then takes the read
	// loop back: no watcher, unless this machine stalled it past
	// watchAfter (then the rest of the test holds just the same).
	deadline := time.Now().Add(5 * time.Second)
	for s.sc.handoff.Load() == handoffInline && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if h := s.sc.handoff.Load(); h == handoffInline {
		t.Errorf("a quick request still inline 5 s after its answer")
	} else if h == handoffWatched {
		t.Logf("the quick request ran past watchAfter (%v) on this machine", watchAfter)
	}
	s.send(t, request(2, true, someParams, nil))
	time.Sleep(3 * watchAfter)
	if h := s.sc.handoff.Load(); h != handoffWatched {
		t.Errorf("a request running past watchAfter: handoff %d, want a watcher", h)
	}
	close(release)
	if a := s.response(t, 2); string(a.stdout) != "ok 2" {
		t.Fatalf("request 2: %q", a.stdout)
	}
	s.send(t, request(3, true, someParams, []byte("body")))
	if a := s.response(t, 3); string(a.stdout) != "ok 3" {
		t.Fatalf("request 3, after the hand-off: %q", a.stdout)
	}
	s.send(t, request(4, true, someParams, nil))
	time.Sleep(3 * watchAfter)
	s.nc.Close()
	select {
	case c := <-cause:
		if !errors.Is(c, ErrClientGone) {
			t.Errorf("request 4: cause %v, want ErrClientGone", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client went away and request 4 never heard")
	}
	if err := s.wait(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
}
