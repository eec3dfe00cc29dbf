// This file implements the admin and status endpoints: /status as JSON,
// /metrics (metrics.go), /ping, and on the admin endpoint only, /reload
// and /stop. Rendering works on a snapshot (the supervisor.Status of each
// pool generation), so every figure of one answer comes from the same
// moment of each pool.

package front

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"time"

	"github.com/fcgivisor/fcgivisor/supervisor"
)

// AdminStatus is the document /status serves and `fcgivisor status` reads.
type AdminStatus struct {
	// Version and GoVersion are fcgivisor's build; StartTime when this
	// fcgivisor process started; GOMAXPROCS the CPUs its Go code runs on
	// at once (server.max_procs); GCPercent its GC's target (GOGC).
	Version    string      `json:"version"`
	GoVersion  string      `json:"go_version"`
	StartTime  time.Time   `json:"start_time"`
	GOMAXPROCS int         `json:"gomaxprocs"`
	GCPercent  int         `json:"gc_percent"`
	Pools      []AdminPool `json:"pools"`
}

// AdminPool is one pool of /status: the status of its current generation
// (supervisor.Status) with totals the front derives from it, and its other
// generations still running.
type AdminPool struct {
	supervisor.Status
	Totals AdminTotals `json:"totals"` // shadows Status.Totals
	// Generations are the pool's other generations with workers: those a
	// reload replaced, draining (finishing their requests), and one a
	// reload is starting. Their counters are the pool's (Totals).
	Generations []AdminGeneration `json:"generations,omitempty"`
}

// AdminGeneration is one more generation of a pool's workers.
type AdminGeneration struct {
	State               string                    `json:"state"`
	Draining            bool                      `json:"draining,omitempty"`
	GenerationStartTime time.Time                 `json:"generation_start_time"`
	Queue               int                       `json:"queue"`
	IdleWorkers         int                       `json:"idle_workers"`
	BusyWorkers         int                       `json:"busy_workers"`
	TotalWorkers        int                       `json:"total_workers"`
	BusySlots           int                       `json:"busy_slots"`
	IdleSlots           int                       `json:"idle_slots"`
	Workers             []supervisor.WorkerStatus `json:"workers"`
	LastExit            string                    `json:"last_exit,omitempty"`
}

// AdminTotals are supervisor.Totals plus the count of 5xx answers.
type AdminTotals struct {
	supervisor.Totals
	Responses5xx int64 `json:"5xx"`
}

// Source is what the status and admin endpoints report on.
type Source struct {
	// Pools lists the pools, called on every request so that a reload can
	// swap them: every generation that has workers (the current ones and
	// those draining or starting), current ones first.
	Pools func() []*supervisor.Pool
	// Version is fcgivisor's version (fcgivisor_build_info); Started when
	// the process started (fcgivisor_start_time_seconds).
	Version string
	Started time.Time
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
func NewStatus(src Source, log *slog.Logger) http.Handler {
	return &statusHandler{src: src, log: log,
		notFound: "404 page not found (this read-only endpoint serves /status, /metrics and /ping; reload and stop are on admin.listen)"}
}

// NewAdmin returns the control handler: what NewStatus serves, plus
// POST /stop (graceful stop, for `fcgivisor stop`) and POST /reload
// (for `fcgivisor reload`) through control, which must not be nil.
func NewAdmin(src Source, control Control, log *slog.Logger) http.Handler {
	if control == nil {
		panic("front.NewAdmin: nil Control (NewStatus is the endpoint without one)")
	}
	st := &statusHandler{src: src, log: log,
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
	src      Source
	log      *slog.Logger
	notFound string // the 404 text, naming what the endpoint serves
}

func (a *statusHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var render func(io.Writer, *snapshot) error
	var contentType string
	switch r.URL.Path {
	case "/status":
		render, contentType = writeStatus, "application/json"
	case "/metrics":
		render, contentType = writeMetrics, metricsContentType
	case "/ping":
		render, contentType = func(w io.Writer, _ *snapshot) error {
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
	var snap *snapshot
	if r.URL.Path != "/ping" {
		snap = a.snapshot()
	}
	// Render whole before sending: a failure is then a 500, not a cut body.
	var buf bytes.Buffer
	if err := render(&buf, snap); err != nil {
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

// snapshot is every figure of one answer: the status of each pool's
// generations, taken one after another.
type snapshot struct {
	src   *Source
	pools []poolSnap // sorted by name
}

// poolSnap is one pool: its current generation (the first the Source
// listed) and its others.
type poolSnap struct {
	main   supervisor.Status
	others []supervisor.Status
}

// snapshot takes the status of every pool.
func (a *statusHandler) snapshot() *snapshot {
	return newSnapshot(&a.src, a.src.Pools())
}

// newSnapshot groups the status of ps by pool name: the first generation
// of a name is its current one.
func newSnapshot(src *Source, ps []*supervisor.Pool) *snapshot {
	snap := &snapshot{src: src}
	index := map[string]int{}
	for _, p := range ps {
		st := p.Status()
		if i, ok := index[st.Name]; ok {
			snap.pools[i].others = append(snap.pools[i].others, st)
			continue
		}
		index[st.Name] = len(snap.pools)
		snap.pools = append(snap.pools, poolSnap{main: st})
	}
	sort.Slice(snap.pools, func(i, j int) bool { return snap.pools[i].main.Name < snap.pools[j].main.Name })
	return snap
}

// adminStatus builds the /status document. Empty lists and maps are made
// non-nil so that they read [] and {}, not null.
func adminStatus(snap *snapshot) AdminStatus {
	doc := AdminStatus{
		Version:    snap.src.Version,
		GoVersion:  runtime.Version(),
		StartTime:  snap.src.Started,
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GCPercent:  gcPercent(),
		Pools:      make([]AdminPool, 0, len(snap.pools)),
	}
	for _, ps := range snap.pools {
		st := ps.main
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
		ap := AdminPool{Status: st, Totals: AdminTotals{Totals: t, Responses5xx: count5xx(t.Responses)}}
		for _, o := range ps.others {
			ap.Generations = append(ap.Generations, generation(o))
		}
		doc.Pools = append(doc.Pools, ap)
	}
	return doc
}

// generation is the part of st that is its generation's own.
func generation(st supervisor.Status) AdminGeneration {
	g := AdminGeneration{
		State: st.State, Draining: st.Draining, GenerationStartTime: st.GenerationStartTime, Queue: st.Queue,
		IdleWorkers: st.IdleWorkers, BusyWorkers: st.BusyWorkers, TotalWorkers: st.TotalWorkers,
		BusySlots: st.BusySlots, IdleSlots: st.IdleSlots, Workers: st.Workers, LastExit: st.LastExit,
	}
	if g.Workers == nil {
		g.Workers = []supervisor.WorkerStatus{}
	}
	return g
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

// writeStatus writes the /status JSON of snap.
func writeStatus(w io.Writer, snap *snapshot) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(adminStatus(snap))
}

// gcPercent is the GC's current target (GOGC; -1: off).
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int(int64(s[0].Value.Uint64()))
}
