package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSecurityCitesRealTests: every test SECURITY.md names as the proof of
// a defence ("`PACKAGE TestName`") exists in that package, so that the
// page cannot go on citing a test that was renamed or removed.
func TestSecurityCitesRealTests(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "SECURITY.md"))
	if err != nil {
		t.Fatal(err)
	}
	cites := regexp.MustCompile("`([a-z]+) ((?:Test|Fuzz)[A-Za-z0-9_]+)[^`]*`").FindAllStringSubmatch(string(doc), -1)
	if len(cites) < 20 {
		t.Fatalf("SECURITY.md cites %d tests; the pattern `PACKAGE TestName` must have changed", len(cites))
	}
	sources := map[string]string{}
	for _, c := range cites {
		pkg, name := c[1], c[2]
		src, ok := sources[pkg]
		if !ok {
			files, _ := filepath.Glob(filepath.Join(repoRoot, pkg, "*_test.go"))
			var b strings.Builder
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				b.Write(data)
			}
			src = b.String()
			sources[pkg] = src
		}
		if !strings.Contains(src, "func "+name+"(") {
			t.Errorf("SECURITY.md cites `%s %s`, which does not exist", pkg, name)
		}
	}
}
