package daemon

import (
	"os"
	"sync"
)

// LogFile is a log file reopened by name on SIGUSR1 (Options.ReopenLog),
// so that logrotate can move it away.
type LogFile struct {
	path string
	mu   sync.Mutex
	f    *os.File // guarded by mu
}

// OpenLogFile opens path for appending, creating it with mode 0640.
func OpenLogFile(path string) (*LogFile, error) {
	l := &LogFile{path: path}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the path anew and closes the previous file.
func (l *LogFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file; nil-safe.
func (l *LogFile) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
