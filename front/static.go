package front

import (
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
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

// serveStatic serves the file the request names under rt's directory and
// reports whether it did; false means: fall through to the next route.
func (s *Server) serveStatic(w http.ResponseWriter, r *http.Request, rt *route) bool {
	rel := strings.TrimPrefix(r.URL.Path, rt.cfg.Prefix)
	rel = strings.TrimPrefix(path.Clean("/"+rel), "/")
	if rel == "" {
		rel = "."
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if strings.HasPrefix(seg, ".") && seg != "." {
			return false
		}
	}
	root, err := os.OpenRoot(rt.cfg.Static)
	if err != nil {
		s.log.Error("static route", "dir", rt.cfg.Static, "err", err)
		return false
	}
	defer root.Close()
	f, fi, ok := openFile(root, rel)
	if !ok && rt.cfg.Index != "" {
		if st, err := root.Stat(rel); err == nil && st.IsDir() {
			f, fi, ok = openFile(root, path.Join(rel, rt.cfg.Index))
		}
	}
	if !ok {
		return false
	}
	defer f.Close()
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
