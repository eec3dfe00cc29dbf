package fastcgi

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"path/filepath"
	"testing"
)

// Benchmarks of the FastCGI hot path (issue 14, "measure first"). Run with
//
//	go test -run XXX -bench . -benchmem ./fastcgi
//
// Their figures are in bench/README.md, "Go benchmarks of the hot path".

// benchParams is a typical PARAMS set: what the front sends for a
// browser's GET of /index.php (27 params, about 800 bytes encoded).
var benchParams = []Param{
	{"GATEWAY_INTERFACE", "CGI/1.1"},
	{"SERVER_SOFTWARE", "fcgivisor/1.0"},
	{"SERVER_PROTOCOL", "HTTP/1.1"},
	{"REQUEST_METHOD", "GET"},
	{"REQUEST_URI", "/index.php?page=2&sort=name"},
	{"DOCUMENT_URI", "/index.php"},
	{"QUERY_STRING", "page=2&sort=name"},
	{"SCRIPT_NAME", "/index.php"},
	{"SCRIPT_FILENAME", "/srv/www/index.php"},
	{"DOCUMENT_ROOT", "/srv/www"},
	{"PATH_INFO", ""},
	{"CONTENT_LENGTH", "0"},
	{"CONTENT_TYPE", ""},
	{"REDIRECT_STATUS", "200"},
	{"REMOTE_ADDR", "127.0.0.1"},
	{"REMOTE_HOST", "127.0.0.1"},
	{"REMOTE_PORT", "54321"},
	{"SERVER_NAME", "example.test"},
	{"SERVER_ADDR", "127.0.0.1"},
	{"SERVER_PORT", "8080"},
	{"REQUEST_SCHEME", "http"},
	{"HTTP_HOST", "example.test"},
	{"HTTP_USER_AGENT", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
	{"HTTP_ACCEPT", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
	{"HTTP_ACCEPT_ENCODING", "gzip, deflate, br"},
	{"HTTP_ACCEPT_LANGUAGE", "en-US,en;q=0.5"},
	{"HTTP_COOKIE", "session=0123456789abcdef; theme=dark"},
}

// BenchmarkEncodeRequestHead: the records Conn.Do writes for a GET, into
// reused buffers as Do does: BEGIN_REQUEST, the PARAMS stream
// (appendParams, appendStream) and the empty STDIN.
func BenchmarkEncodeRequestHead(b *testing.B) {
	var params, head []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		params, err = appendParams(params[:0], benchParams)
		if err != nil {
			b.Fatal(err)
		}
		head = appendBeginRequest(head[:0], reqID, roleResponder, flagKeepConn)
		head = appendStream(head, typeParams, reqID, params)
		head = appendRecord(head, typeStdin, reqID, nil)
	}
	b.SetBytes(int64(len(head)))
}

// BenchmarkParseParams: decoding benchParams' PARAMS content, as a
// ServerConn does, into a reused slice.
func BenchmarkParseParams(b *testing.B) {
	enc, err := appendParams(nil, benchParams)
	if err != nil {
		b.Fatal(err)
	}
	var ps []Param
	b.ReportAllocs()
	for b.Loop() {
		ps, err = parseParams(ps[:0], enc)
		if err != nil || len(ps) != len(benchParams) {
			b.Fatalf("%d params, %v", len(ps), err)
		}
	}
	b.SetBytes(int64(len(enc)))
}

const helloAnswer = "Content-Type: text/plain\r\n\r\nhello from go\n"

// benchClient runs one GET with KeepConn on c: Do, read to the end, Close.
func benchClient(b *testing.B, c *Conn, buf []byte) {
	req := &Request{Params: benchParams, KeepConn: true}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		// The answer is shorter than buf: read whole, ReadFull stops at
		// its end with ErrUnexpectedEOF.
		if n, err := io.ReadFull(resp, buf); err != io.ErrUnexpectedEOF || n == 0 || !resp.Close() {
			b.Fatalf("read %d bytes, %v; or not reusable", n, err)
		}
	}
}

// BenchmarkClientRoundTripGoFCGI: the client round trip on a kept Unix
// connection to net/http/fcgi.Serve in the same process (its allocations
// count too: most of them are the Go server's).
func BenchmarkClientRoundTripGoFCGI(b *testing.B) {
	path := filepath.Join(b.TempDir(), "app.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- fcgi.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "hello from go\n")
		}))
	}()
	defer func() { ln.Close(); <-served }()
	nc, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	c := NewConn(nc)
	defer c.Close()
	benchClient(b, c, make([]byte, 4096))
}

// serveHello runs a ServerConn on nc answering helloAnswer with WriteLast
// (the answer, the end of STDOUT and END_REQUEST in one write); the
// returned func closes nc and waits for Serve to return.
func serveHello(nc net.Conn) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewServerConn(nc, ServerOptions{}).Serve(context.Background(),
			func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (uint32, error) {
				_, err := w.WriteLast([]byte(helloAnswer))
				return 0, err
			})
	}()
	return func() { nc.Close(); <-done }
}

// BenchmarkClientRoundTripServerConn: the client round trip on a kept
// Unix socket pair to the package's own ServerConn in the same process
// (both sides' allocations count).
func BenchmarkClientRoundTripServerConn(b *testing.B) {
	cc, sc := socketPair(b)
	stop := serveHello(sc)
	defer stop()
	c := NewConn(cc)
	defer c.Close()
	benchClient(b, c, make([]byte, 4096))
}

// BenchmarkServerConnRoundTrip: ServerConn's side alone. A raw client
// writes the encoded request (prepared once) and reads records up to
// END_REQUEST without allocating, on a kept Unix socket pair: the
// allocations are the ServerConn's.
func BenchmarkServerConnRoundTrip(b *testing.B) {
	cc, sc := socketPair(b)
	stop := serveHello(sc)
	defer stop()
	defer cc.Close()
	enc, _ := appendParams(nil, benchParams)
	req := appendBeginRequest(nil, reqID, roleResponder, flagKeepConn)
	req = appendStream(req, typeParams, reqID, enc)
	req = appendRecord(req, typeStdin, reqID, nil)
	br := bufio.NewReaderSize(cc, 16<<10)
	var h [headerLen]byte
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cc.Write(req); err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := io.ReadFull(br, h[:]); err != nil {
				b.Fatal(err)
			}
			n := int(binary.BigEndian.Uint16(h[4:6])) + int(h[6])
			if _, err := br.Discard(n); err != nil {
				b.Fatal(err)
			}
			if recType(h[1]) == typeEndRequest {
				break
			}
		}
	}
}
