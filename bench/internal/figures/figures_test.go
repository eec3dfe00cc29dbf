package figures

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	for _, c := range []struct{ label, want string }{
		{"fv-env", "fv-env requests=3 p99=1.50"},
		{"", "- requests=3 p99=1.50"},
	} {
		l := NewLine(c.label)
		l.Add("requests", "3")
		l.Add("p99", "1.50")
		if got := l.String(); got != c.want {
			t.Errorf("NewLine(%q): %q, want %q", c.label, got, c.want)
		}
	}
}

func TestPct(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		d := make([]time.Duration, len(ns))
		for i, n := range ns {
			d[i] = time.Duration(n) * time.Millisecond
		}
		return d
	}
	ten := ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	for _, c := range []struct {
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 0, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ten, 0, 1 * time.Millisecond},
		{ten, 50, 5 * time.Millisecond},  // nearest rank: ceil(5) = 5th
		{ten, 51, 6 * time.Millisecond},  // ceil(5.1) = 6th
		{ten, 99, 10 * time.Millisecond}, // ceil(9.9) = 10th
		{ten, 100, 10 * time.Millisecond},
	} {
		if got := Pct(c.d, c.p); got != c.want {
			t.Errorf("Pct(%v, %v) = %v, want %v", c.d, c.p, got, c.want)
		}
	}
}

func TestKinds(t *testing.T) {
	got := Kinds(map[string]int{"status 502": 2, "timeout": 1, "no response (reused conn): EOF": 12})
	want := "12×no_response_(reused_conn):_EOF;1×timeout;2×status_502"
	if got != want {
		t.Errorf("Kinds = %q, want %q", got, want)
	}
	if got := Kinds(nil); got != "" {
		t.Errorf("Kinds(nil) = %q, want empty", got)
	}
}

func TestErrKind(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{op(syscall.ECONNREFUSED), "connection refused"},
		{fmt.Errorf("dial: %w", op(syscall.ECONNRESET)), "connection reset"},
		{io.EOF, "EOF"},
		{fmt.Errorf("body: %w", io.ErrUnexpectedEOF), "EOF"},
		{errors.New("something else"), "something else"},
	} {
		if got := ErrKind(c.err); got != c.want {
			t.Errorf("ErrKind(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestWriteCSV(t *testing.T) {
	path := t.TempDir() + "/raw.csv"
	rows := []int{1, 22}
	if err := WriteCSV(path, "n,double", rows, func(n int) string { return fmt.Sprintf("%d,%d", n, 2*n) }); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "n,double\n1,2\n22,44\n"; string(data) != want {
		t.Errorf("file %q, want %q", data, want)
	}
	if err := WriteCSV(t.TempDir()+"/no/such/dir/raw.csv", "h", rows, func(int) string { return "" }); err == nil {
		t.Error("WriteCSV into a missing directory: no error")
	}
}
