package front

// What the front needs of the filesystem before it serves (issue 10): a
// directory that is missing would only show as a 404 at each request
// (findScript, serveStatic), with nothing logged, so check, start and
// reload refuse it instead.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/fcgivisor/fcgivisor/conf"
)

// CheckDirs checks that the directories cfg's routes serve from exist:
// each cgi and static route's directory, and document_root when a pool
// route names script files under it (suffix, index or script:
// SCRIPT_FILENAME is document_root + SCRIPT_NAME). A pool route with a
// prefix only (an application that routes itself) does not need
// document_root, so a missing one is left alone then. Each error names
// the key and says the fix; the caller adds the file name.
func CheckDirs(cfg *conf.Config) []error {
	var errs []error
	scripts := -1 // the first pool route that names script files
	for i, rc := range cfg.HTTP.Routes {
		if rc.Pool != "" && scripts < 0 && (rc.Suffix != "" || rc.Index != "" || rc.Script != "") {
			scripts = i
		}
		for _, d := range []struct{ key, dir string }{{"cgi", rc.CGI}, {"static", rc.Static}} {
			if d.dir == "" {
				continue
			}
			if problem, fix := dirProblem(d.dir); problem != "" {
				errs = append(errs, fmt.Errorf("http.route[%d].%s: %s (%s, or fix the path)", i, d.key, problem, fix))
			}
		}
	}
	if scripts >= 0 {
		if problem, fix := dirProblem(cfg.HTTP.DocumentRoot); problem != "" {
			errs = append(errs, fmt.Errorf("http.document_root: %s; http.route[%d] finds its scripts there (%s, or set document_root to the directory that holds them)",
				problem, scripts, fix))
		}
	}
	return errs
}

// dirProblem says what keeps dir from being a directory fcgivisor can
// open ("" when nothing does), and the usual fix.
func dirProblem(dir string) (problem, fix string) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return dir + ": no such directory", "create it"
	case errors.Is(err, syscall.ENOTDIR):
		return err.Error(), "a file stands where its path needs a directory: move it"
	case err != nil:
		return err.Error(), "let fcgivisor's user search every directory above it"
	case !fi.IsDir():
		return dir + ": not a directory", "make it one"
	}
	return "", ""
}
