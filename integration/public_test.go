package integration

// A pool's public FastCGI socket (`listen`): web servers speak FastCGI to
// fcgivisor, which passes each request to a worker slot. These tests speak
// raw FastCGI with a client of their own (records built by hand below), so
// they do not depend on fcgivisor's fastcgi package.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// A raw FastCGI client

// Record types, roles, flags and protocol statuses of the FastCGI 1.0 spec.
const (
	fcgiBeginRequest    = 1
	fcgiAbortRequest    = 2
	fcgiEndRequest      = 3
	fcgiParams          = 4
	fcgiStdin           = 5
	fcgiStdout          = 6
	fcgiStderr          = 7
	fcgiData            = 8
	fcgiGetValues       = 9
	fcgiGetValuesResult = 10
	fcgiUnknownType     = 11

	fcgiResponder  = 1
	fcgiAuthorizer = 2
	fcgiFilter     = 3

	fcgiKeepConn = 1

	fcgiRequestComplete = 0
	fcgiCantMpxConn     = 1
	fcgiUnknownRole     = 3

	fcgiMaxContent = 65535
)

// fcgiTimeout bounds every wait for an answer that should come.
const fcgiTimeout = 10 * time.Second

type fcgiRec struct {
	version uint8
	typ     uint8
	id      uint16
	content []byte
}

func (r fcgiRec) String() string {
	return fmt.Sprintf("{type %d id %d %d bytes %q}", r.typ, r.id, len(r.content), clip(r.content))
}

// fcgiRecord encodes one record, padded to a multiple of 8 as nginx and
// libfcgi do.
func fcgiRecord(typ uint8, id uint16, content []byte) []byte {
	return fcgiRecordV(1, typ, id, content, (8-len(content)%8)%8)
}

// fcgiRecordV encodes a record with any version and padding; content may
// be at most 65535 bytes.
func fcgiRecordV(version, typ uint8, id uint16, content []byte, padding int) []byte {
	if len(content) > fcgiMaxContent {
		panic("fcgiRecordV: content too long")
	}
	b := []byte{version, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(padding), 0}
	b = append(b, content...)
	return append(b, make([]byte, padding)...)
}

// fcgiStream encodes data as records of type typ, then the empty record
// that ends the stream.
func fcgiStream(typ uint8, id uint16, data []byte) []byte {
	var b []byte
	for len(data) > 0 {
		n := min(len(data), fcgiMaxContent)
		b = append(b, fcgiRecord(typ, id, data[:n])...)
		data = data[n:]
	}
	return append(b, fcgiRecord(typ, id, nil)...)
}

func fcgiBegin(id uint16, role uint16, flags uint8) []byte {
	return fcgiRecord(fcgiBeginRequest, id, []byte{byte(role >> 8), byte(role), flags, 0, 0, 0, 0, 0})
}

type fcgiParam struct{ name, value string }

func appendFCGILen(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

func encodePairs(ps []fcgiParam) []byte {
	var b []byte
	for _, p := range ps {
		b = appendFCGILen(b, len(p.name))
		b = appendFCGILen(b, len(p.value))
		b = append(b, p.name...)
		b = append(b, p.value...)
	}
	return b
}

func decodeFCGIPairs(b []byte) ([]fcgiParam, error) {
	readLen := func() (int, error) {
		if len(b) == 0 {
			return 0, errors.New("truncated length")
		}
		if b[0] < 128 {
			n := int(b[0])
			b = b[1:]
			return n, nil
		}
		if len(b) < 4 {
			return 0, errors.New("truncated 4-byte length")
		}
		n := int(binary.BigEndian.Uint32(b) &^ (1 << 31))
		b = b[4:]
		return n, nil
	}
	var ps []fcgiParam
	for len(b) > 0 {
		nl, err := readLen()
		if err != nil {
			return ps, err
		}
		vl, err := readLen()
		if err != nil {
			return ps, err
		}
		if nl+vl > len(b) {
			return ps, errors.New("truncated pair")
		}
		ps = append(ps, fcgiParam{string(b[:nl]), string(b[nl : nl+vl])})
		b = b[nl+vl:]
	}
	return ps, nil
}

// fcgiRequest encodes a whole request: BEGIN_REQUEST, the params, the body
// as STDIN.
func fcgiRequest(id uint16, flags uint8, params []fcgiParam, body []byte) []byte {
	b := fcgiBegin(id, fcgiResponder, flags)
	b = append(b, fcgiStream(fcgiParams, id, encodePairs(params))...)
	return append(b, fcgiStream(fcgiStdin, id, body)...)
}

// requestParams are the params a web server sends for GET /index.php?query
// (php-cgi runs examples/php/index.php; the other workers ignore the
// script).
func requestParams(query string) []fcgiParam {
	return []fcgiParam{
		{"GATEWAY_INTERFACE", "CGI/1.1"},
		{"SERVER_SOFTWARE", "fcgivisor-public-test"},
		{"SERVER_PROTOCOL", "HTTP/1.1"},
		{"REQUEST_METHOD", "GET"},
		{"REQUEST_URI", "/index.php?" + query},
		{"SCRIPT_NAME", "/index.php"},
		{"SCRIPT_FILENAME", filepath.Join(documentRoot(), "index.php")},
		{"DOCUMENT_ROOT", documentRoot()},
		{"QUERY_STRING", query},
		{"SERVER_NAME", "localhost"},
		{"SERVER_ADDR", "127.0.0.1"},
		{"SERVER_PORT", "80"},
		{"REMOTE_ADDR", "127.0.0.1"},
		{"REMOTE_PORT", "40000"},
		{"HTTP_HOST", "localhost"},
		{"REDIRECT_STATUS", "200"},
	}
}

// fcgiConn is one client connection. Its methods return errors and never
// touch a testing.T, so any goroutine may use one.
type fcgiConn struct {
	net.Conn
	r *bufio.Reader
}

func dialFCGIWith(d *net.Dialer, network, addr string) (*fcgiConn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	d.Timeout = 5 * time.Second
	c, err := d.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	return &fcgiConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// fcgiAddr splits a pool listen value ("unix:/path", "/path",
// "host:port") into a network and address to dial.
func fcgiAddr(listen string) (network, addr string) {
	if p, ok := strings.CutPrefix(listen, "unix:"); ok {
		return "unix", p
	}
	if strings.HasPrefix(listen, "/") {
		return "unix", listen
	}
	return "tcp", listen
}

func dialFCGI(listen string) (*fcgiConn, error) {
	network, addr := fcgiAddr(listen)
	return dialFCGIWith(nil, network, addr)
}

// mustDial dials listen and fails t on an error; the connection is closed
// at the end of the test.
func mustDial(t testing.TB, listen string) *fcgiConn {
	t.Helper()
	c, err := dialFCGI(listen)
	if err != nil {
		t.Fatalf("dial %s: %v", listen, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (c *fcgiConn) send(b ...[]byte) error {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Write(bytes.Join(b, nil))
	return err
}

// readRecord reads one record, waiting at most timeout.
func (c *fcgiConn) readRecord(timeout time.Duration) (fcgiRec, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	var h [8]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return fcgiRec{}, err
	}
	n := int(binary.BigEndian.Uint16(h[4:6])) + int(h[6])
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return fcgiRec{}, fmt.Errorf("record %v: body: %w", h, err)
	}
	if h[0] != 1 {
		return fcgiRec{}, fmt.Errorf("record with version %d from fcgivisor", h[0])
	}
	return fcgiRec{version: h[0], typ: h[1], id: binary.BigEndian.Uint16(h[2:4]), content: buf[:binary.BigEndian.Uint16(h[4:6])]}, nil
}

// fcgiResult is one request's answer.
type fcgiResult struct {
	stdout, stderr []byte
	appStatus      uint32
	protoStatus    uint8
	others         []fcgiRec // records of other request ids, in order
	took           time.Duration
}

// readResponse reads records until the END_REQUEST of id, within timeout.
func (c *fcgiConn) readResponse(id uint16, timeout time.Duration) (*fcgiResult, error) {
	t0 := time.Now()
	deadline := t0.Add(timeout)
	res := &fcgiResult{}
	for {
		rec, err := c.readRecord(time.Until(deadline))
		if err != nil {
			return res, fmt.Errorf("request %d: after %d stdout bytes %q: %w", id, len(res.stdout), clip(res.stdout), err)
		}
		switch {
		case rec.id != id:
			res.others = append(res.others, rec)
		case rec.typ == fcgiStdout:
			res.stdout = append(res.stdout, rec.content...)
		case rec.typ == fcgiStderr:
			res.stderr = append(res.stderr, rec.content...)
		case rec.typ == fcgiEndRequest:
			if len(rec.content) != 8 {
				return res, fmt.Errorf("request %d: END_REQUEST with %d content bytes", id, len(rec.content))
			}
			res.appStatus = binary.BigEndian.Uint32(rec.content[:4])
			res.protoStatus = rec.content[4]
			res.took = time.Since(t0)
			return res, nil
		default:
			return res, fmt.Errorf("request %d: unexpected record %v", id, rec)
		}
	}
}

// do sends a whole request and reads its answer.
func (c *fcgiConn) do(id uint16, flags uint8, params []fcgiParam, body []byte) (*fcgiResult, error) {
	if err := c.send(fcgiRequest(id, flags, params, body)); err != nil {
		return nil, err
	}
	return c.readResponse(id, fcgiTimeout)
}

// get sends GET ?query as request 1 on a new connection without
// FCGI_KEEP_CONN and reads the answer.
func fcgiGet(listen, query string) (*fcgiResult, error) {
	c, err := dialFCGI(listen)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.do(1, 0, requestParams(query), nil)
}

// closedErr waits up to timeout for the server to close the connection
// and returns nil when it did (EOF or a reset), with the records read
// before; otherwise an error.
func (c *fcgiConn) closedErr(timeout time.Duration) ([]fcgiRec, error) {
	deadline := time.Now().Add(timeout)
	var recs []fcgiRec
	for {
		rec, err := c.readRecord(time.Until(deadline))
		switch {
		case err == nil:
			recs = append(recs, rec)
			continue
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
			return recs, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return recs, fmt.Errorf("still open after %v (records read: %v)", timeout, recs)
		}
		return recs, err
	}
}

// stillOpen reports whether the server has neither closed c nor sent
// anything within wait.
func (c *fcgiConn) stillOpen(wait time.Duration) error {
	rec, err := c.readRecord(wait)
	switch {
	case err == nil:
		return fmt.Errorf("unexpected record %v", rec)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	}
	return fmt.Errorf("closed: %w", err)
}

// cgiResponse splits a CGI response (STDOUT) into its header lines and
// body.
type cgiResponse struct {
	header map[string]string // canonical lower-case name → value
	body   []byte
}

func parseCGI(stdout []byte) (cgiResponse, error) {
	r := cgiResponse{header: map[string]string{}}
	i, sep := bytes.Index(stdout, []byte("\r\n\r\n")), 4
	if j := bytes.Index(stdout, []byte("\n\n")); j >= 0 && (i < 0 || j < i) {
		i, sep = j, 2
	}
	if i < 0 {
		return r, fmt.Errorf("no end of header in %q", clip(stdout))
	}
	for _, line := range strings.Split(string(stdout[:i]), "\n") {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if !ok {
			return r, fmt.Errorf("header line %q in %q", line, clip(stdout))
		}
		r.header[strings.ToLower(k)] = strings.TrimSpace(v)
	}
	r.body = stdout[i+sep:]
	return r, nil
}

// status is the response's status code: 200 when there is no Status line.
func (r cgiResponse) status() int {
	s, ok := r.header["status"]
	if !ok {
		return 200
	}
	code, _ := strconv.Atoi(strings.Fields(s + " x")[0])
	return code
}

// checkAnswer returns an error unless res is a complete answer with
// status code and body want ("" = any body).
func checkAnswer(res *fcgiResult, err error, code int, want string) error {
	if err != nil {
		return err
	}
	if res.protoStatus != fcgiRequestComplete {
		return fmt.Errorf("END_REQUEST protocolStatus %d, want 0; stdout %q", res.protoStatus, clip(res.stdout))
	}
	r, err := parseCGI(res.stdout)
	if err != nil {
		return err
	}
	if r.status() != code || (want != "" && string(r.body) != want) {
		return fmt.Errorf("answer %d %q, want %d %q (stdout %q)", r.status(), clip(r.body), code, want, clip(res.stdout))
	}
	return nil
}

// ---------------------------------------------------------------------------
// Configs

func listenLine(addr string) string { return "listen = " + tomlString(addr) }

// goPoolTable is one more [pool.NAME] table running the Go worker, for
// options.pools.
func goPoolTable(name string, lines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[pool.%s]\ncommand = %s\nworkers = 1\nconcurrency = 4\n", name, tomlStrings([]string{goWorkerBin}))
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("user = \"root\"\n")
	return b.String()
}

// sockPath is a new Unix socket path for a pool's listen.
func sockPath(t testing.TB, name string) string {
	return filepath.Join(shortTempDir(t), name+".sock")
}

// admin returns a client of the instance's admin socket.
func (in *instance) admin(t testing.TB) *adminClient {
	return newAdminClient(t, "unix", filepath.Join(in.runtimeDir, "admin.sock"))
}

// waitBusySlots polls /status until pool name has want busy slots.
func waitBusySlots(t testing.TB, a *adminClient, name string, want int, timeout time.Duration) {
	t.Helper()
	var p *adminPool
	if !waitFor(timeout, func() bool { p = a.status(t, name); return p.BusySlots == want }) {
		t.Fatalf("pool %s has %d busy slots after %v, want %d: %+v", name, p.BusySlots, timeout, want, p)
	}
}

// alive fails t if fcgivisor has exited.
func (in *instance) alive(t testing.TB) {
	t.Helper()
	select {
	case <-in.done:
		t.Fatalf("fcgivisor exited: %v", in.waitErr)
	default:
	}
}

// ---------------------------------------------------------------------------
// 1-5: requests, params, FCGI_KEEP_CONN, GET_VALUES, CANT_MPX_CONN, roles

// oddParams are params with unusual but legal bytes that every worker
// can show: long names and values (4-byte lengths), empty values, '=',
// quotes, UTF-8.
var oddParams = []fcgiParam{
	{"HTTP_X_TEST", `odd "value" = with; spaces,  tabs	and é ü 日本 \ back`},
	{"HTTP_X_EMPTY", ""},
	{"HTTP_X_LONG", strings.Repeat("0123456789", 30)},
	{"X_LONG_NAME_" + strings.Repeat("N", 130), "v=1"},
	{"X_EQUALS", "a=b=c"},
}

// goOnlyParams: bytes only the Go worker shows as they are (a C string
// or a Perl hash would not), and a name sent twice, in order.
var goOnlyParams = []fcgiParam{
	{"X_ODD_BYTES", "line1\nline2\r\n\x01\x7f\xff\xfe end"},
	{"X_DUP", "first"},
	{"X_BIG", strings.Repeat("b", 70000)}, // over one record
	{"X_DUP", "second"},
}

func TestPublicRequests(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	socks := map[string]string{}
	for _, l := range availableLangs() {
		socks[l.name] = "unix:" + filepath.Join(dir, l.name+".sock")
	}
	start(t, options{pool: func(l lang, p *poolOpts) {
		if l.name == "go" {
			p.workers, p.concurrency = 2, 3
		}
		p.extra = append(p.extra, listenLine(socks[l.name]))
	}})
	maxReqs := func(l lang) int {
		p := defaultPool(l)
		if l.name == "go" {
			return 2 * 3
		}
		return p.workers * p.concurrency
	}

	eachLang(t, func(t *testing.T, l lang) {
		sock := socks[l.name]
		t.Run("hello", func(t *testing.T) {
			res, err := fcgiGet(sock, "")
			if err := checkAnswer(res, err, 200, "hello from "+l.name+"\n"); err != nil {
				t.Fatal(err)
			}
			if res.appStatus != 0 {
				t.Errorf("END_REQUEST appStatus %d, want 0", res.appStatus)
			}
		})
		t.Run("params", func(t *testing.T) { testPublicParams(t, sock, l) })
		t.Run("get-values", func(t *testing.T) { testPublicGetValues(t, sock, maxReqs(l)) })
	})
	goSock := socks["go"]
	t.Run("echo", func(t *testing.T) {
		t.Parallel()
		body := make([]byte, 300<<10)
		rand.Read(body)
		ps := append(requestParams("echo"), fcgiParam{"CONTENT_LENGTH", strconv.Itoa(len(body))}, fcgiParam{"CONTENT_TYPE", "application/octet-stream"})
		ps[3].value = "POST"
		c := mustDial(t, goSock)
		res, err := c.do(1, 0, ps, body)
		if err := checkAnswer(res, err, 200, ""); err != nil {
			t.Fatal(err)
		}
		if r, _ := parseCGI(res.stdout); !bytes.Equal(r.body, body) {
			t.Fatalf("?echo over the public socket: %d bytes back, want the %d sent; first difference at %d", len(r.body), len(body), firstDiff(r.body, body))
		}
	})
	t.Run("large-params", func(t *testing.T) {
		// 900 KiB of params, under the 1 MiB limit, in whole pairs.
		t.Parallel()
		ps := requestParams("")
		for i := range 900 {
			ps = append(ps, fcgiParam{fmt.Sprintf("HTTP_X_BIG_%d", i), strings.Repeat("v", 1000)})
		}
		c := mustDial(t, goSock)
		res, err := c.do(1, 0, ps, nil)
		if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
			t.Fatalf("900 KiB of params: %v", err)
		}
	})
	t.Run("keep-conn", func(t *testing.T) {
		t.Parallel()
		testPublicKeepConn(t, goSock)
	})
	t.Run("cant-mpx-conn", func(t *testing.T) {
		t.Parallel()
		testPublicCantMpx(t, goSock)
	})
	t.Run("unknown-role", func(t *testing.T) {
		t.Parallel()
		for _, role := range []uint16{fcgiAuthorizer, fcgiFilter, 0, 77} {
			c := mustDial(t, goSock)
			if err := c.send(fcgiBegin(1, role, fcgiKeepConn)); err != nil {
				t.Fatal(err)
			}
			res, err := c.readResponse(1, fcgiTimeout)
			if err != nil {
				t.Fatalf("role %d: %v", role, err)
			}
			if res.protoStatus != fcgiUnknownRole || len(res.stdout) != 0 {
				t.Errorf("role %d: END_REQUEST protocolStatus %d (stdout %q), want %d (FCGI_UNKNOWN_ROLE)", role, res.protoStatus, res.stdout, fcgiUnknownRole)
			}
		}
		// The pool still serves.
		res, err := fcgiGet(goSock, "")
		if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
			t.Fatal(err)
		}
	})
}

// testPublicParams: the params sent reach the worker unchanged, and
// fcgivisor adds none.
func testPublicParams(t *testing.T, sock string, l lang) {
	sent := append(requestParams("vars"), oddParams...)
	if l.name == "go" {
		sent = append(sent, goOnlyParams...)
	}
	c := mustDial(t, sock)
	res, err := c.do(1, 0, sent, nil)
	c.Close()
	if err := checkAnswer(res, err, 200, ""); err != nil {
		t.Fatal(err)
	}
	r, _ := parseCGI(res.stdout)
	lines := func(ps []fcgiParam) []string {
		var ls []string
		for _, p := range ps {
			ls = append(ls, p.name+"="+p.value)
		}
		return ls
	}
	switch l.name {
	case "go":
		// The Go worker prints the params exactly as received, sorted
		// by name (stably: X_DUP keeps its order): byte for byte.
		want := slices.Clone(sent)
		sort.SliceStable(want, func(i, j int) bool { return want[i].name < want[j].name })
		if exp := strings.Join(lines(want), "\n") + "\n"; string(r.body) != exp {
			t.Fatalf("the Go worker received other params than sent:\n got %q\nwant %q", clip(r.body), clip([]byte(exp)))
		}
	case "c", "perl":
		// Every param and nothing else (sorted both ways: libfcgi and
		// Perl's hash order differ) but FCGI_ROLE, which libfcgi adds
		// from BEGIN_REQUEST.
		got := strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n")
		want := append(lines(sent), "FCGI_ROLE=RESPONDER")
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("the %s worker received other params than sent:\n got %q\nwant %q", l.name, got, want)
		}
	default:
		// $_SERVER mixes in php-cgi's environment: each param is there.
		for _, p := range sent {
			if p.name == "SCRIPT_NAME" {
				continue // cgi.fix_pathinfo may rewrite it
			}
			if !bytes.Contains(append([]byte("\n"), r.body...), []byte("\n"+p.name+"="+p.value+"\n")) {
				t.Errorf("$_SERVER lacks %s=%q:\n%s", p.name, p.value, clip(r.body))
			}
		}
	}
}

func testPublicGetValues(t *testing.T, sock string, maxReqs int) {
	c := mustDial(t, sock)
	ask := encodePairs([]fcgiParam{{"FCGI_MAX_CONNS", ""}, {"FCGI_NO_SUCH_VALUE", ""}, {"FCGI_MAX_REQS", ""}, {"FCGI_MPXS_CONNS", ""}})
	if err := c.send(fcgiRecord(fcgiGetValues, 0, ask)); err != nil {
		t.Fatal(err)
	}
	rec, err := c.readRecord(fcgiTimeout)
	if err != nil {
		t.Fatalf("GET_VALUES: %v", err)
	}
	if rec.typ != fcgiGetValuesResult || rec.id != 0 {
		t.Fatalf("GET_VALUES answered with %v, want a GET_VALUES_RESULT for id 0", rec)
	}
	ps, err := decodeFCGIPairs(rec.content)
	if err != nil {
		t.Fatalf("GET_VALUES_RESULT %q: %v", rec.content, err)
	}
	got := map[string]string{}
	for _, p := range ps {
		if _, dup := got[p.name]; dup {
			t.Errorf("GET_VALUES_RESULT names %s twice: %q", p.name, ps)
		}
		got[p.name] = p.value
	}
	n := strconv.Itoa(maxReqs)
	want := map[string]string{"FCGI_MAX_CONNS": n, "FCGI_MAX_REQS": n, "FCGI_MPXS_CONNS": "0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("GET_VALUES_RESULT %v, want %v (max_workers × concurrency = %d; the unknown name left out)", got, want, maxReqs)
	}

	// Another management record (request id 0): FCGI_UNKNOWN_TYPE naming
	// its type.
	for _, typ := range []uint8{fcgiGetValuesResult, fcgiUnknownType} {
		if err := c.send(fcgiRecord(typ, 0, []byte("x"))); err != nil {
			t.Fatal(err)
		}
		rec, err = c.readRecord(fcgiTimeout)
		if err != nil {
			t.Fatalf("management record of type %d: %v", typ, err)
		}
		if rec.typ != fcgiUnknownType || rec.id != 0 || len(rec.content) != 8 || rec.content[0] != typ {
			t.Errorf("management record of type %d answered with %v, want UNKNOWN_TYPE for id 0 with type %d", typ, rec, typ)
		}
	}
	// The connection still serves a request.
	res, err := c.do(1, 0, requestParams("pid"), nil)
	if err := checkAnswer(res, err, 200, ""); err != nil {
		t.Fatalf("a request after GET_VALUES on the same connection: %v", err)
	}
}

func testPublicKeepConn(t *testing.T, sock string) {
	c := mustDial(t, sock)
	for i := range 4 {
		id := uint16(i%2 + 1) // ids may be reused once ended
		res, err := c.do(id, fcgiKeepConn, requestParams("sleep="+strconv.Itoa(i)), nil)
		if err := checkAnswer(res, err, 200, fmt.Sprintf("slept %d\n", i)); err != nil {
			t.Fatalf("request %d on a kept connection: %v", i, err)
		}
	}
	if err := c.stillOpen(200 * time.Millisecond); err != nil {
		t.Fatalf("a FCGI_KEEP_CONN connection after END_REQUEST: %v", err)
	}
	// The last request without FCGI_KEEP_CONN: closed after its END_REQUEST.
	res, err := c.do(1, 0, requestParams(""), nil)
	if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
		t.Fatal(err)
	}
	if recs, err := c.closedErr(2 * time.Second); err != nil || len(recs) > 0 {
		t.Fatalf("connection without FCGI_KEEP_CONN after END_REQUEST: %v, records %v; want closed", err, recs)
	}
	// A new connection without FCGI_KEEP_CONN: closed too.
	c = mustDial(t, sock)
	res, err = c.do(7, 0, requestParams(""), nil)
	if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
		t.Fatal(err)
	}
	if recs, err := c.closedErr(2 * time.Second); err != nil || len(recs) > 0 {
		t.Fatalf("connection without FCGI_KEEP_CONN after END_REQUEST: %v, records %v; want closed", err, recs)
	}
}

// Without FCGI_KEEP_CONN the connection closes after END_REQUEST, never
// before it: also when the request's empty STDIN record comes while its
// answer ends. The STDIN end goes in a write of its own, 0-1 ms after the
// PARAMS (fcgivisor sends a request without CONTENT_LENGTH to the worker
// at once, so the worker's answer may be complete by then); thousands of
// requests cover the timings.
func TestPublicEndRequestBeforeClose(t *testing.T) {
	t.Parallel()
	sock := "unix:" + sockPath(t, "go")
	start(t, options{langs: []string{"go"}, noHTTP: true, pool: func(_ lang, p *poolOpts) {
		p.workers, p.concurrency = 1, 8
		p.extra = append(p.extra, listenLine(sock))
	}})
	const n = 8000
	var next, ok, noEnd atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	t0 := time.Now()
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > n {
					return
				}
				c, err := dialFCGI(sock)
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				req := fcgiRequest(1, 0, requestParams(""), nil)
				err = c.send(req[:len(req)-8])
				time.Sleep(time.Duration(i%40) * 25 * time.Microsecond)
				if err == nil {
					err = c.send(req[len(req)-8:])
				}
				var res *fcgiResult
				if err == nil {
					res, err = c.readResponse(1, fcgiTimeout)
				}
				if err == nil {
					_, err = c.closedErr(2 * time.Second)
				}
				c.Close()
				if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
					noEnd.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	t.Logf("%d requests without FCGI_KEEP_CONN in %v: %d answered and closed after END_REQUEST", n, time.Since(t0).Round(time.Millisecond), ok.Load())
	if ok.Load() != n {
		t.Fatalf("%d of %d requests without FCGI_KEEP_CONN failed; first: %v", n-ok.Load(), n, firstErr.Load())
	}
}

func testPublicCantMpx(t *testing.T, sock string) {
	c := mustDial(t, sock)
	if err := c.send(fcgiRequest(1, fcgiKeepConn, requestParams("sleep=500"), nil)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	// Request 2 while 1 runs, whole: its PARAMS and STDIN are ignored.
	if err := c.send(fcgiRequest(2, fcgiKeepConn, requestParams("pid"), nil)); err != nil {
		t.Fatal(err)
	}
	res, err := c.readResponse(1, fcgiTimeout)
	if err := checkAnswer(res, err, 200, "slept 500\n"); err != nil {
		t.Fatalf("request 1 with request 2 refused meanwhile: %v", err)
	}
	if len(res.others) != 1 || res.others[0].typ != fcgiEndRequest || res.others[0].id != 2 ||
		len(res.others[0].content) != 8 || res.others[0].content[4] != fcgiCantMpxConn {
		t.Fatalf("records for request 2 while 1 ran: %v; want one END_REQUEST with protocolStatus %d (FCGI_CANT_MPX_CONN)", res.others, fcgiCantMpxConn)
	}
	// Nothing more for request 2, and the kept connection serves on.
	res, err = c.do(3, fcgiKeepConn, requestParams(""), nil)
	if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
		t.Fatalf("the next request on the connection: %v", err)
	}
	if len(res.others) != 0 {
		t.Fatalf("records of other requests: %v", res.others)
	}
}

// ---------------------------------------------------------------------------
// 6: FCGI_ABORT_REQUEST

func TestPublicAbortRequest(t *testing.T) {
	t.Parallel()
	sock := "unix:" + sockPath(t, "go")
	in := start(t, options{langs: []string{"go"}, noHTTP: true, pool: oneSlot(listenLine(sock))})
	a := in.admin(t)
	c := mustDial(t, sock)
	if err := c.send(fcgiRequest(1, fcgiKeepConn, requestParams("sleep=3000"), nil)); err != nil {
		t.Fatal(err)
	}
	waitBusySlots(t, a, "go", 1, eventTimeout)
	t0 := time.Now()
	if err := c.send(fcgiRecord(fcgiAbortRequest, 1, nil)); err != nil {
		t.Fatal(err)
	}
	res, err := c.readResponse(1, 5*time.Second)
	if err != nil {
		t.Fatalf("after ABORT_REQUEST: %v", err)
	}
	if took := time.Since(t0); took > 1500*time.Millisecond || res.protoStatus != fcgiRequestComplete {
		t.Fatalf("ABORT_REQUEST: END_REQUEST protocolStatus %d after %v; want 0 well before the 3 s sleep ends", res.protoStatus, took)
	}
	// The slot is free: the one-slot pool serves the next request now.
	t1 := time.Now()
	res, err = fcgiGet(sock, "")
	if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
		t.Fatalf("the request after an abort: %v", err)
	}
	if took := time.Since(t1); took > 2*time.Second {
		t.Errorf("the request after an abort took %v: the aborted one held the slot", took)
	}
	waitBusySlots(t, a, "go", 0, 2*time.Second)
	// The aborting connection was kept (FCGI_KEEP_CONN) and serves on.
	res, err = c.do(2, 0, requestParams("pid"), nil)
	if err := checkAnswer(res, err, 200, ""); err != nil {
		t.Fatalf("a request after the abort on the kept connection: %v", err)
	}
}

// ---------------------------------------------------------------------------
// 7: malformed input closes that connection only

func TestPublicMalformed(t *testing.T) {
	t.Parallel()
	sock := "unix:" + sockPath(t, "go")
	in := start(t, options{langs: []string{"go"}, noHTTP: true, pool: func(_ lang, p *poolOpts) {
		p.workers, p.concurrency = 1, 16
		p.extra = append(p.extra, listenLine(sock))
	}})
	begin := fcgiBegin(1, fcgiResponder, fcgiKeepConn)
	half := fcgiStream(fcgiParams, 1, encodePairs(requestParams("")))
	cases := []struct {
		name string
		bad  func(c *fcgiConn) error
	}{
		{"bad-version", func(c *fcgiConn) error {
			return c.send(fcgiRecordV(2, fcgiBeginRequest, 1, []byte{0, 1, 1, 0, 0, 0, 0, 0}, 0))
		}},
		{"type-0", func(c *fcgiConn) error { return c.send(begin, fcgiRecordV(1, 0, 1, []byte("abc"), 5)) }},
		{"type-12", func(c *fcgiConn) error { return c.send(begin, fcgiRecordV(1, 12, 1, []byte("abc"), 5)) }},
		{"begin-length-7", func(c *fcgiConn) error {
			return c.send(fcgiRecordV(1, fcgiBeginRequest, 1, []byte{0, 1, 1, 0, 0, 0, 0}, 0))
		}},
		{"stdin-never-begun", func(c *fcgiConn) error { return c.send(fcgiRecord(fcgiStdin, 5, []byte("hello"))) }},
		{"params-never-begun", func(c *fcgiConn) error { return c.send(fcgiRecord(fcgiParams, 9, encodePairs(requestParams("")))) }},
		{"endless-params", func(c *fcgiConn) error {
			// Whole pairs, record after record, 4 MiB and no end.
			if err := c.send(begin); err != nil {
				return err
			}
			for i := range 64 {
				var ps []fcgiParam
				for j := range 60 {
					ps = append(ps, fcgiParam{fmt.Sprintf("HTTP_X_%d_%d", i, j), strings.Repeat("v", 1000)})
				}
				if err := c.send(fcgiRecord(fcgiParams, 1, encodePairs(ps))); err != nil {
					return nil // closed by fcgivisor: checked below
				}
			}
			return nil
		}},
		{"closed-mid-record", func(c *fcgiConn) error {
			rec := fcgiRecord(fcgiParams, 1, encodePairs(requestParams("")))
			if err := c.send(begin, rec[:len(rec)/2]); err != nil {
				return err
			}
			return c.Conn.(*net.UnixConn).CloseWrite()
		}},
		{"closed-mid-header", func(c *fcgiConn) error {
			if err := c.send(begin, half[:3]); err != nil {
				return err
			}
			return c.Conn.(*net.UnixConn).CloseWrite()
		}},
		{"closed-mid-params", func(c *fcgiConn) error {
			// Whole records, but the request's params never end.
			if err := c.send(begin, half[:len(half)-8]); err != nil {
				return err
			}
			return c.Conn.(*net.UnixConn).CloseWrite()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Another client, served meanwhile by the same pool.
			slow := make(chan error, 1)
			go func() {
				res, err := fcgiGet(sock, "sleep=1200")
				slow <- checkAnswer(res, err, 200, "slept 1200\n")
			}()
			time.Sleep(100 * time.Millisecond)
			c := mustDial(t, sock)
			t0 := time.Now()
			if err := tc.bad(c); err != nil {
				t.Fatalf("sending: %v", err)
			}
			if _, err := c.closedErr(3 * time.Second); err != nil {
				t.Errorf("malformed input: the connection was not closed by fcgivisor: %v", err)
			} else {
				t.Logf("closed %v after the bad input started", time.Since(t0).Round(time.Millisecond))
			}
			select {
			case err := <-slow:
				if err != nil {
					t.Errorf("the other client: %v", err)
				}
			case <-time.After(fcgiTimeout):
				t.Errorf("the other client got no answer within %v", fcgiTimeout)
			}
			in.alive(t)
			res, err := fcgiGet(sock, "")
			if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
				t.Errorf("a new client afterwards: %v", err)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 8, 9: answers fcgivisor makes itself

func TestPublicQueueTimeout503(t *testing.T) {
	t.Parallel()
	sock := "unix:" + sockPath(t, "go")
	in := start(t, options{langs: []string{"go"}, noHTTP: true, pool: oneSlot(listenLine(sock), `queue_timeout = "200ms"`)})
	// The socket is open once "fcgivisor running" is logged: no retry.
	busy := mustDial(t, sock)
	if err := busy.send(fcgiRequest(1, 0, requestParams("sleep=1500"), nil)); err != nil {
		t.Fatal(err)
	}
	waitBusySlots(t, in.admin(t), "go", 1, eventTimeout)
	t0 := time.Now()
	res, err := fcgiGet(sock, "")
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	r, perr := parseCGI(res.stdout)
	if !bytes.HasPrefix(res.stdout, []byte("Status: 503")) || perr != nil || res.protoStatus != fcgiRequestComplete {
		t.Fatalf("no slot within queue_timeout: stdout %q, END_REQUEST protocolStatus %d; want \"Status: 503 ...\", 0", res.stdout, res.protoStatus)
	}
	if r.header["status"] != "503 Service Unavailable" || r.header["retry-after"] != "1" || string(r.body) != "Service Unavailable\n" {
		t.Errorf("503 answer %q: want Status: 503 Service Unavailable, Retry-After: 1, body \"Service Unavailable\\n\"", res.stdout)
	}
	if took > 1500*time.Millisecond || took < 150*time.Millisecond {
		t.Errorf("503 after %v, want after queue_timeout 200ms (within ~1 s)", took)
	}
	res, err = busy.readResponse(1, fcgiTimeout)
	if err := checkAnswer(res, err, 200, "slept 1500\n"); err != nil {
		t.Fatalf("the request holding the slot: %v", err)
	}
}

func TestPublicWorkerCrash502(t *testing.T) {
	t.Parallel()
	sock := "unix:" + sockPath(t, "go")
	start(t, options{langs: []string{"go"}, noHTTP: true, pool: func(_ lang, p *poolOpts) { p.extra = append(p.extra, listenLine(sock)) }})
	res, err := fcgiGet(sock, "exit")
	if err != nil {
		t.Fatal(err)
	}
	r, perr := parseCGI(res.stdout)
	if !bytes.HasPrefix(res.stdout, []byte("Status: 502")) || perr != nil || res.protoStatus != fcgiRequestComplete ||
		r.header["status"] != "502 Bad Gateway" || string(r.body) != "Bad Gateway\n" {
		t.Fatalf("a worker crash: stdout %q, END_REQUEST protocolStatus %d; want Status: 502 Bad Gateway, body \"Bad Gateway\\n\", 0", res.stdout, res.protoStatus)
	}
	res, err = fcgiGet(sock, "")
	if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
		t.Fatalf("the request after a crash: %v", err)
	}
}

func TestPublicRequestTimeout504(t *testing.T) {
	t.Parallel()
	sock := "unix:" + sockPath(t, "go")
	start(t, options{langs: []string{"go"}, noHTTP: true, pool: func(_ lang, p *poolOpts) {
		p.extra = append(p.extra, listenLine(sock), `request_timeout = "300ms"`)
	}})
	t0 := time.Now()
	res, err := fcgiGet(sock, "sleep=3000")
	if err != nil {
		t.Fatal(err)
	}
	r, perr := parseCGI(res.stdout)
	if perr != nil || res.protoStatus != fcgiRequestComplete || r.header["status"] != "504 Gateway Timeout" || string(r.body) != "Gateway Timeout\n" {
		t.Fatalf("request_timeout: stdout %q, END_REQUEST protocolStatus %d; want Status: 504 Gateway Timeout, body \"Gateway Timeout\\n\", 0", res.stdout, res.protoStatus)
	}
	if took := time.Since(t0); took > 2*time.Second {
		t.Errorf("504 after %v, want about request_timeout 300ms", took)
	}
}

// SIGTERM: requests in flight on a public socket finish.
func TestPublicGracefulStop(t *testing.T) {
	t.Parallel()
	sock := "unix:" + sockPath(t, "go")
	in := start(t, options{langs: []string{"go"}, noHTTP: true, pool: func(_ lang, p *poolOpts) { p.extra = append(p.extra, listenLine(sock)) }})
	c := mustDial(t, sock)
	if err := c.send(fcgiRequest(1, fcgiKeepConn, requestParams("sleep=700"), nil)); err != nil {
		t.Fatal(err)
	}
	waitBusySlots(t, in.admin(t), "go", 1, eventTimeout)
	in.signal(syscall.SIGTERM)
	res, err := c.readResponse(1, fcgiTimeout)
	if err := checkAnswer(res, err, 200, "slept 700\n"); err != nil {
		t.Fatalf("a request in flight at SIGTERM: %v", err)
	}
	if _, err := c.closedErr(5 * time.Second); err != nil {
		t.Errorf("the kept connection after the stop: %v", err)
	}
	in.checkExit(t)
}

// ---------------------------------------------------------------------------
// 10: socket mode, owner, group

func TestPublicSocketPerm(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	os.Chmod(dir, 0o755) // fcgivisor may run as another user (hack/test-unprivileged.sh)
	set := filepath.Join(dir, "go.sock")
	def := filepath.Join(dir, "def.sock")
	lines := []string{listenLine("unix:" + set), `listen_mode = "0640"`}
	wantUID, wantGID := os.Geteuid(), os.Getegid()
	if os.Geteuid() == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Fatal("no user nobody (every Debian system has one: base-passwd): ", err)
		}
		g, err := user.LookupGroup("nogroup")
		if err != nil {
			if g, err = user.LookupGroupId(nobody.Gid); err != nil {
				t.Fatal("no group nogroup, and nobody's group has no name (base-passwd has both): ", err)
			}
		}
		lines = append(lines, `listen_owner = "nobody"`, "listen_group = "+tomlString(g.Name))
		wantUID, _ = strconv.Atoi(nobody.Uid)
		wantGID, _ = strconv.Atoi(g.Gid)
	} else if g, err := user.LookupGroupId(strconv.Itoa(os.Getegid())); err == nil {
		lines = append(lines, "listen_group = "+tomlString(g.Name))
	}
	start(t, options{langs: []string{"go"}, noHTTP: true, pool: func(_ lang, p *poolOpts) { p.extra = append(p.extra, lines...) },
		pools: goPoolTable("def", listenLine("unix:"+def))})
	if mode, uid, gid := sockOwner(t, set); mode != 0o640 || uid != wantUID || gid != wantGID {
		t.Errorf("%s (%q): mode %04o uid %d gid %d, want 0640 uid %d gid %d", set, lines, mode, uid, gid, wantUID, wantGID)
	}
	if mode, uid, gid := sockOwner(t, def); mode != 0o660 || uid != os.Geteuid() || gid != os.Getegid() {
		t.Errorf("%s (defaults): mode %04o uid %d gid %d, want 0660 uid %d gid %d (fcgivisor's)", def, mode, uid, gid, os.Geteuid(), os.Getegid())
	}
	for _, s := range []string{set, def} {
		res, err := fcgiGet("unix:"+s, "")
		if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}

	// check refuses an unknown owner or group, naming the key.
	o := options{langs: []string{"go"}, noHTTP: true, pool: func(_ lang, p *poolOpts) {
		p.extra = append(p.extra, listenLine("unix:"+filepath.Join(dir, "x.sock")), `listen_owner = "no-such-user-fv"`, `listen_group = "no-such-group-fv"`)
	}}
	cfg := filepath.Join(t.TempDir(), "fcgivisor.toml")
	if err := os.WriteFile(cfg, []byte(renderConfig(&o, shortTempDir(t), freePort(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, nil, "", "check", "-c", cfg)
	for _, w := range []string{"pool.go.listen_owner", "no-such-user-fv", "pool.go.listen_group", "no-such-group-fv"} {
		if code != 1 || !strings.Contains(out, w) {
			t.Errorf("fcgivisor check with an unknown listen_owner and listen_group: exit %d, want 1 and %q; output:\n%s", code, w, out)
		}
	}
}

// ---------------------------------------------------------------------------
// 11: TCP and allowed_clients

func TestPublicTCPAllowedClients(t *testing.T) {
	t.Parallel()
	only := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	loop := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	in := start(t, options{langs: []string{"go"}, pool: func(_ lang, p *poolOpts) {
		p.extra = append(p.extra, listenLine(only), `allowed_clients = ["127.0.0.1"]`)
	}, pools: goPoolTable("loop", listenLine(loop))})
	from := func(ip string) *net.Dialer {
		return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	}
	get := func(addr, ip string) (*fcgiConn, *fcgiResult, error) {
		c, err := dialFCGIWith(from(ip), "tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		t.Cleanup(func() { c.Close() })
		if err := c.send(fcgiRequest(1, 0, requestParams(""), nil)); err != nil {
			return c, nil, err
		}
		res, err := c.readResponse(1, fcgiTimeout)
		return c, res, err
	}
	// 127.0.0.2 is loopback but not in allowed_clients: closed, unanswered.
	c, err := dialFCGIWith(from("127.0.0.2"), "tcp", only)
	if err != nil {
		t.Fatalf("dial %s from 127.0.0.2: %v", only, err)
	}
	t.Cleanup(func() { c.Close() })
	c.send(fcgiRequest(1, 0, requestParams(""), nil)) // may fail once closed
	if recs, err := c.closedErr(3 * time.Second); err != nil || len(recs) > 0 {
		t.Errorf("client 127.0.0.2 not in allowed_clients: %v, records %v; want closed without an answer", err, recs)
	}
	rec := in.waitLog(t, "WARN client not in allowed_clients", func(r map[string]any) bool {
		msg, _ := r["msg"].(string)
		return r["level"] == "WARN" && strings.Contains(msg, "client not in allowed_clients")
	})
	if !strings.Contains(fmt.Sprint(rec), "127.0.0.2") {
		t.Errorf("the WARN record does not name the client 127.0.0.2: %v", rec)
	}
	if _, res, err := get(only, "127.0.0.1"); checkAnswer(res, err, 200, "hello from go\n") != nil {
		t.Errorf("client 127.0.0.1 in allowed_clients: %v", checkAnswer(res, err, 200, "hello from go\n"))
	}
	// Empty allowed_clients: loopback clients.
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		if _, res, err := get(loop, ip); checkAnswer(res, err, 200, "hello from go\n") != nil {
			t.Errorf("client %s, allowed_clients empty (loopback): %v", ip, checkAnswer(res, err, 200, "hello from go\n"))
		}
	}
}

// ---------------------------------------------------------------------------
// 12: reloads keep the socket

func TestPublicReloadKeepsSocket(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	sock := "unix:" + filepath.Join(dir, "go.sock")
	extra := "unix:" + filepath.Join(dir, "extra.sock")
	gen := 0
	opts := func(listen string) options {
		g := strconv.Itoa(gen)
		o := options{langs: []string{"go"}, pool: func(_ lang, p *poolOpts) {
			p.workers, p.concurrency = 2, 2
			p.env = map[string]string{"GEN": g}
			p.extra = append(p.extra, listenLine(listen))
		}}
		if extra != "" {
			o.pools = goPoolTable("extra", listenLine(extra))
		}
		return o
	}
	in := start(t, opts(sock))
	fi0, err := os.Stat(strings.TrimPrefix(sock, "unix:"))
	if err != nil {
		t.Fatal(err)
	}

	var ok, connErrs, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dialFCGI(sock)
				if err != nil {
					connErrs.Add(1)
					firstErr.CompareAndSwap(nil, "connect: "+err.Error())
					continue
				}
				query, want := "", "hello from go\n"
				if (n+i)%2 == 0 {
					query, want = "sleep=5", "slept 5\n"
				}
				res, err := c.do(uint16(n%100+1), 0, requestParams(query), nil)
				c.Close()
				if err := checkAnswer(res, err, 200, want); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		})
	}
	reloaded := func(n int) {
		t.Helper()
		if !waitFor(eventTimeout, func() bool { return strings.Count(in.out.String(), `"msg":"reloaded"`) >= n }) {
			t.Fatalf("reload %d was not logged as reloaded within %v", n, eventTimeout)
		}
	}
	for i := range 10 {
		if i%2 == 0 {
			gen++ // a new generation of the pool; odd ones change nothing
		}
		in.rewrite(t, opts(sock))
		in.signal(syscall.SIGHUP)
		reloaded(i + 1)
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if fi, err := os.Stat(strings.TrimPrefix(sock, "unix:")); err != nil || !os.SameFile(fi0, fi) {
		t.Errorf("the socket %s after 10 reloads: %v; want the same socket (inode) as at start", sock, err)
	}
	t.Logf("%d requests ok, %d connect errors, %d failed during 10 reloads", ok.Load(), connErrs.Load(), failed.Load())
	if connErrs.Load() != 0 || failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("during 10 reloads: %d connect errors, %d failed requests, %d ok; want 0, 0, some; first error: %v", connErrs.Load(), failed.Load(), ok.Load(), firstErr.Load())
	}
	if n := strings.Count(in.out.String(), `"new_generation":["go"]`); n != 5 {
		t.Errorf("%d reloads started a new generation of pool go, want 5", n)
	}

	// A changed address: the new one serves, the old one stops accepting.
	moved := "unix:" + filepath.Join(dir, "moved.sock")
	in.rewrite(t, opts(moved))
	in.signal(syscall.SIGHUP)
	reloaded(11)
	res, err := fcgiGet(moved, "")
	if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
		t.Fatalf("the new listen address after the reload: %v", err)
	}
	var dialErr error
	if !waitFor(2*time.Second, func() bool {
		c, err := dialFCGI(sock)
		if err == nil {
			c.Close()
		}
		dialErr = err
		return err != nil
	}) {
		t.Fatalf("the old listen address %s still accepts connections 2 s after the reload that moved it", sock)
	}
	t.Logf("old address after the move: %v", dialErr)

	// A removed pool's socket closes.
	res, err = fcgiGet(extra, "")
	if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
		t.Fatalf("pool extra before its removal: %v", err)
	}
	extra = ""
	in.rewrite(t, opts(moved))
	in.signal(syscall.SIGHUP)
	reloaded(12)
	if !waitFor(2*time.Second, func() bool {
		c, err := dialFCGI("unix:" + filepath.Join(dir, "extra.sock"))
		if err == nil {
			c.Close()
		}
		return err != nil
	}) {
		t.Fatalf("the socket of the removed pool extra still accepts connections 2 s after the reload")
	}
}

// ---------------------------------------------------------------------------
// 13: socket activation

const socketActivate = "/usr/bin/systemd-socket-activate"

// startActivated runs fcgivisor under systemd-socket-activate listening on
// path with the fd named fdname. systemd-socket-activate starts it at the
// first connection: start's readiness request is that connection, and
// is answered only if fcgivisor serves the passed socket.
func startActivated(t *testing.T, o options, path, fdname string) *instance {
	t.Helper()
	if _, err := os.Stat(socketActivate); err != nil {
		t.Fatal("systemd-socket-activate: ", err, " (package systemd; hack/setup.sh installs it)")
	}
	o.noHTTP = true
	o.launcher = []string{socketActivate, "-l", path, "--fdname=" + fdname, "-E", "GORACE=atexit_sleep_ms=50", "--"}
	o.ready = func(in *instance) error {
		if _, err := os.Stat(path); err != nil {
			return err // not listening yet
		}
		res, err := fcgiGet("unix:"+path, "")
		return checkAnswer(res, err, 200, "hello from go\n")
	}
	return start(t, o)
}

func TestPublicSocketActivation(t *testing.T) {
	t.Parallel()
	t.Run("address", func(t *testing.T) {
		t.Parallel()
		path := sockPath(t, "go")
		in := startActivated(t, options{langs: []string{"go"}, pool: func(_ lang, p *poolOpts) {
			p.extra = append(p.extra, listenLine("unix:"+path))
		}}, path, "some-socket-unit")
		res, err := fcgiGet("unix:"+path, "pid")
		if err := checkAnswer(res, err, 200, ""); err != nil {
			t.Fatalf("a second request over the passed socket: %v", err)
		}
		if s := in.out.String(); strings.Contains(s, "matches no") || strings.Contains(s, "address already in use") {
			t.Errorf("fcgivisor did not take the passed socket for pool go:\n%s", s)
		}
	})
	t.Run("fdname", func(t *testing.T) {
		t.Parallel()
		path := sockPath(t, "passed")
		other := sockPath(t, "go")
		in := startActivated(t, options{langs: []string{"go"}, pool: func(_ lang, p *poolOpts) {
			p.extra = append(p.extra, listenLine("unix:"+other))
		}}, path, "go")
		res, err := fcgiGet("unix:"+path, "pid")
		if err := checkAnswer(res, err, 200, ""); err != nil {
			t.Fatalf("a second request over the passed socket named go: %v", err)
		}
		if s := in.out.String(); strings.Contains(s, "matches no") {
			t.Errorf("fcgivisor did not take the socket named go for pool go:\n%s", s)
		}
	})
}

// ---------------------------------------------------------------------------
// 14: idle kept connections, slow clients

func TestPublicIdleTimeout(t *testing.T) {
	t.Parallel()
	sock := "unix:" + sockPath(t, "go")
	in := start(t, options{langs: []string{"go"}, noHTTP: true, http: []string{`idle_timeout = "500ms"`, `send_timeout = "400ms"`},
		pool: oneSlot(listenLine(sock), `queue_timeout = "100ms"`)})
	a := in.admin(t)

	t.Run("idle", func(t *testing.T) {
		c := mustDial(t, sock)
		res, err := c.do(1, fcgiKeepConn, requestParams(""), nil)
		if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
			t.Fatal(err)
		}
		ended := time.Now()
		// The idle kept connection holds no slot...
		waitBusySlots(t, a, "go", 0, time.Second)
		// ... so another client of the one-slot pool is served meanwhile
		// (queue_timeout 100ms: a 503 if the slot were held).
		res, err = fcgiGet(sock, "")
		if err := checkAnswer(res, err, 200, "hello from go\n"); err != nil {
			t.Fatalf("another client while a kept connection idles: %v", err)
		}
		// Still open, unless this machine took most of idle_timeout to
		// get here (the idle time counts from just before END_REQUEST).
		if since := time.Since(ended); since < 300*time.Millisecond {
			if err := c.stillOpen(time.Millisecond); err != nil {
				t.Fatalf("the kept connection %v after its answer: %v", since, err)
			}
		} else {
			t.Logf("the checks took %v: not asserting the connection is still open", since)
		}
		if _, err := c.closedErr(2 * time.Second); err != nil {
			t.Fatalf("an idle kept connection with idle_timeout 500ms: %v", err)
		}
		if took := time.Since(ended); took < 300*time.Millisecond || took > 1500*time.Millisecond {
			t.Errorf("idle kept connection closed %v after its last answer, want about idle_timeout 500ms", took)
		}
	})
	t.Run("stalled-request", func(t *testing.T) {
		// Records of a request stop coming: send_timeout applies.
		c := mustDial(t, sock)
		ps := fcgiStream(fcgiParams, 1, encodePairs(requestParams("")))
		if err := c.send(fcgiBegin(1, fcgiResponder, 0), ps[:len(ps)-8]); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if _, err := c.closedErr(3 * time.Second); err != nil {
			t.Fatalf("a request whose params stop coming, send_timeout 400ms: %v", err)
		}
		if took := time.Since(t0); took < 300*time.Millisecond || took > 1500*time.Millisecond {
			t.Errorf("stalled request closed after %v, want about send_timeout 400ms", took)
		}
	})
}

// ---------------------------------------------------------------------------
// 15: no fd leak

func TestPublicNoFDLeak(t *testing.T) {
	t.Parallel()
	sock := "unix:" + sockPath(t, "go")
	in := start(t, options{langs: []string{"go"}, noHTTP: true, pool: func(_ lang, p *poolOpts) {
		p.workers, p.concurrency = 1, 8
		p.extra = append(p.extra, listenLine(sock))
	}})
	// Warm up: every slot busy at once, so that every worker connection
	// fcgivisor keeps is open before counting.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 8 {
		wg.Go(func() {
			res, err := fcgiGet(sock, "sleep=300")
			if err := checkAnswer(res, err, 200, "slept 300\n"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("warm-up: %v", err)
	default:
	}
	settled := func() int {
		n, err := fdCount(in.pid)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	time.Sleep(100 * time.Millisecond)
	base := settled()
	baseList := fdList(in.pid)

	// 200 requests: plain, kept, aborted, malformed, GET_VALUES.
	kinds := []func() (int, error){
		func() (int, error) { // plain
			res, err := fcgiGet(sock, "")
			return 1, checkAnswer(res, err, 200, "hello from go\n")
		},
		func() (int, error) { // three on one kept connection
			c, err := dialFCGI(sock)
			if err != nil {
				return 0, err
			}
			defer c.Close()
			for i := range 3 {
				res, err := c.do(uint16(i+1), fcgiKeepConn, requestParams("size=5000"), nil)
				if err := checkAnswer(res, err, 200, ""); err != nil {
					return i, err
				}
				if r, _ := parseCGI(res.stdout); len(r.body) != 5000 {
					return i, fmt.Errorf("?size=5000 on a kept connection: %d bytes", len(r.body))
				}
			}
			return 3, nil
		},
		func() (int, error) { // aborted (kept: the abort never meets a closed connection)
			c, err := dialFCGI(sock)
			if err != nil {
				return 0, err
			}
			defer c.Close()
			if err := c.send(fcgiRequest(1, fcgiKeepConn, requestParams("sleep=2000"), nil)); err != nil {
				return 0, err
			}
			time.Sleep(20 * time.Millisecond)
			if err := c.send(fcgiRecord(fcgiAbortRequest, 1, nil)); err != nil {
				return 0, err
			}
			res, err := c.readResponse(1, fcgiTimeout)
			if err == nil && res.protoStatus != fcgiRequestComplete {
				err = fmt.Errorf("aborted: protocolStatus %d", res.protoStatus)
			}
			return 1, err
		},
		func() (int, error) { // malformed
			c, err := dialFCGI(sock)
			if err != nil {
				return 0, err
			}
			defer c.Close()
			c.send(fcgiRecordV(3, fcgiBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0}, 0))
			_, err = c.closedErr(3 * time.Second)
			return 1, err
		},
		func() (int, error) { // GET_VALUES, then the client closes
			c, err := dialFCGI(sock)
			if err != nil {
				return 0, err
			}
			defer c.Close()
			if err := c.send(fcgiRecord(fcgiGetValues, 0, encodePairs([]fcgiParam{{"FCGI_MAX_REQS", ""}}))); err != nil {
				return 0, err
			}
			rec, err := c.readRecord(fcgiTimeout)
			if err == nil && rec.typ != fcgiGetValuesResult {
				err = fmt.Errorf("GET_VALUES: %v", rec)
			}
			return 1, err
		},
	}
	var done, next atomic.Int64
	var firstErr atomic.Value
	for range 6 {
		wg.Go(func() {
			for done.Load() < 200 {
				k := kinds[int(next.Add(1))%len(kinds)]
				n, err := k()
				done.Add(int64(n))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		t.Fatalf("load: %v", err)
	}
	const slack = 2
	var after int
	if !waitFor(5*time.Second, func() bool { after = settled(); return after <= base+slack }) {
		t.Errorf("fcgivisor has %d fds after %d requests over the public socket, %d before (slack %d): a leak\nbefore: %s\nafter: %s",
			after, done.Load(), base, slack, baseList, fdList(in.pid))
	}
}
