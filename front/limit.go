package front

// This file implements http.max_connections: each listener the front
// serves holds at most that many client connections open at once.
//
// Choices:
//   - Excess connections wait rather than get 503, as with HAProxy's
//     maxconn (nginx, too, stops accepting as it nears its
//     worker_connections): the listener accepts one more connection and
//     leaves it unread until a place frees; the rest stay in the kernel's
//     listen backlog, their connect complete and their request unread.
//     Answering 503 would cost an accept, a goroutine and a write per
//     refused connection, the very things the limit bounds, and a 503
//     written before the request is read can be lost to a reset. Past
//     the backlog (net.core.somaxconn) a TCP connect gets no answer until
//     the client's retry, a Unix-socket one blocks or, non-blocking,
//     fails with EAGAIN.
//   - A kept-alive connection counts while it is open. When a connection
//     waits, the one idle longest between two requests is closed to make
//     room, as nginx reuses its keepalive connections, so idle clients
//     never starve new ones (idle_timeout alone would let them hold their
//     places for a minute, or for ever with "0s"). A connection that has
//     not sent its first request is not closed: read_header_timeout
//     bounds it.
//   - The limit is read from the current table at each accept: a reload
//     applies to every listener at once, and a connection waiting at the
//     old limit is looked at again. Connections over a lowered limit stay
//     open; new ones wait until the count is under it.
//
// Lock rules: limitListener.mu guards open, idle and each limitConn's
// closed; nothing blocks under it.

import (
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fcgivisor/fcgivisor/internal/rawio"
)

// limitListener is a listener of the front with http.max_connections.
type limitListener struct {
	net.Listener
	s         *Server
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	// changed (1-buffered) is poked when a connection closes or goes
	// idle: a waiting accept looks again.
	changed chan struct{}

	mu   sync.Mutex
	open int                      // guarded by mu: connections returned by Accept, not closed yet
	idle map[*limitConn]time.Time // guarded by mu: open connections between two requests, since when
}

func (s *Server) limitListener(l net.Listener) *limitListener {
	return &limitListener{Listener: l, s: s, done: make(chan struct{}), changed: make(chan struct{}, 1),
		idle: make(map[*limitConn]time.Time)}
}

// Accept accepts a connection, then waits for a place for it.
func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if !l.acquire() {
		c.Close()
		return nil, net.ErrClosed
	}
	return &limitConn{Conn: rawio.Wrap(c), l: l}, nil
}

// acquire takes a place under the current max_connections, closing idle
// connections to make room, and reports false when l was closed first.
func (l *limitListener) acquire() bool {
	for {
		t := l.s.table.Load()
		l.mu.Lock()
		if max := t.cfg.MaxConnections; max <= 0 || l.open < max {
			l.open++
			l.mu.Unlock()
			return true
		}
		victim := l.longestIdleLocked()
		l.mu.Unlock()
		if victim != nil {
			// The server's read of its next request fails, and it closes
			// the connection: that frees the place (release).
			victim.Conn.Close()
		}
		select {
		case <-l.changed:
		case <-t.replaced: // a reload may have raised the limit
		case <-l.done:
			return false
		}
	}
}

// longestIdleLocked takes the connection idle longest out of the idle set.
func (l *limitListener) longestIdleLocked() *limitConn {
	var victim *limitConn
	var since time.Time
	for c, t := range l.idle {
		if victim == nil || t.Before(since) {
			victim, since = c, t
		}
	}
	delete(l.idle, victim)
	return victim
}

func (l *limitListener) poke() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// Close closes the listener and ends a wait for a place.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// connState is the server's ConnState hook: it keeps each listener's set
// of idle connections.
func connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*limitConn)
	if !ok {
		return
	}
	l := c.l
	l.mu.Lock()
	if st == http.StateIdle && !c.closed {
		l.idle[c] = time.Now()
	} else {
		delete(l.idle, c)
	}
	l.mu.Unlock()
	if st == http.StateIdle {
		l.poke()
	}
}

// limitConn is a connection holding one of its listener's places until it
// is closed.
type limitConn struct {
	net.Conn
	l      *limitListener
	closed bool // guarded by l.mu
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	l := c.l
	l.mu.Lock()
	release := !c.closed
	if release {
		c.closed = true
		l.open--
		delete(l.idle, c)
	}
	l.mu.Unlock()
	if release {
		l.poke()
	}
	return err
}

// CloseWrite and ReadFrom pass through what net/http looks for on its
// connections: a FIN before closing after an error answer (so that the
// client reads it rather than a reset), and sendfile for static files.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *limitConn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(c.Conn, r)
}
