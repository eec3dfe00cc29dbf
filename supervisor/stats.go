package supervisor

// Stats: a pool's counters, high-water marks and histograms since it
// started (issue 13). The generations of a pool (a reload that needs new
// workers starts a new Pool of the same name) share one Stats, handed out
// by the daemon's StatsSet, so that a reload does not restart the counters
// and a request that ends on a draining old generation still counts. Every
// field is an atomic or behind Stats.mu, a leaf lock: nothing takes p.mu
// while holding it, so it may be taken under p.mu.

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are the counters of one pool name; see StatsSet.
type Stats struct {
	start time.Time

	accepted   atomic.Int64
	timeouts   atomic.Int64
	slow       atomic.Int64
	maxReached atomic.Int64 // requests that queued while the pool was at its ceiling
	spawns     atomic.Int64
	exits      atomic.Int64
	fallbacks  atomic.Int64
	refused    atomic.Int64 // CGI fallbacks refused: max_workers runs going on
	codes      [600]atomic.Int64
	maxQueue   atomic.Int64 // the longest the queue was
	maxBusy    atomic.Int64 // the most workers busy at once (in one generation)

	duration  histogram // time on a worker, per request
	queueWait histogram // time waiting for a slot, per request

	mu       sync.Mutex
	recycled map[string]int64 // by cause
}

// Histogram bucket upper bounds, in seconds. Requests: from a static
// answer (a few ms) to request_timeout's default (60 s). Queue waits: most
// are 0 (a slot was free), and queue_timeout's default is 5 s.
var (
	durationBounds  = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	queueWaitBounds = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

func newStats() *Stats {
	return &Stats{
		start:     time.Now(),
		duration:  newHistogram(durationBounds),
		queueWait: newHistogram(queueWaitBounds),
		recycled:  make(map[string]int64),
	}
}

// StatsSet hands out one Stats per pool name, for the life of the
// process: every generation of a pool, and a pool removed by a reload and
// added again, count on.
type StatsSet struct {
	mu     sync.Mutex
	byName map[string]*Stats
}

// NewStatsSet returns an empty set.
func NewStatsSet() *StatsSet { return &StatsSet{byName: make(map[string]*Stats)} }

// stats returns the Stats of the pool named name, made at its first call.
func (s *StatsSet) stats(name string) *Stats {
	if s == nil {
		return newStats()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byName[name]
	if st == nil {
		st = newStats()
		s.byName[name] = st
	}
	return st
}

func (s *Stats) recycle(cause string) {
	s.mu.Lock()
	s.recycled[cause]++
	s.mu.Unlock()
}

// raise makes m at least v.
func raise(m *atomic.Int64, v int64) {
	for {
		old := m.Load()
		if v <= old || m.CompareAndSwap(old, v) {
			return
		}
	}
}

// histogram counts observations into buckets; lock-free, so that the
// request path pays two atomic adds.
type histogram struct {
	bounds []float64
	counts []atomic.Int64 // per bucket, not cumulative; the last is +Inf
	sumNs  atomic.Int64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]atomic.Int64, len(bounds)+1)}
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(h.bounds) && s > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

// Histogram is a snapshot of a histogram in Prometheus's terms: the
// cumulative count of observations at or below each bound, then all of
// them (+Inf), and their sum in seconds.
type Histogram struct {
	Bounds []float64 `json:"-"`
	Counts []int64   `json:"-"` // cumulative, len(Bounds)+1: the last is Count
	Count  int64     `json:"count"`
	Sum    float64   `json:"sum_seconds"`
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: h.bounds, Counts: make([]int64, len(h.counts))}
	for i := range h.counts {
		out.Count += h.counts[i].Load()
		out.Counts[i] = out.Count
	}
	out.Sum = math.Round(float64(h.sumNs.Load())/1e3) / 1e6 // µs precision
	return out
}
