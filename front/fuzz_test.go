package front

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/fcgivisor/fcgivisor/conf"
)

// modelCGI is a reference reading of data as a whole CGI response, written
// as plainly as possible from readCGIHeader's rules, on the whole slice:
// no buffer, no limited reader, no line assembly.
type modelCGI struct {
	ok     bool
	status int
	lines  [][2]string // name (canonical) and value, in order
	body   []byte
}

func modelCGIResponse(data []byte) (m modelCGI) {
	if len(data) == 0 {
		return m // empty response
	}
	pos := 0
	for n := 0; ; n++ {
		var line []byte
		last := false
		if j := bytes.IndexByte(data[pos:], '\n'); j >= 0 && pos+j < maxResponseHeader {
			line, pos = data[pos:pos+j+1], pos+j+1
		} else if len(data) < maxResponseHeader {
			line, pos, last = data[pos:], len(data), true
		} else {
			return m // the block does not end within the limit
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if n == maxResponseHeaderLines {
			return m
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		value = bytes.Trim(value, " \t")
		if !found || !isToken(string(name)) || !isFieldValue(string(value)) {
			return m
		}
		m.lines = append(m.lines, [2]string{http.CanonicalHeaderKey(string(name)), string(value)})
		if last {
			break
		}
	}
	m.body = data[pos:]
	m.status = http.StatusOK
	var cl []string
	statusSeen, location := false, false
	for _, kv := range m.lines {
		switch kv[0] {
		case "Content-Length":
			cl = append(cl, kv[1])
		case "Status":
			if statusSeen {
				continue
			}
			statusSeen = true
			s := kv[1]
			if len(s) < 3 || strings.Trim(s[:3], "0123456789") != "" || s[:3] < "100" || s[:3] == "101" {
				// (a shorter number than 3 digits is below 100)
				return modelCGI{}
			}
			m.status = int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
		case "Location":
			location = true
		}
	}
	if len(cl) > 1 || len(cl) == 1 && (cl[0] == "" || strings.Trim(cl[0], "0123456789") != "") {
		return modelCGI{}
	}
	if !statusSeen && location {
		m.status = http.StatusFound
	}
	m.ok = true
	return m
}

func cgiResponseSeeds() []string {
	return []string{
		"Content-Type: text/plain\r\n\r\nhello",
		"Content-Type: text/plain\n\nunix newlines",
		"Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\nnope",
		"Location: /elsewhere\r\n\r\n",
		"Status: 301\r\nLocation: http://x/\r\n\r\n",
		"Status: 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nKeep-Alive: 5\r\n\r\nbody",
		"Status: abc\r\n\r\n",
		"Status: 12\r\n\r\n",
		"Status: 101\r\n\r\n",
		"Status: 999 x\r\nStatus: 200\r\n\r\n",
		"",
		"\r",
		"\n\nbody only",
		"no colon here\r\n\r\n",
		" folded: x\r\n\r\n",
		"Bad Key: x\r\n\r\n",
		"X: a\x00b\r\n\r\n",
		"X: a\rb\r\n\r\n",
		"X: tab\tand \xe9\r\n\r\n",
		"Content-Length: 5\r\nContent-Length: 5\r\n\r\n12345",
		"Content-Length: +5\r\n\r\n12345",
		"Content-Length: 5\r\n\r\n12345",
		"Content-Type: text/plain\r\nStatus: 204",
		"X-Long: " + strings.Repeat("b", 20000) + "\r\nx-lower: 1\r\n\r\nbody",
		"X: " + strings.Repeat("a", maxResponseHeader-7) + "\r\n\r\nbody",
		"X: " + strings.Repeat("a", maxResponseHeader-6) + "\r\n\r\n",
		"X: " + strings.Repeat("a", maxResponseHeader-3),
		strings.Repeat("A: 1\n", maxResponseHeaderLines) + "\nbody",
		strings.Repeat("A: 1\n", maxResponseHeaderLines+1) + "\n",
	}
}

// FuzzCGIResponse reads arbitrary bytes as a program's CGI response,
// through buffers of several sizes and readers that return a byte or half
// a buffer at a time. The parser must not panic, must agree with the
// reference reading, must leave the body whole in the buffer, and what it
// accepts must be fit to reach a client: a block within the limits, a
// status in 100..999 but 101, names that are tokens, values without
// control characters (so no CR, LF or NUL), no Status and no hop-by-hop
// header left, at most one Content-Length, made of digits.
func FuzzCGIResponse(f *testing.F) {
	for _, s := range cgiResponseSeeds() {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, how uint8) {
		var r io.Reader = bytes.NewReader(data)
		switch how % 4 {
		case 1:
			r = iotest.OneByteReader(r)
		case 2:
			r = iotest.HalfReader(r)
		case 3:
			r = iotest.DataErrReader(r)
		}
		br := bufio.NewReaderSize(nil, 16<<(how/4%10)) // 16 B to 8 KiB
		h := http.Header{}
		status, _, err := readCGIHeader(r, br, h)
		want := modelCGIResponse(data)
		if err != nil {
			if want.ok {
				t.Fatalf("error %v; the reference reading accepts it (status %d, %q)", err, want.status, want.lines)
			}
			if !errors.Is(err, errBadResponse) {
				t.Fatalf("error %v does not wrap errBadResponse", err)
			}
			return
		}
		if !want.ok {
			t.Fatalf("accepted (status %d, %v); the reference reading refuses it", status, h)
		}
		body, err := io.ReadAll(br)
		if err != nil || !bytes.Equal(body, want.body) {
			t.Fatalf("body %q, %v; want %q", body, err, want.body)
		}
		if n := len(data) - len(body); n > maxResponseHeader {
			t.Fatalf("accepted a header block of %d bytes, over %d", n, maxResponseHeader)
		}
		if status != want.status || status < 100 || status > 999 || status == 101 {
			t.Fatalf("status %d, want %d (never under 100, over 999 or 101)", status, want.status)
		}
		checkHeaderFit(t, h, len(want.lines))
	})
}

// checkHeaderFit checks that h, from a block of lines header lines, can go
// to a client as it is.
func checkHeaderFit(t *testing.T, h http.Header, lines int) {
	t.Helper()
	n := 0
	for k, vs := range h {
		n += len(vs)
		if !isToken(k) || k != http.CanonicalHeaderKey(k) {
			t.Fatalf("header name %q", k)
		}
		for _, v := range vs {
			if !isFieldValue(v) || strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("header %s: value %q", k, v)
			}
		}
	}
	for _, k := range append([]string{"Status"}, hopByHop...) {
		if _, ok := h[k]; ok {
			t.Fatalf("%s left in the header", k)
		}
	}
	if n > maxResponseHeaderLines || n > lines {
		t.Fatalf("%d header values from %d lines (at most %d)", n, lines, maxResponseHeaderLines)
	}
	if cl := h["Content-Length"]; len(cl) > 1 || len(cl) == 1 && !allDigits(cl[0]) {
		t.Fatalf("Content-Length %q", cl)
	}
}

// isToken and isFieldValue are RFC 9110's token and field-value, written
// apart from the parser's own checks.
func isToken(s string) bool {
	const tchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	return s != "" && strings.Trim(s, tchar) == ""
}

func isFieldValue(s string) bool {
	for _, c := range []byte(s) {
		if c != '\t' && (c < ' ' || c == 0x7f) {
			return false
		}
	}
	return true
}

// FuzzRouteMatch matches arbitrary paths against arbitrary routes (prefix
// and script starting with "/", as conf requires; status routes aside).
// It must not panic, and a match must split the path as the rules say:
//   - only paths under the prefix match;
//   - with script, SCRIPT_NAME is the script and PATH_INFO the path;
//   - else SCRIPT_NAME + PATH_INFO is the path (index appended to one
//     ending in "/"), PATH_INFO is empty or starts with "/" (a prefix
//     without its slash matches only where it ends a segment), and with
//     suffix SCRIPT_NAME ends in it;
//   - a path the front lets through (escapes false) gives no ".." segment
//     (nor NUL) in SCRIPT_NAME or PATH_INFO when the route's own strings
//     have none: SCRIPT_FILENAME stays under document_root, and an
//     application that joins PATH_INFO to a directory stays under it.
func FuzzRouteMatch(f *testing.F) {
	f.Add("/a/b", "/", "", "", "")
	f.Add("/go/x", "/go/", "", "", "")
	f.Add("/gopher", "/go/", "", "", "")
	f.Add("/app/x.php/extra/y", "/", ".php", "", "")
	f.Add("/a.phpx/b.php/c.php", "/", ".php", "", "")
	f.Add("/blog/", "/", ".php", "index.php", "")
	f.Add("/", "/", "", "index.php", "")
	f.Add("/app/users/7", "/app/", "", "", "/index.php")
	f.Add("/x../y", "/x", "", "", "")              // no match: PATH_INFO would be "../y"
	f.Add("/x.php/../../etc", "/", ".php", "", "") // escapes
	f.Add("/a/..", "/a/", "", "", "")
	f.Add("/a\x00b.php", "/", ".php", "", "")
	f.Add("/%2e%2e/x", "/", "", "", "")
	f.Fuzz(func(t *testing.T, path, prefix, suffix, index, script string) {
		if !strings.HasPrefix(prefix, "/") || script != "" && !strings.HasPrefix(script, "/") {
			return // conf refuses these routes
		}
		rc := &conf.Route{Prefix: prefix, Suffix: suffix, Index: index, Script: script, Pool: "p"}
		rt := &route{cfg: rc}
		sn, pi, ok := rt.match(path)
		p := path
		if index != "" && strings.HasSuffix(p, "/") {
			p += index
		}
		if !ok {
			rest := strings.TrimPrefix(p, strings.TrimSuffix(prefix, "/"))
			atSegment := rest == "" || rest[0] == '/'
			if strings.HasPrefix(path, prefix) && (script != "" || suffix == "" && atSegment) {
				t.Fatalf("%+v does not match %q", rc, path)
			}
			return
		}
		if !strings.HasPrefix(path, prefix) {
			t.Fatalf("%+v matches %q, which is not under its prefix", rc, path)
		}
		if script != "" {
			if sn != script || pi != path {
				t.Fatalf("%+v: %q split as (%q, %q), want the script and the whole path", rc, path, sn, pi)
			}
			return
		}
		if sn+pi != p {
			t.Fatalf("%+v: %q split as (%q, %q), which do not make %q", rc, path, sn, pi, p)
		}
		if pi != "" && pi[0] != '/' || suffix != "" && !strings.HasSuffix(sn, suffix) {
			t.Fatalf("%+v: %q split as (%q, %q): PATH_INFO must start with /, SCRIPT_NAME end in the suffix", rc, path, sn, pi)
		}
		if escapes(path) || escapes(prefix) || escapes(suffix) || escapes(index) {
			return
		}
		if escapes(sn) {
			t.Fatalf("%+v: %q gives SCRIPT_NAME %q, with a \"..\" segment", rc, path, sn)
		}
		if escapes(pi) {
			t.Fatalf("%+v: %q gives PATH_INFO %q, with a \"..\" segment", rc, path, pi)
		}
	})
}

// FuzzSlashRedirect: whatever the request path, query and the route's
// prefix, the slash redirect (issue 11) happens only for the prefix
// without its trailing slash, and its Location is a path on the same
// host, the prefix, plus the query: never "//host" or "/\\host", which a
// browser reads as another host, never a scheme.
func FuzzSlashRedirect(f *testing.F) {
	f.Add("/x", "/x/", "a=opml", "GET")
	f.Add("//evil", "//evil/", "", "GET")
	f.Add("/\\evil", "/\\evil/", "", "POST")
	f.Add("/a b", "/a b/", "q=%0d%0a", "GET")
	f.Add("/x", "/x/", "", "PUT")
	f.Fuzz(func(t *testing.T, path, prefix, query, method string) {
		if !strings.HasPrefix(prefix, "/") {
			return // conf refuses these routes
		}
		rt := &route{cfg: &conf.Route{Prefix: prefix, Pool: "p"}}
		if !rt.addsSlash(path) {
			return
		}
		if path+"/" != prefix {
			t.Fatalf("prefix %q: %q redirected", prefix, path)
		}
		// The query as the server parses it from a request line (it
		// refuses control characters).
		ru, err := url.ParseRequestURI("/?" + query)
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		redirectSlash(w, &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: ru.RawQuery}, Host: "attacker.example"}, prefix)
		loc := w.Header().Get("Location")
		if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, "/\\") {
			t.Fatalf("prefix %q: Location %q is not a path on this host", prefix, loc)
		}
		// The query is copied raw, as nginx copies $args: only the part
		// before it must be the prefix.
		p, q, _ := strings.Cut(loc, "?")
		u, err := url.Parse(p)
		if err != nil || u.Scheme != "" || u.Host != "" || u.Path != prefix || q != ru.RawQuery {
			t.Fatalf("prefix %q, query %q: Location %q parses as %#v (%v), want the prefix as path, then the query", prefix, ru.RawQuery, loc, u, err)
		}
		if want := map[bool]int{true: 301, false: 308}[method == "GET" || method == "HEAD"]; w.Code != want {
			t.Fatalf("%s: %d, want %d", method, w.Code, want)
		}
	})
}
