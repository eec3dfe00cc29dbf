package fastcgi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// outcome is what a response stream must produce.
type outcome int

const (
	noResponse outcome = iota // Do fails: nothing came back
	complete                  // io.EOF after END_REQUEST REQUEST_COMPLETE
	refused                   // *ProtocolStatusError
	violation                 // ErrProtocol
	truncated                 // io.ErrUnexpectedEOF
)

// modelResponse is a reference reading of data as the whole answer of an
// application, written as plainly as possible from the spec and the
// package's rules, against which the client is checked.
type modelResult struct {
	outcome        outcome
	stdout         []byte
	stderr         [][]byte
	appStatus      uint32
	protocolStatus uint8
}

func modelResponse(data []byte) (m modelResult) {
	if len(data) == 0 {
		m.outcome = noResponse
		return m
	}
	stdoutEnded := false
	for {
		if len(data) < 8 {
			m.outcome = truncated
			return m
		}
		version, typ, id := data[0], recType(data[1]), int(data[2])<<8|int(data[3])
		clen, plen := int(data[4])<<8|int(data[5]), int(data[6])
		data = data[8:]
		if version != 1 || typ < 1 || typ > 11 {
			m.outcome = violation
			return m
		}
		if id == 0 && (typ == typeGetValuesResult || typ == typeUnknownType) {
			if len(data) < clen+plen {
				m.outcome = truncated
				return m
			}
			data = data[clen+plen:]
			continue
		}
		if id != 1 {
			m.outcome = violation
			return m
		}
		switch typ {
		case typeStdout:
			if clen > 0 && stdoutEnded {
				m.outcome = violation
				return m
			}
			if clen == 0 {
				stdoutEnded = true
			}
			n := min(clen, len(data))
			m.stdout = append(m.stdout, data[:n]...)
			if n < clen {
				m.outcome = truncated
				return m
			}
		case typeStderr:
			if len(data) < clen {
				m.outcome = truncated
				return m
			}
			if clen > 0 {
				m.stderr = append(m.stderr, data[:clen])
			}
		case typeEndRequest:
			if clen != 8 {
				m.outcome = violation
				return m
			}
			if len(data) < clen+plen {
				m.outcome = truncated
				return m
			}
			m.appStatus = binary.BigEndian.Uint32(data)
			switch st := data[4]; st {
			case 0:
				m.outcome = complete
			case 1, 2, 3:
				m.outcome, m.protocolStatus = refused, st
			default:
				m.outcome = violation
			}
			return m
		default:
			m.outcome = violation
			return m
		}
		data = data[clen:]
		if len(data) < plen {
			m.outcome = truncated
			return m
		}
		data = data[plen:]
	}
}

// checkResponse plays data as an application's answer to a request and
// checks that the client reports what modelResponse says.
func checkResponse(t *testing.T, data []byte) {
	app := startApp(t, func(a *fakeApp) error {
		if _, _, _, err := a.readRequest(); err != nil {
			return err
		}
		a.write(data) // fails when the client stops reading early
		return nil
	})
	want := modelResponse(data)
	var stderr [][]byte
	resp, err := app.Do(&Request{
		Params:   []Param{{"REQUEST_METHOD", "GET"}},
		KeepConn: true,
		Stderr:   func(p []byte) { stderr = append(stderr, bytes.Clone(p)) },
	})
	if want.outcome == noResponse {
		if resp != nil || !errors.Is(err, io.EOF) {
			t.Fatalf("Do = %v, %v; want nil, io.EOF", resp, err)
		}
		return
	}
	if resp == nil || err != nil {
		t.Fatalf("Do = %v, %v; want a Response", resp, err)
	}
	// Odd read sizes cut records anywhere.
	var stdout []byte
	buf := make([]byte, 1+len(data)%13)
	for {
		n, err2 := resp.Read(buf)
		stdout = append(stdout, buf[:n]...)
		if err2 != nil {
			err = err2
			break
		}
	}
	reusable := resp.Close()

	if !bytes.Equal(stdout, want.stdout) {
		t.Errorf("stdout %q, want %q", stdout, want.stdout)
	}
	if len(stderr) != len(want.stderr) {
		t.Errorf("%d stderr records, want %d", len(stderr), len(want.stderr))
	} else {
		for i := range stderr {
			if !bytes.Equal(stderr[i], want.stderr[i]) {
				t.Errorf("stderr record %d: %q, want %q", i, stderr[i], want.stderr[i])
			}
		}
	}
	var pse *ProtocolStatusError
	switch want.outcome {
	case complete:
		if err != io.EOF || resp.AppStatus() != want.appStatus || !reusable {
			t.Errorf("got %v, app status %d, reusable %v; want io.EOF, %d, true", err, resp.AppStatus(), reusable, want.appStatus)
		}
	case refused:
		if !errors.As(err, &pse) || pse.Status != want.protocolStatus || resp.AppStatus() != want.appStatus {
			t.Errorf("got %v, app status %d; want protocol status %d, app status %d", err, resp.AppStatus(), want.protocolStatus, want.appStatus)
		}
	case violation:
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("got %v, want ErrProtocol", err)
		}
	case truncated:
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("got %v, want io.ErrUnexpectedEOF", err)
		}
	}
	if want.outcome != complete && reusable {
		t.Error("reusable after a failed exchange")
	}
}

func responseSeeds() [][]byte {
	values, _ := appendParams(nil, []Param{{"FCGI_MPXS_CONNS", "0"}})
	return [][]byte{
		nil,
		cat(stdout("Status: 200 OK\r\n\r\nhello"), okEnd()),
		cat(stdout("a"), endRequest(1, 0)),
		cat(makeRecord(typeStderr, 1, []byte("warn"), 4), stdout("x"), makeRecord(typeStderr, 1, nil, 0), okEnd()),
		cat(makeRecord(typeUnknownType, 0, make([]byte, 8), 0), makeRecord(typeGetValuesResult, 0, values, 3), stdout("y"), okEnd()),
		cat(makeRecord(typeStdout, 1, []byte("padded"), 255), makeRecord(typeEndRequest, 1, make([]byte, 8), 9)),
		endRequest(0, StatusOverloaded),
		endRequest(0, 9),
		stdout("cut")[:9],
		[]byte{1, 6},
		[]byte("HTTP/1.1 200 OK\r\n\r\n"),
		cat(stdout("a"), stdout(""), stdout("b")),
		makeRecord(typeEndRequest, 1, make([]byte, 7), 0),
		makeRecord(typeStdout, 2, []byte("other request"), 0),
		cat(stdout("x"), okEnd(), []byte("trailing")),
	}
}

// FuzzRecordReader feeds arbitrary bytes as an application's answer. The
// client must neither panic nor hang, and must report what the reference
// reading of the same bytes says.
func FuzzRecordReader(f *testing.F) {
	for _, s := range responseSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkResponse(t, data)
	})
}

// FuzzParams round-trips name-value pairs, and parses arbitrary bytes.
func FuzzParams(f *testing.F) {
	f.Add([]byte{1, 1, 'K', 'v'}, "NAME", "value")
	f.Add([]byte{0x80, 0, 0, 1, 0x80, 0, 0, 2, 'A', 'x', 'y'}, "", "")
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0}, string(make([]byte, 128)), string(make([]byte, 127)))
	f.Fuzz(func(t *testing.T, raw []byte, name, value string) {
		params := []Param{{name, value}, {value, name}, {"", value}}
		b, err := appendParams(nil, params)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseParams(nil, b)
		if err != nil {
			t.Fatalf("parseParams(appendParams(%q)): %v", params, err)
		}
		if len(got) != len(params) {
			t.Fatalf("round trip gave %d params, want %d", len(got), len(params))
		}
		for i := range params {
			if got[i] != params[i] {
				t.Fatalf("round trip: param %d is %q, want %q", i, got[i], params[i])
			}
		}

		parsed, err := parseParams(nil, raw)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("parseParams error %v does not wrap ErrProtocol", err)
			}
			return
		}
		again, err := appendParams(nil, parsed)
		if err != nil {
			t.Fatal(err)
		}
		reparsed, err := parseParams(nil, again)
		if err != nil || len(reparsed) != len(parsed) {
			t.Fatalf("re-encoding parsed params: %v, %d params, want %d", err, len(reparsed), len(parsed))
		}
		for i := range parsed {
			if reparsed[i] != parsed[i] {
				t.Fatalf("param %d: %q, want %q", i, reparsed[i], parsed[i])
			}
		}
		if len(again) > len(raw) {
			t.Errorf("re-encoding grew %d bytes to %d: the shortest length form was not used", len(raw), len(again))
		}
	})
}

// FuzzServerConn writes arbitrary bytes as a web server's side of a
// connection to a ServerConn whose handler echoes the body. Serve must
// return soon after the client has stopped sending (it half-closes), must
// not panic, must not run two handlers at once, and what it wrote must be
// well-formed records a web server can read.
func FuzzServerConn(f *testing.F) {
	params, _ := appendParams(nil, []Param{{"REQUEST_METHOD", "POST"}, {"CONTENT_LENGTH", "5"}})
	names, _ := appendParams(nil, []Param{{"FCGI_MAX_CONNS", ""}, {"FCGI_MPXS_CONNS", ""}, {"OTHER", ""}})
	req := func(id uint16, flags uint8, body string) []byte {
		b := appendBeginRequest(nil, id, roleResponder, flags)
		b = appendStream(b, typeParams, id, params)
		return appendStream(b, typeStdin, id, []byte(body))
	}
	for _, seed := range [][]byte{
		req(1, 0, "hello"),
		cat(req(1, flagKeepConn, "one"), req(2, flagKeepConn, "two"), req(1, 0, "")),
		appendRecord(nil, typeGetValues, 0, names),
		// A second request (multiplexed) while the first one runs.
		cat(appendBeginRequest(nil, 1, roleResponder, flagKeepConn), appendStream(nil, typeParams, 1, params),
			req(2, flagKeepConn, "mpx"), appendStream(nil, typeStdin, 1, []byte("first"))),
		cat(appendBeginRequest(nil, 1, roleResponder, 0), appendRecord(nil, typeParams, 1, params), appendRecord(nil, typeAbortRequest, 1, nil)),
		cat(appendBeginRequest(nil, 1, roleResponder, flagKeepConn), appendStream(nil, typeParams, 1, params),
			appendRecord(nil, typeStdin, 1, []byte("part")), appendRecord(nil, typeAbortRequest, 1, nil), req(3, 0, "after")),
		cat(appendBeginRequest(nil, 7, 2, flagKeepConn), req(7, 0, "")),
		makeRecord(typeStdin, 3, []byte("never begun"), 5),
		req(1, flagKeepConn, "cut")[:30],
		append([]byte{2}, req(1, 0, "")[1:]...),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cc, sn := socketPair(t)
		defer cc.Close()
		sc := NewServerConn(sn, ServerOptions{
			Values:      map[string]string{"FCGI_MAX_CONNS": "4", "FCGI_MAX_REQS": "4", "FCGI_MPXS_CONNS": "0"},
			IdleTimeout: 100 * time.Millisecond, ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond,
		})
		var running, overlap atomic.Int32
		served := make(chan error, 1)
		go func() {
			served <- sc.Serve(context.Background(), func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
				if running.Add(1) > 1 {
					overlap.Add(1)
				}
				defer running.Add(-1)
				_, err := io.Copy(w, r.Body)
				return uint32(len(r.Params)), err
			})
		}()
		out := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(cc)
			out <- b
		}()
		go func() {
			cc.Write(data) // fails once the server has closed
			cc.CloseWrite()
		}()
		var err error
		select {
		case err = <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return 10s after the client stopped sending")
		}
		if err != nil && !errors.Is(err, ErrProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) &&
			!errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("Serve = %v", err)
		}
		if overlap.Load() > 0 {
			t.Error("two handlers ran at once on one connection")
		}
		var written []byte
		select {
		case written = <-out:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection is still open after Serve returned")
		}
		checkServerOutput(t, written)
	})
}

// checkServerOutput checks that b is what an application may send: whole
// records, padded, of the types it sends, END_REQUEST well-formed.
func checkServerOutput(t *testing.T, b []byte) {
	s := &srv{br: bufio.NewReader(bytes.NewReader(b))}
	for {
		r, err := s.read()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("server output: %v", err)
		}
		switch {
		case r.id == 0 && (r.typ == typeGetValuesResult || r.typ == typeUnknownType):
			if r.typ == typeUnknownType && len(r.content) != 8 {
				t.Fatalf("UNKNOWN_TYPE with %d content bytes", len(r.content))
			}
			if _, err := parseParams(nil, r.content); r.typ == typeGetValuesResult && err != nil {
				t.Fatalf("GET_VALUES_RESULT: %v", err)
			}
		case r.id == 0:
			t.Fatalf("%v record with request ID 0", r.typ)
		case r.typ == typeStdout:
		case r.typ == typeEndRequest:
			if len(r.content) != 8 || r.content[4] == StatusOverloaded || r.content[4] > StatusUnknownRole {
				t.Fatalf("END_REQUEST % x", r.content)
			}
		default:
			t.Fatalf("%v record from the server", r.typ)
		}
	}
}
