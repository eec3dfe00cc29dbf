package front

import (
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/spawner"
)

// Static routes serve files from a directory (route key `static`), the way
// nginx's try_files does: a path that names no servable file falls through
// to the next matching route, so a PHP front controller after a static
// route needs no other web server.
//
// Files are opened through an os.Root: no path, symlink or ".." resolves
// outside the directory. Dotfiles are never served and directories are not
// listed (a directory is served through the route's index, if any).
// http.ServeContent answers HEAD, ranges and conditional requests; the
// ETag is weak, made of size and modification time.
//
// A static route never serves code (issue 10):
//   - A file whose name ends in the suffix of a pool route of the table, or
//     in the extension of a pool route's script (".php"), compared without
//     regard to case, falls through to the route that runs it. The name
//     checked is the one the request names, or the index for a directory,
//     after percent-decoding and path cleaning ("/index.php/",
//     "/INDEX.PHP", "/index%2ephp" all fall through); a symlink is judged
//     by its own name.
//   - A path matching the route's deny list answers 404 and no later route
//     is tried: an operator who closes /data/ means that nothing serves it.
//
// As root a static route reads files with root's rights, so it judges
// each file by the rights of its user (route key `user`, resolved once per
// route table), as nginx's workers would be judged by the kernel: the file
// must be readable by that user, by the bits of the file it opened (fstat,
// no second lookup of the path), and each directory from "/" to it
// searchable (spawner.MayAccess on the directory of /proc/self/fd/N, the
// path the kernel has for the open file, so the symlinks are those the
// os.Root resolved, inside the directory). A file the user could not read
// is treated as one that is not there: it falls through, and with no later
// route the answer is the same 404 as for a missing file, which does not
// tell that it exists. Per file served this costs a readlink and about two
// stat calls per directory above the file; user = "root" costs nothing.

// staticRoute is what a static route needs at request time, built with the
// table.
type staticRoute struct {
	dir  string
	deny []denyPattern
	// code holds the lower-cased suffixes of the files the table's pool
	// routes run, which this route never serves.
	code []string
	// cred is the user whose rights files are served with; nil when
	// fcgivisor does not run as root or user is "root" (no check).
	cred *syscall.Credential
}

// denyPattern is one entry of a static route's deny list (syntax checked
// by conf): a name pattern matched against every segment, or, anchored,
// patterns matched against a path's leading segments. Both are lower-cased.
type denyPattern struct {
	anchored bool
	segs     []string
}

// newStaticRoute builds rc's static route; code is codeSuffixes of the
// table.
func newStaticRoute(rc *conf.Route, privileged bool, code []string) (*staticRoute, error) {
	st := &staticRoute{dir: rc.Static, code: code}
	for _, p := range rc.Deny {
		body := strings.TrimSuffix(strings.ToLower(p), "/")
		dp := denyPattern{anchored: strings.HasPrefix(body, "/")}
		dp.segs = strings.Split(strings.TrimPrefix(body, "/"), "/")
		st.deny = append(st.deny, dp)
	}
	if privileged {
		cred, err := spawner.Credential(rc.User, "")
		if err != nil {
			return nil, fmt.Errorf("user: %w", err)
		}
		if cred != nil && cred.Uid != 0 {
			st.cred = cred
		}
	}
	return st, nil
}

// codeSuffixes lists, lower-cased, the suffixes of what cfg's pool routes
// run: each one's suffix, and the extension of each one's script.
func codeSuffixes(cfg *conf.HTTP) []string {
	var out []string
	add := func(s string) {
		s = strings.ToLower(s)
		for _, have := range out {
			if have == s {
				return
			}
		}
		out = append(out, s)
	}
	for _, rc := range cfg.Routes {
		if rc.Pool == "" {
			continue
		}
		if rc.Suffix != "" {
			add(rc.Suffix)
		}
		if ext := path.Ext(rc.Script); ext != "" && ext != "." {
			add(ext)
		}
	}
	return out
}

// denies reports whether rel, a cleaned path under the directory ("." for
// the directory itself), matches the deny list, without regard to case.
func (st *staticRoute) denies(rel string) bool {
	if len(st.deny) == 0 || rel == "." {
		return false
	}
	segs := strings.Split(strings.ToLower(rel), "/")
	for _, dp := range st.deny {
		if dp.anchored {
			if len(segs) >= len(dp.segs) && matchSegs(dp.segs, segs) {
				return true
			}
			continue
		}
		for _, s := range segs {
			if ok, _ := path.Match(dp.segs[0], s); ok {
				return true
			}
		}
	}
	return false
}

// matchSegs reports whether each pattern matches the segment at its place.
func matchSegs(pats, segs []string) bool {
	for i, p := range pats {
		if ok, _ := path.Match(p, segs[i]); !ok {
			return false
		}
	}
	return true
}

// isCode reports whether the file rel names ends in a suffix of code.
func (st *staticRoute) isCode(rel string) bool {
	name := strings.ToLower(path.Base(rel))
	for _, s := range st.code {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// mayRead reports whether the route's user could read the open file f
// (fi is its Stat); the error says what stops it.
func (st *staticRoute) mayRead(f *os.File, fi fs.FileInfo) error {
	if st.cred == nil {
		return nil
	}
	// The file by the bits of what was opened: no path is looked up again.
	if err := spawner.MayAccessFile(f.Name(), fi, st.cred, spawner.ReadOK); err != nil {
		return err
	}
	// The directories on the way to it, by the path the kernel has for the
	// open file (symlinks resolved as the os.Root did, inside the
	// directory). Fd is harmless here: a regular file is never in the
	// poller.
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return err
	}
	if !filepath.IsAbs(real) {
		return fmt.Errorf("open file %s has no path (%q)", f.Name(), real)
	}
	return spawner.MayAccess(filepath.Dir(real), st.cred, spawner.ExecOK)
}

// serveStatic serves the file the request names under rt's directory and
// reports whether it answered; false means: fall through to the next route.
func (s *Server) serveStatic(w http.ResponseWriter, r *http.Request, rt *route) bool {
	st := rt.static
	rel := strings.TrimPrefix(r.URL.Path, rt.cfg.Prefix)
	rel = strings.TrimPrefix(path.Clean("/"+rel), "/")
	if rel == "" {
		rel = "."
	}
	if st.denies(rel) { // before the dotfiles: /data/.env stops here too
		http.Error(w, "Not Found", http.StatusNotFound)
		return true
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if strings.HasPrefix(seg, ".") && seg != "." {
			return false
		}
	}
	root, err := os.OpenRoot(st.dir)
	if err != nil {
		s.log.Error("static route", "dir", st.dir, "err", err)
		return false
	}
	defer root.Close()
	name := rel
	if fi, err := root.Stat(rel); err == nil && fi.IsDir() {
		if rt.cfg.Index == "" {
			return false // no listings
		}
		name = path.Join(rel, rt.cfg.Index)
		if st.denies(name) {
			http.Error(w, "Not Found", http.StatusNotFound)
			return true
		}
	}
	if st.isCode(name) {
		return false // the pool route that runs it, if one matches
	}
	f, fi, ok := openFile(root, name)
	if !ok {
		return false
	}
	defer f.Close()
	if err := st.mayRead(f, fi); err != nil {
		s.log.Debug("static file not readable by the route's user: not served", "route", rt.cfg.Prefix, "uri", r.RequestURI, "err", err)
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return true
	}
	w.Header().Set("ETag", fmt.Sprintf(`W/"%x-%x"`, fi.Size(), fi.ModTime().UnixNano()))
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
	return true
}

// openFile opens name in root when it is a regular file.
func openFile(root *os.Root, name string) (*os.File, fs.FileInfo, bool) {
	f, err := root.Open(name)
	if err != nil {
		return nil, nil, false
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, false
	}
	return f, fi, true
}

// matchStatus reports whether status route c matches urlPath. A status
// route closes what no later route may serve, whatever spelling of the
// path a later route would accept, so it matches more than other routes:
// on the cleaned path ("//data/./x" is "/data/x", as a static route reads
// it), without regard to case (a static route on a case-insensitive file
// system would open "/DATA/x"), and a prefix ending in "/" also matches the
// path without it ("/data/" closes "/data", which a static route would
// serve through its index). A suffix narrows it to paths with a segment
// ending in it, also without regard to case.
func matchStatus(c *conf.Route, urlPath string) bool {
	p := strings.ToLower(path.Clean("/" + urlPath))
	prefix := strings.ToLower(c.Prefix)
	if !strings.HasPrefix(p, prefix) && !(strings.HasSuffix(prefix, "/") && p+"/" == prefix) {
		return false
	}
	return c.Suffix == "" || splitAt(p, strings.ToLower(c.Suffix)) >= 0
}

// warnStatic warns about each static route whose user cannot even search
// its directory: every request would fall through.
func (t *table) warnStatic(log *slog.Logger) {
	for i, rt := range t.routes {
		if rt.static != nil {
			rt.static.warnUnreadable(log, fmt.Sprintf("http.route[%d].user", i))
		}
	}
}

// warnUnreadable warns when a static route's user cannot even search its
// directory: every request would fall through.
func (st *staticRoute) warnUnreadable(log *slog.Logger, key string) {
	if st.cred == nil {
		return
	}
	if _, err := os.Stat(st.dir); err != nil {
		return // a missing directory is said elsewhere
	}
	if err := spawner.MayAccess(st.dir, st.cred, spawner.ExecOK); err != nil {
		log.Warn("the static route's user cannot reach its directory: no file will be served", "key", key, "uid", st.cred.Uid, "err", err)
	}
}
