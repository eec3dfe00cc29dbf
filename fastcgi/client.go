// This file implements the client: one RESPONDER request at a time on a
// connection, its STDIN written by a goroutine while STDOUT is read.

package fastcgi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fcgivisor/fcgivisor/internal/rawio"
)

// reqID is the request ID of every request: a Conn carries one at a time,
// and ID 0 is taken by management records.
const reqID uint16 = 1

// stdinBufLen holds one STDIN record: header, the largest content, padding.
const stdinBufLen = headerLen + maxContent + 7

// ErrRequestBody is wrapped, together with the body's own error, by the error
// of a request abandoned because reading Request.Body failed. The connection
// is closed at once then: a truncated STDIN stream must not reach the
// application as a complete one.
var ErrRequestBody = errors.New("fastcgi: reading request body")

// Param is one FastCGI name-value pair, sent in order.
type Param struct{ Name, Value string }

// Request is one RESPONDER request.
type Request struct {
	Params []Param
	// Body is streamed as FCGI_STDIN while the response is read; nil = empty
	// (a nil Body is sent with the params, without starting a goroutine).
	Body io.Reader
	// KeepConn sets FCGI_KEEP_CONN: the connection stays open after the response.
	KeepConn bool
	// Stderr, when set, receives the content of each FCGI_STDERR record (the
	// slice is only valid during the call). It is called from Do or Read, on
	// the caller's goroutine.
	Stderr func(p []byte)
}

// ProtocolStatusError reports an END_REQUEST whose protocolStatus refused the
// request: StatusCantMpxConn, StatusOverloaded or StatusUnknownRole. The
// application did not process the request.
type ProtocolStatusError struct{ Status uint8 }

func (e *ProtocolStatusError) Error() string {
	const prefix = "fastcgi: application refused the request: "
	switch e.Status {
	case StatusCantMpxConn:
		return prefix + "FCGI_CANT_MPX_CONN (it takes one request per connection at a time)"
	case StatusOverloaded:
		return prefix + "FCGI_OVERLOADED"
	case StatusUnknownRole:
		return prefix + "FCGI_UNKNOWN_ROLE (it does not implement the RESPONDER role)"
	}
	return fmt.Sprintf("%sprotocolStatus %d", prefix, e.Status)
}

// Conn is one client connection to a FastCGI application; one request at a
// time (request ID 1). Do, the Response's methods and Closed must be called
// from one goroutine at a time; Close and NetConn from any.
type Conn struct {
	nc net.Conn
	rr recordReader

	wbuf   []byte // the request head, then one STDIN record at a time
	ibuf   []byte // a short body sent with the head (inlineBody)
	params []byte // the PARAMS stream content
	ebuf   []byte // the content of one STDERR record

	cur *Response // the request in flight, until its Response is closed

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

// NewConn returns a Conn speaking FastCGI over nc, which it owns from now on.
func NewConn(nc net.Conn) *Conn {
	nc = rawio.Wrap(nc)
	c := &Conn{nc: nc}
	c.rr.br = bufio.NewReaderSize(nc, 16<<10)
	return c
}

// NetConn returns the underlying connection, for deadlines and addresses.
// Reading or writing it directly breaks the Conn.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection. A Do or Read blocked on it returns an error.
// Close may be called from any goroutine, more than once; later calls return
// the first one's result.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.closeErr = c.nc.Close()
	})
	return c.closeErr
}

// Closed reports whether the connection can no longer carry a request: it
// was closed here, or the peer has closed or reset it, or the peer sent
// bytes that no request asked for. It does not block and consumes nothing:
// a non-blocking MSG_PEEK recv on a Unix or TCP connection. For other
// connection types it only knows about Close. Call it between requests,
// before reusing a kept connection, never while a request is in flight.
func (c *Conn) Closed() bool {
	if c.closed.Load() {
		return true
	}
	if c.cur != nil {
		return false
	}
	if c.rr.br.Buffered() > 0 {
		return true // bytes after the last END_REQUEST
	}
	sc, ok := c.nc.(syscall.Conn) // a Unix or TCP connection (internal/rawio)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EINTR {
				continue
			}
			// EAGAIN: open and quiet. Anything else is unusable: EOF
			// (no error, 0 bytes), an error such as ECONNRESET, or
			// unasked-for data.
			closed = err != syscall.EAGAIN
			return true
		}
	})
	return err != nil || closed
}

// Usable reports, without a system call, whether the connection may carry
// another request as far as this side knows: it was not closed here, and
// no bytes came after the last response. (Whether the peer closed it, only
// the next write or a Closed peek tells.) Call it between requests.
func (c *Conn) Usable() bool {
	return !c.closed.Load() && c.cur == nil && c.rr.br.Buffered() == 0
}

// Response streams the application's STDOUT. Read it to io.EOF, then Close
// it to learn whether the Conn can carry another request.
type Response struct {
	c        *Conn
	keepConn bool
	stderr   func([]byte)

	stdoutEnded bool
	// err is set once the exchange is over: io.EOF after END_REQUEST with
	// REQUEST_COMPLETE, else what went wrong. Read returns it from then on.
	err       error
	appStatus uint32

	// The stdin goroutine: stdinDone is nil when none was started, else
	// closed when it ends, after it has set stdinErr. bodyErr is set as soon
	// as reading the body fails, before the goroutine closes the connection,
	// so that a Read failing on that closed connection reports the cause.
	stdinDone chan struct{}
	stdinErr  error
	bodyErr   atomic.Pointer[error]

	closed   bool
	reusable bool
	// mayLeave: the request did not go out in one write of at most
	// oneRead bytes, so the application may have left part of it unread:
	// the connection is not reused (see oneRead).
	mayLeave bool
}

// Do sends a RESPONDER request and returns once the application has started
// to answer: the first STDOUT or END_REQUEST record has arrived (STDERR
// records before it have gone to req.Stderr). req.Body is streamed as STDIN
// by a goroutine while Do and then Response.Read read the answer; the
// Response's Close joins it.
//
// Do returns an error and a nil Response when nothing was received from the
// application: the request could not be written, or the connection was
// closed, reset or timed out before any response byte. The error wraps the
// cause (io.EOF, syscall.ECONNRESET, syscall.EPIPE, net.ErrClosed,
// os.ErrDeadlineExceeded, ErrRequestBody, ...); by then the connection is
// closed and the stdin goroutine has ended. If Request.Body blocks in Read,
// Do and Close wait for it: bound it with its own deadline. (Two mistakes
// are refused without touching the connection: a param name or value over
// 2 GiB, and a Do before the previous Response was closed.)
func (c *Conn) Do(req *Request) (*Response, error) {
	if c.cur != nil {
		return nil, errors.New("fastcgi: Do called before the previous Response was closed")
	}
	var err error
	c.params, err = appendParams(c.params[:0], req.Params)
	if err != nil {
		return nil, err
	}
	var flags uint8
	if req.KeepConn {
		flags = flagKeepConn
	}
	head := appendBeginRequest(c.wbuf[:0], reqID, roleResponder, flags)
	head = appendStream(head, typeParams, reqID, c.params)
	body, err := c.inlineBody(req.Body, len(head))
	if err != nil {
		return nil, err
	}
	if body == nil {
		head = appendStream(head, typeStdin, reqID, c.ibuf)
	}
	c.wbuf = head

	r := &Response{c: c, keepConn: req.KeepConn, stderr: req.Stderr, mayLeave: body != nil || len(head) > oneRead}
	if _, err := c.nc.Write(head); err != nil {
		c.Close()
		return nil, fmt.Errorf("fastcgi: sending request: %w", err)
	}
	c.cur = r
	if body != nil {
		if cap(c.wbuf) < stdinBufLen {
			c.wbuf = make([]byte, stdinBufLen)
		}
		r.stdinDone = make(chan struct{})
		go r.sendStdin(body, c.wbuf[:stdinBufLen])
	}

	start := c.rr.n
	if err := r.fill(); err != nil {
		if c.rr.n == start {
			// Nothing came back from the application. The connection is
			// of no further use, and the goroutine must end before Do
			// returns: close first, which unblocks its writes.
			c.Close()
			r.joinStdin()
			r.closed = true
			c.cur = nil
			if b := r.bodyErr.Load(); b != nil {
				return nil, *b
			}
			return nil, fmt.Errorf("fastcgi: no response: %w", err)
		}
		r.fail(err)
	}
	return r, nil
}

// oneRead is how much libfcgi (C, Perl's FCGI) reads from a connection at
// once, and what a request must fit in to leave a kept connection usable.
// An application that answers without reading all of STDIN (a GET handler
// sent a POST) leaves the rest in the connection, and libfcgi reads it at
// its next accept as the start of the next request: a protocol error, on
// which it drains the connection, our next request with it, and closes it
// unanswered. So a kept connection is reused only after a request that
// went out in one write of at most oneRead bytes, empty STDIN record
// included: libfcgi's first read takes all of it and drops what the
// application did not read with the request. (php-cgi reads what is left
// of the body itself at the end of a request, and skips an empty STDIN
// record before the next one; Go's net/http/fcgi reads every record.)
// After any other request the connection is closed and the next one dials
// anew: a connect per large POST.
const oneRead = 8 << 10

// inlineBody reads body into c.ibuf when the request can go out in one
// write of at most oneRead bytes with a head of headLen bytes: when body is
// nil or says its length (Len, as bytes.Reader) and it fits. It returns
// nil then, else body, which is streamed. A failed read is ErrRequestBody.
func (c *Conn) inlineBody(body io.Reader, headLen int) (io.Reader, error) {
	c.ibuf = c.ibuf[:0]
	if body == nil {
		return nil, nil
	}
	lb, ok := body.(interface{ Len() int })
	if !ok {
		return body, nil
	}
	n := lb.Len()
	if n < 0 || headLen+2*headerLen+n+padLen(n) > oneRead {
		return body, nil
	}
	if cap(c.ibuf) < n {
		c.ibuf = make([]byte, n, oneRead)
	}
	c.ibuf = c.ibuf[:n]
	if _, err := io.ReadFull(body, c.ibuf); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRequestBody, err)
	}
	return nil, nil
}

// sendStdin writes body as the STDIN stream, reading it into buf one record
// at a time, and then the empty record that ends the stream. It runs on its
// own goroutine, owned by the Response.
func (r *Response) sendStdin(body io.Reader, buf []byte) {
	defer close(r.stdinDone)
	r.stdinErr = r.writeStdin(body, buf)
}

func (r *Response) writeStdin(body io.Reader, buf []byte) error {
	nc := r.c.nc
	for {
		n, err := body.Read(buf[headerLen : headerLen+maxContent])
		if n > 0 {
			if _, werr := nc.Write(putHeader(buf, typeStdin, reqID, n)); werr != nil {
				return fmt.Errorf("fastcgi: sending request body: %w", werr)
			}
		}
		if err == io.EOF {
			if _, werr := nc.Write(putHeader(buf, typeStdin, reqID, 0)); werr != nil {
				return fmt.Errorf("fastcgi: sending request body: %w", werr)
			}
			return nil
		}
		if err != nil {
			berr := fmt.Errorf("%w: %w", ErrRequestBody, err)
			r.bodyErr.Store(&berr)
			// Ending STDIN early would hand the application a short body as
			// if it were whole; closing makes it see a broken request.
			r.c.Close()
			return berr
		}
	}
}

// joinStdin waits for the stdin goroutine to end, if one was started.
func (r *Response) joinStdin() {
	if r.stdinDone != nil {
		<-r.stdinDone
	}
}

// fill reads records until STDOUT content is waiting to be read or the
// exchange is over (r.err set by END_REQUEST). STDERR records go to
// r.stderr, management records are skipped. It returns the raw error of a
// failed read or a protocol error; fail turns that into r.err.
func (r *Response) fill() error {
	rr := &r.c.rr
	for r.err == nil {
		if rr.h.typ == typeStdout && rr.left > 0 {
			return nil
		}
		// next skips what is left of the record before: content of
		// management records, or of STDERR records nobody asked for.
		h, err := rr.next()
		if err != nil {
			return err
		}
		if h.id == 0 {
			// Management records (spec section 4.2) may come at any time;
			// we send no GET_VALUES, so their content is of no use.
			if h.typ == typeGetValuesResult || h.typ == typeUnknownType {
				continue
			}
			return protocolError("%v record with request ID 0", h.typ)
		}
		if h.id != reqID {
			return protocolError("%v record for request ID %d, want %d", h.typ, h.id, reqID)
		}
		switch h.typ {
		case typeStdout:
			if h.contentLength == 0 {
				r.stdoutEnded = true
			} else if r.stdoutEnded {
				return protocolError("STDOUT record after the end of the STDOUT stream")
			}
		case typeStderr:
			if err := r.readStderr(int(h.contentLength)); err != nil {
				return err
			}
		case typeEndRequest:
			if err := r.endRequest(h); err != nil {
				return err
			}
		default:
			return protocolError("unexpected %v record from the application", h.typ)
		}
	}
	return nil
}

// readStderr reads the content of the current STDERR record, n bytes, and
// hands it to r.stderr.
func (r *Response) readStderr(n int) error {
	if n == 0 {
		return nil // the end of the STDERR stream, or nothing
	}
	if r.stderr == nil {
		return nil // the next call of next skips the content
	}
	c := r.c
	if cap(c.ebuf) < n {
		c.ebuf = make([]byte, n, max(n, 512))
	}
	b := c.ebuf[:n]
	if _, err := io.ReadFull(&c.rr, b); err != nil {
		return err
	}
	r.stderr(b)
	return nil
}

// endRequest reads the END_REQUEST record whose header is h, padding
// included, and ends the exchange.
func (r *Response) endRequest(h header) error {
	rr := &r.c.rr
	if h.contentLength != 8 {
		return protocolError("END_REQUEST with %d content bytes, want 8", h.contentLength)
	}
	// The content, appStatusB3..B0 protocolStatus reserved[3], goes where
	// the header was read: that is decoded already, and a local array
	// would escape to the heap through io.ReadFull.
	b := rr.hbuf[:]
	if _, err := io.ReadFull(rr, b); err != nil {
		return err
	}
	if err := rr.skip(); err != nil {
		return err
	}
	r.appStatus = binary.BigEndian.Uint32(b[:4])
	switch st := b[4]; st {
	case statusRequestComplete:
		r.err = io.EOF
	case StatusCantMpxConn, StatusOverloaded, StatusUnknownRole:
		r.err = &ProtocolStatusError{Status: st}
	default:
		return protocolError("END_REQUEST with undefined protocolStatus %d", st)
	}
	return nil
}

// fail ends the exchange with the error err from fill or a content read, and
// closes the connection, which also unblocks the stdin goroutine.
func (r *Response) fail(err error) {
	switch {
	case errors.Is(err, ErrProtocol):
	case r.bodyErr.Load() != nil:
		err = *r.bodyErr.Load()
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("fastcgi: connection closed before END_REQUEST: %w", io.ErrUnexpectedEOF)
	default:
		err = fmt.Errorf("fastcgi: reading response: %w", err)
	}
	r.err = err
	r.c.Close()
}

// Read reads STDOUT content. STDERR records go to Request.Stderr as they
// arrive. It returns io.EOF after END_REQUEST with REQUEST_COMPLETE, a
// *ProtocolStatusError when END_REQUEST refused the request, an error
// wrapping ErrProtocol for bytes that are not valid FastCGI, and an error
// wrapping io.ErrUnexpectedEOF if the connection ends before END_REQUEST.
func (r *Response) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := r.fill(); err != nil {
		r.fail(err)
		return 0, r.err
	}
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.c.rr.Read(p)
	if err != nil {
		r.fail(err)
		if n == 0 {
			return 0, r.err
		}
	}
	return n, nil
}

// Buffered reports how many bytes of the answer have arrived and were not
// yet returned by Read, without blocking; a response that is over reports 1
// (the next Read returns at once). A caller streaming to a client flushes
// when it is 0: nothing more is there yet.
func (r *Response) Buffered() int {
	if r.err != nil {
		return 1
	}
	rr := &r.c.rr
	n := rr.br.Buffered()
	if rr.left == 0 {
		// The padding of the record just read is not answer: libfcgi,
		// PHP and Go's net/http/fcgi pad every record to 8 bytes, and a
		// worker that wrote a chunk and paused would not be flushed.
		n -= min(n, rr.pad)
	}
	return n
}

// AppStatus is END_REQUEST's appStatus, valid after Read returned io.EOF
// (or a *ProtocolStatusError). For a CGI-like application it is the exit
// status.
func (r *Response) AppStatus() uint32 { return r.appStatus }

// Close finishes the exchange and reports whether the Conn can carry another
// request: only if KeepConn was set, END_REQUEST with REQUEST_COMPLETE was
// read, and the whole STDIN stream was written without error. Otherwise it
// closes the Conn. Either way the stdin goroutine has ended when Close
// returns. Close is idempotent; it must not run concurrently with Read (use
// Conn.Close to interrupt a Read).
//
// An application may answer without reading all of STDIN. If the stdin
// goroutine is still running after END_REQUEST, Close sets a write deadline
// in the past: a write that has completed stands, and a blocked one fails,
// which makes the Conn not reusable. When the Conn stays reusable after
// that, its write deadline is left cleared.
func (r *Response) Close() (reusable bool) {
	if r.closed {
		return r.reusable
	}
	r.closed = true
	c := r.c
	ok := r.err == io.EOF && r.keepConn
	if ok && r.stdinDone != nil {
		select {
		case <-r.stdinDone:
		default:
			if err := c.nc.SetWriteDeadline(time.Unix(1, 0)); err != nil {
				ok = false
				c.Close()
			}
			<-r.stdinDone
			if ok && r.stdinErr == nil {
				ok = c.nc.SetWriteDeadline(time.Time{}) == nil
			}
		}
	}
	if !ok {
		c.Close()
		r.joinStdin()
	}
	if r.stdinErr != nil || ok && r.mayLeave {
		ok = false
		c.Close()
	}
	if r.err == nil {
		r.err = errors.New("fastcgi: Read after Response.Close")
	}
	c.cur = nil
	r.reusable = ok
	return ok
}
