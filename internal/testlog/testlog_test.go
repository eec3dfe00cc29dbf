package testlog

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
)

// Concurrent writers (a slog handler and plain writes) and readers: every
// line arrives whole, and the race detector sees no unguarded access.
func TestBufferConcurrentWriters(t *testing.T) {
	var b Buffer // the zero value is ready
	log := slog.New(slog.NewTextHandler(&b, nil))
	const writers, lines = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				if w%2 == 0 {
					log.Info("line", "writer", w, "i", i)
				} else {
					fmt.Fprintf(&b, "plain writer=%d i=%d\n", w, i)
				}
				_ = b.String()
			}
		})
	}
	wg.Wait()
	text := b.String()
	if n := strings.Count(text, "\n"); n != writers*lines {
		t.Fatalf("%d lines, want %d", n, writers*lines)
	}
	for w := range writers {
		for i := range lines {
			want := fmt.Sprintf("writer=%d i=%d\n", w, i)
			if !strings.Contains(text, want) {
				t.Fatalf("line %q missing", want)
			}
		}
	}
}

// A Snapshot's channel stays open until the next Write, which closes it
// and wakes the reader waiting on it; the next Snapshot has what was
// written. The bubble tells when the reader is blocked, with no timeout.
func TestSnapshotWakesOnWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b Buffer
		b.Write([]byte("first\n"))
		text, changed := b.Snapshot()
		if text != "first\n" {
			t.Fatalf("snapshot %q, want %q", text, "first\n")
		}
		if _, again := b.Snapshot(); again != changed {
			t.Fatal("two snapshots with no write between them gave different channels")
		}
		done := make(chan string)
		go func() {
			<-changed
			s, _ := b.Snapshot()
			done <- s
		}()
		synctest.Wait() // the reader is blocked on changed
		select {
		case <-changed:
			t.Fatal("channel closed with no write after the snapshot")
		default:
		}
		b.Write([]byte("second\n"))
		if s := <-done; s != "first\nsecond\n" {
			t.Fatalf("snapshot after the write %q, want both lines", s)
		}
		if _, next := b.Snapshot(); next == changed {
			t.Fatal("a snapshot after a write gave the closed channel again")
		}
	})
}

// Writes that nobody waits for leave no channel behind, and a Write
// reports the whole of p written.
func TestWriteWithoutWaiters(t *testing.T) {
	var b Buffer
	for range 3 {
		if n, err := b.Write([]byte("abc")); n != 3 || err != nil {
			t.Fatalf("Write = %d, %v; want 3, nil", n, err)
		}
	}
	if b.changed != nil {
		t.Fatal("Write made a channel nobody asked for")
	}
	if got := b.String(); got != "abcabcabc" {
		t.Fatalf("String = %q", got)
	}
}
