package daemon

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fcgivisor/fcgivisor/conf"
)

// accessTarget is http.access_log opened (issue 13): stderr, or a file
// reopened by name on SIGUSR1 (logrotate), as log_file is. The front
// writes it (front.Server.SetAccessLog); the daemon opens it at start,
// opens the new one when a reload names another and closes the old one
// once the front no longer writes it, and closes it at shutdown. A nil
// *accessTarget is no access log.
type accessTarget struct {
	target conf.LogTarget
	w      io.Writer
	file   *LogFile // nil unless target is a file
}

// openAccess opens cfg's http.access_log; nil when there is none.
func openAccess(cfg *conf.Config, stderr io.Writer) (*accessTarget, error) {
	switch t := cfg.HTTP.AccessLog; t {
	case "":
		return nil, nil
	case conf.LogStderr:
		return &accessTarget{target: t, w: stderr}, nil
	default:
		f, err := OpenLogFile(string(t))
		if err != nil {
			return nil, fmt.Errorf("%s: http.access_log: %w", cfg.File, err)
		}
		return &accessTarget{target: t, w: f, file: f}, nil
	}
}

// writer is what the front writes to: nil (no log) for a nil a.
func (a *accessTarget) writer() io.Writer {
	if a == nil {
		return nil
	}
	return a.w
}

// reopen reopens a file by name; it reports whether there was one.
func (a *accessTarget) reopen() (bool, error) {
	if a == nil || a.file == nil {
		return false, nil
	}
	return true, a.file.Reopen()
}

func (a *accessTarget) close() {
	if a != nil && a.file != nil {
		a.file.Close()
	}
}

// accessFor is the target of a reloaded cfg: the running one when
// http.access_log did not change, else the new one opened.
func (in *instance) accessFor(cfg *conf.Config) (*accessTarget, error) {
	if cfg.HTTP.AccessLog == in.cfg.HTTP.AccessLog {
		return in.access, nil
	}
	return openAccess(cfg, in.o.stderr())
}

// swapAccess makes acc (from accessFor) the front's access log, in cfg's
// format, and closes the target it replaced.
func (in *instance) swapAccess(cfg *conf.Config, acc *accessTarget) {
	in.srv.SetAccessLog(acc.writer(), cfg.HTTP.AccessLogFormat)
	if acc != in.access {
		in.access.close()
		in.access = acc
	}
}

// checkAccessLog checks that the directory of a file http.access_log
// exists, so that check refuses what start would fail to open, and that
// the path is not a directory. It creates nothing.
func checkAccessLog(cfg *conf.Config) error {
	t := cfg.HTTP.AccessLog
	if t == "" || t == conf.LogStderr {
		return nil
	}
	path := string(t)
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("http.access_log: %s is a directory (give a file path in it)", path)
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("http.access_log: %w (create the directory)", err)
	case !fi.IsDir():
		return fmt.Errorf("http.access_log: %s is not a directory", dir)
	}
	return nil
}
