package supervisor

import (
	"maps"
	"sort"
	"time"
)

// Status is a pool's state as the admin endpoints show it (/status JSON,
// and the metrics derived from it); Pool.Status returns a consistent
// snapshot. Counters, maxima and histograms are the pool's since it
// started, shared by its generations (Stats); the rest is this
// generation's.
type Status struct {
	Name  string `json:"name"`
	Mode  string `json:"mode"`  // static | dynamic | ondemand
	State string `json:"state"` // starting | running | failing | stopping
	// Draining: a reload replaced or removed this generation; it finishes
	// the requests it has and stops.
	Draining bool `json:"draining,omitempty"`
	// StartTime is when the pool first started in this process (its
	// counters count from then, across reloads); GenerationStartTime when
	// this generation of its workers started.
	StartTime           time.Time `json:"start_time"`
	GenerationStartTime time.Time `json:"generation_start_time"`
	// Queue is the number of requests waiting for a slot;
	// OldestQueuedSeconds how long the first of them has waited;
	// MaxQueue the longest the queue was since the start.
	Queue               int     `json:"queue"`
	OldestQueuedSeconds float64 `json:"oldest_queued_seconds"`
	MaxQueue            int64   `json:"max_queue"`
	MinWorkers          int     `json:"min_workers"`
	MaxWorkers          int     `json:"max_workers"`
	Concurrency         int     `json:"concurrency"`
	// IdleWorkers are live workers serving nothing; BusyWorkers workers
	// serving a request (retiring ones included); TotalWorkers every
	// worker process (idle + busy + retiring idle ones); MaxBusyWorkers
	// the most busy at once since the start.
	IdleWorkers    int   `json:"idle_workers"`
	BusyWorkers    int   `json:"busy_workers"`
	TotalWorkers   int   `json:"total_workers"`
	MaxBusyWorkers int64 `json:"max_busy_workers"`
	// BusySlots and IdleSlots count the slots of live workers.
	BusySlots int            `json:"busy_slots"`
	IdleSlots int            `json:"idle_slots"`
	Workers   []WorkerStatus `json:"workers"`
	Totals    Totals         `json:"totals"`
	// RequestDuration: how long requests held a worker slot; QueueWait:
	// how long they waited for one (see Serve).
	RequestDuration Histogram `json:"request_duration"`
	QueueWait       Histogram `json:"queue_wait"`
	// LastExit describes the last unexpected worker exit or start error,
	// LastStderr the last line a worker wrote to stderr ("" when none).
	LastExit   string `json:"last_exit,omitempty"`
	LastStderr string `json:"last_stderr,omitempty"`
}

// WorkerStatus is one worker process.
type WorkerStatus struct {
	Pid        int     `json:"pid"`
	State      string  `json:"state"` // idle | busy | retiring
	Requests   int64   `json:"requests"`
	AgeSeconds float64 `json:"age_seconds"`
	RSSBytes   int64   `json:"rss_bytes"`
	// Request is the oldest request in progress; LastRequest the last
	// one it finished.
	Request     *RequestStatus `json:"request,omitempty"`
	LastRequest *RequestStatus `json:"last_request,omitempty"`
}

// RequestStatus is a request on a worker: in progress (Seconds and
// CPUSeconds so far) or finished (RSSBytes: the worker's at its end).
// CPUSeconds is the worker's CPU time (user + system, its process CPU clock)
// meanwhile, in 1/100 s: with concurrency above 1 it includes the other
// requests the worker served at the same time.
type RequestStatus struct {
	Method     string  `json:"method"`
	URI        string  `json:"uri"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
	RSSBytes   int64   `json:"rss_bytes,omitempty"`
}

// Totals are counters since the pool started.
type Totals struct {
	// Accepted counts requests handed to the pool; Responses counts the
	// HTTP status codes the front answered for this pool, by code.
	Accepted  int64            `json:"accepted"`
	Responses map[int]int64    `json:"responses"`
	Timeouts  int64            `json:"timeouts"` // request_timeout exceeded
	Recycled  map[string]int64 `json:"recycled"` // by cause: max_requests, max_lifetime, max_memory, idle, self_limit, restart, reload
	Spawns    int64            `json:"spawns"`   // workers started (including failed starts)
	Exits     int64            `json:"exits"`    // workers that exited
	// MaxWorkersReached counts the requests that had to wait for a slot
	// because the pool was at max_workers (static: workers) and could
	// start no worker for them: once per such request.
	MaxWorkersReached int64 `json:"max_workers_reached"`
	// SlowRequests counts requests that ran past request_slowlog_timeout.
	SlowRequests int64 `json:"slow_requests"`
	// CGIFallbacks counts requests served by running the command once as
	// CGI (cgi_fallback); CGIFallbacksRefused those answered 503 because
	// max_workers such runs were going on already.
	CGIFallbacks        int64 `json:"cgi_fallbacks"`
	CGIFallbacksRefused int64 `json:"cgi_fallbacks_refused"`
}

// Observe records the HTTP status the front answered for a request of this
// pool.
func (p *Pool) Observe(code int) {
	if code >= 100 && code < len(p.stats.codes) {
		p.stats.codes[code].Add(1)
	}
}

// Status returns a snapshot of the pool. RSS and CPU time are read from
// /proc for each worker, outside the pool's lock.
func (p *Pool) Status() Status {
	now := time.Now()
	cfg := p.conf()
	p.mu.Lock()
	st := Status{
		Name:                cfg.Name,
		Mode:                string(cfg.Scaling),
		State:               p.state.String(),
		Draining:            p.draining,
		StartTime:           p.stats.start,
		GenerationStartTime: p.started,
		Queue:               p.queuedLocked(),
		MinWorkers:          floor(cfg),
		MaxWorkers:          cfg.MaxWorkers,
		Concurrency:         cfg.Concurrency,
		BusyWorkers:         p.busyWorkers,
		TotalWorkers:        len(p.workers),
		LastExit:            p.lastErr,
		LastStderr:          p.lastStderr,
	}
	if wt := p.oldestWaiterLocked(); wt != nil {
		st.OldestQueuedSeconds = now.Sub(wt.since).Seconds()
	}
	ws := make([]*worker, 0, len(p.workers))
	cpuStart := make([]int64, 0, len(p.workers))
	for w := range p.workers {
		if !w.gone {
			st.BusySlots += w.busy
			st.IdleSlots += len(w.slots) - w.busy
			if w.busy == 0 {
				st.IdleWorkers++
			}
		}
		wst, start := w.statusLocked(now)
		st.Workers = append(st.Workers, wst)
		ws = append(ws, w)
		cpuStart = append(cpuStart, start)
	}
	p.mu.Unlock()

	st.Totals = p.stats.totals()
	st.MaxQueue = p.stats.maxQueue.Load()
	st.MaxBusyWorkers = p.stats.maxBusy.Load()
	st.RequestDuration = p.stats.duration.snapshot()
	st.QueueWait = p.stats.queueWait.snapshot()
	for i, w := range ws {
		w.readStatus(&st.Workers[i], cpuStart[i])
	}
	sort.Slice(st.Workers, func(i, j int) bool { return st.Workers[i].Pid < st.Workers[j].Pid })
	return st
}

// totals are the counters of s.
func (s *Stats) totals() Totals {
	t := Totals{
		Accepted:            s.accepted.Load(),
		Timeouts:            s.timeouts.Load(),
		Spawns:              s.spawns.Load(),
		Exits:               s.exits.Load(),
		MaxWorkersReached:   s.maxReached.Load(),
		SlowRequests:        s.slow.Load(),
		CGIFallbacks:        s.fallbacks.Load(),
		CGIFallbacksRefused: s.refused.Load(),
		Responses:           make(map[int]int64),
	}
	for code := range s.codes {
		if n := s.codes[code].Load(); n > 0 {
			t.Responses[code] = n
		}
	}
	s.mu.Lock()
	t.Recycled = maps.Clone(s.recycled)
	s.mu.Unlock()
	return t
}

// statusLocked is w's WorkerStatus at now, but for what /proc tells
// (readStatus), and the CPU ticks at the start of its request in progress
// (-1: none, or unknown).
func (w *worker) statusLocked(now time.Time) (WorkerStatus, int64) {
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
	if w.last != nil {
		last := *w.last
		ws.LastRequest = &last
	}
	var oldest *slot
	for _, s := range w.slots {
		if s.busy && (oldest == nil || s.since.Before(oldest.since)) {
			oldest = s
		}
	}
	if oldest == nil {
		return ws, -1
	}
	ws.Request = &RequestStatus{Method: oldest.req.method, URI: oldest.req.uri, Seconds: now.Sub(oldest.since).Seconds()}
	return ws, oldest.cpuStart.Load()
}

// readStatus fills in ws what /proc tells of w: its RSS, and the CPU
// time its request in progress has used since cpuStart (-1: none).
func (w *worker) readStatus(ws *WorkerStatus, cpuStart int64) {
	if n, err := w.rss(); err == nil {
		ws.RSSBytes = n
	}
	if ws.Request == nil || cpuStart < 0 {
		return
	}
	if t, err := w.cpuNanos(); err == nil {
		ws.Request.CPUSeconds = nanosToSeconds(t - cpuStart)
	}
}
