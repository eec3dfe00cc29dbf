package front

import (
	"bufio"
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

// cgiResponse is the parsed header block of a CGI-style response, shared by
// FastCGI workers and one-shot CGI programs (RFC 3875 section 6).
type cgiResponse struct {
	status int
	header http.Header
	body   *bufio.Reader // the rest of the stream: the body
}

// readCGIResponse reads the header block from r. Status sets the code
// (first three digits); Location without Status is a 302; no Status and no
// Location is 200. Hop-by-hop headers are dropped.
func readCGIResponse(r io.Reader, br *bufio.Reader) (*cgiResponse, error) {
	lr := &io.LimitedReader{R: r, N: maxResponseHeader}
	br.Reset(lr)
	mh, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		if lr.N <= 0 {
			return nil, fmt.Errorf("%w: header block over %d bytes", errBadResponse, maxResponseHeader)
		}
		if errors.Is(err, io.EOF) && len(mh) == 0 {
			return nil, fmt.Errorf("%w: empty response: %w", errBadResponse, io.ErrUnexpectedEOF)
		}
		var pe textproto.ProtocolError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%w: %w", errBadResponse, err)
		}
		if !errors.Is(err, io.EOF) {
			return nil, err
		}
		// Headers ended by EOF with no blank line: a body-less response.
	}
	lr.N = 1<<63 - 1
	h := http.Header(mh)
	resp := &cgiResponse{status: http.StatusOK, header: h, body: br}
	if s := h.Get("Status"); s != "" {
		code, err := strconv.Atoi(strings.TrimSpace(s)[:min(3, len(strings.TrimSpace(s)))])
		if err != nil || code < 100 || code > 999 {
			return nil, fmt.Errorf("%w: bad Status %q", errBadResponse, s)
		}
		resp.status = code
		h.Del("Status")
	} else if h.Get("Location") != "" {
		resp.status = http.StatusFound
	}
	for _, k := range []string{"Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection", "Te", "Trailer"} {
		h.Del(k)
	}
	return resp, nil
}

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
