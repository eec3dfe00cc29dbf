package integration

// Issue 11: a real application from Debian, DokuWiki (package dokuwiki),
// deployed through fcgivisor as its nginx setup deploys it: its private
// directories closed, its assets served from disk, its .php scripts run by
// php-cgi. docs/examples.md shows the same config.

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// dokuWikiDir is where the Debian package installs DokuWiki's code; its
// conf/ is /etc/dokuwiki and its data/ /var/lib/dokuwiki, which the test
// leaves alone.
const dokuWikiDir = "/usr/share/dokuwiki"

// dokuWikiRoutes deploys DokuWiki at root as its nginx config does: conf/,
// data/, bin/, inc/, vendor/ and install.php closed (nginx: deny all),
// .ht* files denied, files served from disk when they exist, .php scripts
// run by the pool, doku.php the index. varLib, when not "", is where the
// package's lib/tpl and lib/plugins symlinks lead: a static route does not
// follow a symlink out of its directory, so each gets a route of its own.
// docs/examples.md shows these routes.
func dokuWikiRoutes(root, varLib string) string {
	var b strings.Builder
	for _, p := range []string{"/conf/", "/data/", "/bin/", "/inc/", "/vendor/", "/install.php"} {
		fmt.Fprintf(&b, "[[http.route]]\nprefix = %s\nstatus = 404\n\n", tomlString(p))
	}
	if varLib != "" {
		for _, d := range []string{"tpl", "plugins"} {
			fmt.Fprintf(&b, "[[http.route]]\nprefix = %s\nstatic = %s\ndeny   = [\".ht*\"]\nuser   = \"www-data\"\n\n",
				tomlString("/lib/"+d+"/"), tomlString(filepath.Join(varLib, d)))
		}
	}
	fmt.Fprintf(&b, `[[http.route]]
static = %s
deny   = [".ht*"]
user   = "www-data"

[[http.route]]
suffix = ".php"
index  = "doku.php"
pool   = "php"
`, tomlString(root))
	return b.String()
}

// dokuWikiCopy makes a private DokuWiki in a new directory, readable by
// www-data (as root) and writable where the wiki writes: the package's code
// with its symlinks (lib/tpl, lib/plugins) resolved, conf/ from the
// package's /etc/dokuwiki defaults plus the test's local.php, users and
// ACL, and an empty data/ with a start page. PHP sessions go to a
// directory of its own. It returns the document root.
func dokuWikiCopy(t *testing.T, users string) string {
	t.Helper()
	root := shortTempDir(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(root, 0o755))
	// The package's inc/preload.php points the wiki at /etc/dokuwiki; without
	// it DokuWiki uses its own conf/ (DOKU_INC/conf/), as upstream does. The
	// package keeps lib/plugins/testing (the plugin of DokuWiki's own test
	// suite) mode 0700, closed to nobody: it is left out.
	must(copyTree(root, dokuWikiDir, func(rel string) bool {
		return rel == "inc/preload.php" || rel == "lib/plugins/testing"
	}))
	skipConf := map[string]bool{ // the package's own and the system's: written below
		"local.php": true, "users.auth.php": true, "acl.auth.php": true,
		"apache.conf": true, "lighttpd.conf": true, "htaccess": true,
	}
	must(copyTree(filepath.Join(root, "conf"), "/etc/dokuwiki", func(rel string) bool { return skipConf[rel] }))
	data := filepath.Join(root, "data")
	for _, d := range []string{"pages", "attic", "media", "media_attic", "media_meta", "meta", "cache", "index", "locks", "tmp", "log"} {
		must(os.MkdirAll(filepath.Join(data, d), 0o755))
	}
	sessions := filepath.Join(root, "sessions")
	must(os.Mkdir(sessions, 0o700))
	files := map[string]string{
		"inc/preload.php": "<?php\nini_set('session.save_path', " + phpString(sessions) + ");\n",
		"conf/local.php": "<?php\n$conf['title'] = 'fcgivisor test wiki';\n$conf['savedir'] = " + phpString(data) + ";\n" +
			"$conf['useacl'] = 1;\n$conf['superuser'] = '@admin';\n$conf['authtype'] = 'authplain';\n",
		// Anyone reads; only logged-in users edit: the edit needs the login.
		"conf/acl.auth.php":    "# acl.auth.php\n# <?php exit()?>\n*\t@ALL\t1\n*\t@user\t8\n",
		"conf/users.auth.php":  users,
		"data/pages/start.txt": "====== Welcome ======\n\nThis wiki runs through fcgivisor.\n",
	}
	for name, content := range files {
		must(os.WriteFile(filepath.Join(root, name), []byte(content), 0o644))
	}
	if os.Geteuid() == 0 {
		// php-cgi runs as www-data: it writes data/ and the sessions.
		www, err := user.Lookup("www-data")
		must(err)
		uid, _ := strconv.Atoi(www.Uid)
		gid, _ := strconv.Atoi(www.Gid)
		for _, d := range []string{data, sessions, filepath.Join(root, "conf")} {
			must(filepath.WalkDir(d, func(p string, _ os.DirEntry, err error) error {
				if err != nil {
					return err
				}
				return os.Lchown(p, uid, gid)
			}))
		}
	}
	return root
}

func phpString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// copyTree copies the tree at src into dst (created), following symlinks,
// with modes 0755 for directories and 0644 for files; skip names the paths
// (relative to src, slash-separated) not to copy.
func copyTree(dst, src string, skip func(rel string) bool) error {
	var walk func(rel string) error
	walk = func(rel string) error {
		if err := os.MkdirAll(filepath.Join(dst, rel), 0o755); err != nil {
			return err
		}
		ents, err := os.ReadDir(filepath.Join(src, rel))
		if err != nil {
			return err
		}
		for _, e := range ents {
			r := filepath.ToSlash(filepath.Join(rel, e.Name()))
			if skip(r) {
				continue
			}
			fi, err := os.Stat(filepath.Join(src, r)) // follows symlinks
			if err != nil {
				return err
			}
			if fi.IsDir() {
				if err := walk(r); err != nil {
					return err
				}
				continue
			}
			if !fi.Mode().IsRegular() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(src, r))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dst, r), b, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(".")
}

// wikiClient is a browser: it keeps DokuWiki's session cookies.
type wikiClient struct {
	in *instance
	c  *http.Client
}

func newWikiClient(t *testing.T, in *instance) *wikiClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &wikiClient{in: in, c: &http.Client{
		Transport:     in.transport,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (w *wikiClient) do(t *testing.T, method, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(context.Background(), method, w.in.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := w.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, string(b)
}

var (
	linkRe   = regexp.MustCompile(`\b(?:href|src)="(/lib/[^"]*)"`)
	formRe   = regexp.MustCompile(`(?s)<form[^>]*\bid="([^"]+)"[^>]*>(.*?)</form>`)
	hiddenRe = regexp.MustCompile(`<input[^>]*\btype="hidden"[^>]*>`)
	nameRe   = regexp.MustCompile(`\bname="([^"]*)"`)
	valueRe  = regexp.MustCompile(`\bvalue="([^"]*)"`)
)

// hiddenFields returns the hidden inputs of the form with that id in
// page, or fails t.
func hiddenFields(t *testing.T, page, id string) url.Values {
	t.Helper()
	for _, m := range formRe.FindAllStringSubmatch(page, -1) {
		if m[1] != id {
			continue
		}
		v := url.Values{}
		for _, in := range hiddenRe.FindAllString(m[2], -1) {
			n, val := nameRe.FindStringSubmatch(in), valueRe.FindStringSubmatch(in)
			if n == nil {
				continue
			}
			s := ""
			if val != nil {
				s = html.UnescapeString(val[1])
			}
			v.Set(html.UnescapeString(n[1]), s)
		}
		return v
	}
	t.Fatalf("no form %q in the page:\n%s", id, clip([]byte(page)))
	return nil
}

// TestPHPAppDokuWiki deploys Debian's DokuWiki through fcgivisor and uses
// it as a browser would: the start page, its CSS and JavaScript (made by
// lib/exe/css.php and js.php, which a static route once sent as source),
// its images, a login and a page edit (two form posts with their
// security token), while its configuration (password hashes), data and
// code directories stay closed and no script goes out as source.
func TestPHPAppDokuWiki(t *testing.T) {
	lang{"php"}.need(t)
	if _, err := os.Stat(filepath.Join(dokuWikiDir, "doku.php")); err != nil {
		t.Skip("not installed: dokuwiki")
	}
	t.Parallel()
	const password = "fcgivisor-secret"
	sum := md5.Sum([]byte(password))
	hash := hex.EncodeToString(sum[:])
	root := dokuWikiCopy(t, "# users.auth.php\n# <?php exit()?>\n# Don't modify the lines above\n"+
		"editor:"+hash+":Ed Itor:editor@example.invalid:admin,user\n")
	in := start(t, options{langs: []string{"php"}, docRoot: root, pool: asWWWData, routes: dokuWikiRoutes(root, "")})

	// The start page, through the pool route's index and by its name.
	for _, p := range []string{"/", "/doku.php", "/doku.php?id=start"} {
		resp, body := in.get(t, p)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(string(body), "<title>start [fcgivisor test wiki]</title>") ||
			!strings.Contains(string(body), "This wiki runs through fcgivisor.") {
			t.Errorf("GET %s: %d %s %q, want the rendered start page", p, resp.StatusCode, resp.Header.Get("Content-Type"), clip(body))
		}
	}

	// What the start page links to under /lib/, as a browser loads it: the
	// stylesheet and the scripts are run (css.php, js.php), not sent as
	// source; the images come from disk.
	_, startPage := in.get(t, "/doku.php?id=start")
	linked := map[string]bool{}
	for _, m := range linkRe.FindAllStringSubmatch(string(startPage), -1) {
		linked[html.UnescapeString(m[1])] = true
	}
	var css, js, img int
	for p := range linked {
		resp, body := in.get(t, p)
		typ := resp.Header.Get("Content-Type")
		want, size := "", 1
		switch u, _ := url.Parse(p); {
		case u.Path == "/lib/exe/css.php":
			css++
			want, size = "text/css", 1000
		case u.Path == "/lib/exe/js.php":
			js++
			want, size = "application/javascript", 1000
		case strings.HasSuffix(u.Path, ".png"):
			img++
			want = "image/png"
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(typ, want) || strings.Contains(typ, "php") ||
			bytes.Contains(body, []byte("<?php")) || len(body) < size {
			t.Errorf("GET %s (linked from the start page): %d %s %q, want %q made by the script or read from disk", p, resp.StatusCode, typ, clip(body), want)
		}
	}
	if css == 0 || js == 0 || img == 0 {
		t.Errorf("the start page links to %d css.php, %d js.php and %d .png under /lib/, want at least one each: %v", css, js, img, linked)
	}
	// Every script of lib/ outside plugins and templates (css.php and the
	// 14 others): whatever each answers, never its source.
	scripts, _ := filepath.Glob(filepath.Join(root, "lib/exe/*.php"))
	more, _ := filepath.Glob(filepath.Join(root, "lib/images/*/index.php"))
	more2, _ := filepath.Glob(filepath.Join(root, "lib/images/*/*/index.php"))
	scripts = append(append(scripts, more...), more2...)
	if len(scripts) < 12 {
		t.Fatalf("found %d scripts under lib/, want at least 12: %v", len(scripts), scripts)
	}
	for _, s := range scripts {
		p := strings.TrimPrefix(s, root)
		resp, body := in.get(t, p)
		if bytes.Contains(body, []byte("<?php")) || strings.Contains(resp.Header.Get("Content-Type"), "php") {
			t.Errorf("GET %s: %d %s %q: the script's source", p, resp.StatusCode, resp.Header.Get("Content-Type"), clip(body))
		}
	}

	// Assets come from disk, with their type.
	for p, typ := range map[string]string{
		"/lib/tpl/dokuwiki/images/logo.png":            "image/png",
		"/lib/tpl/dokuwiki/images/page-background.svg": "image/svg+xml",
		"/lib/images/admin/usermanager.png":            "image/png",
	} {
		want, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		resp, body := in.get(t, p)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != typ || !bytes.Equal(body, want) {
			t.Errorf("GET %s: %d %s, %d bytes, want %s, the file's %d bytes", p, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), typ, len(want))
		}
	}

	// The login form, then an edit: each post carries the form's sectok.
	w := newWikiClient(t, in)
	_, page := w.do(t, http.MethodGet, "/doku.php?id=start&do=login", nil)
	form := hiddenFields(t, page, "dw__login")
	form.Set("u", "editor")
	form.Set("p", password)
	if resp, body := w.do(t, http.MethodPost, "/doku.php?id=start&do=login", form); resp.StatusCode/100 != 3 {
		t.Fatalf("login POST: %d %q, want a redirect after logging in", resp.StatusCode, clip([]byte(body)))
	}
	const id = "playground:fcgivisor"
	_, page = w.do(t, http.MethodGet, "/doku.php?id="+id+"&do=edit", nil)
	form = hiddenFields(t, page, "dw__editform")
	if form.Get("sectok") == "" {
		t.Fatalf("the edit form has no sectok (not logged in?):\n%s", clip([]byte(page)))
	}
	sectok := form.Get("sectok")
	form.Set("wikitext", "Saved through **fcgivisor** by a form post.\n")
	form.Set("summary", "issue 11")
	form.Set("do[save]", "Save")
	// With a forged token nothing is saved: the token is checked, so the
	// post below proves the scraped one.
	form.Set("sectok", "forged")
	w.do(t, http.MethodPost, "/doku.php?id="+id, form)
	if _, err := os.Stat(filepath.Join(root, "data/pages/playground/fcgivisor.txt")); err == nil {
		t.Fatal("a post with a forged sectok saved the page")
	}
	form.Set("sectok", sectok)
	if resp, body := w.do(t, http.MethodPost, "/doku.php?id="+id, form); resp.StatusCode/100 != 3 {
		t.Fatalf("save POST: %d %q, want a redirect to the saved page", resp.StatusCode, clip([]byte(body)))
	}
	resp, body := in.get(t, "/doku.php?id="+id)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Saved through <strong>fcgivisor</strong> by a form post.") {
		t.Fatalf("GET the saved page: %d %q", resp.StatusCode, clip(body))
	}
	saved, err := os.ReadFile(filepath.Join(root, "data/pages/playground/fcgivisor.txt"))
	if err != nil || !strings.Contains(string(saved), "**fcgivisor**") {
		t.Fatalf("the page is not in the wiki's private data/: %v %q", err, saved)
	}

	// What nginx denies is the front's 404, however spelled, never content.
	for _, p := range []string{
		"/conf/users.auth.php", "/conf/users.auth.php?x", "/Conf/users.auth.php", "//conf/users.auth.php",
		"/%63onf/users.auth.php", "/conf/local.php", "/conf/acl.auth.php", "/conf/dokuwiki.php", "/conf/mime.conf", "/conf/", "/conf",
		"/data/pages/start.txt", "/data/pages/playground/fcgivisor.txt", "/data/", "/data",
		"/bin/dwpage.php", "/inc/init.php", "/inc/preload.php", "/vendor/autoload.php", "/install.php",
		"/.htaccess", "/lib/.htaccess",
	} {
		in.notServed(t, p, hash, "editor", "fcgivisor test wiki", "runs through fcgivisor", "Saved through", "<?php")
	}
}

// The routes of docs/examples.md on the package as installed: the code in
// /usr/share/dokuwiki, whose lib/tpl and lib/plugins are symlinks to
// /var/lib/dokuwiki/lib. Its assets are served, its code and the scripts
// behind the symlinks are not, neither run nor sent. No request reaches
// php-cgi: DokuWiki would write into /var/lib/dokuwiki.
func TestPHPAppDokuWikiPackageLayout(t *testing.T) {
	lang{"php"}.need(t)
	if _, err := os.Stat(filepath.Join(dokuWikiDir, "doku.php")); err != nil {
		t.Skip("not installed: dokuwiki")
	}
	t.Parallel()
	const varLib = "/var/lib/dokuwiki/lib"
	routes := dokuWikiRoutes(dokuWikiDir, varLib)
	checkDokuWikiDoc(t, routes)
	in := start(t, options{langs: []string{"php"}, docRoot: dokuWikiDir, pool: asWWWData, routes: routes})
	for p, typ := range map[string]string{
		"/lib/tpl/dokuwiki/images/logo.png":            "image/png",
		"/lib/tpl/dokuwiki/images/page-background.svg": "image/svg+xml",
		"/lib/plugins/usermanager/admin.svg":           "image/svg+xml",
		"/lib/plugins/usermanager/style.css":           "text/css; charset=utf-8",
		"/lib/images/admin/usermanager.png":            "image/png",
	} {
		want, err := os.ReadFile(filepath.Join(dokuWikiDir, p))
		if err != nil {
			t.Fatal(err)
		}
		resp, body := in.get(t, p)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != typ || !bytes.Equal(body, want) {
			t.Errorf("GET %s: %d %s, %d bytes, want %s, the file's %d bytes", p, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), typ, len(want))
		}
	}
	for _, p := range []string{
		"/lib/tpl/dokuwiki/main.php", "/lib/plugins/usermanager/admin.php", "/lib/plugins/action.php",
		"/bin/dwpage.php", "/inc/init.php", "/inc/preload.php", "/vendor/autoload.php", "/install.php",
		"/.htaccess", "/.htaccess.dist", "/inc/.htaccess", "/Inc/init.php",
	} {
		in.notServed(t, p, "<?php", "DOKU_INC", "Deny from all", "Require all denied")
	}
}

// checkDokuWikiDoc fails t unless the TOML of docs/examples.md's DokuWiki
// section has the routes this test serves (comments and spacing aside)
// and passes `fcgivisor check`.
func checkDokuWikiDoc(t *testing.T, routes string) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs/examples.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, _ := strings.Cut(string(doc), "## DokuWiki from the Debian package")
	_, block, _ := strings.Cut(sec, "```toml\n")
	block, _, _ = strings.Cut(block, "```")
	norm := func(s string) string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			l, _, _ = strings.Cut(l, "#")
			if k, v, ok := strings.Cut(l, "="); ok {
				l = strings.TrimSpace(k) + " = " + strings.TrimSpace(v)
			}
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	if !strings.Contains(norm(block), norm(routes)) {
		t.Fatalf("docs/examples.md's DokuWiki config does not have the routes the test serves:\n%s\nwant them in this order:\n%s", norm(block), norm(routes))
	}
	cfg := filepath.Join(t.TempDir(), "fcgivisor.toml")
	text := "[server]\nruntime_dir = " + tomlString(shortTempDir(t)) + "\n" + block
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runCLI(t, nil, "", "check", "-c", cfg); code != 0 {
		t.Fatalf("fcgivisor check of docs/examples.md's DokuWiki config: exit %d\n%s", code, out)
	}
}
