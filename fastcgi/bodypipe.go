package fastcgi

import (
	"io"
	"sync"
)

// bodyBuffer is how much of a request's STDIN a ServerConn holds for its
// handler: the reader goes on reading records (and sees
// FCGI_ABORT_REQUEST, or the client going away) while the handler has
// not taken that much, for example while it waits for a worker slot. A
// body larger than that stops the reader until the handler reads: the
// backpressure that bounds the memory of a request.
const bodyBuffer = 64 << 10

// bodyPipe carries a request's STDIN from the connection's reader to its
// handler, holding up to bodyBuffer bytes (one record more when it is
// empty). The reader writes and closes it; the handler reads it; either
// side may close it with an error, which wakes the other.
type bodyPipe struct {
	mu   sync.Mutex
	cond sync.Cond
	buf  []byte
	werr error // set by the writer's side: io.EOF at the end of STDIN, or why it failed
	rerr error // set by the reader's side: the handler is done with the body
}

func newBodyPipe() *bodyPipe {
	p := &bodyPipe{}
	p.cond.L = &p.mu
	return p
}

// Write queues b for the handler, waiting while the pipe is full. It
// fails once the handler has closed its side.
func (p *bodyPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.rerr == nil && len(p.buf) > 0 && len(p.buf)+len(b) > bodyBuffer {
		p.cond.Wait()
	}
	if p.rerr != nil {
		return 0, p.rerr
	}
	if p.buf == nil {
		p.buf = make([]byte, 0, min(max(len(b), 4<<10), bodyBuffer))
	}
	p.buf = append(p.buf, b...)
	p.cond.Broadcast()
	return len(b), nil
}

// CloseWrite ends the body: with io.EOF (or nil) the handler reads what
// is queued and then io.EOF; another error is returned at once.
func (p *bodyPipe) CloseWrite(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		err = io.EOF
	}
	if p.werr == nil {
		p.werr = err
	}
	p.cond.Broadcast()
}

// Read reads queued STDIN, waiting for some.
func (p *bodyPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && p.werr == nil && p.rerr == nil {
		p.cond.Wait()
	}
	switch {
	case p.rerr != nil:
		return 0, p.rerr
	case len(p.buf) > 0 && (p.werr == nil || p.werr == io.EOF):
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		if len(p.buf) == 0 {
			p.buf = p.buf[:0:0] // let the memory go between bursts
		}
		p.cond.Broadcast()
		return n, nil
	}
	return 0, p.werr
}

// CloseRead is the handler's side giving up the body: queued and later
// writes are dropped and fail with err.
func (p *bodyPipe) CloseRead(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rerr == nil {
		p.rerr = err
	}
	p.buf = nil
	p.cond.Broadcast()
}

// queued is how many bytes wait for the handler (for tests).
func (p *bodyPipe) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.buf)
}

// empty reports whether the body has ended with nothing left to read.
func (p *bodyPipe) empty() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.werr == io.EOF && len(p.buf) == 0
}
