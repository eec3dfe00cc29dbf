// This file implements /metrics: the Prometheus text exposition format
// 0.0.4 of a snapshot, fcgivisor_ prefix, one pool label. A pool's
// generations (a reload that starts new workers leaves the old ones
// draining) are one pool here: counters, maxima and histograms are the
// pool's (shared by its generations), gauges of workers, slots and queue
// add the generations up, and each worker is a series of its own (pid).

package front

import (
	"fmt"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fcgivisor/fcgivisor/supervisor"
)

// metricsContentType is the Prometheus text exposition format.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// poolStates are the pool states in the order of supervisor.State.
func poolStates() []string {
	var ss []string
	for s := supervisor.Starting; s <= supervisor.Stopping; s++ {
		ss = append(ss, s.String())
	}
	return ss
}

// workerStates are the states of supervisor.WorkerStatus.
var workerStates = []string{"busy", "idle", "retiring"}

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

// sample is one sample of a family: the suffix of its name (a histogram's
// _bucket, _sum, _count), its labels after pool, as name/value pairs, and
// its value.
type sample struct {
	suffix string
	labels []string
	value  float64
}

// family is one metric: name, type, help, and either a function giving a
// pool's samples or, for a metric of the process (global), its samples
// without a pool label.
type family struct {
	name, typ, help string
	samples         func(st *supervisor.Status) []sample
	global          func(snap *snapshot) []sample
}

func one(v float64) []sample { return []sample{{value: v}} }

// families are the metrics of /metrics, in the order they are written.
func families() []family {
	fs := processFamilies()
	fs = append(fs, gaugeFamilies()...)
	fs = append(fs, workerFamilies()...)
	fs = append(fs, counterFamilies()...)
	return append(fs, histogramFamilies()...)
}

// processFamilies are the metrics of the fcgivisor process.
func processFamilies() []family {
	return []family{
		{name: "fcgivisor_build_info", typ: "gauge", help: "fcgivisor's version and the Go version it was built with; always 1.",
			global: func(snap *snapshot) []sample {
				return []sample{{labels: []string{"version", snap.src.Version, "goversion", runtime.Version()}, value: 1}}
			}},
		{name: "fcgivisor_start_time_seconds", typ: "gauge", help: "When the fcgivisor process started, in seconds since the Unix epoch.",
			global: func(snap *snapshot) []sample {
				if snap.src.Started.IsZero() {
					return nil
				}
				return one(unixSeconds(snap.src.Started))
			}},
	}
}

// gaugeFamilies are the metrics that give a pool's state now, and its
// maxima since it started.
func gaugeFamilies() []family {
	return []family{
		{name: "fcgivisor_pool_state", typ: "gauge", help: "Pool state: 1 for the current state, 0 for the others.", samples: func(st *supervisor.Status) []sample {
			states := poolStates()
			if !slices.Contains(states, st.State) {
				states = append(states, st.State)
			}
			var ss []sample
			for _, s := range states {
				ss = append(ss, sample{labels: []string{"state", s}, value: b2f(s == st.State)})
			}
			return ss
		}},
		{name: "fcgivisor_pool_start_time_seconds", typ: "gauge", help: "When the pool first started, in seconds since the Unix epoch; its counters count from then, across reloads.", samples: func(st *supervisor.Status) []sample {
			return one(unixSeconds(st.StartTime))
		}},
		{name: "fcgivisor_workers", typ: "gauge", help: "Worker processes by state (a worker being recycled or stopped is retiring, busy or not).", samples: func(st *supervisor.Status) []sample {
			n := map[string]int{}
			for _, w := range st.Workers {
				n[w.State]++
			}
			var ss []sample
			for _, s := range withSeen(slices.Clone(workerStates), n) {
				ss = append(ss, sample{labels: []string{"state", s}, value: float64(n[s])})
			}
			return ss
		}},
		{name: "fcgivisor_workers_busy_max", typ: "gauge", help: "The most workers serving a request at once since the pool started.", samples: func(st *supervisor.Status) []sample {
			return one(float64(st.MaxBusyWorkers))
		}},
		{name: "fcgivisor_max_workers", typ: "gauge", help: "The pool's max_workers.", samples: func(st *supervisor.Status) []sample {
			return one(float64(st.MaxWorkers))
		}},
		{name: "fcgivisor_slots", typ: "gauge", help: "Request slots of live workers by state.", samples: func(st *supervisor.Status) []sample {
			return []sample{{labels: []string{"state", "busy"}, value: float64(st.BusySlots)}, {labels: []string{"state", "idle"}, value: float64(st.IdleSlots)}}
		}},
		{name: "fcgivisor_queue_length", typ: "gauge", help: "Requests waiting for a free slot.", samples: func(st *supervisor.Status) []sample {
			return one(float64(st.Queue))
		}},
		{name: "fcgivisor_queue_length_max", typ: "gauge", help: "The most requests waiting for a free slot at once since the pool started.", samples: func(st *supervisor.Status) []sample {
			return one(float64(st.MaxQueue))
		}},
		{name: "fcgivisor_queue_oldest_seconds", typ: "gauge", help: "How long the oldest queued request has waited.", samples: func(st *supervisor.Status) []sample {
			return one(st.OldestQueuedSeconds)
		}},
	}
}

// perWorker gives one sample per worker, labelled with its pid.
func perWorker(value func(w *supervisor.WorkerStatus) float64) func(st *supervisor.Status) []sample {
	return func(st *supervisor.Status) []sample {
		var ss []sample
		for i := range st.Workers {
			w := &st.Workers[i]
			ss = append(ss, sample{labels: []string{"pid", strconv.Itoa(w.Pid)}, value: value(w)})
		}
		return ss
	}
}

// workerFamilies are the metrics of each worker process.
func workerFamilies() []family {
	return []family{
		{name: "fcgivisor_worker_state", typ: "gauge", help: "Each worker's state: 1 for its state, 0 for the others.", samples: func(st *supervisor.Status) []sample {
			var ss []sample
			for _, w := range st.Workers {
				for _, s := range workerStates {
					ss = append(ss, sample{labels: []string{"pid", strconv.Itoa(w.Pid), "state", s}, value: b2f(s == w.State)})
				}
			}
			return ss
		}},
		{name: "fcgivisor_worker_rss_bytes", typ: "gauge", help: "Resident set size of each worker process.",
			samples: perWorker(func(w *supervisor.WorkerStatus) float64 { return float64(w.RSSBytes) })},
		{name: "fcgivisor_worker_requests_total", typ: "counter", help: "Requests each worker has served.",
			samples: perWorker(func(w *supervisor.WorkerStatus) float64 { return float64(w.Requests) })},
		{name: "fcgivisor_worker_request_duration_seconds", typ: "gauge", help: "How long each worker's request in progress has run, or its last one took when it is idle (0: none yet).",
			samples: perWorker(func(w *supervisor.WorkerStatus) float64 {
				if r := w.Request; r != nil {
					return r.Seconds
				}
				if r := w.LastRequest; r != nil {
					return r.Seconds
				}
				return 0
			})},
		{name: "fcgivisor_worker_last_request_duration_seconds", typ: "gauge", help: "How long each worker's last finished request took (0: none yet).",
			samples: perWorker(func(w *supervisor.WorkerStatus) float64 {
				if r := w.LastRequest; r != nil {
					return r.Seconds
				}
				return 0
			})},
		{name: "fcgivisor_worker_last_request_cpu_seconds", typ: "gauge", help: "CPU time (user + system) each worker used during its last finished request.",
			samples: perWorker(func(w *supervisor.WorkerStatus) float64 {
				if r := w.LastRequest; r != nil {
					return r.CPUSeconds
				}
				return 0
			})},
		{name: "fcgivisor_worker_last_request_rss_bytes", typ: "gauge", help: "Each worker's resident set size at the end of its last finished request.",
			samples: perWorker(func(w *supervisor.WorkerStatus) float64 {
				if r := w.LastRequest; r != nil {
					return float64(r.RSSBytes)
				}
				return 0
			})},
	}
}

// counterFamilies are the metrics that count since the pool started.
func counterFamilies() []family {
	counter := func(name, help string, v func(t *supervisor.Totals) int64) family {
		return family{name: name, typ: "counter", help: help, samples: func(st *supervisor.Status) []sample {
			return one(float64(v(&st.Totals)))
		}}
	}
	return []family{
		counter("fcgivisor_requests_accepted_total", "Requests handed to the pool.", func(t *supervisor.Totals) int64 { return t.Accepted }),
		{name: "fcgivisor_requests_total", typ: "counter", help: "Answers the front sent for the pool, by HTTP status code.", samples: func(st *supervisor.Status) []sample {
			var ss []sample
			for _, code := range slices.Sorted(maps.Keys(st.Totals.Responses)) {
				ss = append(ss, sample{labels: []string{"code", strconv.Itoa(code)}, value: float64(st.Totals.Responses[code])})
			}
			return ss
		}},
		counter("fcgivisor_request_timeouts_total", "Requests that ran past request_timeout.", func(t *supervisor.Totals) int64 { return t.Timeouts }),
		counter("fcgivisor_slow_requests_total", "Requests that ran past request_slowlog_timeout.", func(t *supervisor.Totals) int64 { return t.SlowRequests }),
		{name: "fcgivisor_workers_recycled_total", typ: "counter", help: "Workers recycled, by cause.", samples: func(st *supervisor.Status) []sample {
			causes := []string{"idle", "max_lifetime", "max_memory", "max_requests", "self_limit"}
			var ss []sample
			for _, c := range withSeen(causes, st.Totals.Recycled) {
				ss = append(ss, sample{labels: []string{"cause", c}, value: float64(st.Totals.Recycled[c])})
			}
			return ss
		}},
		counter("fcgivisor_worker_spawns_total", "Worker processes started, failed starts included.", func(t *supervisor.Totals) int64 { return t.Spawns }),
		counter("fcgivisor_worker_exits_total", "Worker processes that exited.", func(t *supervisor.Totals) int64 { return t.Exits }),
		counter("fcgivisor_max_workers_reached_total", "Requests that had to wait for a slot because the pool was at max_workers (static: workers).",
			func(t *supervisor.Totals) int64 { return t.MaxWorkersReached }),
		counter("fcgivisor_cgi_fallbacks_total", "Requests the pool could not serve that ran its command once as CGI (cgi_fallback).",
			func(t *supervisor.Totals) int64 { return t.CGIFallbacks }),
		counter("fcgivisor_cgi_fallbacks_refused_total", "Requests answered 503 because max_workers CGI fallback runs were going on.",
			func(t *supervisor.Totals) int64 { return t.CGIFallbacksRefused }),
	}
}

// histogramFamilies are the distributions of requests' times.
func histogramFamilies() []family {
	return []family{
		{name: "fcgivisor_request_duration_seconds", typ: "histogram",
			help:    "How long requests held a worker slot: from the slot taken to the end of the answer (to the client), re-sends included.",
			samples: func(st *supervisor.Status) []sample { return histogramSamples(&st.RequestDuration) }},
		{name: "fcgivisor_queue_wait_seconds", typ: "histogram",
			help:    "How long requests waited for a free slot (0 when one was free), counted when they got one or gave up.",
			samples: func(st *supervisor.Status) []sample { return histogramSamples(&st.QueueWait) }},
	}
}

// histogramSamples are h's _bucket, _sum and _count samples.
func histogramSamples(h *supervisor.Histogram) []sample {
	ss := make([]sample, 0, len(h.Bounds)+3)
	for i, le := range h.Bounds {
		ss = append(ss, sample{suffix: "_bucket", labels: []string{"le", formatValue(le)}, value: float64(h.Counts[i])})
	}
	return append(ss,
		sample{suffix: "_bucket", labels: []string{"le", "+Inf"}, value: float64(h.Count)},
		sample{suffix: "_sum", value: h.Sum},
		sample{suffix: "_count", value: float64(h.Count)})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// merged is a pool as /metrics shows it: its current generation's status
// (the pool's counters, maxima, histograms and state) with the workers,
// slots and queue of its other generations added.
func merged(ps *poolSnap) supervisor.Status {
	st := ps.main
	if len(ps.others) == 0 {
		return st
	}
	st.Workers = slices.Clone(st.Workers)
	for _, o := range ps.others {
		st.Workers = append(st.Workers, o.Workers...)
		st.BusySlots += o.BusySlots
		st.IdleSlots += o.IdleSlots
		st.Queue += o.Queue
		st.OldestQueuedSeconds = max(st.OldestQueuedSeconds, o.OldestQueuedSeconds)
	}
	return st
}

// writeMetrics writes snap in the Prometheus text exposition format: per
// metric a HELP and a TYPE line, then its samples, pool by pool.
func writeMetrics(w io.Writer, snap *snapshot) error {
	pools := make([]supervisor.Status, len(snap.pools))
	for i := range snap.pools {
		pools[i] = merged(&snap.pools[i])
	}
	var b strings.Builder
	for _, f := range families() {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ)
		if f.global != nil {
			for _, s := range f.global(snap) {
				writeSample(&b, f.name, nil, s)
			}
			continue
		}
		for i := range pools {
			for _, s := range f.samples(&pools[i]) {
				writeSample(&b, f.name, []string{"pool", pools[i].Name}, s)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeSample writes one sample line of family name: first labels, then
// the sample's own.
func writeSample(b *strings.Builder, name string, first []string, s sample) {
	b.WriteString(name + s.suffix)
	labels := append(slices.Clone(first), s.labels...)
	for j := 0; j+1 < len(labels); j += 2 {
		if j == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(labels[j] + `="`)
		b.WriteString(escapeLabel(labels[j+1]))
		b.WriteByte('"')
	}
	if len(labels) > 0 {
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(formatValue(s.value))
	b.WriteByte('\n')
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
	case math.Abs(v) >= 1e-3 && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', -1, 64) // a time stamp without exponent
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// unixSeconds is t in seconds since the Unix epoch, to the millisecond.
func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1e3 }
