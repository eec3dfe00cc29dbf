package front

import (
	"errors"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/fastcgi"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// route is one [[http.route]] bound to what serves it.
type route struct {
	cfg    *conf.Route
	pool   *supervisor.Pool // pool routes
	cgi    *cgiRoute        // cgi routes
	static *staticRoute     // static routes
	env    []fastcgi.Param  // pool routes: the route's env, sorted by name
}

// routeEnv is a pool route's env as PARAMS, sorted by name so that every
// request sends them in the same order.
func routeEnv(env map[string]string) []fastcgi.Param {
	var ps []fastcgi.Param
	for _, k := range slices.Sorted(maps.Keys(env)) {
		ps = append(ps, fastcgi.Param{Name: k, Value: env[k]})
	}
	return ps
}

// addEnv appends to vars, the meta-variables of a request, the params of
// env whose names vars does not set: the meta-variables win a clash, as
// for a cgi route's env (cgiEnv), so a route cannot make a worker believe
// in another SCRIPT_NAME or REMOTE_ADDR. Issue 11: FCGI.pm and libfcgi
// take each request's environment from the PARAMS alone, so this is the
// only way a pool route's env reaches such an app (nginx's fastcgi_param).
// A few dozen vars and a few env entries: a linear scan costs less than a
// map per request.
func addEnv(vars, env []fastcgi.Param) []fastcgi.Param {
	n := len(vars)
next:
	for _, e := range env {
		for _, v := range vars[:n] {
			if v.Name == e.Name {
				continue next
			}
		}
		vars = append(vars, e)
	}
	return vars
}

// match reports whether the route serves urlPath and, if so, how the path
// splits into SCRIPT_NAME and PATH_INFO:
//   - with script: SCRIPT_NAME is the script, PATH_INFO the whole path;
//   - with suffix: SCRIPT_NAME ends at the first segment ending in suffix,
//     PATH_INFO is the rest; a path with no such segment does not match;
//   - else SCRIPT_NAME is the prefix without its trailing slash.
//
// index is appended to a path ending in "/" before the split. The suffix
// compares bytes, case and all, at the end of a segment, as nginx's
// `location ~ \.php$`: "x.PHP", "x.php.txt" and "x.phps" do not end in
// ".php". A pool route with suffix then forwards only a SCRIPT_NAME that
// isScript accepts.
func (rt *route) match(urlPath string) (scriptName, pathInfo string, ok bool) {
	c := rt.cfg

	if c.Status != 0 { // a status route: no split, wider matching
		return "", "", matchStatus(c, urlPath)
	}
	if !strings.HasPrefix(urlPath, c.Prefix) {
		return "", "", false
	}
	if c.Script != "" {
		return c.Script, urlPath, true
	}
	p := urlPath
	if c.Index != "" && strings.HasSuffix(p, "/") {
		p += c.Index
	}
	if c.Suffix != "" {
		i := splitAt(p, c.Suffix)
		if i < 0 {
			return "", "", false
		}
		return p[:i], p[i:], true
	}
	base := strings.TrimSuffix(c.Prefix, "/")
	pathInfo = p[len(base):]
	if c.Pool != "" && pathInfo != "" && pathInfo[0] != '/' {
		// A prefix without its slash ("/x") ends a path segment here or
		// not at all: "/x../y" would give PATH_INFO "../y", which an app
		// joining PATH_INFO to a directory takes out of it.
		return "", "", false
	}
	return base, pathInfo, true
}

// addsSlash reports whether the route answers urlPath, its prefix without
// the trailing slash, with a redirect to the prefix (issue 11: gitweb
// links to "/gitweb-fcgi?a=opml" for a route on "/gitweb-fcgi/"), as nginx
// does for a location ending in "/". Only where the prefix itself would
// match the route: a route with suffix (and no index that completes it)
// does not serve the prefix either, so it does not claim its slashless
// form. Status routes match the slashless form themselves (matchStatus).
// A prefix starting with "//" or "/\\" is never redirected to: a browser
// reads such a Location as another host.
func (rt *route) addsSlash(urlPath string) bool {
	c := rt.cfg
	if c.Status != 0 || len(c.Prefix) < 2 || !strings.HasSuffix(c.Prefix, "/") ||
		urlPath != c.Prefix[:len(c.Prefix)-1] || strings.HasPrefix(c.Prefix, "//") || strings.HasPrefix(c.Prefix, "/\\") {
		return false
	}
	_, _, ok := rt.match(c.Prefix)
	return ok
}

// redirectSlash answers a request for a route's prefix without its slash:
// 301 to the prefix, with the query, as nginx; 308 for methods other than
// GET and HEAD, which a client must repeat with the same method and body
// (after a 301 browsers and curl -L turn a POST into a GET and drop the
// body). The Location is the configured prefix, escaped, never anything
// of the request but its query: a path on the same host, no Host header
// reflected.
func redirectSlash(w http.ResponseWriter, r *http.Request, prefix string) {
	loc := (&url.URL{Path: prefix}).EscapedPath()
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	code := http.StatusMovedPermanently
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		code = http.StatusPermanentRedirect
	}
	w.Header().Set("Location", loc)
	w.WriteHeader(code)
}

// isScript reports whether scriptName, the SCRIPT_NAME a pool route with
// suffix split off (its last segment ends in the suffix), names a script
// the route may forward: an existing regular file under docRoot, found
// through an os.Root, so that no "..", symlink or absolute link leads
// outside docRoot. Segments that are empty ("//"), "." or start with "."
// (dotfiles, "..") never name a script. Anything else, a directory, a FIFO
// or device, a missing file, an escape, is not a script: the request goes
// on to the next matching route. The worker would otherwise decide what
// runs: php-cgi with cgi.fix_pathinfo=1 walks a missing SCRIPT_FILENAME
// back to the first existing file, /upload.txt/x.php runs upload.txt.
//
// The cost per request is an open of docRoot, an openat per directory on
// the way and one fstatat. docRoot is opened per request, not once per
// table, so that a deploy that swaps what a symlinked docRoot points to
// takes effect at once. err is non-nil when docRoot exists but cannot be
// opened.
func isScript(docRoot, scriptName string) (ok bool, err error) {
	rel, found := strings.CutPrefix(scriptName, "/")
	if !found {
		return false, nil
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if seg == "" || seg[0] == '.' {
			return false, nil
		}
	}
	root, err := os.OpenRoot(docRoot)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // warned about at start (Server.Update)
	}
	if err != nil {
		return false, err
	}
	defer root.Close()
	fi, err := root.Stat(rel)
	return err == nil && fi.Mode().IsRegular(), nil
}

// splitAt returns the end of the first path segment of p that ends in
// suffix, or -1.
func splitAt(p, suffix string) int {
	for from := 0; from < len(p); {
		i := strings.Index(p[from:], suffix)
		if i < 0 {
			return -1
		}
		end := from + i + len(suffix)
		if end == len(p) || p[end] == '/' {
			return end
		}
		from = from + i + 1
	}
	return -1
}

// escapes reports whether a decoded URL path tries to leave its root: a
// ".." segment (raw or percent-encoded, as both decode alike) or a NUL.
func escapes(p string) bool {
	if strings.IndexByte(p, 0) >= 0 {
		return true
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}
