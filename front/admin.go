// This file implements the admin and status endpoints: /status as JSON,
// /metrics in the Prometheus text exposition format 0.0.4, /ping, and on
// the admin endpoint only, /reload and /stop. Rendering works
// on a snapshot ([]supervisor.Status), so every figure of one answer comes
// from the same moment of each pool.

package front

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/fcgivisor/fcgivisor/supervisor"
)

// metricsContentType is the Prometheus text exposition format.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// AdminStatus is the document /status serves and `fcgivisor status` reads.
type AdminStatus struct {
	Pools []AdminPool `json:"pools"`
}

// AdminPool is one pool of /status: supervisor.Status with totals the front
// derives from it.
type AdminPool struct {
	supervisor.Status
	Totals AdminTotals `json:"totals"` // shadows Status.Totals
}

// AdminTotals are supervisor.Totals plus the count of 5xx answers.
type AdminTotals struct {
	supervisor.Totals
	Responses5xx int64 `json:"5xx"`
}

// The endpoints come in two kinds (issue 10). The read-only one (NewStatus,
// [status] listen, possibly reachable from other hosts) answers GET and
// HEAD of /status, /metrics and /ping and holds no Control, so no request
// to it can change anything. The control one (NewAdmin, admin.listen: a
// Unix socket or loopback TCP) serves the same and POST /reload and
// POST /stop.

// NewStatus returns the read-only handler: GET and HEAD of /status,
// /metrics and /ping. Any other path, /reload and /stop included, is 404.
// pools is called on every request, so that a reload can swap the pools
// it reports.
func NewStatus(pools func() []*supervisor.Pool, log *slog.Logger) http.Handler {
	return &statusHandler{pools: pools, log: log,
		notFound: "404 page not found (this read-only endpoint serves /status, /metrics and /ping; reload and stop are on admin.listen)"}
}

// NewAdmin returns the control handler: what NewStatus serves, plus
// POST /stop (graceful stop, for `fcgivisor stop`) and POST /reload
// (for `fcgivisor reload`) through control, which must not be nil.
func NewAdmin(pools func() []*supervisor.Pool, control Control, log *slog.Logger) http.Handler {
	if control == nil {
		panic("front.NewAdmin: nil Control (NewStatus is the endpoint without one)")
	}
	st := &statusHandler{pools: pools, log: log,
		notFound: "404 page not found (the admin endpoint serves /status, /metrics, /ping, and POST /reload and /stop)"}
	return &adminHandler{status: st, control: control, log: log}
}

// Control is what the admin endpoint may ask of the running instance.
type Control interface {
	// Stop starts a graceful stop, as SIGTERM does.
	Stop()
	// Reload reloads the config file, as SIGHUP does, and returns why it
	// was refused.
	Reload() error
}

// adminHandler is the control endpoint: /stop and /reload here, the rest
// by its statusHandler.
type adminHandler struct {
	status  *statusHandler
	control Control
	log     *slog.Logger
}

func (a *adminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/stop" && r.URL.Path != "/reload" {
		a.status.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	// No browser can reach a Unix socket, but any page a browser shows
	// can make it POST to a loopback TCP admin.listen (cross-site request
	// forgery, or DNS rebinding, which makes it same-origin). Browsers
	// send Origin with every POST (Fetch standard) and Sec-Fetch-Site
	// with every request; the CLI and curl send neither.
	if r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" {
		a.log.Warn("admin: refused a reload or stop sent by a web browser", "path", r.URL.Path, "origin", r.Header.Get("Origin"))
		http.Error(w, "403 Forbidden: reload and stop are not taken from web browsers (the request has an Origin or Sec-Fetch-Site header); use fcgivisor reload or stop", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.URL.Path == "/stop" {
		a.log.Info("stop requested through the admin endpoint")
		a.control.Stop()
		io.WriteString(w, "stopping\n")
		return
	}
	a.log.Info("reload requested through the admin endpoint")
	if err := a.control.Reload(); err != nil {
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprintf(w, "reload refused; the running config is unchanged:\n%v\n", err)
		return
	}
	io.WriteString(w, "reloaded\n")
}

// statusHandler is the read-only endpoint. It has no way to act on the
// instance: it only reads pool status.
type statusHandler struct {
	pools    func() []*supervisor.Pool
	log      *slog.Logger
	notFound string // the 404 text, naming what the endpoint serves
}

func (a *statusHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var render func(io.Writer, []supervisor.Status) error
	var contentType string
	switch r.URL.Path {
	case "/status":
		render, contentType = writeStatus, "application/json"
	case "/metrics":
		render, contentType = writeMetrics, metricsContentType
	case "/ping":
		render, contentType = func(w io.Writer, _ []supervisor.Status) error {
			_, err := io.WriteString(w, "pong\n")
			return err
		}, "text/plain; charset=utf-8"
	default:
		http.Error(w, a.notFound, http.StatusNotFound)
		return
	}
	// HEAD is GET without the body (net/http drops it).
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	var sts []supervisor.Status
	if r.URL.Path != "/ping" {
		sts = a.snapshot()
	}
	// Render whole before sending: a failure is then a 500, not a cut body.
	var buf bytes.Buffer
	if err := render(&buf, sts); err != nil {
		a.log.Error("admin: render", "path", r.URL.Path, "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	if _, err := w.Write(buf.Bytes()); err != nil {
		a.log.Debug("admin: write answer", "path", r.URL.Path, "err", err)
	}
}

// snapshot takes the status of every pool, sorted by name.
func (a *statusHandler) snapshot() []supervisor.Status {
	ps := a.pools()
	sts := make([]supervisor.Status, 0, len(ps))
	for _, p := range ps {
		sts = append(sts, p.Status())
	}
	sort.Slice(sts, func(i, j int) bool { return sts[i].Name < sts[j].Name })
	return sts
}

// adminStatus builds the /status document. Empty lists and maps are made
// non-nil so that they read [] and {}, not null.
func adminStatus(sts []supervisor.Status) AdminStatus {
	doc := AdminStatus{Pools: make([]AdminPool, 0, len(sts))}
	for _, st := range sts {
		if st.Workers == nil {
			st.Workers = []supervisor.WorkerStatus{}
		}
		t := st.Totals
		if t.Responses == nil {
			t.Responses = map[int]int64{}
		}
		if t.Recycled == nil {
			t.Recycled = map[string]int64{}
		}
		doc.Pools = append(doc.Pools, AdminPool{Status: st, Totals: AdminTotals{Totals: t, Responses5xx: count5xx(t.Responses)}})
	}
	return doc
}

func count5xx(responses map[int]int64) int64 {
	var n int64
	for code, c := range responses {
		if code >= 500 && code < 600 {
			n += c
		}
	}
	return n
}

// writeStatus writes the /status JSON of sts.
func writeStatus(w io.Writer, sts []supervisor.Status) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(adminStatus(sts))
}

// poolStates are the pool states in the order of supervisor.State.
func poolStates() []string {
	var ss []string
	for s := supervisor.Starting; s <= supervisor.Stopping; s++ {
		ss = append(ss, s.String())
	}
	return ss
}

// withSeen returns always followed by the keys of seen it lacks, sorted.
// Metrics show the always values even at 0, so that a series exists before
// its first event and rate() and alerts see it.
func withSeen[V any](always []string, seen map[string]V) []string {
	for _, k := range slices.Sorted(maps.Keys(seen)) {
		if !slices.Contains(always, k) {
			always = append(always, k)
		}
	}
	return always
}

// sample is one sample of a family: its labels after pool, as name/value
// pairs, and its value.
type sample struct {
	labels []string
	value  float64
}

// family is one metric: name, type, help and a function giving a pool's
// samples.
type family struct {
	name, typ, help string
	samples         func(st *supervisor.Status) []sample
}

func one(v float64) []sample { return []sample{{value: v}} }

// families are the metrics of /metrics, in the order they are written.
func families() []family {
	return append(gaugeFamilies(), counterFamilies()...)
}

// gaugeFamilies are the metrics of /metrics that give a pool's state now.
func gaugeFamilies() []family {
	return []family{
		{"fcgivisor_pool_state", "gauge", "Pool state: 1 for the current state, 0 for the others.", func(st *supervisor.Status) []sample {
			states := poolStates()
			if !slices.Contains(states, st.State) {
				states = append(states, st.State)
			}
			var ss []sample
			for _, s := range states {
				ss = append(ss, sample{[]string{"state", s}, b2f(s == st.State)})
			}
			return ss
		}},
		{"fcgivisor_workers", "gauge", "Worker processes by state.", func(st *supervisor.Status) []sample {
			n := map[string]int{}
			for _, w := range st.Workers {
				n[w.State]++
			}
			var ss []sample
			for _, s := range withSeen([]string{"busy", "idle", "retiring"}, n) {
				ss = append(ss, sample{[]string{"state", s}, float64(n[s])})
			}
			return ss
		}},
		{"fcgivisor_max_workers", "gauge", "The pool's max_workers.", func(st *supervisor.Status) []sample {
			return one(float64(st.MaxWorkers))
		}},
		{"fcgivisor_slots", "gauge", "Request slots of live workers by state.", func(st *supervisor.Status) []sample {
			return []sample{{[]string{"state", "busy"}, float64(st.BusySlots)}, {[]string{"state", "idle"}, float64(st.IdleSlots)}}
		}},
		{"fcgivisor_queue_length", "gauge", "Requests waiting for a free slot.", func(st *supervisor.Status) []sample {
			return one(float64(st.Queue))
		}},
		{"fcgivisor_queue_oldest_seconds", "gauge", "How long the oldest queued request has waited.", func(st *supervisor.Status) []sample {
			return one(st.OldestQueuedSeconds)
		}},
		{"fcgivisor_worker_rss_bytes", "gauge", "Resident set size of each worker process.", func(st *supervisor.Status) []sample {
			var ss []sample
			for _, w := range st.Workers {
				ss = append(ss, sample{[]string{"pid", strconv.Itoa(w.Pid)}, float64(w.RSSBytes)})
			}
			return ss
		}},
	}
}

// counterFamilies are the metrics of /metrics that count since the pool
// started.
func counterFamilies() []family {
	return []family{
		{"fcgivisor_requests_accepted_total", "counter", "Requests handed to the pool.", func(st *supervisor.Status) []sample {
			return one(float64(st.Totals.Accepted))
		}},
		{"fcgivisor_requests_total", "counter", "Answers the front sent for the pool, by HTTP status code.", func(st *supervisor.Status) []sample {
			var ss []sample
			for _, code := range slices.Sorted(maps.Keys(st.Totals.Responses)) {
				ss = append(ss, sample{[]string{"code", strconv.Itoa(code)}, float64(st.Totals.Responses[code])})
			}
			return ss
		}},
		{"fcgivisor_request_timeouts_total", "counter", "Requests that ran past request_timeout.", func(st *supervisor.Status) []sample {
			return one(float64(st.Totals.Timeouts))
		}},
		{"fcgivisor_workers_recycled_total", "counter", "Workers recycled, by cause.", func(st *supervisor.Status) []sample {
			causes := []string{"idle", "max_lifetime", "max_memory", "max_requests", "self_limit"}
			var ss []sample
			for _, c := range withSeen(causes, st.Totals.Recycled) {
				ss = append(ss, sample{[]string{"cause", c}, float64(st.Totals.Recycled[c])})
			}
			return ss
		}},
		{"fcgivisor_worker_spawns_total", "counter", "Worker processes started, failed starts included.", func(st *supervisor.Status) []sample {
			return one(float64(st.Totals.Spawns))
		}},
		{"fcgivisor_worker_exits_total", "counter", "Worker processes that exited.", func(st *supervisor.Status) []sample {
			return one(float64(st.Totals.Exits))
		}},
		{"fcgivisor_max_workers_reached_total", "counter", "Times the pool wanted another worker but was at max_workers.", func(st *supervisor.Status) []sample {
			return one(float64(st.Totals.MaxWorkersReached))
		}},
		{"fcgivisor_cgi_fallbacks_total", "counter", "Requests the pool could not serve that ran its command once as CGI (cgi_fallback).", func(st *supervisor.Status) []sample {
			return one(float64(st.Totals.CGIFallbacks))
		}},
		{"fcgivisor_cgi_fallbacks_refused_total", "counter", "Requests answered 503 because max_workers CGI fallback runs were going on.", func(st *supervisor.Status) []sample {
			return one(float64(st.Totals.CGIFallbacksRefused))
		}},
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// writeMetrics writes sts in the Prometheus text exposition format: per
// metric a HELP and a TYPE line, then one sample per pool (and label set).
func writeMetrics(w io.Writer, sts []supervisor.Status) error {
	var b strings.Builder
	for _, f := range families() {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ)
		for i := range sts {
			for _, s := range f.samples(&sts[i]) {
				b.WriteString(f.name)
				b.WriteString(`{pool="`)
				b.WriteString(escapeLabel(sts[i].Name))
				b.WriteByte('"')
				for j := 0; j+1 < len(s.labels); j += 2 {
					b.WriteString("," + s.labels[j] + `="`)
					b.WriteString(escapeLabel(s.labels[j+1]))
					b.WriteByte('"')
				}
				b.WriteString("} ")
				b.WriteString(formatValue(s.value))
				b.WriteByte('\n')
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// escapeLabel escapes a label value as the exposition format wants:
// backslash, double quote and line feed.
func escapeLabel(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// formatValue writes a sample value: integers without exponent or
// fraction, other values in Go's shortest form, which Prometheus parses.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
