package front

import (
	"strings"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// route is one [[http.route]] bound to what serves it.
type route struct {
	cfg    *conf.Route
	pool   *supervisor.Pool // pool routes
	cgi    *cgiRoute        // cgi routes
	static *staticRoute     // static routes
}

// match reports whether the route serves urlPath and, if so, how the path
// splits into SCRIPT_NAME and PATH_INFO:
//   - with script: SCRIPT_NAME is the script, PATH_INFO the whole path;
//   - with suffix: SCRIPT_NAME ends at the first segment ending in suffix,
//     PATH_INFO is the rest; a path with no such segment does not match;
//   - else SCRIPT_NAME is the prefix without its trailing slash.
//
// index is appended to a path ending in "/" before the split.
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
	return base, p[len(base):], true
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
