// Package testlog is the log sink tests share: a buffer that any number of
// goroutines write (slog handlers, os/exec copying a child's stdout and
// stderr) while the test reads it, and that tells a waiting reader when more
// has arrived, so that a test waits for a log line without sleeping.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent use, written through Write
// and read whole through String or Snapshot. The zero value is an empty
// buffer ready to use.
type Buffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer  // guarded by mu
	changed chan struct{} // guarded by mu; closed by the next Write, nil while nobody waits
}

// Write appends p and wakes every reader waiting on a Snapshot channel. It
// never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return len(p), nil
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Snapshot returns everything written so far and a channel that the next
// Write closes: a reader that did not find what it looks for in the text
// waits on the channel, then takes a new snapshot. Nothing written between
// the two is missed.
func (b *Buffer) Snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.buf.String(), b.changed
}
