package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/front"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// TestStatusTable: the table shows the pool's start and maxima, each
// worker's request in progress and its last one, and a draining
// generation with its request.
func TestStatusTable(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 10, 0, 0, time.UTC)
	start := now.Add(-10 * time.Minute)
	doc := &front.AdminStatus{
		Version: "v1.2.3", GoVersion: "go1.26.8", StartTime: start,
		Pools: []front.AdminPool{{
			Status: supervisor.Status{
				Name: "php", Mode: "static", State: "running", StartTime: start, GenerationStartTime: now.Add(-time.Minute),
				Queue: 3, OldestQueuedSeconds: 1.5, MaxQueue: 3, MaxWorkers: 2, BusyWorkers: 1, TotalWorkers: 1, MaxBusyWorkers: 2,
				BusySlots: 1,
				Workers: []supervisor.WorkerStatus{
					{Pid: 11, State: "busy", Requests: 4, AgeSeconds: 60, RSSBytes: 3 << 20,
						Request:     &supervisor.RequestStatus{Method: "GET", URI: "/c/a?sleep=2000", Seconds: 1.5, CPUSeconds: 0},
						LastRequest: &supervisor.RequestStatus{Method: "POST", URI: "/c/form", Seconds: 0.0123, CPUSeconds: 0.01, RSSBytes: 3 << 20}},
				},
			},
			Totals: front.AdminTotals{Totals: supervisor.Totals{Accepted: 9, SlowRequests: 1, MaxWorkersReached: 3, Spawns: 2}},
			Generations: []front.AdminGeneration{{
				State: "running", Draining: true, GenerationStartTime: start, BusyWorkers: 1, TotalWorkers: 1, BusySlots: 1,
				Workers: []supervisor.WorkerStatus{{Pid: 7, State: "busy", Requests: 50, AgeSeconds: 540,
					Request: &supervisor.RequestStatus{Method: "GET", URI: "/c/old?sleep=9000", Seconds: 8, CPUSeconds: 0.02}}},
			}},
		}},
	}
	var b bytes.Buffer
	writeStatusTable(&b, doc, now)
	out := b.String()
	for _, want := range []string{
		"fcgivisor v1.2.3 (go1.26.8), up 10m0s\n",
		"pool php (static, running): workers 1/2 (1 busy, 0 idle), slots 1 busy 0 idle, queue 3 (oldest 1.5s)\n",
		"(10m0s ago), max queue 3, max busy workers 2\n",
		"  totals: accepted 9, 5xx 0, timeouts 0, slow 1, spawns 2, exits 0, recycled 0, max_workers reached 3\n",
		"GET /c/a?sleep=2000 (1.5s, cpu 0.00s)",
		"POST /c/form (0.012s, cpu 0.01s, 3.0 MiB)",
		"  draining generation (running, started 10m0s ago): workers 1 (1 busy, 0 idle), slots 1 busy 0 idle, queue 0\n",
		"GET /c/old?sleep=9000 (8.0s, cpu 0.02s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("table:\n%s", out)
	}
}
