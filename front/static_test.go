package front

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/internal/testlog"
)

// routeServer serves routes as the route table would, with static routes
// built by newStaticRoute (not as root: no user check) and the code
// suffixes of every route given. Pool routes count for the suffixes but
// are left out of the table: what falls through to them gets the final
// 404.
func routeServer(t *testing.T, routes ...*conf.Route) *Server {
	t.Helper()
	code := codeSuffixes(&conf.HTTP{Routes: routes})
	tb := &table{cfg: &conf.HTTP{}}
	for _, rc := range routes {
		if rc.Pool != "" {
			continue
		}
		rt := &route{cfg: rc}
		if rc.Static != "" {
			st, err := newStaticRoute(rc, false, code)
			if err != nil {
				t.Fatal(err)
			}
			rt.static = st
		}
		tb.routes = append(tb.routes, rt)
	}
	s := &Server{log: slog.New(slog.DiscardHandler)}
	s.table.Store(tb)
	return s
}

// get serves one request and returns the recorder.
func get(s *Server, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

// writeFiles writes name → content under dir (mode 0644, directories
// 0755).
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStaticFiles(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "pub")
	writeFiles(t, dir, map[string]string{"app.css": "body{color:red}", ".env": "SECRET=1", "sub/index.html": "<p>index</p>"})
	os.WriteFile(filepath.Join(base, "outside.txt"), []byte("outside"), 0o644)
	os.Symlink(filepath.Join(base, "outside.txt"), filepath.Join(dir, "escape.txt"))
	s := routeServer(t, &conf.Route{Prefix: "/s/", Static: dir, Index: "index.html"})

	w := get(s, "GET", "/s/app.css", nil)
	if w.Code != 200 || w.Body.String() != "body{color:red}" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("GET app.css: %d %q %v", w.Code, w.Body.String(), w.Header())
	}
	etag := w.Header().Get("ETag")
	if etag == "" || w.Header().Get("Last-Modified") == "" {
		t.Fatalf("no ETag/Last-Modified: %v", w.Header())
	}
	if w := get(s, "GET", "/s/app.css", map[string]string{"If-None-Match": etag}); w.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", w.Code)
	}
	if w := get(s, "GET", "/s/app.css", map[string]string{"Range": "bytes=0-3"}); w.Code != http.StatusPartialContent || w.Body.String() != "body" {
		t.Fatalf("Range: %d %q", w.Code, w.Body.String())
	}
	if w := get(s, "HEAD", "/s/app.css", nil); w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "15" {
		t.Fatalf("HEAD: %d %q %v", w.Code, w.Body.String(), w.Header())
	}
	if w := get(s, "GET", "/s/sub/", nil); w.Code != 200 || w.Body.String() != "<p>index</p>" {
		t.Fatalf("directory index: %d %q", w.Code, w.Body.String())
	}
	if w := get(s, "POST", "/s/app.css", nil); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", w.Code)
	}
	// Nothing outside the directory, no dotfiles, no listings: these fall
	// through (here to the final 404).
	for _, target := range []string{"/s/.env", "/s/escape.txt", "/s/missing.js", "/s/", "/s/%2e%2e/outside.txt", "/s/..%2foutside.txt", "/s//etc/passwd"} {
		if w := get(s, "GET", target, nil); w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "SECRET") || strings.Contains(w.Body.String(), "outside") {
			t.Errorf("GET %s: %d %q, want 404", target, w.Code, w.Body.String())
		}
	}
}

// A missing file falls through to the next matching route (try_files).
func TestStaticFallsThrough(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644)
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "b.txt"), []byte("b"), 0o644)
	s := routeServer(t, &conf.Route{Prefix: "/", Static: dir}, &conf.Route{Prefix: "/", Static: other})
	for target, want := range map[string]string{"/a.txt": "a", "/b.txt": "b"} {
		if w := get(s, "GET", target, nil); w.Code != 200 || w.Body.String() != want {
			t.Errorf("GET %s: %d %q, want %q from the matching route", target, w.Code, w.Body.String(), want)
		}
	}
}

// A static route never serves what a pool route of the table runs: the
// suffix of a pool route, the extension of a front controller, whatever
// the case or spelling of the path, and through a directory's index too.
// Everything here would be served by a later static route on another
// directory (the "leak" route), so a 404 proves the first route passed
// it on and no other route had it.
func TestStaticNeverServesCode(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"index.php": "<?php source", "sub/index.php": "<?php source", "UP.PHP": "<?php source",
		"lib.inc": "<?php source", "x.phtml": "<?php phtml", "a.txt": "text", "php.txt": "text too",
	})
	empty := t.TempDir()
	routes := []*conf.Route{
		{Prefix: "/", Static: dir, Index: "index.php"},
		{Prefix: "/", Suffix: ".php", Index: "index.php", Pool: "php"},
		{Prefix: "/lib/", Suffix: ".inc", Pool: "php"},
		{Prefix: "/", Script: "/index.phtml", Pool: "php"},
		{Prefix: "/", Static: empty},
	}
	s := routeServer(t, routes...)
	if got := codeSuffixes(&conf.HTTP{Routes: routes}); strings.Join(got, " ") != ".php .inc .phtml" {
		t.Fatalf("codeSuffixes = %q, want .php .inc .phtml", got)
	}
	for _, target := range []string{
		"/index.php", "/", "/sub/", "/sub", "/INDEX.PHP", "/Index.Php", "/UP.PHP", "/up.php",
		"/index%2ephp", "/index%2Ephp", "/index.php/", "/./index.php", "//index.php", "/sub/../index.php",
		"/lib.inc", "/x.phtml", "/x.PHTML",
	} {
		if w := get(s, "GET", target, nil); w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "<?php") {
			t.Errorf("GET %s: %d %q, want it passed on to the pool route (here 404)", target, w.Code, w.Body.String())
		}
	}
	for target, want := range map[string]string{"/a.txt": "text", "/php.txt": "text too"} {
		if w := get(s, "GET", target, nil); w.Code != 200 || w.Body.String() != want {
			t.Errorf("GET %s: %d %q, want %q", target, w.Code, w.Body.String(), want)
		}
	}
}

func TestDenyMatch(t *testing.T) {
	for _, tc := range []struct {
		deny []string
		rel  string
		want bool
	}{
		// Anchored: from the static directory, segment by segment.
		{[]string{"/data/"}, "data", true},
		{[]string{"/data/"}, "data/db.sqlite", true},
		{[]string{"/data/"}, "data/sub/x", true},
		{[]string{"/data"}, "data/x", true},
		{[]string{"/data/"}, "database.txt", false},
		{[]string{"/data/"}, "public/data/x", false},
		{[]string{"/DATA/"}, "data/x", true}, // without regard to case
		{[]string{"/data/"}, "DaTa/x", true},
		{[]string{"/conf/*.ini"}, "conf/app.ini", true},
		{[]string{"/conf/*.ini"}, "conf/app.txt", false},
		{[]string{"/conf/*.ini"}, "app.ini", false},
		{[]string{"/*/secret"}, "a/secret/x", true},
		// Names: any segment, file or directory, at any depth.
		{[]string{"*.ini"}, "config.ini", true},
		{[]string{"*.ini"}, "a/b/config.INI", true},
		{[]string{"*.ini"}, "x.ini/readme.txt", true},
		{[]string{"*.ini"}, "config.ini.txt", false},
		{[]string{"composer.*"}, "composer.json", true},
		{[]string{"vendor/"}, "lib/vendor/autoload.php", true},
		{[]string{"vendor"}, "vendors/x", false},
		{[]string{"backup-[0-9]*"}, "backup-2024.tar", true},
		{[]string{"*.ini", "/data/"}, "public/app.css", false},
		{nil, "data/x", false},
		{[]string{"*"}, ".", false}, // the directory itself is never a name
	} {
		st, err := newStaticRoute(&conf.Route{Static: "/s", Deny: tc.deny}, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.denies(tc.rel); got != tc.want {
			t.Errorf("deny %q, path %q: %v, want %v", tc.deny, tc.rel, got, tc.want)
		}
	}
}

// A denied path answers 404 and no later route is tried: the second
// route serves the same directory without a deny list.
func TestStaticDenyStops(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"data/db.sqlite": "DB", "data/index.html": "DB index", "conf/app.ini": "INI", "config.ini": "INI",
		"docs/index.ini": "INI", "public/app.css": "css", "database.txt": "not data",
	})
	s := routeServer(t,
		&conf.Route{Prefix: "/", Static: dir, Index: "index.html", Deny: []string{"/data/", "*.ini"}},
		&conf.Route{Prefix: "/", Static: dir, Index: "index.ini"},
	)
	for _, target := range []string{
		"/data/db.sqlite", "/data/", "/data", "//data/db.sqlite", "/./data/db.sqlite", "/%64ata/db.sqlite",
		"/data%2fdb.sqlite", "/public/../data/db.sqlite", "/conf/app.ini", "/config.ini", "/CONFIG.INI",
	} {
		if w := get(s, "GET", target, nil); w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "DB") || strings.Contains(w.Body.String(), "INI") {
			t.Errorf("GET %s: %d %q, want 404", target, w.Code, w.Body.String())
		}
	}
	// The second route's index is denied by the first route's list only
	// when the first route would serve it: here the first route has no
	// index.ini, so the second one serves /docs/.
	for target, want := range map[string]string{"/public/app.css": "css", "/database.txt": "not data", "/docs/": "INI"} {
		if w := get(s, "GET", target, nil); w.Code != 200 || w.Body.String() != want {
			t.Errorf("GET %s: %d %q, want %q", target, w.Code, w.Body.String(), want)
		}
	}
	// A denied path answers even when it names a dotfile, which would
	// otherwise fall through: serveStatic reports that it answered.
	rt := s.table.Load().routes[0]
	for _, target := range []string{"/data/.env", "/.git.ini", "/data/.git/config"} {
		w := httptest.NewRecorder()
		if !s.serveStatic(w, httptest.NewRequest("GET", target, nil), rt) || w.Code != http.StatusNotFound {
			t.Errorf("GET %s: not answered 404 by the route that denies it (%d)", target, w.Code)
		}
	}
	// The index a directory request resolves to is checked too.
	s = routeServer(t, &conf.Route{Prefix: "/", Static: dir, Index: "index.ini", Deny: []string{"*.ini"}})
	if w := get(s, "GET", "/docs/", nil); w.Code != http.StatusNotFound || w.Body.String() == "INI" {
		t.Errorf("GET /docs/ with a denied index: %d %q, want 404", w.Code, w.Body.String())
	}
}

func TestStatusRouteMatch(t *testing.T) {
	for _, tc := range []struct {
		prefix, suffix, path string
		want                 bool
	}{
		{"/data/", "", "/data/x", true},
		{"/data/", "", "/data/", true},
		{"/data/", "", "/data", true}, // a static route would serve its index
		{"/data/", "", "/database", false},
		{"/data/", "", "//data/x", true},
		{"/data/", "", "/./data/x", true},
		{"/data/", "", "/a/../data/x", true},
		{"/data/", "", "/DATA/x", true},
		{"/Data/", "", "/data/x", true},
		{"/data/", "", "/public/data/x", false},
		{"/data", "", "/database", true}, // without "/", a plain string prefix
		{"/", ".bak", "/a/b.bak", true},
		{"/", ".bak", "/a/B.BAK", true},
		{"/", ".bak", "/a.bak/x", true},
		{"/", ".bak", "/a/b.bak.txt", false},
		{"/old/", ".php", "/old/x.php", true},
		{"/old/", ".php", "/old/x.txt", false},
		{"/old/", ".php", "/x.php", false},
	} {
		rt := &route{cfg: &conf.Route{Prefix: tc.prefix, Suffix: tc.suffix, Status: 404}}
		if _, _, got := rt.match(tc.path); got != tc.want {
			t.Errorf("status route %q %q, path %q: %v, want %v", tc.prefix, tc.suffix, tc.path, got, tc.want)
		}
	}
}

// A status route answers its status for every method, with the body
// http.Error gives (the front's own 404 for a 404), and closes what a
// later route would serve.
func TestStatusRoute(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"data/x.txt": "DATA", "old/a.txt": "OLD", "keep.bak": "BAK", "a.txt": "a"})
	s := routeServer(t,
		&conf.Route{Prefix: "/data/", Status: 404},
		&conf.Route{Prefix: "/old/", Status: 410},
		&conf.Route{Prefix: "/", Suffix: ".bak", Status: 403},
		&conf.Route{Prefix: "/", Static: dir, Index: "x.txt"},
	)
	for _, tc := range []struct {
		method, target string
		code           int
	}{
		{"GET", "/data/x.txt", 404}, {"GET", "/data", 404}, {"POST", "/data/x.txt", 404}, {"GET", "//Data/x.txt", 404},
		{"GET", "/old/a.txt", 410}, {"GET", "/keep.bak", 403}, {"HEAD", "/keep.bak", 403}, {"GET", "/a.txt", 200},
	} {
		w := get(s, tc.method, tc.target, nil)
		body := w.Body.String()
		if w.Code != tc.code || (tc.code != 200 && (body == "DATA" || body == "OLD" || body == "BAK")) {
			t.Errorf("%s %s: %d %q, want %d", tc.method, tc.target, w.Code, body, tc.code)
		}
		if tc.code == 404 && tc.method == "GET" && body != "Not Found\n" {
			t.Errorf("%s %s: body %q, want the front's own 404", tc.method, tc.target, body)
		}
	}
}

// Files are served only when the route's user could read them: the
// file's own bits and each directory on the way, judged on the open file,
// symlinks resolved inside the directory. The user is a made-up uid that
// owns nothing here, so this works as any user; as root the files belong
// to root, as another user to that user, and either way the made-up user
// is "others".
func TestStaticUserRights(t *testing.T) {
	base := t.TempDir()
	os.Chmod(base, 0o755)
	os.Chmod(filepath.Dir(base), 0o755) // t.TempDir's parent is 0700
	dir := filepath.Join(base, "www")
	writeFiles(t, dir, map[string]string{
		"public.txt": "public", "secret.txt": "SECRET", "group.txt": "GROUP", "closed/file.txt": "CLOSED", "open/file.txt": "open",
	})
	os.Chmod(filepath.Join(dir, "secret.txt"), 0o600)
	os.Chmod(filepath.Join(dir, "group.txt"), 0o640)
	os.Chmod(filepath.Join(dir, "closed"), 0o700)
	os.Symlink("secret.txt", filepath.Join(dir, "link.txt"))
	os.Symlink("public.txt", filepath.Join(dir, "plink.txt"))
	gid := uint32(os.Getegid())

	s := routeServer(t, &conf.Route{Prefix: "/", Static: dir})
	other := &syscall.Credential{Uid: 54321, Gid: 54321, Groups: []uint32{54321}}
	member := &syscall.Credential{Uid: 54322, Gid: 54322, Groups: []uint32{54322, gid}}
	for _, tc := range []struct {
		cred   *syscall.Credential
		target string
		want   string // "" = not served
	}{
		{nil, "/secret.txt", "SECRET"}, // no user: fcgivisor's own rights
		{other, "/public.txt", "public"},
		{other, "/secret.txt", ""},
		{other, "/link.txt", ""}, // judged by what it opens
		{other, "/plink.txt", "public"},
		{other, "/group.txt", ""},
		{member, "/group.txt", "GROUP"},
		{other, "/closed/file.txt", ""}, // the directory refuses
		{other, "/open/file.txt", "open"},
		{&syscall.Credential{Uid: 0, Gid: 0}, "/secret.txt", "SECRET"},
	} {
		st := s.table.Load().routes[0].static
		st.cred = tc.cred
		if tc.cred != nil && tc.cred.Uid == 0 {
			st.cred = nil // as newStaticRoute does for user = "root"
		}
		w := get(s, "GET", tc.target, nil)
		switch {
		case tc.want == "" && (w.Code != http.StatusNotFound || w.Body.String() != "Not Found\n"):
			t.Errorf("uid %v GET %s: %d %q, want the 404 of a missing file", tc.cred, tc.target, w.Code, w.Body.String())
		case tc.want != "" && (w.Code != 200 || w.Body.String() != tc.want):
			t.Errorf("uid %v GET %s: %d %q, want %q", tc.cred, tc.target, w.Code, w.Body.String(), tc.want)
		}
	}
}

// As root a static route resolves its user once per table; a user that
// does not exist fails the table.
func TestStaticUserResolved(t *testing.T) {
	st, err := newStaticRoute(&conf.Route{Static: "/s", User: "root"}, true, nil)
	if err != nil || st.cred != nil {
		t.Fatalf("user root: %v, cred %v; want no check", err, st.cred)
	}
	if _, err := newStaticRoute(&conf.Route{Static: "/s", User: "no-such-user-fcgivisor"}, true, nil); err == nil || !strings.HasPrefix(err.Error(), "user: ") {
		t.Fatalf("unknown user: %v", err)
	}
	st, err = newStaticRoute(&conf.Route{Static: "/s", User: "nobody"}, true, nil)
	if err != nil || st.cred == nil || st.cred.Uid == 0 {
		t.Fatalf("user nobody: %v, cred %v", err, st.cred)
	}
	st, err = newStaticRoute(&conf.Route{Static: "/s", User: "nobody"}, false, nil)
	if err != nil || st.cred != nil {
		t.Fatalf("not root: %v, cred %v; want user ignored", err, st.cred)
	}
}

// As root a static route must name its user (user = "root" to mean it),
// and it must exist; not as root, user is ignored with a warning.
func TestCheckPrivilegesStaticRoutes(t *testing.T) {
	cfg := &conf.Config{HTTP: conf.HTTP{Routes: []*conf.Route{
		{Prefix: "/s/", Static: "/s"},
		{Prefix: "/t/", Static: "/t", User: "root"},
		{Prefix: "/u/", Static: "/u", User: "no-such-user-fcgivisor"},
		{Prefix: "/v/", Static: "/v", User: "nobody"},
		{Prefix: "/x/", Status: 404},
	}}}
	log := slog.New(slog.DiscardHandler)
	err := errors.Join(CheckPrivileges(cfg, true, log)...)
	if err == nil {
		t.Fatal("no error as root")
	}
	msg := err.Error()
	for _, want := range []string{
		`http.route[0].user: fcgivisor runs as root and refuses to serve files with root's rights unless told so`, `user = "root"`,
		`http.route[2].user: user "no-such-user-fcgivisor"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	for _, good := range []string{"route[1]", "route[3]", "route[4]"} {
		if strings.Contains(msg, good) {
			t.Errorf("error names a good route (%s):\n%s", good, msg)
		}
	}
	var buf testlog.Buffer
	if err := errors.Join(CheckPrivileges(cfg, false, slog.New(slog.NewTextHandler(&buf, nil)))...); err != nil {
		t.Errorf("not root: %v", err)
	}
	if out := buf.String(); strings.Count(out, "user and group are ignored") != 3 || !strings.Contains(out, "http.route[3]") {
		t.Errorf("not root: want a warning for each static route with a user:\n%s", out)
	}
}
