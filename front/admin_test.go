package front

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// testStart is when the test's fcgivisor and its php pool started.
var testStart = time.Date(2025, 3, 1, 12, 0, 0, 500e6, time.UTC)

// testHistogram is a histogram of 5 observations: 2 at most 0.1 s, 4 at
// most 1 s, summing to 2.5 s.
func testHistogram() supervisor.Histogram {
	return supervisor.Histogram{Bounds: []float64{0.1, 1, 10}, Counts: []int64{2, 4, 4, 5}, Count: 5, Sum: 2.5}
}

// testStatuses is a snapshot of two pools: one serving, with a busy, an idle
// and a retiring worker; one failing, with no worker and a name that needs
// escaping in a label.
func testStatuses() []supervisor.Status {
	return []supervisor.Status{
		{
			Name: "php", Mode: "dynamic", State: "running",
			StartTime: testStart, GenerationStartTime: testStart.Add(time.Hour),
			Queue: 3, OldestQueuedSeconds: 1.25, MaxQueue: 7,
			MinWorkers: 1, MaxWorkers: 8, Concurrency: 1,
			IdleWorkers: 1, BusyWorkers: 1, TotalWorkers: 3, MaxBusyWorkers: 6,
			BusySlots: 1, IdleSlots: 1,
			Workers: []supervisor.WorkerStatus{
				{Pid: 101, State: "busy", Requests: 42, AgeSeconds: 61.5, RSSBytes: 10 << 20,
					Request:     &supervisor.RequestStatus{Method: "GET", URI: "/slow.php?x=1", Seconds: 0.75, CPUSeconds: 0.5},
					LastRequest: &supervisor.RequestStatus{Method: "POST", URI: "/form.php", Seconds: 0.125, CPUSeconds: 0.12, RSSBytes: 10 << 20}},
				{Pid: 102, State: "idle", Requests: 7, AgeSeconds: 3, RSSBytes: 9 << 20,
					LastRequest: &supervisor.RequestStatus{Method: "GET", URI: "/", Seconds: 0.25, CPUSeconds: 0.01, RSSBytes: 8 << 20}},
				{Pid: 103, State: "retiring", Requests: 1000, AgeSeconds: 600, RSSBytes: 12 << 20},
			},
			Totals: supervisor.Totals{
				Accepted:          1049,
				Responses:         map[int]int64{200: 1000, 404: 9, 502: 2, 504: 1},
				Timeouts:          1,
				Recycled:          map[string]int64{"max_requests": 4, "weird cause": 1},
				Spawns:            8,
				Exits:             5,
				MaxWorkersReached: 2,
				SlowRequests:      3,
				CGIFallbacks:      4,
			},
			RequestDuration: testHistogram(),
			QueueWait:       supervisor.Histogram{Bounds: []float64{0.001, 0.5}, Counts: []int64{4, 4, 5}, Count: 5, Sum: 1.5},
		},
		{
			Name: "a\"b\\c\nd", Mode: "static", State: "failing",
			MaxWorkers: 2, Concurrency: 1,
			LastExit: "exit status 1",
			Totals:   supervisor.Totals{Spawns: 3, Exits: 3},
		},
	}
}

// testDraining is a generation of php that a reload replaced, finishing
// one request on worker 99.
func testDraining() supervisor.Status {
	st := testStatuses()[0]
	st.State, st.Draining, st.GenerationStartTime = "running", true, testStart
	st.Queue, st.OldestQueuedSeconds, st.BusySlots, st.IdleSlots = 1, 2, 1, 0
	st.IdleWorkers, st.BusyWorkers, st.TotalWorkers = 0, 1, 1
	st.Workers = []supervisor.WorkerStatus{{Pid: 99, State: "busy", Requests: 5000, AgeSeconds: 7200, RSSBytes: 20 << 20,
		Request: &supervisor.RequestStatus{Method: "GET", URI: "/report.php", Seconds: 30, CPUSeconds: 29.5}}}
	return st
}

// testSnapshot is testStatuses as the endpoints take them: php with its
// draining generation, fcgivisor v1.2.3 started at testStart.
func testSnapshot() *snapshot {
	sts := testStatuses()
	return &snapshot{
		src:   &Source{Version: "v1.2.3", Started: testStart},
		pools: []poolSnap{{main: sts[0], others: []supervisor.Status{testDraining()}}, {main: sts[1]}},
	}
}

func renderMetrics(t *testing.T, snap *snapshot) string {
	t.Helper()
	var b bytes.Buffer
	if err := writeMetrics(&b, snap); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestWriteMetricsLines(t *testing.T) {
	text := renderMetrics(t, testSnapshot())
	lines := strings.Split(text, "\n")
	const esc = `a\"b\\c\nd` // the second pool's name, escaped
	for _, want := range []string{
		`# HELP fcgivisor_build_info fcgivisor's version and the Go version it was built with; always 1.`,
		`# TYPE fcgivisor_build_info gauge`,
		`fcgivisor_build_info{version="v1.2.3",goversion="` + runtime.Version() + `"} 1`,
		`fcgivisor_start_time_seconds 1740830400.5`,
		`fcgivisor_pool_start_time_seconds{pool="php"} 1740830400.5`,
		`# HELP fcgivisor_workers Worker processes by state (a worker being recycled or stopped is retiring, busy or not).`,
		`# TYPE fcgivisor_workers gauge`,
		// The draining generation's busy worker is one of the pool's.
		`fcgivisor_workers{pool="php",state="busy"} 2`,
		`fcgivisor_workers{pool="php",state="idle"} 1`,
		`fcgivisor_workers{pool="php",state="retiring"} 1`,
		`fcgivisor_workers{pool="` + esc + `",state="busy"} 0`,
		`fcgivisor_workers{pool="` + esc + `",state="idle"} 0`,
		`fcgivisor_workers{pool="` + esc + `",state="retiring"} 0`,
		`fcgivisor_pool_state{pool="php",state="starting"} 0`,
		`fcgivisor_pool_state{pool="php",state="running"} 1`,
		`fcgivisor_pool_state{pool="php",state="failing"} 0`,
		`fcgivisor_pool_state{pool="php",state="stopping"} 0`,
		`fcgivisor_pool_state{pool="` + esc + `",state="failing"} 1`,
		`fcgivisor_pool_state{pool="` + esc + `",state="running"} 0`,
		`fcgivisor_max_workers{pool="php"} 8`,
		`fcgivisor_slots{pool="php",state="busy"} 2`,
		`fcgivisor_slots{pool="php",state="idle"} 1`,
		`# TYPE fcgivisor_queue_length gauge`,
		`fcgivisor_queue_length{pool="php"} 4`,
		`fcgivisor_queue_length{pool="` + esc + `"} 0`,
		`fcgivisor_queue_length_max{pool="php"} 7`,
		`fcgivisor_workers_busy_max{pool="php"} 6`,
		`fcgivisor_queue_oldest_seconds{pool="php"} 2`,
		`fcgivisor_worker_rss_bytes{pool="php",pid="101"} 10485760`,
		`fcgivisor_worker_rss_bytes{pool="php",pid="103"} 12582912`,
		`fcgivisor_worker_rss_bytes{pool="php",pid="99"} 20971520`,
		`fcgivisor_worker_state{pool="php",pid="99",state="busy"} 1`,
		`fcgivisor_worker_state{pool="php",pid="99",state="idle"} 0`,
		`fcgivisor_worker_state{pool="php",pid="103",state="retiring"} 1`,
		`# TYPE fcgivisor_worker_requests_total counter`,
		`fcgivisor_worker_requests_total{pool="php",pid="101"} 42`,
		`fcgivisor_worker_requests_total{pool="php",pid="99"} 5000`,
		// In progress, or the last one when idle; none yet: 0.
		`fcgivisor_worker_request_duration_seconds{pool="php",pid="101"} 0.75`,
		`fcgivisor_worker_request_duration_seconds{pool="php",pid="102"} 0.25`,
		`fcgivisor_worker_request_duration_seconds{pool="php",pid="103"} 0`,
		`fcgivisor_worker_request_duration_seconds{pool="php",pid="99"} 30`,
		`fcgivisor_worker_last_request_duration_seconds{pool="php",pid="101"} 0.125`,
		`fcgivisor_worker_last_request_cpu_seconds{pool="php",pid="101"} 0.12`,
		`fcgivisor_worker_last_request_cpu_seconds{pool="php",pid="99"} 0`,
		`fcgivisor_worker_last_request_rss_bytes{pool="php",pid="102"} 8388608`,
		`# TYPE fcgivisor_requests_accepted_total counter`,
		`fcgivisor_requests_accepted_total{pool="php"} 1049`,
		`# TYPE fcgivisor_requests_total counter`,
		`fcgivisor_requests_total{pool="php",code="200"} 1000`,
		`fcgivisor_requests_total{pool="php",code="404"} 9`,
		`fcgivisor_requests_total{pool="php",code="502"} 2`,
		`fcgivisor_requests_total{pool="php",code="504"} 1`,
		`fcgivisor_request_timeouts_total{pool="php"} 1`,
		`fcgivisor_workers_recycled_total{pool="php",cause="max_requests"} 4`,
		`fcgivisor_workers_recycled_total{pool="php",cause="idle"} 0`,
		`fcgivisor_workers_recycled_total{pool="php",cause="weird cause"} 1`,
		`fcgivisor_workers_recycled_total{pool="` + esc + `",cause="max_memory"} 0`,
		`fcgivisor_worker_spawns_total{pool="php"} 8`,
		`fcgivisor_worker_spawns_total{pool="` + esc + `"} 3`,
		`fcgivisor_worker_exits_total{pool="php"} 5`,
		`fcgivisor_max_workers_reached_total{pool="php"} 2`,
		`fcgivisor_slow_requests_total{pool="php"} 3`,
		`fcgivisor_slow_requests_total{pool="` + esc + `"} 0`,
		`# TYPE fcgivisor_request_duration_seconds histogram`,
		`fcgivisor_request_duration_seconds_bucket{pool="php",le="0.1"} 2`,
		`fcgivisor_request_duration_seconds_bucket{pool="php",le="1"} 4`,
		`fcgivisor_request_duration_seconds_bucket{pool="php",le="10"} 4`,
		`fcgivisor_request_duration_seconds_bucket{pool="php",le="+Inf"} 5`,
		`fcgivisor_request_duration_seconds_sum{pool="php"} 2.5`,
		`fcgivisor_request_duration_seconds_count{pool="php"} 5`,
		`fcgivisor_request_duration_seconds_bucket{pool="` + esc + `",le="+Inf"} 0`,
		`fcgivisor_queue_wait_seconds_bucket{pool="php",le="0.001"} 4`,
		`fcgivisor_queue_wait_seconds_sum{pool="php"} 1.5`,
		`fcgivisor_cgi_fallbacks_total{pool="php"} 4`,
		`fcgivisor_cgi_fallbacks_refused_total{pool="php"} 0`,
		`# TYPE fcgivisor_max_workers_reached_total counter`,
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("metrics lack the line %s", want)
		}
	}
	// The failing pool answered nothing and has no worker: no sample
	// invents a code or a pid for it.
	for _, prefix := range []string{
		`fcgivisor_requests_total{pool="` + esc + `"`,
		`fcgivisor_worker_rss_bytes{pool="` + esc + `"`,
		`fcgivisor_worker_state{pool="` + esc + `"`,
	} {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				t.Errorf("unexpected sample %s", l)
			}
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
}

// TestWriteMetricsWellFormed checks the whole output against the text
// format: each family once, HELP then TYPE then its samples, every sample
// named after its family, well-formed, and no series twice.
func TestWriteMetricsWellFormed(t *testing.T) {
	text := renderMetrics(t, testSnapshot())
	if !strings.HasSuffix(text, "\n") {
		t.Fatalf("output does not end in a line feed")
	}
	labelValue := `"(?:[^"\\\n]|\\[\\"n])*"`
	sampleRE := regexp.MustCompile(`^(fcgivisor_[a-z_]+)(?:\{[a-z_]+=` + labelValue + `(?:,[a-z_]+=` + labelValue + `)*\})? (-?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?)$`)
	helpRE := regexp.MustCompile(`^# HELP (fcgivisor_[a-z_]+) \S.*$`)
	typeRE := regexp.MustCompile(`^# TYPE (fcgivisor_[a-z_]+) (gauge|counter|histogram)$`)
	families := map[string]bool{}
	series := map[string]bool{}
	var current string
	var typ string
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case helpRE.MatchString(l):
			name := helpRE.FindStringSubmatch(l)[1]
			if families[name] {
				t.Errorf("line %d: family %s appears twice", i+1, name)
			}
			families[name] = true
			current, typ = name, ""
		case typeRE.MatchString(l):
			m := typeRE.FindStringSubmatch(l)
			if m[1] != current || typ != "" {
				t.Errorf("line %d: %q not right after the HELP of %s", i+1, l, m[1])
			}
			typ = m[2]
		case sampleRE.MatchString(l):
			name := sampleRE.FindStringSubmatch(l)[1]
			if typ == "histogram" {
				name = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			}
			if name != current || typ == "" {
				t.Errorf("line %d: sample %q outside its family (current %s)", i+1, l, current)
			}
			if typ == "counter" && !strings.HasSuffix(name, "_total") {
				t.Errorf("line %d: counter %s does not end in _total", i+1, name)
			}
			key := l[:strings.LastIndexByte(l, ' ')]
			if series[key] {
				t.Errorf("line %d: series %s twice", i+1, key)
			}
			series[key] = true
		default:
			t.Errorf("line %d is not in the text format: %q", i+1, l)
		}
	}
	if len(families) < 28 {
		t.Errorf("%d families, want 28 or more", len(families))
	}
}

// TestWriteMetricsNoPools: without pools only the process's own metrics
// have samples.
func TestWriteMetricsNoPools(t *testing.T) {
	text := renderMetrics(t, &snapshot{src: &Source{Version: "dev"}})
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if !strings.HasPrefix(l, "# ") && !strings.HasPrefix(l, "fcgivisor_build_info{") {
			t.Errorf("sample %q without any pool", l)
		}
	}
}

func TestEscapeLabel(t *testing.T) {
	for in, want := range map[string]string{
		"php":        "php",
		`a"b`:        `a\"b`,
		`a\b`:        `a\\b`,
		"a\nb":       `a\nb`,
		`\"` + "\n":  `\\\"\n`,
		"tab\tstays": "tab\tstays",
		"ünïcode":    "ünïcode",
	} {
		if got := escapeLabel(in); got != want {
			t.Errorf("escapeLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {42, "42"}, {10485760, "10485760"}, {1.25, "1.25"}, {0.001, "0.001"},
		{1740830400.5, "1740830400.5"}, {0.0001, "0.0001"}, {1e-7, "1e-07"},
	} {
		if got := formatValue(tc.v); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

// keys returns the keys of the JSON object v, sorted.
func keys(t *testing.T, what string, v any) []string {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s is %T, want an object", what, v)
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func hasKeys(t *testing.T, what string, v any, want ...string) map[string]any {
	t.Helper()
	got := keys(t, what, v)
	for _, k := range want {
		if !slices.Contains(got, k) {
			t.Errorf("%s lacks key %q (has %v)", what, k, got)
		}
	}
	return v.(map[string]any)
}

func TestWriteStatusShape(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(60))
	var b bytes.Buffer
	if err := writeStatus(&b, testSnapshot()); err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, b.String())
	}
	if got := keys(t, "document", doc); !slices.Equal(got, []string{"gc_percent", "go_version", "gomaxprocs", "pools", "start_time", "version"}) {
		t.Fatalf("document keys %v, want [gc_percent go_version gomaxprocs pools start_time version]", got)
	}
	if d := doc.(map[string]any); d["gc_percent"] != float64(60) {
		t.Fatalf("gc_percent %v, want 60 (this process's, as set)", d["gc_percent"])
	}
	if d := doc.(map[string]any); d["version"] != "v1.2.3" || d["start_time"] != "2025-03-01T12:00:00.5Z" || d["go_version"] != runtime.Version() {
		t.Errorf("document = version %v, start_time %v, go_version %v", d["version"], d["start_time"], d["go_version"])
	}
	pools, ok := doc.(map[string]any)["pools"].([]any)
	if !ok || len(pools) != 2 {
		t.Fatalf("pools = %v, want a list of 2", doc.(map[string]any)["pools"])
	}
	php := hasKeys(t, "pools[0]", pools[0], "name", "mode", "state", "queue", "workers", "totals")
	if php["name"] != "php" || php["mode"] != "dynamic" || php["state"] != "running" || php["queue"] != 3.0 {
		t.Errorf("pools[0] = %v", php)
	}
	workers := php["workers"].([]any)
	if len(workers) != 3 {
		t.Fatalf("pools[0].workers has %d entries, want 3", len(workers))
	}
	w := hasKeys(t, "workers[0]", workers[0], "pid", "state", "requests", "age_seconds", "rss_bytes", "request")
	if w["pid"] != 101.0 || w["state"] != "busy" || w["requests"] != 42.0 || w["age_seconds"] != 61.5 || w["rss_bytes"] != float64(10<<20) {
		t.Errorf("workers[0] = %v", w)
	}
	req := hasKeys(t, "workers[0].request", w["request"], "method", "uri", "seconds", "cpu_seconds")
	if req["method"] != "GET" || req["uri"] != "/slow.php?x=1" || req["seconds"] != 0.75 || req["cpu_seconds"] != 0.5 {
		t.Errorf("workers[0].request = %v", req)
	}
	last := hasKeys(t, "workers[0].last_request", w["last_request"], "method", "uri", "seconds", "cpu_seconds", "rss_bytes")
	if last["method"] != "POST" || last["uri"] != "/form.php" || last["seconds"] != 0.125 || last["cpu_seconds"] != 0.12 || last["rss_bytes"] != float64(10<<20) {
		t.Errorf("workers[0].last_request = %v", last)
	}
	if _, ok := workers[1].(map[string]any)["request"]; ok {
		t.Errorf("idle worker has a request: %v", workers[1])
	}
	hasKeys(t, "pools[0]", php, "start_time", "generation_start_time", "max_queue", "idle_workers", "busy_workers", "total_workers", "max_busy_workers", "request_duration", "queue_wait")
	if php["start_time"] != "2025-03-01T12:00:00.5Z" || php["max_queue"] != 7.0 || php["idle_workers"] != 1.0 || php["busy_workers"] != 1.0 ||
		php["total_workers"] != 3.0 || php["max_busy_workers"] != 6.0 {
		t.Errorf("pools[0] = %v", php)
	}
	if rd := hasKeys(t, "request_duration", php["request_duration"], "count", "sum_seconds"); rd["count"] != 5.0 || rd["sum_seconds"] != 2.5 {
		t.Errorf("pools[0].request_duration = %v", rd)
	}
	// The draining generation, with its request; the pool's counters are
	// not repeated there.
	gens, ok := php["generations"].([]any)
	if !ok || len(gens) != 1 {
		t.Fatalf("pools[0].generations = %v, want one", php["generations"])
	}
	g := hasKeys(t, "generations[0]", gens[0], "state", "draining", "generation_start_time", "queue", "busy_workers", "workers")
	if _, ok := g["totals"]; ok || g["draining"] != true || g["busy_workers"] != 1.0 {
		t.Errorf("generations[0] = %v", g)
	}
	gw := g["workers"].([]any)[0].(map[string]any)
	if gw["pid"] != 99.0 || gw["request"].(map[string]any)["uri"] != "/report.php" {
		t.Errorf("generations[0].workers[0] = %v", gw)
	}
	if _, ok := pools[1].(map[string]any)["generations"]; ok {
		t.Errorf("pools[1] has generations: %v", pools[1])
	}
	tot := hasKeys(t, "totals", php["totals"], "accepted", "responses", "5xx", "timeouts", "recycled", "spawns", "exits", "max_workers_reached", "slow_requests", "cgi_fallbacks", "cgi_fallbacks_refused")
	if tot["slow_requests"] != 3.0 {
		t.Errorf("totals.slow_requests = %v", tot["slow_requests"])
	}
	if tot["accepted"] != 1049.0 || tot["5xx"] != 3.0 || tot["timeouts"] != 1.0 || tot["spawns"] != 8.0 || tot["max_workers_reached"] != 2.0 || tot["cgi_fallbacks"] != 4.0 {
		t.Errorf("totals = %v", tot)
	}
	if r := tot["responses"].(map[string]any); r["200"] != 1000.0 || r["502"] != 2.0 {
		t.Errorf("totals.responses = %v", r)
	}
	if r := tot["recycled"].(map[string]any); r["max_requests"] != 4.0 {
		t.Errorf("totals.recycled = %v", r)
	}

	// The empty pool: [] and {}, not null; the name round-trips unescaped.
	empty := pools[1].(map[string]any)
	if empty["name"] != "a\"b\\c\nd" || empty["last_exit"] != "exit status 1" {
		t.Errorf("pools[1] = %v", empty)
	}
	if ws, ok := empty["workers"].([]any); !ok || len(ws) != 0 {
		t.Errorf("pools[1].workers = %#v, want []", empty["workers"])
	}
	et := empty["totals"].(map[string]any)
	for _, k := range []string{"responses", "recycled"} {
		if m, ok := et[k].(map[string]any); !ok || len(m) != 0 {
			t.Errorf("pools[1].totals.%s = %#v, want {}", k, et[k])
		}
	}
	if et["5xx"] != 0.0 {
		t.Errorf("pools[1].totals.5xx = %v, want 0", et["5xx"])
	}

	// The CLI decodes the same document into AdminStatus.
	var typed AdminStatus
	if err := json.Unmarshal(b.Bytes(), &typed); err != nil {
		t.Fatal(err)
	}
	if len(typed.Pools) != 2 || typed.Pools[0].Totals.Responses5xx != 3 || typed.Pools[0].Totals.Responses[200] != 1000 ||
		typed.Pools[0].Workers[0].Request == nil || typed.Pools[0].Workers[0].Request.URI != "/slow.php?x=1" {
		t.Errorf("decoded AdminStatus = %+v", typed)
	}
}

// newTestPool is a real pool that was never started: no worker, state
// starting, but its counters work.
func newTestPool(name string) *supervisor.Pool {
	return supervisor.NewPool(&conf.Pool{
		Name: name, Command: []string{"/bin/false"}, Scaling: conf.Static,
		Workers: 2, MaxWorkers: 2, Concurrency: 1,
	}, supervisor.Env{Logger: slog.New(slog.DiscardHandler), Getenv: func(string) (string, bool) { return "", false }})
}

// TestAdminHandler: the read-only endpoint and the admin endpoint answer
// the same to every read.
func TestAdminHandler(t *testing.T) {
	for _, kind := range []string{"status", "admin"} {
		t.Run(kind, func(t *testing.T) { testReadEndpoints(t, kind) })
	}
}

func testReadEndpoints(t *testing.T, kind string) {
	zeta, alpha := newTestPool("zeta"), newTestPool("alpha")
	for range 3 {
		alpha.Observe(200)
	}
	alpha.Observe(503)
	pools := []*supervisor.Pool{zeta, alpha}
	calls := 0
	poolList := func() []*supervisor.Pool { calls++; return pools }
	h := NewStatus(Source{Pools: poolList}, slog.New(slog.DiscardHandler))
	if kind == "admin" {
		h = NewAdmin(Source{Pools: poolList}, &stopRecorder{}, slog.New(slog.DiscardHandler))
	}

	do := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}

	if rec := do("GET", "/ping"); rec.Code != 200 || rec.Body.String() != "pong\n" {
		t.Errorf("GET /ping: %d %q, want 200 \"pong\\n\"", rec.Code, rec.Body.String())
	}
	if calls != 0 {
		t.Errorf("/ping took a status snapshot (%d calls)", calls)
	}

	rec := do("GET", "/status")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var doc AdminStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("GET /status: %v\n%s", err, rec.Body.String())
	}
	var names []string
	for _, p := range doc.Pools {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"alpha", "zeta"}) {
		t.Errorf("/status pools %v, want [alpha zeta] (sorted by name)", names)
	}
	if a := doc.Pools[0]; a.Mode != "static" || a.State != "starting" || a.MaxWorkers != 2 ||
		a.Totals.Responses[200] != 3 || a.Totals.Responses5xx != 1 || len(a.Workers) != 0 {
		t.Errorf("/status pool alpha = %+v", a)
	}

	rec = do("GET", "/metrics")
	if ct := rec.Header().Get("Content-Type"); rec.Code != 200 || ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("GET /metrics: %d %q", rec.Code, ct)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`fcgivisor_requests_total{pool="alpha",code="200"} 3`,
		`fcgivisor_requests_total{pool="alpha",code="503"} 1`,
		`fcgivisor_pool_state{pool="zeta",state="starting"} 1`,
	} {
		if !slices.Contains(strings.Split(body, "\n"), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Index(body, `{pool="alpha"`) > strings.Index(body, `{pool="zeta"`) {
		t.Errorf("/metrics lists zeta before alpha")
	}

	// HEAD is GET without a body.
	if rec := do("HEAD", "/status"); rec.Code != 200 {
		t.Errorf("HEAD /status: %d, want 200", rec.Code)
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		for _, p := range []string{"/status", "/metrics", "/ping"} {
			rec := do(m, p)
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d (Allow %q), want 405 (Allow \"GET, HEAD\")", m, p, rec.Code, rec.Header().Get("Allow"))
			}
		}
	}
	for _, p := range []string{"/", "/status/", "/statusx", "/metrics/x", "/Ping"} {
		if rec := do("GET", p); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, rec.Code)
		}
	}
	if rec := do("POST", "/nope"); rec.Code != http.StatusNotFound {
		t.Errorf("POST /nope: %d, want 404", rec.Code)
	}
}

// TestAdminHandlerServes runs the handler behind a real server, as main
// does: the answer carries its length and arrives whole.
func TestAdminHandlerServes(t *testing.T) {
	srv := httptest.NewServer(NewStatus(Source{Pools: func() []*supervisor.Pool { return []*supervisor.Pool{newTestPool("p")} }}, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) || !strings.Contains(string(data), `fcgivisor_workers{pool="p",state="idle"} 0`) {
		t.Errorf("GET /metrics: %d, length %d for %d bytes:\n%s", resp.StatusCode, resp.ContentLength, len(data), data)
	}
}

type stopRecorder struct {
	stops, reloads int
	err            error
}

func (s *stopRecorder) Stop()         { s.stops++ }
func (s *stopRecorder) Reload() error { s.reloads++; return s.err }

func TestAdminStop(t *testing.T) {
	ctl := &stopRecorder{}
	h := NewAdmin(Source{Pools: func() []*supervisor.Pool { return nil }}, ctl, slog.New(slog.DiscardHandler))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/stop", nil))
	if rec.Code != http.StatusMethodNotAllowed || ctl.stops != 0 {
		t.Fatalf("GET /stop: %d, %d stops", rec.Code, ctl.stops)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/stop", nil))
	if rec.Code != http.StatusOK || ctl.stops != 1 || rec.Body.String() != "stopping\n" {
		t.Fatalf("POST /stop: %d %q, %d stops", rec.Code, rec.Body.String(), ctl.stops)
	}
}

// TestStatusRefusesControl: the read-only endpoint (what [status] listen
// serves, possibly to other hosts) has no /reload or /stop: every method
// and spelling of them is 404 and reaches nothing, while the same requests
// act on the admin endpoint (issue 10).
func TestStatusRefusesControl(t *testing.T) {
	ctl := &stopRecorder{}
	pools := func() []*supervisor.Pool { return nil }
	status := NewStatus(Source{Pools: pools}, slog.New(slog.DiscardHandler))
	admin := NewAdmin(Source{Pools: pools}, ctl, slog.New(slog.DiscardHandler))
	for _, m := range []string{"POST", "GET", "HEAD", "PUT", "DELETE", "PATCH"} {
		for _, p := range []string{"/stop", "/reload", "/stop?now=1", "/%73top", "/reload/", "//stop"} {
			rec := httptest.NewRecorder()
			status.ServeHTTP(rec, httptest.NewRequest(m, p, strings.NewReader("x")))
			if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "stopping") || strings.Contains(rec.Body.String(), "reloaded") {
				t.Errorf("read-only endpoint, %s %s: %d %q, want 404", m, p, rec.Code, rec.Body.String())
			}
			if m == "POST" && (p == "/stop" || p == "/reload") && !strings.Contains(rec.Body.String(), "reload and stop are on admin.listen") {
				t.Errorf("read-only endpoint, POST %s: %q does not say where reload and stop are", p, rec.Body.String())
			}
		}
	}
	// The same requests through the admin endpoint do act: the checks
	// above would see it.
	for _, p := range []string{"/stop", "/reload", "/stop?now=1", "/%73top"} {
		admin.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", p, nil))
	}
	if ctl.stops != 3 || ctl.reloads != 1 {
		t.Errorf("the admin endpoint acted %d stops, %d reloads, want 3 and 1", ctl.stops, ctl.reloads)
	}
}

// TestAdminRefusesBrowsers: a page in a browser on the host can POST to a
// loopback TCP admin.listen (cross-site forgery, DNS rebinding); such
// requests carry Origin or Sec-Fetch-Site and do not act. The CLI's do.
func TestAdminRefusesBrowsers(t *testing.T) {
	ctl := &stopRecorder{}
	h := NewAdmin(Source{Pools: func() []*supervisor.Pool { return nil }}, ctl, slog.New(slog.DiscardHandler))
	for _, hdr := range [][2]string{
		{"Origin", "http://evil.example"},
		{"Origin", "http://127.0.0.1:9180"}, // rebinding, or a same-origin page
		{"Origin", "null"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-origin"},
	} {
		for _, p := range []string{"/stop", "/reload"} {
			req := httptest.NewRequest("POST", p, strings.NewReader("a=b"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set(hdr[0], hdr[1])
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "not taken from web browsers") {
				t.Errorf("POST %s with %s: %s: %d %q, want 403", p, hdr[0], hdr[1], rec.Code, rec.Body.String())
			}
		}
	}
	if ctl.stops != 0 || ctl.reloads != 0 {
		t.Errorf("browser requests acted: %d stops, %d reloads", ctl.stops, ctl.reloads)
	}
	// Reads stay open to them: they change nothing.
	req := httptest.NewRequest("GET", "/ping", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("GET /ping with Sec-Fetch-Site: %d, want 200", rec.Code)
	}
}

// TestNewAdminNeedsControl: an admin endpoint without a Control is a
// programming error caught at construction, not at the first POST.
func TestNewAdminNeedsControl(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewAdmin with a nil Control did not panic")
		}
	}()
	NewAdmin(Source{Pools: func() []*supervisor.Pool { return nil }}, nil, slog.New(slog.DiscardHandler))
}

func TestAdminReload(t *testing.T) {
	ctl := &stopRecorder{}
	h := NewAdmin(Source{Pools: func() []*supervisor.Pool { return nil }}, ctl, slog.New(slog.DiscardHandler))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/reload", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "reloaded\n" || ctl.reloads != 1 {
		t.Fatalf("POST /reload: %d %q", rec.Code, rec.Body.String())
	}
	ctl.err = errors.New("f.toml:3: pool.x.workerz: unknown key")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/reload", nil))
	if rec.Code != http.StatusUnprocessableEntity || !strings.Contains(rec.Body.String(), "workerz: unknown key") {
		t.Fatalf("refused reload: %d %q", rec.Code, rec.Body.String())
	}
}
