package front

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits of the CGI response header block a FastCGI worker or a CGI
// program sends, as nginx's fastcgi_buffer_size (4 or 8 KiB there) bounds
// it ("upstream sent too big header": 502). A program over either gets
// 502, and the front reads no more of its answer: what a hostile or
// looping program makes the front hold per request is the block's bytes
// plus one map entry per line, about 200 KiB at most. (Without a line
// limit, 64 KiB of "a:" lines cost 1.7 MiB of header map.)
const (
	// maxResponseHeader bounds the whole block in bytes: every line with
	// its line end, and the empty line that ends it.
	maxResponseHeader = 64 << 10
	// maxResponseHeaderLines bounds its header lines.
	maxResponseHeaderLines = 1000
)

// errBadResponse marks a response header block that is not valid CGI.
var errBadResponse = errors.New("malformed CGI response header")

// readCGIResponse reads the header block of a CGI-style response, shared
// by FastCGI workers and one-shot CGI programs (RFC 3875 section 6), from r
// through br into h, and returns the status: Status sets it (first three
// digits); Location without Status is a 302; neither is 200. Hop-by-hop
// headers are dropped. The body follows in br. On error h may hold part of
// the headers: clear it before answering.
//
// What reaches the client is checked, since a worker's header goes out
// as it is (Go's server only turns CR and LF in values into spaces, and
// drops names that are not tokens): a name must be an RFC 9110 token, a
// value must hold no control character but HTAB (so no NUL, CR or LF),
// Content-Length must appear at most once and be digits only (two values,
// or "+5", could make a proxy in front and the client disagree on where
// the response ends), and Status must not be 101 (Go would send it as
// final and keep reading the connection as HTTP). Anything else is
// errBadResponse, answered 502 as nginx answers "upstream sent invalid
// header".
func readCGIResponse(r io.Reader, br *bufio.Reader, h http.Header) (status int, err error) {
	status, _, err = readCGIHeader(r, br, h)
	return status, err
}

// readCGIHeader is readCGIResponse that also reports whether the status
// came from a Status header (explicit): a path-only Location without one
// is a local redirect for a CGI program (RFC 3875 6.2.2).
func readCGIHeader(r io.Reader, br *bufio.Reader, h http.Header) (status int, explicit bool, err error) {
	lr := &io.LimitedReader{R: r, N: maxResponseHeader}
	br.Reset(lr)
	defer func() { lr.N = 1<<63 - 1 }() // the body has no limit
	for n := 0; ; n++ {
		line, last, err := readHeaderLine(br, lr, n == 0)
		if err != nil {
			return 0, false, err
		}
		if len(line) == 0 {
			break
		}
		if n == maxResponseHeaderLines {
			return 0, false, fmt.Errorf("%w: header block over %d lines", errBadResponse, maxResponseHeaderLines)
		}
		if err := addHeaderLine(h, line); err != nil {
			return 0, false, err
		}
		if last {
			break
		}
	}
	return headerStatus(h)
}

// readHeaderLine reads one line of the header block from br, which reads
// from lr, without its line end. last: the output ended with it (a
// response without a body, its block not ended by an empty line).
func readHeaderLine(br *bufio.Reader, lr *io.LimitedReader, first bool) (line []byte, last bool, err error) {
	var long []byte // a line longer than br's buffer, assembled
	for {
		line, err = br.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			break
		}
		long = append(long, line...)
	}
	if long != nil {
		line = append(long, line...)
	}
	if err != nil {
		switch {
		case lr.N <= 0:
			return nil, false, fmt.Errorf("%w: header block over %d bytes", errBadResponse, maxResponseHeader)
		case !errors.Is(err, io.EOF):
			return nil, false, err
		case first && len(line) == 0:
			return nil, false, fmt.Errorf("%w: empty response: %w", errBadResponse, io.ErrUnexpectedEOF)
		}
		last = true // EOF ends the header block
	}
	return bytes.TrimRight(line, "\r\n"), last, nil
}

// addHeaderLine adds one "Name: value" line to h.
func addHeaderLine(h http.Header, line []byte) error {
	i := bytes.IndexByte(line, ':')
	if i <= 0 || !validHeaderName(line[:i]) {
		return fmt.Errorf("%w: bad header line %.80q", errBadResponse, line)
	}
	v := bytes.Trim(line[i+1:], " \t")
	if !validHeaderValue(v) {
		return fmt.Errorf("%w: control character in header line %.80q", errBadResponse, line)
	}
	k, ok := commonHeaders[string(line[:i])] // no allocation for the lookup
	if !ok {
		k = textproto.CanonicalMIMEHeaderKey(string(line[:i]))
	}
	h[k] = append(h[k], string(v))
	return nil
}

// commonHeaders maps the header names applications send most, as they
// spell them (PHP: "Content-type"), to their canonical form, so that
// parsing them allocates no key.
var commonHeaders = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Status", "Content-Type", "Content-type", "Content-Length", "Location",
		"Set-Cookie", "Cache-Control", "Expires", "Pragma", "Last-Modified",
		"ETag", "Etag", "Vary", "Content-Encoding", "Content-Disposition",
		"X-Powered-By", "X-Frame-Options", "X-Content-Type-Options",
	} {
		m[k] = textproto.CanonicalMIMEHeaderKey(k)
	}
	return m
}()

// headerStatus checks the parsed block h, takes Status out of it, drops the
// hop-by-hop headers and returns the status.
func headerStatus(h http.Header) (status int, explicit bool, err error) {
	if cl := h["Content-Length"]; len(cl) > 1 || len(cl) == 1 && !allDigits(cl[0]) {
		return 0, false, fmt.Errorf("%w: bad Content-Length %q (one, digits only)", errBadResponse, cl)
	}
	status = http.StatusOK
	if v := h["Status"]; len(v) > 0 {
		s := v[0]
		code, err := strconv.Atoi(s[:min(3, len(s))])
		if err != nil || code < 100 || code > 999 || code == http.StatusSwitchingProtocols {
			return 0, false, fmt.Errorf("%w: bad Status %q", errBadResponse, v[0])
		}
		status, explicit = code, true
		delete(h, "Status")
	} else if len(h["Location"]) > 0 {
		status = http.StatusFound
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
	return status, explicit, nil
}

// validHeaderName: an RFC 9110 token.
func validHeaderName(b []byte) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0:
			return false
		}
	}
	return len(b) > 0
}

// validHeaderValue: no control character but HTAB (RFC 9110 field-value;
// bytes from 0x80, obs-text, are allowed).
func validHeaderValue(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

var hopByHop = []string{"Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection", "Te", "Trailer"}

// copyBufs holds copyBody's 64 KiB buffers, taken only by a body that
// outgrows the reader's own buffer: the many small answers in flight hold
// the reader's 8 KiB each, not 72 (front RSS under load, bench/README.md).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// copyBody streams the body to w, flushing whenever nothing more has
// arrived yet (pending returns 0), so that streaming responses reach the
// client as written while a response that arrived whole goes out in one
// write, with a Content-Length when small. What br holds goes out from
// its buffer; once br has had to read from its source, a large body, the
// rest goes through a 64 KiB buffer from copyBufs.
//
// send (http.send_timeout; 0: none) bounds the write and flush of each
// piece, as nginx's send_timeout: a client that stops reading gets a write
// error after it, so that the worker slot or CGI place it holds is freed.
// The last deadline stays set for what net/http writes once the handler
// returns (the end of a chunked body), and net/http clears it after that
// (server.go, after finishRequest), so the next request on the connection
// starts without one.
func copyBody(w http.ResponseWriter, br *bufio.Reader, pending func() int, send time.Duration) (written int64, readErr, writeErr error) {
	rc := http.NewResponseController(w)
	var big *[]byte
	defer func() {
		if big != nil {
			copyBufs.Put(big)
		}
	}()
	filled := false // br has read from its source
	for {
		var chunk []byte // br's buffered bytes, or what was read into big
		var err error
		fromBr := big == nil && (br.Buffered() > 0 || !filled)
		if fromBr {
			if br.Buffered() == 0 {
				filled = true
				_, err = br.Peek(1)
			}
			chunk, _ = br.Peek(br.Buffered())
		} else {
			if big == nil {
				big = copyBufs.Get().(*[]byte)
			}
			var n int
			n, err = br.Read(*big)
			chunk = (*big)[:n]
		}
		if n := len(chunk); n > 0 {
			if send > 0 {
				rc.SetWriteDeadline(time.Now().Add(send)) // unsupported (tests' recorders): no bound
			}
			m, werr := w.Write(chunk)
			written += int64(m)
			if fromBr {
				br.Discard(n)
			}
			if werr != nil {
				return written, nil, werr
			}
			if br.Buffered() == 0 && pending() == 0 {
				if ferr := rc.Flush(); ferr != nil {
					return written, nil, ferr
				}
			}
		}
		if err == io.EOF {
			return written, nil, nil
		}
		if err != nil {
			return written, err, nil
		}
	}
}
