package front

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fcgivisor/fcgivisor/conf"
)

// staticServer serves dir under /s/.
func staticServer(t *testing.T, dir, index string) *Server {
	t.Helper()
	s := &Server{log: slog.New(slog.DiscardHandler)}
	s.table.Store(&table{cfg: &conf.HTTP{}, routes: []*route{
		{cfg: &conf.Route{Prefix: "/s/", Static: dir, Index: index}},
	}})
	return s
}

func TestStaticFiles(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "pub")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "app.css"), []byte("body{color:red}"), 0o644)
	os.WriteFile(filepath.Join(dir, ".env"), []byte("SECRET=1"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "index.html"), []byte("<p>index</p>"), 0o644)
	os.WriteFile(filepath.Join(base, "outside.txt"), []byte("outside"), 0o644)
	os.Symlink(filepath.Join(base, "outside.txt"), filepath.Join(dir, "escape.txt"))
	s := staticServer(t, dir, "index.html")

	do := func(method, target string, hdr map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	w := do("GET", "/s/app.css", nil)
	if w.Code != 200 || w.Body.String() != "body{color:red}" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("GET app.css: %d %q %v", w.Code, w.Body.String(), w.Header())
	}
	etag := w.Header().Get("ETag")
	if etag == "" || w.Header().Get("Last-Modified") == "" {
		t.Fatalf("no ETag/Last-Modified: %v", w.Header())
	}
	if w := do("GET", "/s/app.css", map[string]string{"If-None-Match": etag}); w.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", w.Code)
	}
	if w := do("GET", "/s/app.css", map[string]string{"Range": "bytes=0-3"}); w.Code != http.StatusPartialContent || w.Body.String() != "body" {
		t.Fatalf("Range: %d %q", w.Code, w.Body.String())
	}
	if w := do("HEAD", "/s/app.css", nil); w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "15" {
		t.Fatalf("HEAD: %d %q %v", w.Code, w.Body.String(), w.Header())
	}
	if w := do("GET", "/s/sub/", nil); w.Code != 200 || w.Body.String() != "<p>index</p>" {
		t.Fatalf("directory index: %d %q", w.Code, w.Body.String())
	}
	if w := do("POST", "/s/app.css", nil); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", w.Code)
	}
	// Nothing outside the directory, no dotfiles, no listings: these fall
	// through (here to the final 404).
	for _, target := range []string{"/s/.env", "/s/escape.txt", "/s/missing.js", "/s/", "/s/%2e%2e/outside.txt", "/s/..%2foutside.txt", "/s//etc/passwd"} {
		if w := do("GET", target, nil); w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "SECRET") || strings.Contains(w.Body.String(), "outside") {
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
	s := &Server{log: slog.New(slog.DiscardHandler)}
	s.table.Store(&table{cfg: &conf.HTTP{}, routes: []*route{
		{cfg: &conf.Route{Prefix: "/", Static: dir}},
		{cfg: &conf.Route{Prefix: "/", Static: other}},
	}})
	for target, want := range map[string]string{"/a.txt": "a", "/b.txt": "b"} {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
		if w.Code != 200 || w.Body.String() != want {
			t.Errorf("GET %s: %d %q, want %q from the matching route", target, w.Code, w.Body.String(), want)
		}
	}
}
