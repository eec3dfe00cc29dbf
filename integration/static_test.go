package integration

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A static route in front of a php-cgi front controller: a file on disk is
// served from disk; a missing path falls through to index.php with the
// whole path as PATH_INFO (nginx's try_files $uri /index.php).
func TestStaticRouteBeforeFrontController(t *testing.T) {
	php := lang{"php"}
	php.need(t)
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("from disk\n"), 0o644)
	in := start(t, options{langs: []string{"php"}, routes: `[[http.route]]
prefix = "/php/"
static = ` + tomlString(dir) + `
`})
	resp, body, err := in.do(context.Background(), http.MethodGet, "/php/hello.txt", nil, nil)
	if err != nil || resp.StatusCode != 200 || string(body) != "from disk\n" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("static file: %v %v %q", err, resp, body)
	}
	resp, body, err = in.do(context.Background(), http.MethodGet, "/php/users/7?vars", nil, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("front controller: %v %v %q", err, resp, body)
	}
	for _, want := range []string{"SCRIPT_NAME=/index.php", "PATH_INFO=/php/users/7"} {
		if !strings.Contains(string(body), want+"\n") {
			t.Fatalf("front controller vars lack %s:\n%s", want, body)
		}
	}
}
