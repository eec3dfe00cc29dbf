package fastcgi

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// --- Against Go's net/http/fcgi server ---

func TestGoServerGET(t *testing.T) {
	long := strings.Repeat("L", 70000) // makes PARAMS span two records
	s := startGoServer(t, func(w http.ResponseWriter, r *http.Request) {
		env := fcgi.ProcessEnv(r)
		w.Header().Set("X-Out", "yes")
		fmt.Fprintf(w, "method=%s path=%s x=%s host=%s trace=%s user=%s long=%d",
			r.Method, r.URL.Path, r.URL.Query().Get("x"), r.Host, r.Header.Get("X-Trace"),
			env["REMOTE_USER"], len(env["APP_LONG"]))
	})
	c := s.dial(t)
	resp, err := c.Do(&Request{Params: cgiParams("GET", "/app/info?x=%C3%A9", 0,
		Param{"HTTP_X_TRACE", "abc"}, Param{"REMOTE_USER", "alice"}, Param{"APP_LONG", long})})
	if err != nil {
		t.Fatal(err)
	}
	out, err := readAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Close() {
		t.Error("Close reported reusable for a request without KeepConn")
	}
	head, body := splitCGI(t, out)
	hdr, err := textproto.NewReader(bufio.NewReader(strings.NewReader(head + "\r\n\r\n"))).ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Get("Status") != "200 OK" || hdr.Get("X-Out") != "yes" {
		t.Errorf("headers %q", hdr)
	}
	want := "method=GET path=/app/info x=é host=example.test trace=abc user=alice long=70000"
	if string(body) != want {
		t.Errorf("body %q, want %q", body, want)
	}
	if resp.AppStatus() != 0 {
		t.Errorf("AppStatus %d", resp.AppStatus())
	}
}

func TestGoServerPOSTEcho(t *testing.T) {
	s := startGoServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	body := pattern(2, 1<<20)
	c := s.dial(t)
	resp, err := c.Do(&Request{Params: cgiParams("POST", "/echo", len(body)), Body: bytes.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := readAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	resp.Close()
	if _, got := splitCGI(t, out); !bytes.Equal(got, body) {
		t.Errorf("echoed %d bytes, not the %d sent", len(got), len(body))
	}
}

func TestGoServerLargeResponse(t *testing.T) {
	const size = 5 << 20
	want := pattern(3, size)
	s := startGoServer(t, func(w http.ResponseWriter, r *http.Request) {
		for b := want; len(b) > 0; b = b[min(len(b), 100000):] {
			w.Write(b[:min(len(b), 100000)])
		}
	})
	c := s.dial(t)
	resp, err := c.Do(&Request{Params: cgiParams("GET", "/big", 0), KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	// Stream it in small reads through a hash: nothing needs the whole body.
	br := bufio.NewReaderSize(resp, 4096)
	if _, err := br.ReadString('\n'); err != nil { // Status line
		t.Fatal(err)
	}
	tp := textproto.NewReader(br)
	if _, err := tp.ReadMIMEHeader(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, br)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), sum(want)) {
		t.Errorf("got %d bytes, want the %d written", n, size)
	}
	if !resp.Close() {
		t.Error("Close: not reusable after a complete KeepConn response")
	}
}

func sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// 100 requests on kept connections to Go's net/http/fcgi: one connection
// carries every request but those with a body of more than 8 KiB, after
// which the client dials again (oneRead).
func TestGoServerKeepConn100(t *testing.T) {
	s := startGoServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%s:%d:%x", r.URL.Path, len(b), sum(b)[:4])
	})
	c := s.dial(t)
	for i := range 100 {
		req := &Request{KeepConn: true}
		var body []byte
		switch i % 4 {
		case 0: // no body
		case 1:
			body = []byte{}
		case 2:
			body = pattern(uint64(i), 1000+i)
		case 3:
			body = pattern(uint64(i), 70000+i) // two STDIN records
		}
		req.Params = cgiParams("POST", fmt.Sprintf("/r%d", i), len(body))
		if i%4 != 0 {
			req.Body = bytes.NewReader(body)
		}
		if c.Closed() {
			t.Fatalf("request %d: Closed() before reuse", i)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		out, err := readAll(resp)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		streamed := len(body) > oneRead
		if resp.Close() == streamed {
			t.Fatalf("request %d (%d-byte body): connection reusable %v, want %v", i, len(body), !streamed, !streamed)
		}
		_, got := splitCGI(t, out)
		if want := fmt.Sprintf("/r%d:%d:%x", i, len(body), sum(body)[:4]); string(got) != want {
			t.Fatalf("request %d: %q, want %q", i, got, want)
		}
		if streamed && i < 99 {
			c = s.dial(t)
		}
	}
	if n := len(s.accepted); n != 25 {
		t.Errorf("server accepted %d connections, want 25: one, and one after each of the first 24 bodies over 8 KiB", n)
	}
	s.waitFinished(t, 100)
}

// waitFinished waits until n handlers have returned.
func (s *goServer) waitFinished(t *testing.T, n int) {
	t.Helper()
	for range n {
		<-s.finished
	}
	s.started.Add(-int64(n))
}

// A responder may write its whole response before reading its input. A
// client that writes all of STDIN first deadlocks here: the response fills
// the socket buffers while the server's record loop waits for the handler to
// take the body. The deadline makes such a bug fail instead of hang.
func TestGoServerAnswersBeforeReadingBody(t *testing.T) {
	const size = 1 << 20
	reply := pattern(4, size)
	body := pattern(5, size)
	got := make(chan []byte, 1)
	s := startGoServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(reply)
		w.(http.Flusher).Flush()
		b, _ := io.ReadAll(r.Body)
		got <- b
	})
	c := s.dial(t)
	resp, err := c.Do(&Request{Params: cgiParams("POST", "/", size), Body: bytes.NewReader(body), KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := readAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Close() {
		t.Error("reusable after a streamed body (oneRead)")
	}
	if _, b := splitCGI(t, out); !bytes.Equal(b, reply) {
		t.Errorf("response: %d bytes, not the %d written", len(b), size)
	}
	if b := <-got; !bytes.Equal(b, body) {
		t.Errorf("handler read %d bytes, not the %d sent", len(b), size)
	}
	s.waitFinished(t, 1)
}

func TestGoServerClosedThenDo(t *testing.T) {
	s := startGoServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	c := s.dial(t)
	resp, err := c.Do(&Request{Params: cgiParams("GET", "/", 0), KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(resp); err != nil {
		t.Fatal(err)
	}
	if !resp.Close() {
		t.Fatal("not reusable")
	}
	if c.Closed() {
		t.Fatal("Closed() = true on a live kept connection")
	}
	if c.Closed() {
		t.Fatal("Closed() changed its answer: it consumed something")
	}

	// The application closes the idle connection, as php-cgi does when it
	// exits after PHP_FCGI_MAX_REQUESTS.
	sc := <-s.accepted
	sc.Close()
	<-sc.failed
	if !c.Closed() {
		t.Fatal("Closed() = false after the server closed the connection")
	}
	resp, err = c.Do(&Request{Params: cgiParams("GET", "/", 0), KeepConn: true})
	if resp != nil || err == nil {
		t.Fatalf("Do on a closed connection = %v, %v; want nil, error", resp, err)
	}
	if !isPeerGone(err) {
		t.Errorf("Do error %q does not wrap EPIPE, ECONNRESET or io.EOF", err)
	}
	s.waitFinished(t, 1)
}

func isPeerGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
}

// --- Against a fake application writing bytes by hand ---

func TestRequestBytes(t *testing.T) {
	want := cat(
		makeRecord(typeBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0}, 0),
		makeRecord(typeParams, 1, []byte{14, 3, 'R', 'E', 'Q', 'U', 'E', 'S', 'T', '_', 'M', 'E', 'T', 'H', 'O', 'D', 'G', 'E', 'T', 1, 0, 'X'}, 2)[:8+22],
		[]byte{0, 0}, // the padding above, zeros from the client
		makeRecord(typeParams, 1, nil, 0),
		makeRecord(typeStdin, 1, nil, 0),
	)
	c := startApp(t, func(a *fakeApp) error {
		got := make([]byte, len(want))
		if _, err := io.ReadFull(a.br, got); err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("request bytes\n% x\nwant\n% x", got, want)
		}
		return a.write(okEnd())
	})
	resp, err := c.Do(&Request{Params: []Param{{"REQUEST_METHOD", "GET"}, {"X", ""}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(resp); err != nil {
		t.Fatal(err)
	}
	resp.Close()
}

// Long params and a long body are cut into records of at most 65535 bytes,
// each padded to 8, and both streams end with their empty record.
func TestRequestRecordsSplit(t *testing.T) {
	params := []Param{
		{"A", strings.Repeat("a", 127)},
		{"B", strings.Repeat("b", 128)},
		{"C", strings.Repeat("c", 65536)},
		{"CONTENT_LENGTH", "200000"},
	}
	body := pattern(6, 200000)
	wantParams, _ := appendParams(nil, params)
	c := startApp(t, func(a *fakeApp) error {
		keep, got, stdin, err := a.readRequest()
		if err != nil {
			return err
		}
		if !keep {
			return errors.New("KEEP_CONN flag not set")
		}
		if len(got) != len(params) {
			return fmt.Errorf("got %d params, want %d", len(got), len(params))
		}
		for i := range params {
			if got[i] != params[i] {
				return fmt.Errorf("param %d: %.20q, want %.20q", i, got[i], params[i])
			}
		}
		if !bytes.Equal(stdin, body) {
			return fmt.Errorf("stdin: %d bytes, not the %d sent", len(stdin), len(body))
		}
		var kinds []string
		for _, r := range a.records {
			kinds = append(kinds, fmt.Sprintf("%v:%d", r.typ, len(r.content)))
		}
		wantKinds := fmt.Sprint([]string{"BEGIN_REQUEST:8",
			"PARAMS:65535", fmt.Sprintf("PARAMS:%d", len(wantParams)-65535), "PARAMS:0",
			"STDIN:65535", "STDIN:65535", "STDIN:65535", "STDIN:3395", "STDIN:0"})
		if fmt.Sprint(kinds) != wantKinds {
			return fmt.Errorf("records %v\nwant %v", kinds, wantKinds)
		}
		return a.write(okEnd())
	})
	resp, err := c.Do(&Request{Params: params, Body: bytes.NewReader(body), KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(resp); err != nil {
		t.Fatal(err)
	}
	if resp.Close() {
		t.Error("reusable after a streamed body (oneRead)")
	}
}

// respond runs a fake application that reads one request, writes response,
// and closes the connection.
func respond(t *testing.T, response []byte) *Conn {
	t.Helper()
	return startApp(t, func(a *fakeApp) error {
		if _, _, _, err := a.readRequest(); err != nil {
			return err
		}
		a.write(response) // the client may close early on bad input
		return nil
	})
}

func TestResponsePaddingSkipped(t *testing.T) {
	var resp []byte
	var want []byte
	for i, pad := range []int{0, 1, 7, 8, 100, 255} {
		s := strings.Repeat(string(rune('a'+i)), i*3+1)
		resp = append(resp, makeRecord(typeStdout, 1, []byte(s), pad)...)
		want = append(want, s...)
	}
	resp = cat(resp, makeRecord(typeStdout, 1, nil, 255), makeRecord(typeEndRequest, 1, []byte{0, 0, 0, 7, 0, 0, 0, 0}, 255))
	c := respond(t, resp)
	r, err := c.Do(&Request{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) || r.AppStatus() != 7 {
		t.Errorf("got %q, app status %d; want %q, 7", got, r.AppStatus(), want)
	}
}

func TestStderr(t *testing.T) {
	big := bytes.Repeat([]byte("e"), 65535)
	c := respond(t, cat(
		makeRecord(typeStderr, 1, []byte("warn 1\n"), 1),
		stdout("Status: 200 OK\r\n\r\n"),
		makeRecord(typeStderr, 1, []byte("warn 2"), 0),
		stdout("body"),
		makeRecord(typeStderr, 1, big, 1),
		makeRecord(typeStderr, 1, nil, 0),
		okEnd(),
	))
	var got [][]byte
	resp, err := c.Do(&Request{Stderr: func(p []byte) { got = append(got, bytes.Clone(p)) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0]) != "warn 1\n" {
		t.Errorf("after Do, stderr records %q, want the one before STDOUT", got)
	}
	out, err := readAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "Status: 200 OK\r\n\r\nbody" {
		t.Errorf("stdout %q", out)
	}
	if len(got) != 3 || string(got[1]) != "warn 2" || !bytes.Equal(got[2], big) {
		t.Errorf("stderr records: %d, want 3", len(got))
	}
}

func TestStderrWithoutCallback(t *testing.T) {
	c := respond(t, cat(
		makeRecord(typeStderr, 1, []byte("ignored"), 1),
		stdout("a"),
		makeRecord(typeStderr, 1, bytes.Repeat([]byte("x"), 40000), 0),
		stdout("b"),
		okEnd(),
	))
	resp, err := c.Do(&Request{})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := readAll(resp); err != nil || string(out) != "ab" {
		t.Errorf("got %q, %v; want \"ab\"", out, err)
	}
}

func TestManagementRecordsSkipped(t *testing.T) {
	values, _ := appendParams(nil, []Param{{"FCGI_MPXS_CONNS", "0"}})
	c := respond(t, cat(
		makeRecord(typeUnknownType, 0, []byte{42, 0, 0, 0, 0, 0, 0, 0}, 3),
		stdout("one "),
		makeRecord(typeGetValuesResult, 0, values, 0),
		stdout("two"),
		makeRecord(typeGetValuesResult, 0, nil, 0),
		okEnd(),
	))
	resp, err := c.Do(&Request{})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := readAll(resp); err != nil || string(out) != "one two" {
		t.Errorf("got %q, %v; want \"one two\"", out, err)
	}
}

// libfcgi ends STDOUT with an empty record before END_REQUEST; an
// application that does not is tolerated. The padded END_REQUEST is read
// whole, so the connection carries a second request.
func TestEndRequestWithoutEmptyStdoutAndReuse(t *testing.T) {
	c := startApp(t, func(a *fakeApp) error {
		for i := range 2 {
			if _, _, _, err := a.readRequest(); err != nil {
				return err
			}
			end := makeRecord(typeEndRequest, 1, []byte{0xde, 0xad, 0xbe, byte(0xef - i), 0, 0, 0, 0}, 5)
			if err := a.write(stdout(fmt.Sprint("r", i)), end); err != nil {
				return err
			}
		}
		return nil
	})
	for i := range 2 {
		resp, err := c.Do(&Request{KeepConn: true})
		if err != nil {
			t.Fatal(err)
		}
		out, err := readAll(resp)
		if err != nil || string(out) != fmt.Sprint("r", i) {
			t.Fatalf("request %d: %q, %v", i, out, err)
		}
		if got := resp.AppStatus(); got != 0xdeadbeef-uint32(i) {
			t.Errorf("AppStatus %#x", got)
		}
		if !resp.Close() {
			t.Fatalf("request %d: not reusable", i)
		}
		if resp.Close() != true {
			t.Error("second Close gave another answer")
		}
	}
}

func TestTruncatedResponse(t *testing.T) {
	tests := []struct {
		name     string
		response []byte
		stdout   string
	}{
		{"partial first header", []byte{1, 6, 0}, ""},
		{"partial content", stdout("hello")[:8+3], "hel"},
		{"missing padding", makeRecord(typeStdout, 1, []byte("hello"), 3)[:8+5+1], "hello"},
		{"no END_REQUEST", cat(stdout("hello"), stdout("")), "hello"},
		{"partial header after a record", cat(stdout("hello"), []byte{1, 3}), "hello"},
		{"partial END_REQUEST", cat(stdout("x"), endRequest(0, 0)[:12]), "x"},
		{"partial STDERR", cat(stdout("x"), makeRecord(typeStderr, 1, []byte("abc"), 0)[:10]), "x"},
		{"only STDERR", makeRecord(typeStderr, 1, []byte("abc"), 0), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := respond(t, tt.response)
			resp, err := c.Do(&Request{KeepConn: true, Stderr: func([]byte) {}})
			if err != nil {
				t.Fatalf("Do: %v; want a Response, since bytes came back", err)
			}
			out, err := readAll(resp)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("Read error %v, want io.ErrUnexpectedEOF", err)
			}
			if string(out) != tt.stdout {
				t.Errorf("stdout %q, want %q", out, tt.stdout)
			}
			if resp.Close() {
				t.Error("reusable after a truncated response")
			}
			if !c.Closed() {
				t.Error("Closed() = false")
			}
		})
	}
}

func TestProtocolViolations(t *testing.T) {
	tests := []struct {
		name     string
		response []byte
	}{
		{"version 0", cat([]byte{0, 6, 0, 1, 0, 0, 0, 0})},
		{"version 2", cat(stdout("a"), []byte{2, 6, 0, 1, 0, 0, 0, 0})},
		{"HTTP instead of FastCGI", []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")},
		{"type 0", []byte{1, 0, 0, 1, 0, 0, 0, 0}},
		{"type 12", []byte{1, 12, 0, 1, 0, 0, 0, 0}},
		{"type 255", cat(stdout("a"), []byte{1, 255, 0, 1, 0, 0, 0, 0})},
		{"request ID 2", makeRecord(typeStdout, 2, []byte("x"), 0)},
		{"request ID 256", cat(stdout("a"), makeRecord(typeStdout, 256, []byte("x"), 0))},
		{"STDOUT with request ID 0", makeRecord(typeStdout, 0, []byte("x"), 0)},
		{"END_REQUEST with request ID 0", makeRecord(typeEndRequest, 0, make([]byte, 8), 0)},
		{"GET_VALUES from the application", makeRecord(typeGetValues, 0, nil, 0)},
		{"BEGIN_REQUEST from the application", makeRecord(typeBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0}, 0)},
		{"ABORT_REQUEST from the application", makeRecord(typeAbortRequest, 1, nil, 0)},
		{"PARAMS from the application", makeRecord(typeParams, 1, nil, 0)},
		{"STDIN from the application", cat(stdout("a"), makeRecord(typeStdin, 1, nil, 0))},
		{"DATA from the application", makeRecord(typeData, 1, []byte("d"), 0)},
		{"END_REQUEST of 7 bytes", cat(stdout(""), makeRecord(typeEndRequest, 1, make([]byte, 7), 1))},
		{"END_REQUEST of 16 bytes", makeRecord(typeEndRequest, 1, make([]byte, 16), 0)},
		{"END_REQUEST of 0 bytes", makeRecord(typeEndRequest, 1, nil, 0)},
		{"undefined protocolStatus", endRequest(0, 4)},
		{"STDOUT after its end", cat(stdout("a"), stdout(""), stdout("b"), okEnd())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := respond(t, tt.response)
			resp, err := c.Do(&Request{KeepConn: true})
			if err != nil {
				t.Fatalf("Do: %v; want a Response, since bytes came back", err)
			}
			_, err = readAll(resp)
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("Read error %v, want ErrProtocol", err)
			}
			if _, err2 := resp.Read(make([]byte, 1)); err2 != err {
				t.Errorf("second Read: %v, want the same error", err2)
			}
			if resp.Close() {
				t.Error("reusable after a protocol violation")
			}
			if !c.Closed() {
				t.Error("Closed() = false after a protocol violation")
			}
		})
	}
}

func TestProtocolStatus(t *testing.T) {
	for _, tt := range []struct {
		status uint8
		text   string
		first  []byte
	}{
		{StatusCantMpxConn, "FCGI_CANT_MPX_CONN", nil},
		{StatusOverloaded, "FCGI_OVERLOADED", nil},
		{StatusUnknownRole, "FCGI_UNKNOWN_ROLE", nil},
		{StatusOverloaded, "FCGI_OVERLOADED", makeRecord(typeStderr, 1, []byte("busy"), 0)},
	} {
		t.Run(tt.text, func(t *testing.T) {
			c := respond(t, cat(tt.first, endRequest(3, tt.status)))
			resp, err := c.Do(&Request{KeepConn: true, Stderr: func([]byte) {}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = readAll(resp)
			var pse *ProtocolStatusError
			if !errors.As(err, &pse) || pse.Status != tt.status {
				t.Fatalf("Read error %v, want ProtocolStatusError %d", err, tt.status)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q does not name %s", err, tt.text)
			}
			if resp.AppStatus() != 3 {
				t.Errorf("AppStatus %d", resp.AppStatus())
			}
			if resp.Close() {
				t.Error("reusable after a refused request")
			}
		})
	}
}

func TestKeepConnUnsetNotReusable(t *testing.T) {
	c := respond(t, cat(stdout("x"), okEnd()))
	resp, err := c.Do(&Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(resp); err != nil {
		t.Fatal(err)
	}
	if resp.Close() {
		t.Error("reusable without KeepConn")
	}
	if !c.Closed() {
		t.Error("Closed() = false after a request without KeepConn")
	}
}

func TestCloseBeforeEndNotReusable(t *testing.T) {
	c := respond(t, cat(stdout("lots"), okEnd()))
	resp, err := c.Do(&Request{KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Close() {
		t.Error("reusable though END_REQUEST was not read")
	}
	if _, err := resp.Read(make([]byte, 10)); err == nil {
		t.Error("Read after Close succeeded")
	}
	if !c.Closed() {
		t.Error("Closed() = false")
	}
}

func TestDoBeforeResponseClosed(t *testing.T) {
	c := respond(t, cat(stdout("x"), okEnd()))
	resp, err := c.Do(&Request{KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	if r2, err := c.Do(&Request{KeepConn: true}); r2 != nil || err == nil {
		t.Fatal("second Do on a busy Conn succeeded")
	}
	if out, err := readAll(resp); err != nil || string(out) != "x" {
		t.Errorf("first response spoiled: %q, %v", out, err)
	}
}

func TestUnsolicitedBytesMakeClosed(t *testing.T) {
	c := startApp(t, func(a *fakeApp) error {
		if _, _, _, err := a.readRequest(); err != nil {
			return err
		}
		return a.write(stdout("x"), okEnd(), stdout("surprise"))
	})
	resp, err := c.Do(&Request{KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(resp); err != nil {
		t.Fatal(err)
	}
	resp.Close()
	if !c.Closed() {
		t.Error("Closed() = false with unread bytes from the application")
	}
}

func TestClosedAfterClose(t *testing.T) {
	c := startApp(t, func(a *fakeApp) error { return nil })
	c.Close()
	if !c.Closed() {
		t.Error("Closed() = false after Close")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// The application closes after reading the request, before answering: Do
// fails with a nil Response and io.EOF, after the stdin goroutine ended (here
// blocked in Body.Read until the application has gone).
func TestNothingReceived(t *testing.T) {
	for _, withBody := range []bool{false, true} {
		t.Run(fmt.Sprint("body=", withBody), func(t *testing.T) {
			body := &blockingBody{unblock: make(chan struct{})}
			cc, sc := socketPair(t)
			// Body.Read returns once Do has closed the connection: a Do
			// that did not then wait for the stdin goroutine would return
			// first.
			hooked := &closeHookConn{Conn: cc, onClose: func() { close(body.unblock) }}
			c := startAppOn(t, hooked, sc, func(a *fakeApp) error {
				_, _, err := a.readHead()
				return err
			})
			req := &Request{KeepConn: true}
			if withBody {
				req.Body = body
			}
			resp, err := c.Do(req)
			if resp != nil || err == nil {
				t.Fatalf("Do = %v, %v; want nil, error", resp, err)
			}
			if !isPeerGone(err) {
				t.Errorf("Do error %q does not wrap EPIPE, ECONNRESET or io.EOF", err)
			}
			if withBody && !body.passed.Load() {
				t.Error("Do returned while the stdin goroutine was still in Body.Read")
			}
		})
	}
}

// closeHookConn calls onClose the first time it is closed.
type closeHookConn struct {
	net.Conn
	once    sync.Once
	onClose func()
}

func (c *closeHookConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.onClose)
	return err
}

func TestDoOnClosedTCPPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := startAppOn(t, cc, sc, func(a *fakeApp) error {
		if _, _, _, err := a.readRequest(); err != nil {
			return err
		}
		return a.write(stdout("ok"), okEnd()) // then close
	})
	resp, err := c.Do(&Request{KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(resp); err != nil {
		t.Fatal(err)
	}
	resp.Close()
	resp, err = c.Do(&Request{KeepConn: true})
	if resp != nil || err == nil {
		t.Fatalf("Do = %v, %v; want nil, error", resp, err)
	}
	if !isPeerGone(err) {
		t.Errorf("Do error %q does not wrap EPIPE, ECONNRESET or io.EOF", err)
	}
}

func TestClosedLiveTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	c := startAppOn(t, cc, sc, func(a *fakeApp) error { <-release; return nil })
	defer close(release)
	if c.Closed() {
		t.Error("Closed() = true on a live TCP connection")
	}
}

// The application answers at once and never reads STDIN: the stdin
// goroutine stays blocked in a write, and Close must cut it off, not hang.
func TestAnswerWithoutReadingStdin(t *testing.T) {
	release := make(chan struct{})
	c := startApp(t, func(a *fakeApp) error {
		if _, _, err := a.readHead(); err != nil {
			return err
		}
		if err := a.write(stdout("early"), okEnd()); err != nil {
			return err
		}
		<-release
		return nil
	})
	defer close(release)
	// No write deadline: only Close may unblock the stdin goroutine.
	c.NetConn().SetWriteDeadline(time.Time{})
	body := pattern(8, 8<<20) // far more than the socket buffers hold
	resp, err := c.Do(&Request{KeepConn: true, Body: bytes.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := readAll(resp); err != nil || string(out) != "early" {
		t.Fatalf("got %q, %v", out, err)
	}
	closed := make(chan bool, 1)
	go func() { closed <- resp.Close() }()
	select {
	case reusable := <-closed:
		if reusable {
			t.Error("reusable though STDIN was not all written")
		}
	case <-time.After(testTimeout):
		c.Close() // unblocks it, so the test ends
		<-closed
		t.Fatal("Response.Close hung on the blocked stdin goroutine")
	}
	if !c.Closed() {
		t.Error("Closed() = false")
	}
}

func TestBodyErrorBeforeResponse(t *testing.T) {
	sawEnd := make(chan bool, 1)
	c := startApp(t, func(a *fakeApp) error {
		if _, _, err := a.readHead(); err != nil {
			return err
		}
		_, err := a.readStream(typeStdin)
		sawEnd <- err == nil
		return nil
	})
	boom := errors.New("client went away")
	body := io.MultiReader(bytes.NewReader(pattern(9, 1000)), &errReader{boom})
	resp, err := c.Do(&Request{Body: body, KeepConn: true})
	if resp != nil || !errors.Is(err, ErrRequestBody) || !errors.Is(err, boom) {
		t.Fatalf("Do = %v, %v; want nil and an error wrapping ErrRequestBody and the body's error", resp, err)
	}
	if <-sawEnd {
		t.Error("the application saw the end of STDIN: a short body passed for a whole one")
	}
}

func TestBodyErrorAfterResponseStarted(t *testing.T) {
	c := startApp(t, func(a *fakeApp) error {
		if _, _, err := a.readHead(); err != nil {
			return err
		}
		if err := a.write(stdout("partial")); err != nil {
			return err
		}
		a.readStream(typeStdin) // until the client gives up
		return nil
	})
	boom := errors.New("client went away")
	unblock := make(chan struct{})
	body := io.MultiReader(bytes.NewReader([]byte("abc")), &waitReader{unblock}, &errReader{boom})
	resp, err := c.Do(&Request{Body: body, KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 100)
	if n, err := resp.Read(p); err != nil || string(p[:n]) != "partial" {
		t.Fatalf("Read = %q, %v", p[:n], err)
	}
	close(unblock)
	_, err = readAll(resp)
	if !errors.Is(err, ErrRequestBody) || !errors.Is(err, boom) {
		t.Errorf("Read error %v, want one wrapping ErrRequestBody and the body's error", err)
	}
	if resp.Close() {
		t.Error("reusable after a body error")
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

// waitReader blocks until its channel is closed, then reports EOF.
type waitReader struct{ c chan struct{} }

func (r *waitReader) Read([]byte) (int, error) { <-r.c; return 0, io.EOF }

func TestConcurrentCloseDuringRead(t *testing.T) {
	release := make(chan struct{})
	c := startApp(t, func(a *fakeApp) error {
		if _, _, _, err := a.readRequest(); err != nil {
			return err
		}
		if err := a.write(stdout("first")); err != nil {
			return err
		}
		<-release
		return nil
	})
	defer close(release)
	resp, err := c.Do(&Request{KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 100)
	if n, err := resp.Read(p); err != nil || string(p[:n]) != "first" {
		t.Fatalf("Read = %q, %v", p[:n], err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := resp.Read(p) // blocks: the application sends nothing more
		readErr <- err
	}()
	c.Close()
	if err := <-readErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
	if resp.Close() {
		t.Error("reusable after Close")
	}
}

func TestConcurrentCloseDuringDo(t *testing.T) {
	headRead := make(chan struct{})
	release := make(chan struct{})
	c := startApp(t, func(a *fakeApp) error {
		if _, _, err := a.readHead(); err != nil {
			return err
		}
		close(headRead)
		<-release // never reads STDIN: the stdin goroutine blocks in a write
		return nil
	})
	defer close(release)
	type result struct {
		resp *Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Do(&Request{KeepConn: true, Body: bytes.NewReader(pattern(10, 8<<20))})
		done <- result{resp, err}
	}()
	<-headRead
	c.Close()
	r := <-done
	if r.resp != nil || !errors.Is(r.err, net.ErrClosed) {
		t.Errorf("Do = %v, %v; want nil, net.ErrClosed", r.resp, r.err)
	}
}

func TestDeadlineDuringRead(t *testing.T) {
	release := make(chan struct{})
	c := startApp(t, func(a *fakeApp) error {
		if _, _, _, err := a.readRequest(); err != nil {
			return err
		}
		<-release
		return nil
	})
	defer close(release)
	c.NetConn().SetReadDeadline(time.Unix(1, 0))
	resp, err := c.Do(&Request{KeepConn: true})
	if resp != nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Do = %v, %v; want nil, os.ErrDeadlineExceeded", resp, err)
	}
}

// Close returns only after the stdin goroutine has ended, here blocked in
// Body.Read when the application has already answered; with KeepConn
// (reusable path) and without (the connection is closed).
func TestCloseJoinsStdinGoroutine(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprint("KeepConn=", keep), func(t *testing.T) {
			release := make(chan struct{})
			c := startApp(t, func(a *fakeApp) error {
				if _, _, err := a.readHead(); err != nil {
					return err
				}
				if err := a.write(stdout("early"), okEnd()); err != nil {
					return err
				}
				<-release
				return nil
			})
			defer close(release)
			body := &blockingBody{unblock: make(chan struct{})}
			resp, err := c.Do(&Request{KeepConn: keep, Body: body})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := readAll(resp); err != nil {
				t.Fatal(err)
			}
			go close(body.unblock)
			resp.Close()
			if !body.passed.Load() {
				t.Error("Close returned while the stdin goroutine was still in Body.Read")
			}
		})
	}
}

// blockingBody blocks in Read until unblock is closed, then reports EOF.
type blockingBody struct {
	unblock chan struct{}
	passed  atomic.Bool
}

func (b *blockingBody) Read(p []byte) (int, error) {
	<-b.unblock
	b.passed.Store(true)
	return 0, io.EOF
}

// BenchmarkKeepConn measures one small request with a body on a kept
// connection to a fake application (run with -benchmem for allocations).
func BenchmarkKeepConn(b *testing.B) {
	cc, sc := socketPair(b)
	reply := cat(stdout("Status: 200 OK\r\n\r\nhello"), okEnd())
	done := make(chan error, 1)
	go func() {
		a := &fakeApp{conn: sc, br: bufio.NewReader(sc)}
		for {
			if _, _, _, err := a.readRequest(); err != nil {
				done <- nil
				return
			}
			a.records = a.records[:0]
			if err := a.write(reply); err != nil {
				done <- err
				return
			}
		}
	}()
	c := NewConn(cc)
	params := cgiParams("POST", "/bench", 5)
	body := bytes.NewReader(nil)
	buf := make([]byte, 512)
	for b.Loop() {
		body.Reset([]byte("hello"))
		resp, err := c.Do(&Request{Params: params, Body: body, KeepConn: true})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := resp.Read(buf); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		if !resp.Close() {
			b.Fatal("not reusable")
		}
	}
	c.Close()
	sc.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// Go's net/http/fcgi answers GET_VALUES with FCGI_MPXS_CONNS=1; the Conn
// then still carries requests.
func TestGetValuesAgainstGoServer(t *testing.T) {
	l := newValuesServer(t)
	nc, err := net.Dial("unix", l)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(nc)
	defer c.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	v, err := c.GetValues("FCGI_MPXS_CONNS", "FCGI_MAX_CONNS")
	if err != nil {
		t.Fatal(err)
	}
	if v["FCGI_MPXS_CONNS"] != "1" {
		t.Fatalf("values %v, want FCGI_MPXS_CONNS=1", v)
	}
}

func newValuesServer(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fcgi.Serve(l, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return path
}

// An application that answers without reading the request body (as a GET
// handler sent a POST does) leaves it in the connection, and libfcgi and
// php-cgi take what is left for the start of the next request. A body the
// client knows to be short (Len) goes out with the head in one write that
// libfcgi reads whole, and the connection stays reusable whether the
// application reads the body or not; after a streamed body it is not
// reused, even when the application read it all.
func TestBodyAndReuse(t *testing.T) {
	for _, c := range []struct {
		name     string
		body     io.Reader
		size     int
		readBody bool
		reusable bool
		oneWrite bool
	}{
		{"short body read", bytes.NewReader(pattern(1, 300)), 300, true, true, true},
		{"short body unread", bytes.NewReader(pattern(1, 300)), 300, false, true, true},
		{"short body, no Len", io.MultiReader(bytes.NewReader(pattern(1, 300))), 300, true, false, false},
		{"body over 8 KiB read", bytes.NewReader(pattern(2, 10<<10)), 10 << 10, true, false, false},
		{"body over 8 KiB unread", bytes.NewReader(pattern(2, 10<<10)), 10 << 10, false, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := startApp(t, func(a *fakeApp) error {
				if c.oneWrite {
					// The whole request in the first read, as libfcgi
					// reads it: up to 8 KiB, ending with the empty
					// STDIN record.
					buf := make([]byte, 8<<10)
					n, err := a.conn.Read(buf)
					if err != nil {
						return err
					}
					if !bytes.HasSuffix(buf[:n], makeRecord(typeStdin, 1, nil, 0)) {
						return fmt.Errorf("the first read (%d bytes) does not end with the empty STDIN record", n)
					}
					a.br = bufio.NewReader(io.MultiReader(bytes.NewReader(buf[:n]), a.conn))
				}
				if _, _, err := a.readHead(); err != nil {
					return err
				}
				if c.readBody {
					if got, err := a.readStream(typeStdin); err != nil || len(got) != c.size {
						return fmt.Errorf("stdin: %d bytes, %v", len(got), err)
					}
				}
				return a.write(stdout("Status: 200 OK\r\n\r\nok"), okEnd())
			})
			resp, err := conn.Do(&Request{KeepConn: true, Body: c.body})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := readAll(resp); err != nil {
				t.Fatal(err)
			}
			if got := resp.Close(); got != c.reusable {
				t.Errorf("reusable %v, want %v", got, c.reusable)
			}
		})
	}
}
