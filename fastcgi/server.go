// This file implements the application side of a FastCGI connection, for
// fcgivisor's public sockets: a web server (nginx, Apache, Caddy, ...)
// connects, sends requests, and a Handler answers each one.
//
// One request at a time per connection (FCGI_MPXS_CONNS 0). The
// connection's goroutine (ServerConn.Serve's) reads every record; a
// request's Handler runs on a goroutine of its own from the end of its
// PARAMS stream, reading STDIN through a pipe that the reader fills, so
// that the reader still sees FCGI_ABORT_REQUEST and the client going away
// while the request runs. Writes (the handler's STDOUT, the reader's
// management answers) share one lock.

package fastcgi

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fcgivisor/fcgivisor/internal/rawio"
)

// MaxParamsBytes bounds the PARAMS stream of one request on a
// ServerConn: a client that sends more (endless params) is cut off.
const MaxParamsBytes = 1 << 20

// ErrAborted is the cause of a request's context when the client sent
// FCGI_ABORT_REQUEST for it.
var ErrAborted = errors.New("fastcgi: the client aborted the request (FCGI_ABORT_REQUEST)")

// ErrClientGone is the cause of a request's context when the client's
// connection ended, or failed, while the request ran.
var ErrClientGone = errors.New("fastcgi: the client connection ended during the request")

// errBodyUnread is what the reader's pipe write gets once the handler
// has returned without reading all of STDIN: the rest is discarded.
var errBodyUnread = errors.New("fastcgi: request body left unread by the handler")

// ServerOptions are a ServerConn's limits and its answer to
// FCGI_GET_VALUES.
type ServerOptions struct {
	// Values answers FCGI_GET_VALUES: the names asked that it holds.
	Values map[string]string
	// IdleTimeout closes a connection that carries no request for that
	// long (0: no limit).
	IdleTimeout time.Duration
	// ReadTimeout bounds the wait for each record of a request being
	// received, from its BEGIN_REQUEST to the end of its STDIN (0: no
	// limit).
	ReadTimeout time.Duration
	// WriteTimeout bounds each write to the client (0: no limit).
	WriteTimeout time.Duration
}

// ServerRequest is one RESPONDER request received from a client.
type ServerRequest struct {
	ID uint16
	// Params are the PARAMS as the client sent them, in order.
	Params []Param
	// KeepConn: the client asked to keep the connection (FCGI_KEEP_CONN).
	KeepConn bool
	// Body reads the STDIN stream. It ends (io.EOF) with the stream; it
	// fails if the connection does. Unread content is discarded once the
	// handler returns.
	Body io.Reader
}

// BodyEmpty reports whether the request's STDIN has already ended with
// nothing left to read (a GET, mostly): the handler can then send its
// worker an empty body without copying one.
func (r *ServerRequest) BodyEmpty() bool {
	p, ok := r.Body.(*bodyPipe)
	return ok && p.empty()
}

// A Handler answers one request by writing its STDOUT to w. ctx is done
// when the client aborts the request (cause ErrAborted), its connection
// ends (ErrClientGone), or the ServerConn's context is. It returns the
// appStatus of END_REQUEST; an error means the answer could not be
// completed: the connection is then closed without END_REQUEST, which
// the client sees as a failed request.
type Handler func(ctx context.Context, w *ResponseWriter, r *ServerRequest) (appStatus uint32, err error)

// ServerConn is the application side of one client connection.
type ServerConn struct {
	nc   net.Conn
	rr   recordReader
	opts ServerOptions

	wmu sync.Mutex // guards writes to nc

	// The reader's own state.
	cur      uint16 // the request begun last (0: none yet)
	flags    uint8
	params   []byte
	paramsIn bool // PARAMS stream ended: the handler runs
	body     *bodyPipe
	cancel   context.CancelCauseFunc
	done     chan struct{} // closed when the handler has returned
	refused  map[uint16]bool
	cbuf     []byte

	// Shared between the reader and the handler.
	smu      sync.Mutex
	busy     bool      // a request is begun and its handler has not returned
	ending   bool      // its handler has returned, its END_REQUEST is being written
	stdinIn  bool      // the current request's STDIN stream has ended
	draining bool      // CloseIdle was called: close when no request runs
	answered int       // requests whose handler has returned
	pipe     *bodyPipe // the body of the request begun last, for Close
	last     []byte    // ResponseWriter.WriteLast's buffer, reused

	// Running a request inline (runInline): the reader may (inline,
	// reader-owned); whether a watcher took the read loop over
	// (handoff); the watcher's end (watched, 1-buffered, made with the
	// ServerConn so that Serve never waits on a nil channel).
	inline  bool
	handoff atomic.Int32
	watched chan error
	closing bool // the connection is to close after this request
}

// NewServerConn returns a ServerConn on nc, which it owns from now on.
func NewServerConn(nc net.Conn, opts ServerOptions) *ServerConn {
	nc = rawio.Wrap(nc)
	c := &ServerConn{nc: nc, opts: opts, watched: make(chan error, 1)}
	c.rr.br = bufio.NewReaderSize(nc, 16<<10)
	return c
}

// CloseIdle makes the connection close as soon as it carries no request:
// at once if it is idle, else after the current request's END_REQUEST.
// It may be called from any goroutine.
func (c *ServerConn) CloseIdle() {
	c.smu.Lock()
	defer c.smu.Unlock()
	c.draining = true
	if !c.busy && !c.ending {
		c.nc.Close()
	}
}

// Idle reports whether the connection is between two requests, after at
// least one: a kept connection the client is not using. It may be called
// from any goroutine.
func (c *ServerConn) Idle() bool {
	c.smu.Lock()
	defer c.smu.Unlock()
	return !c.busy && !c.ending && c.answered > 0
}

// Close closes the connection at once; a request in progress sees its
// context done (ErrClientGone). It may be called from any goroutine.
func (c *ServerConn) Close() {
	c.nc.Close()
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.pipe != nil {
		// A reader waiting for room in the body wakes up, and then
		// fails on the closed connection.
		c.pipe.CloseRead(ErrClientGone)
	}
}

// Serve reads requests from the connection and runs h for each, one at a
// time, until the connection ends; then it waits for the handler of a
// request in progress (its context done) and closes the connection. It
// returns nil when the client or CloseIdle closed the connection between
// requests, else why it ended (an error wrapping ErrProtocol for bytes
// that are not valid FastCGI, a timeout, ...).
func (c *ServerConn) Serve(ctx context.Context, h Handler) error {
	c.inline = true
	err := c.readLoop(ctx, h)
	if err == errHandedOff {
		// A watcher took the read loop over during a request run
		// inline (runInline): its end is the connection's.
		err = <-c.watched
	}
	if c.cancel != nil {
		c.cancel(ErrClientGone)
	}
	if c.body != nil {
		c.body.CloseWrite(io.ErrUnexpectedEOF)
	}
	if c.done != nil {
		<-c.done
	}
	c.nc.Close()
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// readLoop reads and dispatches records until an error ends it.
func (c *ServerConn) readLoop(ctx context.Context, h Handler) error {
	for {
		c.setReadDeadline()
		hd, err := c.rr.next()
		if err != nil {
			return err
		}
		if hd.id == 0 {
			if err := c.management(hd); err != nil {
				return err
			}
			continue
		}
		switch hd.typ {
		case typeBeginRequest:
			err = c.begin(hd)
		case typeParams:
			err = c.paramsRecord(ctx, hd, h)
		case typeStdin:
			err = c.stdinRecord(hd)
		case typeAbortRequest:
			err = c.abort(hd)
		case typeData:
			err = c.check(hd) // a RESPONDER has no DATA: skipped
		default:
			err = protocolError("%v record from the client", hd.typ)
		}
		if err != nil {
			return err
		}
	}
}

// setReadDeadline arms the deadline of the next record: ReadTimeout
// while a request is being received, IdleTimeout while none runs, none
// while the handler runs with all of STDIN in (the handler re-arms it
// when it returns).
func (c *ServerConn) setReadDeadline() {
	c.smu.Lock()
	defer c.smu.Unlock()
	var d time.Duration
	switch {
	case c.cur != 0 && c.paramsIn && !c.stdinIn, c.cur != 0 && !c.paramsIn && c.busy:
		d = c.opts.ReadTimeout
	case !c.busy:
		d = c.opts.IdleTimeout
	}
	if d > 0 {
		c.nc.SetReadDeadline(time.Now().Add(d))
	} else {
		c.nc.SetReadDeadline(time.Time{})
	}
}

// management answers a record with request ID 0.
func (c *ServerConn) management(hd header) error {
	if hd.typ != typeGetValues {
		var body [8]byte // type reserved[7]
		body[0] = byte(hd.typ)
		return c.write(appendRecord(nil, typeUnknownType, 0, body[:]))
	}
	b, err := c.content(hd)
	if err != nil {
		return err
	}
	asked, err := parseParams(nil, b)
	if err != nil {
		return err
	}
	var answer []Param
	for _, p := range asked {
		if v, ok := c.opts.Values[p.Name]; ok {
			answer = append(answer, Param{p.Name, v})
		}
	}
	content, _ := appendParams(nil, answer)
	if len(content) > maxContent {
		return protocolError("GET_VALUES asks for more than one record can answer")
	}
	return c.write(appendRecord(nil, typeGetValuesResult, 0, content))
}

// content reads the whole content of the current record.
func (c *ServerConn) content(hd header) ([]byte, error) {
	if n := int(hd.contentLength); cap(c.cbuf) < n {
		// Grown to the largest record seen, in 4 KiB steps: a connection
		// that only carries GETs keeps a small buffer.
		c.cbuf = make([]byte, n, (n+4095)&^4095)
	}
	b := c.cbuf[:hd.contentLength]
	_, err := io.ReadFull(&c.rr, b)
	return b, unexpectedEOF(err)
}

// begin starts a request, or refuses it when one runs or the role is not
// RESPONDER.
func (c *ServerConn) begin(hd header) error {
	if hd.contentLength != 8 {
		return protocolError("BEGIN_REQUEST with %d content bytes, want 8", hd.contentLength)
	}
	b, err := c.content(hd)
	if err != nil {
		return err
	}
	r := role(binary.BigEndian.Uint16(b[0:2]))
	c.smu.Lock()
	busy := c.busy
	c.smu.Unlock()
	switch {
	case busy && hd.id == c.cur:
		return protocolError("BEGIN_REQUEST for request ID %d, which is in progress", hd.id)
	case busy:
		c.refuse(hd.id)
		return c.endRequest(hd.id, 0, StatusCantMpxConn)
	case r != roleResponder:
		c.refuse(hd.id)
		if err := c.endRequest(hd.id, 0, StatusUnknownRole); err != nil {
			return err
		}
		if b[2]&flagKeepConn == 0 {
			return io.EOF
		}
		return nil
	}
	if c.done != nil {
		// The last handler has returned (busy is false); it may still be
		// closing done.
		<-c.done
	}
	delete(c.refused, hd.id)
	c.cur, c.flags = hd.id, b[2]
	c.params, c.paramsIn = c.params[:0], false
	c.body, c.cancel, c.done = nil, nil, nil
	c.smu.Lock()
	c.busy, c.stdinIn = true, false
	c.closing = c.flags&flagKeepConn == 0
	c.smu.Unlock()
	return nil
}

// refuse remembers a refused request ID, whose records are then skipped.
func (c *ServerConn) refuse(id uint16) {
	if c.refused == nil {
		c.refused = make(map[uint16]bool)
	}
	if len(c.refused) >= 64 {
		clear(c.refused) // a client refused 64 times keeps no more state
	}
	c.refused[id] = true
}

// check decides what a stream or abort record belongs to: nil for the
// current request (or a refused or finished one, whose records are
// skipped), a protocol error for an ID never begun.
func (c *ServerConn) check(hd header) error {
	if hd.id == c.cur || c.refused[hd.id] {
		return nil
	}
	return protocolError("%v record for request ID %d, which was never begun", hd.typ, hd.id)
}

// current reports whether hd belongs to the request being received.
func (c *ServerConn) current(hd header) bool {
	if hd.id != c.cur {
		return false
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.busy
}

// paramsRecord adds a PARAMS record to the stream; its end starts the
// handler.
func (c *ServerConn) paramsRecord(ctx context.Context, hd header, h Handler) error {
	if err := c.check(hd); err != nil || !c.current(hd) {
		return err
	}
	if c.paramsIn {
		return protocolError("PARAMS record after the end of the PARAMS stream")
	}
	if hd.contentLength > 0 {
		if len(c.params)+int(hd.contentLength) > MaxParamsBytes {
			return protocolError("PARAMS stream over %d bytes", MaxParamsBytes)
		}
		b, err := c.content(hd)
		if err != nil {
			return err
		}
		c.params = append(c.params, b...)
		return nil
	}
	params, err := parseParams(nil, c.params)
	if err != nil {
		return err
	}
	c.paramsIn = true
	pipe := newBodyPipe()
	rctx, cancel := context.WithCancelCause(ctx)
	c.body, c.cancel, c.done = pipe, cancel, make(chan struct{})
	req := &ServerRequest{ID: c.cur, Params: params, KeepConn: c.flags&flagKeepConn != 0, Body: pipe}
	c.smu.Lock()
	c.pipe = pipe
	c.smu.Unlock()
	if c.inline && c.stdinEndsHere() {
		c.body.CloseWrite(io.EOF)
		c.body = nil
		c.stdinEnded()
		return c.runInline(ctx, rctx, cancel, h, req, pipe)
	}
	go c.run(rctx, cancel, h, req, pipe, c.done)
	return nil
}

// watchAfter is how long a request run inline goes without a reader of
// its connection: past it a watcher goroutine takes the read loop over,
// so that an FCGI_ABORT_REQUEST or the client going away is seen.
const watchAfter = 10 * time.Millisecond

// errHandedOff: readLoop ends on this goroutine because a watcher took
// it over (runInline).
var errHandedOff = errors.New("fastcgi: the read loop was handed to a watcher")

// stdinEndsHere reports whether the current request's STDIN is the empty
// stream and already read into the buffer (a GET: nginx sends BEGIN,
// PARAMS and the empty STDIN in one write), and if so consumes it.
func (c *ServerConn) stdinEndsHere() bool {
	br := c.rr.br
	if c.rr.left+c.rr.pad != 0 || br.Buffered() < headerLen {
		return false
	}
	b, _ := br.Peek(headerLen)
	var hb [headerLen]byte
	copy(hb[:], b)
	h := decodeHeader(&hb)
	n := headerLen + int(h.paddingLength)
	if h.version != version1 || h.typ != typeStdin || h.id != c.cur || h.contentLength != 0 || br.Buffered() < n {
		return false
	}
	br.Discard(n)
	c.rr.n += int64(n)
	return true
}

// runInline runs a request whose STDIN has ended on the reader's own
// goroutine: no goroutine to start and to wake, which is most of what a
// small request costs here. Meanwhile nobody reads the connection, so a
// request still running after watchAfter hands the read loop to a
// watcher goroutine, for good (its later requests get goroutines of their
// own); Serve then waits for the watcher. It returns nil to go on
// reading here, or errHandedOff.
func (c *ServerConn) runInline(ctx, rctx context.Context, cancel context.CancelCauseFunc, h Handler, req *ServerRequest, pipe *bodyPipe) error {
	c.handoff.Store(handoffInline)
	t := time.AfterFunc(watchAfter, func() {
		if !c.handoff.CompareAndSwap(handoffInline, handoffWatched) {
			return // the request has ended
		}
		// The read loop is the watcher's from here: nothing of the
		// reader's state is touched by the inline request.
		c.inline = false
		go func() {
			err := c.readLoop(ctx, h)
			if c.cancel != nil {
				c.cancel(ErrClientGone) // the inline request, if it still runs
			}
			c.watched <- err
		}()
	})
	c.run(rctx, cancel, h, req, pipe, c.done)
	t.Stop()
	if c.handoff.CompareAndSwap(handoffInline, handoffNone) {
		return nil
	}
	return errHandedOff
}

// handoff states of a request run inline.
const (
	handoffNone    = iota
	handoffInline  // the request runs on the reader's goroutine
	handoffWatched // a watcher goroutine has the read loop
)

// stdinRecord passes STDIN content to the handler through the pipe.
func (c *ServerConn) stdinRecord(hd header) error {
	if err := c.check(hd); err != nil {
		return err
	}
	if hd.id != c.cur || c.body == nil {
		if hd.id == c.cur && !c.paramsIn && c.current(hd) {
			return protocolError("STDIN record before the end of the PARAMS stream")
		}
		return nil // refused or finished: skipped
	}
	if hd.contentLength == 0 {
		c.body.CloseWrite(io.EOF)
		c.body = nil
		c.stdinEnded()
		return nil
	}
	b, err := c.content(hd)
	if err != nil {
		return err
	}
	if _, err := c.body.Write(b); err != nil {
		// The handler returned: the rest of the stream is discarded.
		return nil
	}
	return nil
}

// stdinEnded notes the end of STDIN; with the handler already returned
// the connection is idle, or ends.
func (c *ServerConn) stdinEnded() {
	c.smu.Lock()
	defer c.smu.Unlock()
	c.stdinIn = true
	if !c.busy && !c.ending && (c.closing || c.draining) {
		c.nc.Close()
	}
}

// abort ends the current request on FCGI_ABORT_REQUEST. The rest of its
// STDIN, if the client sends any, is skipped.
func (c *ServerConn) abort(hd header) error {
	if err := c.check(hd); err != nil || !c.current(hd) {
		return err
	}
	if c.cancel != nil {
		c.cancel(ErrAborted)
		if c.body != nil {
			c.body.CloseWrite(ErrAborted)
			c.body = nil
			c.stdinEnded()
		}
		return nil
	}
	// Aborted before its PARAMS ended: nothing ran. END_REQUEST is
	// written while the request is still busy, so that CloseIdle cannot
	// close the connection before it.
	c.refuse(hd.id)
	if err := c.endRequest(hd.id, 0, statusRequestComplete); err != nil {
		return err
	}
	c.smu.Lock()
	c.busy = false
	end := c.closing || c.draining
	c.smu.Unlock()
	if end {
		return io.EOF
	}
	return nil
}

// run is a request's goroutine: the handler, then END_REQUEST.
func (c *ServerConn) run(ctx context.Context, cancel context.CancelCauseFunc, h Handler, req *ServerRequest, body *bodyPipe, done chan struct{}) {
	defer close(done)
	w := &ResponseWriter{c: c, id: req.ID, last: c.last[:0]}
	status, err := h(ctx, w, req)
	cancel(nil)
	body.CloseRead(errBodyUnread)
	c.smu.Lock()
	// Not busy any more: the client may send its next BEGIN_REQUEST as
	// soon as it has END_REQUEST. But until END_REQUEST is written,
	// neither CloseIdle nor the end of STDIN closes the connection (ending):
	// this goroutine does after, if it is to close.
	c.busy, c.ending = false, err == nil
	c.answered++
	end := c.stdinIn && (c.closing || c.draining)
	if err == nil && c.stdinIn && !end && c.opts.IdleTimeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(c.opts.IdleTimeout))
	} else if err == nil && c.stdinIn && !end {
		c.nc.SetReadDeadline(time.Time{})
	}
	c.smu.Unlock()
	if err == nil {
		// WriteLast's bytes, the empty STDOUT record that ends the stream
		// (spec 3.3, 6.2), then END_REQUEST, in one write.
		err = c.end(w, status)
		c.smu.Lock()
		c.ending = false
		end = c.stdinIn && (c.closing || c.draining)
		c.smu.Unlock()
	}
	if err != nil || end {
		c.nc.Close()
	}
}

// end writes what w.WriteLast held, the end of the STDOUT stream and
// END_REQUEST with appStatus, in one write.
func (c *ServerConn) end(w *ResponseWriter, appStatus uint32) error {
	var tail [3*headerLen + 8]byte
	b := tail[:0]
	var hdr, pad []byte
	if n := len(w.last); n > 0 {
		hdr = encodeHeader(&w.hdr, typeStdout, w.id, n, padLen(n))
		pad = zeroPad[:padLen(n)]
	}
	b = appendRecord(b, typeStdout, w.id, nil)
	b = appendEndRequest(b, w.id, appStatus, statusRequestComplete)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	err := c.writeLocked(net.Buffers{hdr, w.last, pad, b})
	c.last = w.last[:0] // the buffer, for the next request
	return err
}

// endRequest writes END_REQUEST for id.
func (c *ServerConn) endRequest(id uint16, appStatus uint32, protocolStatus uint8) error {
	return c.write(appendEndRequest(make([]byte, 0, 16), id, appStatus, protocolStatus))
}

// appendEndRequest appends an END_REQUEST record.
func appendEndRequest(dst []byte, id uint16, appStatus uint32, protocolStatus uint8) []byte {
	var body [8]byte // appStatusB3..B0 protocolStatus reserved[3]
	binary.BigEndian.PutUint32(body[0:4], appStatus)
	body[4] = protocolStatus
	return appendRecord(dst, typeEndRequest, id, body[:])
}

// write writes b to the client under the write lock and WriteTimeout.
func (c *ServerConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(net.Buffers{b})
}

// buffersWriter is a connection that writes several buffers in one call
// (internal/rawio.Conn).
type buffersWriter interface {
	WriteBuffers(net.Buffers) (int64, error)
}

func (c *ServerConn) writeLocked(bufs net.Buffers) error {
	if c.opts.WriteTimeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
	}
	var err error
	if bw, ok := c.nc.(buffersWriter); ok {
		_, err = bw.WriteBuffers(bufs)
	} else {
		_, err = bufs.WriteTo(c.nc)
	}
	if err != nil {
		return fmt.Errorf("fastcgi: write to client: %w", err)
	}
	return nil
}

// ResponseWriter writes a request's STDOUT (and STDERR) records.
type ResponseWriter struct {
	c       *ServerConn
	id      uint16
	written bool
	hdr     [headerLen]byte
	// last is what WriteLast holds for the write of END_REQUEST: the
	// connection's buffer, reused from request to request.
	last []byte
}

var zeroPad [7]byte

// Write sends p as STDOUT records, at once (no buffering: the caller
// gathers what it has).
func (w *ResponseWriter) Write(p []byte) (int, error) {
	return w.stream(typeStdout, p)
}

// WriteStderr sends p as STDERR records.
func (w *ResponseWriter) WriteStderr(p []byte) (int, error) {
	return w.stream(typeStderr, p)
}

// WriteLast is Write for the last bytes of the answer: they go out with
// the end of the STDOUT stream and END_REQUEST, in one write, once the
// handler has returned without error (with an error the connection is
// closed without them). p is copied. Nothing may be written after it.
func (w *ResponseWriter) WriteLast(p []byte) (int, error) {
	if len(p) > maxContent {
		k := len(p) - maxContent
		if n, err := w.Write(p[:k]); err != nil {
			return n, err
		}
		p = p[k:]
	}
	w.last = append(w.last[:0], p...)
	if len(p) > 0 {
		w.written = true
	}
	return len(p), nil
}

// Written reports whether any STDOUT has been sent.
func (w *ResponseWriter) Written() bool { return w.written }

func (w *ResponseWriter) stream(t recType, p []byte) (int, error) {
	n := 0
	c := w.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for len(p) > 0 {
		k := min(len(p), maxContent)
		pad := padLen(k)
		hdr := encodeHeader(&w.hdr, t, w.id, k, pad)
		if t == typeStdout {
			w.written = true
		}
		if err := c.writeLocked(net.Buffers{hdr, p[:k], zeroPad[:pad]}); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}
