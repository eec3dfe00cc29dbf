package spawner

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLogLinesSplitsLongLines(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	long := strings.Repeat("x", maxLine+10)
	LogLines(strings.NewReader("one\n"+long+"\nlast-no-newline"), log, "stdout", nil)
	out := b.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d records, want 4 (one, 2 pieces of the long line, last):\n%s", len(lines), out)
	}
	if !strings.Contains(lines[0], "msg=one") || strings.Contains(lines[0], "split") {
		t.Fatalf("first record %q", lines[0])
	}
	if !strings.Contains(lines[1], "split=true") || !strings.Contains(lines[2], "split=true") {
		t.Fatalf("long line pieces not marked: %q / %q", lines[1][:40], lines[2])
	}
	if !strings.Contains(lines[3], "msg=last-no-newline") {
		t.Fatalf("last record %q", lines[3])
	}
}
