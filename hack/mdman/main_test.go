package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func render(t *testing.T, md string) string {
	t.Helper()
	var b strings.Builder
	if err := convert(&b, strings.NewReader(md), options{name: "x.toml", section: "5", summary: "test", version: "v1", manual: "File Formats", see: "fcgivisor(1)"}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestInline: the Markdown of the docs becomes roff that shows it.
func TestInline(t *testing.T) {
	for md, want := range map[string]string{
		"`a-b` and **c**":                       `\fBa\-b\fR and \fBc\fR`,
		"see [`[[http.route]]`](#httproute).":   `see \fB[[http.route]]\fR.`,
		"[design.md](design.md#reload) and [x]": "design.md and [x]",
		`a\|b \*`:                               `a|b *`,
		`back\slash`:                            `back\eslash`,
		"90 % → µs":                             `90 % \[u2192] \[u00B5]s`,
		"`` a`b ``":                             "\\fBa`b\\fR",
	} {
		if got := text(md); got != want {
			t.Errorf("text(%q) = %q, want %q", md, got, want)
		}
	}
	if got := line(text(".PP is not a request")); !strings.HasPrefix(got, `\&.`) {
		t.Errorf("a line starting with a dot: %q", got)
	}
}

// TestBlocks: headings, tables (escaped pipes, the explaining column),
// lists and code blocks.
func TestBlocks(t *testing.T) {
	page := render(t, "# Title\n\nIntro\ntext.\n\n## Finding it\n\n1. `-c`;\n2. two\n   lines.\n\n"+
		"## [server]\n\n| key | type | what it does |\n| --- | --- | --- |\n| `a` | path | does `x\\|y` |\n\n"+
		"### Sub\n\n```toml\n.x = \"\\\\\"\n```\n")
	for _, want := range []string{
		".TH X.TOML 5 \"\" \"x.toml v1\" \"File Formats\"\n",
		".SH NAME\nx.toml \\- test\n.SH DESCRIPTION\n.PP\nIntro text.\n",
		".SH \"FINDING IT\"\n.IP 1. 4\n\\fB\\-c\\fR;\n.IP 2. 4\ntwo lines.\n",
		".SH \"[server]\"\n.TP\n\\fBa\\fR\n.br\n\\fItype\\fR: path\n.br\ndoes \\fBx|y\\fR\n",
		".SS \"Sub\"\n.PP\n.RS 4\n.nf\n\\&.x = \"\\e\\e\"\n.fi\n.RE\n",
		".SH SEE ALSO\n.BR fcgivisor (1)\n",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
}

// TestConfigurationPage renders docs/configuration.md as make does:
// every section and every key of its tables is in the page, and groff
// reads it without a warning.
func TestConfigurationPage(t *testing.T) {
	md, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	page := render(t, string(md))
	heading := regexp.MustCompile("(?m)^## (.*)$")
	for _, m := range heading.FindAllStringSubmatch(string(md), -1) {
		title := m[1]
		if !strings.ContainsAny(title, "[`") {
			title = strings.ToUpper(title)
		}
		if !strings.Contains(page, ".SH "+quoted(text(title))+"\n") {
			t.Errorf("no .SH for %q", m[0])
		}
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|")
	keys := row.FindAllStringSubmatch(string(md), -1)
	if len(keys) < 50 {
		t.Fatalf("found %d key rows in docs/configuration.md: the test no longer reads its tables", len(keys))
	}
	for _, k := range keys {
		if !strings.Contains(page, ".TP\n\\fB"+escape(k[1], true)+"\\fR\n") {
			t.Errorf("no entry for key %s", k[1])
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff is not installed")
	}
	file := filepath.Join(t.TempDir(), "fcgivisor.toml.5")
	if err := os.WriteFile(file, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", file).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("groff -man -ww: %v\n%s", err, out)
	}
	// No text line may read as a request: each starts with a letter, a
	// font or other escape, or is one of the requests mdman writes.
	sc := bufio.NewScanner(strings.NewReader(page))
	request := regexp.MustCompile(`^\.(TH|SH|SS|PP|TP|IP|RS|RE|nf|fi|br|nh|ad|BR) ?`)
	for n := 1; sc.Scan(); n++ {
		if l := sc.Text(); (strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'")) && !request.MatchString(l) {
			t.Errorf("line %d reads as a request: %q", n, l)
		}
	}
}
