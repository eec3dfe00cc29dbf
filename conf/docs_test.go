package conf

import (
	"bufio"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// configDoc is the configuration reference, which must list every key conf
// accepts (issue 9).
const configDoc = "../docs/configuration.md"

// TestDocsListEveryKey keeps docs/configuration.md in step with the schema.
// The reference has a heading naming each TOML table ("## [server]",
// "## [[http.route]]", "## [pool.NAME]") and, under it, Markdown tables
// whose first column is a key in backticks. The test fails when a key conf
// accepts has no row under its table's heading, when a row or heading names
// a key or table conf refuses, or when a key is listed twice.
//
// What conf accepts is taken twice, so that the test's notion cannot drift
// from conf's: from the toml tags decoder.table matches keys against
// (schemaSections), and from the decoder itself, by parsing a file with
// each key (probeKey).
func TestDocsListEveryKey(t *testing.T) {
	doc := docSections(t, configDoc)
	schema := schemaSections(t)

	for _, sec := range sortedKeys(schema) {
		documented, ok := doc[sec]
		if !ok {
			t.Errorf("%s: no heading for %s, a table conf accepts (add \"## %s\" and a table of its keys)", configDoc, sec, sec)
			continue
		}
		for _, k := range schema[sec] {
			if !slices.Contains(documented, k) {
				t.Errorf("%s: %s has no row for `%s`, a key conf accepts (conf/types.go)", configDoc, sec, k)
			}
			if !probeKey(t, sec, k) {
				t.Errorf("conf refuses %s key %q although its struct has the tag: this test no longer matches the decoder", sec, k)
			}
		}
	}
	for _, sec := range sortedKeys(doc) {
		if _, ok := schema[sec]; !ok {
			t.Errorf("%s: heading names %s, which is not a table conf accepts", configDoc, sec)
			continue
		}
		seen := map[string]bool{}
		for _, k := range doc[sec] {
			if seen[k] {
				t.Errorf("%s: %s lists `%s` twice", configDoc, sec, k)
			}
			seen[k] = true
			if !slices.Contains(schema[sec], k) || !probeKey(t, sec, k) {
				t.Errorf("%s: %s documents `%s`, which conf refuses (unknown key)", configDoc, sec, k)
			}
		}
		// The probe must be able to see a refusal, or the checks above
		// prove nothing.
		if probeKey(t, sec, "not_a_key_of_fcgivisor") {
			t.Errorf("probing %s: an unknown key was not refused; the probe builds the wrong table", sec)
		}
	}
}

var (
	// docTable finds the TOML table a heading names.
	docTable = regexp.MustCompile(`\[\[[A-Za-z0-9_.]+\]\]|\[[A-Za-z0-9_.]+\]`)
	// docKey finds the key in the first column of a Markdown table row.
	docKey = regexp.MustCompile("^\\|\\s*`([^`]+)`\\s*\\|")
)

// docSections returns, for each heading of the reference at path that
// names a TOML table, the keys in the first column of the table rows under
// it, up to the next heading. Fenced code blocks are skipped.
func docSections(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sec, fenced := "", false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			fenced = !fenced
		case fenced:
		case strings.HasPrefix(line, "#"):
			sec = docTable.FindString(line)
			if sec != "" {
				if _, dup := out[sec]; dup {
					t.Errorf("%s: two headings name %s", path, sec)
				}
				out[sec] = []string{}
			}
		case sec != "":
			if m := docKey.FindStringSubmatch(line); m != nil {
				out[sec] = append(out[sec], m[1])
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// schemaSections returns the tables conf accepts, written as the
// reference's headings write them, with the keys of each: the toml tags
// of the struct the decoder fills for that table (tomlFields, the list
// decoder.table refuses unknown keys against). A struct field is a
// [table], a map of structs is [table.NAME], a slice of structs is an
// [[array.of.tables]]; the key naming a nested table is a key of its parent
// too (http.route).
func schemaSections(t *testing.T) map[string][]string {
	out := map[string][]string{}
	structOf := func(ft reflect.Type) reflect.Type {
		if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
			return ft.Elem()
		}
		return nil
	}
	// path is the table as a heading writes it, "" for the top level.
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		byName, names := tomlFields(typ)
		if path != "" {
			out[path] = names
		}
		for _, name := range names {
			ft := typ.Field(byName[name]).Type
			sub := name
			if path != "" {
				sub = strings.Trim(path, "[]") + "." + name
			}
			switch {
			case ft.Kind() == reflect.Struct:
				walk(ft, "["+sub+"]")
			case ft.Kind() == reflect.Map && structOf(ft.Elem()) != nil:
				walk(structOf(ft.Elem()), "["+sub+".NAME]")
			case ft.Kind() == reflect.Slice && structOf(ft.Elem()) != nil:
				walk(structOf(ft.Elem()), "[["+sub+"]]")
			case path == "":
				t.Errorf("Config has the top-level key %q, which is not a table: the reference has no place for it; extend this test", name)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return out
}

// probeKey reports whether conf's decoder accepts key in the table named
// sec (as a heading writes it): it parses a file that sets key there and
// looks for an "unknown key" error about it. The value is 0, whatever the
// key's type: a type mismatch is not a refusal of the key.
func probeKey(t *testing.T, sec, key string) bool {
	t.Helper()
	name := strings.Trim(sec, "[]")
	var segs []string
	for _, s := range strings.Split(name, ".") {
		if s == "NAME" {
			s = "x" // [pool.NAME]: any pool name
		}
		segs = append(segs, s)
	}
	name = strings.Join(segs, ".")
	header, base := "["+name+"]", name
	if strings.HasPrefix(sec, "[[") {
		header, base = "[["+name+"]]", keyElem(name, 0)
	}
	src := header + "\n" + toml.Key{key}.String() + " = 0\n"
	_, err := Parse("probe.toml", []byte(src))
	errs, _ := err.(Errors)
	want := keyChild(base, key)
	for _, e := range errs {
		if e.Key == "" {
			t.Fatalf("probing %s key %q: %v\n%s", sec, key, e, src)
		}
		if e.Key == want && strings.HasPrefix(e.Msg, "unknown key") {
			return false
		}
	}
	return true
}
