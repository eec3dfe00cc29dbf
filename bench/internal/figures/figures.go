// Package figures is what the bench load tools (bench/burst, bench/reload)
// share to report a run: the one summary line of key=value figures that
// their shell scripts parse, nearest-rank percentiles, and failure kinds.
// Standard library only.
package figures

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Line is one summary line: a label, then " key=value" for each figure.
// The scripts find a figure by its key, so values must not hold spaces.
type Line struct {
	b strings.Builder
}

// NewLine starts a line with label ("-" when label is empty, so that the
// figures never become the first field).
func NewLine(label string) *Line {
	if label == "" {
		label = "-"
	}
	l := &Line{}
	l.b.WriteString(label)
	return l
}

// Add appends " key=value".
func (l *Line) Add(key, value string) { l.b.WriteString(" " + key + "=" + value) }

func (l *Line) String() string { return l.b.String() }

// Pct is the p-th percentile (nearest rank) of sorted d; 0 when d is empty.
func Pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

// Kinds formats failure counts by kind as "N×kind" joined by ";", sorted,
// with the spaces in a kind replaced by "_" (a Line value holds none).
func Kinds(failures map[string]int) string {
	kinds := make([]string, 0, len(failures))
	for k, n := range failures {
		kinds = append(kinds, fmt.Sprintf("%d×%s", n, strings.ReplaceAll(k, " ", "_")))
	}
	sort.Strings(kinds)
	return strings.Join(kinds, ";")
}

// WriteCSV writes the per-request file of a tool's -raw flag to path:
// header, then row(r) for each of rs, one a line.
func WriteCSV[R any](path, header string, rs []R, row func(R) string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	fmt.Fprintln(f, header)
	for _, r := range rs {
		fmt.Fprintln(f, row(r))
	}
	return f.Close()
}

// ErrKind names what a failed connection or read came to: "connection
// refused", "connection reset", "EOF" (also a short read), or else the
// error's own text. A tool checks first for the kinds it tells apart
// itself, such as its way of timing out.
func ErrKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	}
	return err.Error()
}
