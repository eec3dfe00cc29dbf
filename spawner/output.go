package spawner

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
)

// maxLine is the longest output line logged as one record; longer
// lines are logged in pieces of at most maxLine bytes, each marked
// split=true.
const maxLine = 16 << 10

// LogLines logs what a process writes to stdout or stderr, one record per
// line, until r ends; last, when set, gets each line too.
func LogLines(r io.Reader, log *slog.Logger, stream string, last func(string)) {
	br := bufio.NewReaderSize(r, maxLine)
	continued := false
	for {
		line, err := br.ReadSlice('\n')
		full := errors.Is(err, bufio.ErrBufferFull)
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		if len(line) > 0 || (err == nil && !continued) {
			attrs := []any{"stream", stream}
			if full || continued {
				attrs = append(attrs, "split", true)
			}
			log.Info(string(line), attrs...)
			if last != nil && len(line) > 0 {
				last(string(line))
			}
		}
		continued = full
		if err != nil && !full {
			return
		}
	}
}
