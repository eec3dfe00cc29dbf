package supervisor

import (
	"maps"
	"sort"
	"time"
)

// Status is a pool's state as the admin endpoints show it (/status JSON,
// and the metrics derived from it); Pool.Status returns a consistent
// snapshot.
type Status struct {
	Name  string `json:"name"`
	Mode  string `json:"mode"`  // static | dynamic | ondemand
	State string `json:"state"` // starting | running | failing | stopping
	// Queue is the number of requests waiting for a slot;
	// OldestQueuedSeconds how long the first of them has waited.
	Queue               int     `json:"queue"`
	OldestQueuedSeconds float64 `json:"oldest_queued_seconds"`
	MinWorkers          int     `json:"min_workers"`
	MaxWorkers          int     `json:"max_workers"`
	Concurrency         int     `json:"concurrency"`
	// BusySlots and IdleSlots count the slots of live workers.
	BusySlots int            `json:"busy_slots"`
	IdleSlots int            `json:"idle_slots"`
	Workers   []WorkerStatus `json:"workers"`
	Totals    Totals         `json:"totals"`
	// LastExit describes the last unexpected worker exit or start error,
	// LastStderr the last line a worker wrote to stderr ("" when none).
	LastExit   string `json:"last_exit,omitempty"`
	LastStderr string `json:"last_stderr,omitempty"`
}

// WorkerStatus is one worker process.
type WorkerStatus struct {
	Pid        int            `json:"pid"`
	State      string         `json:"state"` // idle | busy | retiring
	Requests   int64          `json:"requests"`
	AgeSeconds float64        `json:"age_seconds"`
	RSSBytes   int64          `json:"rss_bytes"`
	Request    *RequestStatus `json:"request,omitempty"` // the oldest request in progress
}

// RequestStatus is a request in progress on a worker.
type RequestStatus struct {
	URI     string  `json:"uri"`
	Seconds float64 `json:"seconds"`
}

// Totals are counters since the pool started.
type Totals struct {
	// Accepted counts requests handed to the pool; Responses counts the
	// HTTP status codes the front answered for this pool, by code.
	Accepted  int64            `json:"accepted"`
	Responses map[int]int64    `json:"responses"`
	Timeouts  int64            `json:"timeouts"` // request_timeout exceeded
	Recycled  map[string]int64 `json:"recycled"` // by cause: max_requests, max_lifetime, max_memory, idle, self_limit
	Spawns    int64            `json:"spawns"`   // workers started (including failed starts)
	Exits     int64            `json:"exits"`    // workers that exited
	// MaxWorkersReached counts the times the scaler wanted another worker
	// but the pool was at max_workers.
	MaxWorkersReached int64 `json:"max_workers_reached"`
	// CGIFallbacks counts requests served by running the command once as
	// CGI (cgi_fallback); CGIFallbacksRefused those answered 503 because
	// max_workers such runs were going on already.
	CGIFallbacks        int64 `json:"cgi_fallbacks"`
	CGIFallbacksRefused int64 `json:"cgi_fallbacks_refused"`
}

// Observe records the HTTP status the front answered for a request of this
// pool.
func (p *Pool) Observe(code int) {
	if code >= 100 && code < len(p.codes) {
		p.codes[code].Add(1)
	}
}

// Status returns a snapshot of the pool. RSS is read from /proc for each
// worker, outside the pool's lock.
func (p *Pool) Status() Status {
	now := time.Now()
	cfg := p.conf()
	p.mu.Lock()
	st := Status{
		Name:        cfg.Name,
		Mode:        string(cfg.Scaling),
		State:       p.state.String(),
		Queue:       p.queuedLocked(),
		MinWorkers:  floor(cfg),
		MaxWorkers:  cfg.MaxWorkers,
		Concurrency: cfg.Concurrency,
		LastExit:    p.lastErr,
		LastStderr:  p.lastStderr,
		Totals:      p.totals,
	}
	if wt := p.oldestWaiterLocked(); wt != nil {
		st.OldestQueuedSeconds = now.Sub(wt.since).Seconds()
	}
	st.Totals.Recycled = maps.Clone(p.totals.Recycled)
	for w := range p.workers {
		if !w.gone {
			st.BusySlots += w.busy
			st.IdleSlots += len(w.slots) - w.busy
		}
		st.Workers = append(st.Workers, w.statusLocked(now))
	}
	p.mu.Unlock()

	st.Totals.Accepted = p.accepted.Load()
	st.Totals.Timeouts = p.timeouts.Load()
	st.Totals.Responses = make(map[int]int64)
	for code := range p.codes {
		if n := p.codes[code].Load(); n > 0 {
			st.Totals.Responses[code] = n
		}
	}
	for i := range st.Workers {
		if n, err := readRSS(st.Workers[i].Pid); err == nil {
			st.Workers[i].RSSBytes = n
		}
	}
	sort.Slice(st.Workers, func(i, j int) bool { return st.Workers[i].Pid < st.Workers[j].Pid })
	return st
}

// statusLocked is w's WorkerStatus at now, but for its RSS.
func (w *worker) statusLocked(now time.Time) WorkerStatus {
	ws := WorkerStatus{
		Pid:        w.proc.Pid(),
		Requests:   w.served,
		AgeSeconds: now.Sub(w.started).Seconds(),
	}
	switch {
	case w.gone:
		ws.State = "retiring"
	case w.busy > 0:
		ws.State = "busy"
	default:
		ws.State = "idle"
	}
	var oldest *slot
	for _, s := range w.slots {
		if s.busy && (oldest == nil || s.since.Before(oldest.since)) {
			oldest = s
		}
	}
	if oldest != nil {
		ws.Request = &RequestStatus{URI: oldest.uri, Seconds: now.Sub(oldest.since).Seconds()}
	}
	return ws
}
