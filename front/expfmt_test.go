package front

import (
	"math"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseExposition parses text with the Prometheus project's own parser of
// the text format (what a Prometheus server scrapes with), failing t on
// any error.
func parseExposition(t testing.TB, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("the Prometheus text parser refuses /metrics: %v\n%s", err, text)
	}
	return fams
}

// metricWith is the metric of fam whose labels include want, nil when
// none.
func metricWith(fam *dto.MetricFamily, want map[string]string) *dto.Metric {
	for _, m := range fam.GetMetric() {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			ok = ok && found
		}
		if ok {
			return m
		}
	}
	return nil
}

// TestMetricsParseWithPrometheus: the exposition is what Prometheus
// reads, with the types and values fcgivisor meant.
func TestMetricsParseWithPrometheus(t *testing.T) {
	text := renderMetrics(t, testSnapshot())
	fams := parseExposition(t, text)
	if len(fams) != len(families()) {
		t.Errorf("the parser read %d families, fcgivisor writes %d", len(fams), len(families()))
	}
	for _, f := range families() {
		fam := fams[f.name]
		if fam == nil {
			t.Errorf("family %s not parsed", f.name)
			continue
		}
		if want := strings.ToUpper(f.typ); fam.GetType().String() != want {
			t.Errorf("%s: type %s, want %s", f.name, fam.GetType(), want)
		}
	}
	bi := metricWith(fams["fcgivisor_build_info"], map[string]string{"version": "v1.2.3"})
	if bi == nil || bi.GetGauge().GetValue() != 1 || len(bi.GetLabel()) != 2 {
		t.Errorf("fcgivisor_build_info = %v", bi)
	}
	if st := fams["fcgivisor_start_time_seconds"].GetMetric(); len(st) != 1 || st[0].GetGauge().GetValue() != 1740830400.5 {
		t.Errorf("fcgivisor_start_time_seconds = %v", st)
	}
	h := metricWith(fams["fcgivisor_request_duration_seconds"], map[string]string{"pool": "php"}).GetHistogram()
	if h.GetSampleCount() != 5 || h.GetSampleSum() != 2.5 || len(h.GetBucket()) != 4 {
		t.Fatalf("fcgivisor_request_duration_seconds{pool=php} = %v", h)
	}
	for i, want := range []struct {
		le    float64
		count uint64
	}{{0.1, 2}, {1, 4}, {10, 4}, {math.Inf(1), 5}} {
		if b := h.GetBucket()[i]; b.GetUpperBound() != want.le || b.GetCumulativeCount() != want.count {
			t.Errorf("bucket %d: le %v count %d, want %v %d", i, b.GetUpperBound(), b.GetCumulativeCount(), want.le, want.count)
		}
	}
	other := metricWith(fams["fcgivisor_queue_wait_seconds"], map[string]string{"pool": "a\"b\\c\nd"})
	if other == nil || other.GetHistogram().GetSampleCount() != 0 || math.IsNaN(other.GetHistogram().GetSampleSum()) {
		t.Errorf("the failing pool's queue wait histogram = %v (its name unescaped by the parser)", other)
	}
	w := metricWith(fams["fcgivisor_worker_state"], map[string]string{"pool": "php", "pid": "99", "state": "busy"})
	if w.GetGauge().GetValue() != 1 {
		t.Errorf("the draining generation's worker 99 is not busy: %v", w)
	}
	if c := metricWith(fams["fcgivisor_slow_requests_total"], map[string]string{"pool": "php"}); c.GetCounter().GetValue() != 3 {
		t.Errorf("fcgivisor_slow_requests_total{pool=php} = %v", c)
	}
}
