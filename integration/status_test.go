package integration

// Status and metrics against a known load, the slow-request log with a
// real debugger, and a draining generation's request in /status (issue
// 13).

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// statusDoc is the /status JSON with what issue 13 added: field names
// are a contract with users' tools.
type statusDoc struct {
	Version    string       `json:"version"`
	GoVersion  string       `json:"go_version"`
	StartTime  time.Time    `json:"start_time"`
	GOMAXPROCS int          `json:"gomaxprocs"`
	GCPercent  int          `json:"gc_percent"`
	Pools      []statusPool `json:"pools"`
}

type statusPool struct {
	Name           string         `json:"name"`
	State          string         `json:"state"`
	StartTime      time.Time      `json:"start_time"`
	Queue          int            `json:"queue"`
	MaxQueue       int            `json:"max_queue"`
	IdleWorkers    int            `json:"idle_workers"`
	BusyWorkers    int            `json:"busy_workers"`
	TotalWorkers   int            `json:"total_workers"`
	MaxBusyWorkers int            `json:"max_busy_workers"`
	Workers        []statusWorker `json:"workers"`
	Totals         struct {
		Accepted          int64            `json:"accepted"`
		Responses         map[string]int64 `json:"responses"`
		MaxWorkersReached int64            `json:"max_workers_reached"`
		SlowRequests      int64            `json:"slow_requests"`
	} `json:"totals"`
	RequestDuration struct {
		Count int64   `json:"count"`
		Sum   float64 `json:"sum_seconds"`
	} `json:"request_duration"`
	QueueWait struct {
		Count int64   `json:"count"`
		Sum   float64 `json:"sum_seconds"`
	} `json:"queue_wait"`
	Generations []struct {
		State    string         `json:"state"`
		Draining bool           `json:"draining"`
		Workers  []statusWorker `json:"workers"`
	} `json:"generations"`
}

type statusWorker struct {
	Pid         int            `json:"pid"`
	State       string         `json:"state"`
	Requests    int64          `json:"requests"`
	RSSBytes    int64          `json:"rss_bytes"`
	Request     *statusRequest `json:"request"`
	LastRequest *statusRequest `json:"last_request"`
}

type statusRequest struct {
	Method     string  `json:"method"`
	URI        string  `json:"uri"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
	RSSBytes   int64   `json:"rss_bytes"`
}

// fullStatus GETs /status and returns it with the pool named name.
func fullStatus(t testing.TB, a *adminClient, name string) (*statusDoc, *statusPool) {
	t.Helper()
	resp, body := a.get(t, "/status")
	var doc statusDoc
	if err := json.Unmarshal(body, &doc); resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("GET /status: %d, %v\n%s", resp.StatusCode, err, clip(body))
	}
	for i := range doc.Pools {
		if doc.Pools[i].Name == name {
			return &doc, &doc.Pools[i]
		}
	}
	t.Fatalf("/status has no pool %q: %s", name, clip(body))
	return nil, nil
}

// waitStatus polls /status until cond holds for the pool named name.
func waitStatus(t testing.TB, a *adminClient, name, what string, cond func(*statusPool) bool) *statusPool {
	t.Helper()
	var p *statusPool
	if !waitFor(eventTimeout, func() bool { _, p = fullStatus(t, a, name); return cond(p) }) {
		t.Fatalf("/status never showed %s: %+v", what, p)
	}
	return p
}

// scrape GETs /metrics and parses it with the Prometheus project's own
// text parser.
func scrape(t testing.TB, a *adminClient) map[string]*dto.MetricFamily {
	t.Helper()
	resp, body := a.get(t, "/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("the Prometheus text parser refuses /metrics: %v\n%s", err, body)
	}
	return fams
}

// sampleOf is the metric of family name whose labels include labels
// (name/value pairs); it fails t when there is none.
func sampleOf(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && have[labels[i]] == labels[i+1]
		}
		if ok {
			return m
		}
	}
	t.Fatalf("/metrics has no %s%v", name, labels)
	return nil
}

// value is a gauge's or a counter's value.
func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// TestStatusBurst: a pool of 2 single-slot workers gets 5 requests of
// 1.5 s at once. 2 run, 3 wait: during the burst /status shows queue 3 and
// 2 busy workers with their requests (and `fcgivisor status` prints
// them); after it, accepted 5, max_workers reached 3 (once per request
// that waited, not once per scaler pass), max queue 3, max busy 2, each
// worker's last request, and /metrics, scraped on the [status] listener
// and read by the Prometheus parser, the same numbers with histograms of
// 5 requests whose waits fall in the buckets the load makes.
func TestStatusBurst(t *testing.T) {
	eachLang(t, func(t *testing.T, l lang) {
		port := freePort(t)
		in := start(t, options{langs: []string{l.name},
			pool:   func(_ lang, p *poolOpts) { p.workers, p.concurrency = 2, 1 },
			server: []string{"", "[status]", "listen = " + tomlString(fmt.Sprintf("127.0.0.1:%d", port))}})
		a := newAdminClient(t, "unix", filepath.Join(in.runtimeDir, "admin.sock"))
		st := newAdminClient(t, "tcp", fmt.Sprintf("127.0.0.1:%d", port))

		uri := l.path("/burst?sleep=1500")
		var dones []<-chan error
		for range 5 {
			dones = append(dones, inFlight(in, uri))
		}
		p := waitStatus(t, a, l.name, "queue 3 and 2 busy workers", func(p *statusPool) bool { return p.Queue == 3 && p.BusyWorkers == 2 })
		for _, w := range p.Workers {
			if w.State != "busy" || w.Request == nil || w.Request.Method != "GET" || w.Request.URI != uri {
				t.Errorf("during the burst worker %d: %s, request %+v; want busy with GET %s", w.Pid, w.State, w.Request, uri)
			}
		}
		code, out := runCLI(t, nil, "", "status", "-c", in.configPath)
		if code != 0 || !strings.Contains(out, "(2 busy, 0 idle), slots 2 busy 0 idle, queue 3") || strings.Count(out, "GET "+uri+" (") != 2 {
			t.Errorf("fcgivisor status during the burst: exit %d:\n%s", code, out)
		}
		t.Logf("fcgivisor status during the burst:\n%s", out)
		for _, done := range dones {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}

		p = waitStatus(t, a, l.name, "the 5 answers counted", func(p *statusPool) bool {
			return p.Totals.Responses["200"] == 5 && p.BusyWorkers == 0
		})
		if p.Totals.Accepted != 5 || p.Totals.MaxWorkersReached != 3 || p.MaxQueue != 3 || p.MaxBusyWorkers != 2 ||
			p.IdleWorkers != 2 || p.TotalWorkers != 2 || p.RequestDuration.Count != 5 || p.QueueWait.Count != 5 {
			t.Errorf("after the burst: accepted %d, max_workers_reached %d, max_queue %d, max_busy_workers %d, idle %d of %d, durations %d, waits %d; want 5, 3, 3, 2, 2 of 2, 5, 5",
				p.Totals.Accepted, p.Totals.MaxWorkersReached, p.MaxQueue, p.MaxBusyWorkers, p.IdleWorkers, p.TotalWorkers, p.RequestDuration.Count, p.QueueWait.Count)
		}
		for _, w := range p.Workers {
			last := w.LastRequest
			if last == nil || last.Method != "GET" || last.URI != uri || last.Seconds < 1.5 || last.Seconds > 10 ||
				last.CPUSeconds < 0 || last.CPUSeconds > 1 || last.RSSBytes <= 0 {
				t.Errorf("worker %d's last request: %+v; want GET %s, 1.5-10 s, CPU 0-1 s (it slept), RSS > 0", w.Pid, last, uri)
			}
		}
		checkBurstMetrics(t, scrape(t, st), l.name)
	})
}

// checkBurstMetrics checks /metrics after TestStatusBurst's load.
func checkBurstMetrics(t *testing.T, fams map[string]*dto.MetricFamily, pool string) {
	t.Helper()
	for name, want := range map[string]float64{
		"fcgivisor_requests_accepted_total":   5,
		"fcgivisor_max_workers_reached_total": 3,
		"fcgivisor_queue_length_max":          3,
		"fcgivisor_workers_busy_max":          2,
		"fcgivisor_queue_length":              0,
	} {
		if got := value(sampleOf(t, fams, name, "pool", pool)); got != want {
			t.Errorf("%s{pool=%q} = %v, want %v", name, pool, got, want)
		}
	}
	if got := value(sampleOf(t, fams, "fcgivisor_requests_total", "pool", pool, "code", "200")); got != 5 {
		t.Errorf("fcgivisor_requests_total{code=200} = %v, want 5", got)
	}
	dur := sampleOf(t, fams, "fcgivisor_request_duration_seconds", "pool", pool).GetHistogram()
	if dur.GetSampleCount() != 5 || dur.GetSampleSum() < 7.5 || dur.GetSampleSum() > 30 {
		t.Errorf("request durations: %d in %vs, want 5 of 1.5 s or a little more", dur.GetSampleCount(), dur.GetSampleSum())
	}
	// Waits: 2 none (but a busy machine's scheduling: a few ms under the
	// race detector), 2 one request (1.5 s), 1 two requests (3 s).
	wait := sampleOf(t, fams, "fcgivisor_queue_wait_seconds", "pool", pool).GetHistogram()
	want := map[float64]uint64{0.25: 2, 1: 2, 2.5: 4, 5: 5, math.Inf(1): 5}
	for _, b := range wait.GetBucket() {
		if n, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != n {
			t.Errorf("queue waits at most %vs: %d, want %d (%v)", b.GetUpperBound(), b.GetCumulativeCount(), n, wait)
		}
	}
	if builtVersion != "" {
		sampleOf(t, fams, "fcgivisor_build_info", "version", builtVersion, "goversion", runtime.Version())
	}
	if start := value(sampleOf(t, fams, "fcgivisor_start_time_seconds")); math.Abs(start-float64(time.Now().Unix())) > 600 {
		t.Errorf("fcgivisor_start_time_seconds = %v, not within 10 minutes of now", start)
	}
}

// TestSlowRequestGDBPrivileges: a request stuck in a C worker (?hang)
// passes request_slowlog_timeout: fcgivisor logs it once at WARN with the
// pool, the worker's pid, the method, the URI and the elapsed time,
// counts it, and runs slowlog_command, here gdb's backtrace of the
// worker, whose output is logged with the request. As root, gdb attaches
// and the backtrace names the function the worker waits in. Not root
// (make test-unprivileged runs it as nobody), gdb runs as fcgivisor's
// user, and the kernel may refuse the attach (Yama's ptrace_scope 1
// allows ptrace of descendants only; a worker is gdb's sibling): then
// gdb's refusal is what is logged.
func TestSlowRequestGDBPrivileges(t *testing.T) {
	t.Parallel()
	l := lang{"c"}
	l.need(t)
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		t.Skip("gdb is not installed (Debian: apt-get install gdb): the slowlog_command of this test is a gdb backtrace")
	}
	in := start(t, options{langs: []string{l.name}, pool: oneSlot(
		`request_slowlog_timeout = "300ms"`,
		`request_timeout = "8s"`,
		"slowlog_command = "+tomlStrings([]string{gdb, "-p", "{pid}", "-batch", "-ex", "bt"}),
	)})
	a := newAdminClient(t, "unix", filepath.Join(in.runtimeDir, "admin.sock"))
	uri := l.path("/stuck?hang")
	done := make(chan int, 1)
	go func() {
		resp, _, err := in.do(context.Background(), http.MethodGet, uri, nil, nil)
		if err != nil {
			done <- 0
			return
		}
		done <- resp.StatusCode
	}()
	_, w := waitBusy(t, a, l.name, uri, nil)
	pid := strconv.Itoa(w.Pid)
	match := func(msg string) func(map[string]any) bool {
		return func(r map[string]any) bool { return r["msg"] == msg && r["uri"] == uri }
	}
	slow := in.waitLog(t, "slow request", match("slow request"))
	if slow["level"] != "WARN" || slow["pool"] != l.name || fmt.Sprint(slow["pid"]) != pid || slow["method"] != "GET" ||
		slow["elapsed_seconds"].(float64) < 0.3 || slow["elapsed_seconds"].(float64) > 2 {
		t.Errorf("slow-request record %v: want WARN, pool %s, pid %s, GET, 0.3-2 s", slow, l.name, pid)
	}
	rec := in.waitLog(t, "slowlog_command output", match("slowlog_command output"))
	output, _ := rec["output"].(string)
	t.Logf("slow-request record: %v\nslowlog_command record: %v", slow, rec)
	switch {
	case rec["level"] != "WARN" || fmt.Sprint(rec["pid"]) != pid || rec["status"] != "exit status 0":
		t.Errorf("slowlog_command record %v: want WARN, pid %s, gdb's exit status 0", rec, pid)
	case strings.Contains(output, " in hang ") && strings.Contains(output, " in main "):
		// The backtrace of the stuck worker.
	case os.Geteuid() != 0 && strings.Contains(output, "ptrace: Operation not permitted"):
		t.Logf("not root: the kernel refused gdb the attach, as logged: %q", output)
	default:
		t.Errorf("gdb's output has no backtrace through hang and main:\n%s", output)
	}
	if code := <-done; code != http.StatusGatewayTimeout {
		t.Errorf("the stuck request ended with %d, want 504 at request_timeout", code)
	}
	p := waitStatus(t, a, l.name, "the slow request counted", func(p *statusPool) bool { return p.Totals.SlowRequests == 1 })
	if p.Totals.SlowRequests != 1 || len(in.matchingLogs("slow request")) != 1 {
		t.Errorf("slow requests %d, records %d; want 1 and 1", p.Totals.SlowRequests, len(in.matchingLogs("slow request")))
	}
	if got := value(sampleOf(t, scrape(t, a), "fcgivisor_slow_requests_total", "pool", l.name)); got != 1 {
		t.Errorf("fcgivisor_slow_requests_total = %v, want 1", got)
	}
}

// matchingLogs returns the log records whose msg is msg.
func (in *instance) matchingLogs(msg string) []map[string]any {
	var out []map[string]any
	for _, r := range records(in.out.String()) {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// TestStatusDrainingGeneration: a reload that needs new workers leaves
// the old generation draining a request in flight; /status shows it under
// the pool's generations with its worker and request, `fcgivisor status`
// prints it, /metrics counts that worker busy, and once the request is
// done the old generation is gone from both.
func TestStatusDrainingGeneration(t *testing.T) {
	t.Parallel()
	l := adminLang(t)
	o := options{langs: []string{l.name}, pool: func(_ lang, p *poolOpts) { p.workers, p.concurrency = 1, 1 }}
	in := start(t, o)
	a := newAdminClient(t, "unix", filepath.Join(in.runtimeDir, "admin.sock"))
	uri := l.path("/old?sleep=4000")
	done := inFlight(in, uri)
	_, old := waitBusy(t, a, l.name, uri, done)

	// A change of env needs new workers: a new generation.
	o.pool = func(_ lang, p *poolOpts) {
		p.workers, p.concurrency = 1, 1
		p.env = map[string]string{"GENERATION": "2"}
	}
	in.rewrite(t, o)
	in.reload(t)
	_, p := fullStatus(t, a, l.name)
	if len(p.Generations) != 1 || !p.Generations[0].Draining || len(p.Generations[0].Workers) != 1 {
		t.Fatalf("/status after the reload: generations %+v, want one draining with one worker", p.Generations)
	}
	ow := p.Generations[0].Workers[0]
	if ow.Pid != old.Pid || ow.State != "busy" || ow.Request == nil || ow.Request.URI != uri {
		t.Errorf("the draining generation's worker: %+v (request %+v), want %d busy with %s", ow, ow.Request, old.Pid, uri)
	}
	if slices.ContainsFunc(p.Workers, func(w statusWorker) bool { return w.Pid == old.Pid }) {
		t.Errorf("the old worker %d is listed with the new generation's %+v", old.Pid, p.Workers)
	}
	code, out := runCLI(t, nil, "", "status", "-c", in.configPath)
	if code != 0 || !strings.Contains(out, "  draining generation (running") || !strings.Contains(out, uri+" (") {
		t.Errorf("fcgivisor status during the drain: exit %d, want the draining generation and %s:\n%s", code, uri, out)
	}
	t.Logf("fcgivisor status during the drain:\n%s", out)
	fams := scrape(t, a)
	if v := value(sampleOf(t, fams, "fcgivisor_worker_state", "pool", l.name, "pid", strconv.Itoa(old.Pid), "state", "busy")); v != 1 {
		t.Errorf("/metrics: the draining worker %d busy = %v, want 1", old.Pid, v)
	}
	if v := value(sampleOf(t, fams, "fcgivisor_workers", "pool", l.name, "state", "busy")); v != 1 {
		t.Errorf("/metrics: busy workers %v, want 1 (the draining generation's)", v)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p = waitStatus(t, a, l.name, "the old generation gone", func(p *statusPool) bool { return len(p.Generations) == 0 })
	if p.Totals.Accepted != 1 || p.Totals.Responses["200"] != 1 {
		t.Errorf("after the drain: accepted %d, responses %v; want the old generation's request counted (shared counters)", p.Totals.Accepted, p.Totals.Responses)
	}
	if slices.ContainsFunc(scrape(t, a)["fcgivisor_worker_state"].GetMetric(), func(m *dto.Metric) bool {
		return slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == "pid" && l.GetValue() == strconv.Itoa(old.Pid) })
	}) {
		t.Errorf("/metrics still lists worker %d after its generation drained", old.Pid)
	}
}
