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
)

// maxResponseHeader bounds the CGI response header block a program may send.
const maxResponseHeader = 64 << 10

// errBadResponse marks a response header block that is not valid CGI.
var errBadResponse = errors.New("malformed CGI response header")

// readCGIResponse reads the header block of a CGI-style response, shared
// by FastCGI workers and one-shot CGI programs (RFC 3875 section 6), from r
// through br into h, and returns the status: Status sets it (first three
// digits); Location without Status is a 302; neither is 200. Hop-by-hop
// headers are dropped. The body follows in br. On error h may hold part of
// the headers: clear it before answering.
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
	var long []byte // a line longer than br's buffer, assembled
	seen := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, line...)
			continue
		}
		if long != nil {
			line = append(long, line...)
			long = nil
		}
		if err != nil {
			switch {
			case lr.N <= 0:
				return 0, false, fmt.Errorf("%w: header block over %d bytes", errBadResponse, maxResponseHeader)
			case !errors.Is(err, io.EOF):
				return 0, false, err
			case !seen && len(line) == 0:
				return 0, false, fmt.Errorf("%w: empty response: %w", errBadResponse, io.ErrUnexpectedEOF)
			}
			// EOF ends the header block: a response without a body.
		}
		seen = true
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 || line[0] == ' ' || line[0] == '\t' || bytes.ContainsAny(line[:i], " \t") {
			return 0, false, fmt.Errorf("%w: bad header line %.80q", errBadResponse, line)
		}
		k := textproto.CanonicalMIMEHeaderKey(string(line[:i]))
		h[k] = append(h[k], string(bytes.TrimSpace(line[i+1:])))
		if err != nil {
			break
		}
	}
	lr.N = 1<<63 - 1
	status = http.StatusOK
	if v := h["Status"]; len(v) > 0 {
		s := strings.TrimSpace(v[0])
		code, err := strconv.Atoi(s[:min(3, len(s))])
		if err != nil || code < 100 || code > 999 {
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

var hopByHop = []string{"Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection", "Te", "Trailer"}

// copyBody streams the body to w, flushing whenever nothing more has
// arrived yet (pending returns 0), so that streaming responses reach the
// client as written while a response that arrived whole goes out in one
// write, with a Content-Length when small.
func copyBody(w http.ResponseWriter, br *bufio.Reader, pending func() int, buf []byte) (written int64, readErr, writeErr error) {
	rc := http.NewResponseController(w)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
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
