package front

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	monitoringDoc = "../docs/monitoring.md"
	dashboard     = "../contrib/grafana/fcgivisor.json"
)

// metricName finds the names of fcgivisor's metrics in text.
var metricName = regexp.MustCompile(`\bfcgivisor_[a-z_]+\b`)

// exposed reports whether name is a series fcgivisor writes: a family's
// name, or a histogram's _bucket, _sum or _count.
func exposed(name string) bool {
	for _, f := range families() {
		if name == f.name {
			return true
		}
		if f.typ == "histogram" && slices.Contains([]string{f.name + "_bucket", f.name + "_sum", f.name + "_count"}, name) {
			return true
		}
	}
	return false
}

// TestMonitoringDocListsEveryMetric keeps docs/monitoring.md in step with
// /metrics: its table lists each metric fcgivisor writes, with its type,
// once; and any fcgivisor_ name the page mentions is one it writes.
func TestMonitoringDocListsEveryMetric(t *testing.T) {
	doc, err := os.ReadFile(monitoringDoc)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `(fcgivisor_[a-z_]+)` \\| ([a-z]+) \\|")
	listed := map[string]string{}
	for _, line := range strings.Split(string(doc), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			if _, dup := listed[m[1]]; dup {
				t.Errorf("%s lists %s twice", monitoringDoc, m[1])
			}
			listed[m[1]] = m[2]
		}
	}
	for _, f := range families() {
		switch typ, ok := listed[f.name]; {
		case !ok:
			t.Errorf("%s: no row for %s, which /metrics writes (front/metrics.go)", monitoringDoc, f.name)
		case typ != f.typ:
			t.Errorf("%s: %s is a %s, the page says %s", monitoringDoc, f.name, f.typ, typ)
		}
	}
	for _, name := range metricName.FindAllString(string(doc), -1) {
		if !exposed(name) {
			t.Errorf("%s names %s, which /metrics does not write", monitoringDoc, name)
		}
	}
}

// TestGrafanaDashboard: contrib/grafana/fcgivisor.json is valid JSON, a
// dashboard with panels, and every query in it (panel targets, template
// variables) names metrics fcgivisor writes, and only those.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string
		Panels     []json.RawMessage
		Templating struct{ List []json.RawMessage }
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboard, err)
	}
	if d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: title %q, %d panels; want a dashboard", dashboard, d.Title, len(d.Panels))
	}
	var queries []string
	var doc any
	json.Unmarshal(data, &doc)
	collectQueries(doc, &queries)
	if len(queries) < len(d.Panels)/2 {
		t.Fatalf("%s: %d queries for %d panels", dashboard, len(queries), len(d.Panels))
	}
	used := map[string]bool{}
	for _, q := range queries {
		names := metricName.FindAllString(q, -1)
		if len(names) == 0 {
			t.Errorf("%s: query %q names no fcgivisor metric", dashboard, q)
		}
		if strings.Contains(q, "phpfpm_") {
			t.Errorf("%s: query %q names a php-fpm_exporter metric", dashboard, q)
		}
		for _, name := range names {
			used[name] = true
			if !exposed(name) {
				t.Errorf("%s: query %q names %s, which fcgivisor does not write", dashboard, q, name)
			}
		}
	}
	t.Logf("%d queries use %d metrics", len(queries), len(used))
}

// collectQueries appends every PromQL query in a decoded dashboard: the
// "expr" of targets and the string "query" or "definition" of template
// variables.
func collectQueries(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "expr" || ((k == "query" || k == "definition") && strings.Contains(s, "("))) {
				*out = append(*out, s)
				continue
			}
			collectQueries(x, out)
		}
	case []any:
		for _, x := range v {
			collectQueries(x, out)
		}
	}
}
