// Command burst is the load tool of bench/burst.sh: from an idle server, C
// clients at once each loop GET URL for D, every request with its own
// timeout, and it records per request the start time, latency, status and
// the worker that served it (the body of bench/burst/burst.php: "PID
// STARTTIME", STARTTIME in clock ticks since boot).
//
// It prints one line of key=value figures (see summary below), and with
// -raw writes every request as CSV. The time until N workers serve (tN) is
// the time from the burst start until N distinct pids have each completed
// at least one request; spawnN is when the Nth of those processes had been
// created (from /proc, clock-tick resolution; negative for workers started
// before the burst).
//
// Request counts, latencies and failures are over the requests started in
// the window -d. When N workers have not served by then, the clients go on
// (at most -max in all) so that tN is still measured: a slow pool gets a
// figure rather than "never"; what happens after the window counts only
// for tN (and failures_after).
//
// Linux only (CLOCK_BOOTTIME, /proc starttime); standard library only,
// besides the summary line and percentiles it shares with bench/reload
// (bench/internal/figures).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/fcgivisor/fcgivisor/bench/internal/figures"
)

type result struct {
	client  int
	start   time.Duration // since the burst start
	latency time.Duration
	status  int    // 0: no response
	err     string // "" when the request succeeded (200 and a pid)
	pid     int
	spawned int64 // worker start time, clock ticks since boot; 0 unknown
}

func main() {
	url := flag.String("url", "", "URL to GET (required)")
	clients := flag.Int("c", 64, "concurrent clients")
	dur := flag.Duration("d", 5*time.Second, "the window: requests started in it make the figures")
	maxDur := flag.Duration("max", 30*time.Second, "go on past the window until N workers have served, at most this long in all")
	timeout := flag.Duration("timeout", 5*time.Second, "per-request timeout (a request past it is a failure)")
	target := flag.Int("workers", 16, "N of tN: distinct workers to wait for")
	label := flag.String("label", "", "first field of the summary line")
	raw := flag.String("raw", "", "write every request to this CSV file")
	hz := flag.Int("hz", 100, "clock ticks per second of /proc/PID/stat (getconf CLK_TCK)")
	flag.Parse()
	if *url == "" || *clients < 1 || *dur <= 0 {
		flag.Usage()
		os.Exit(2)
	}

	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: *timeout}).DialContext,
		MaxIdleConns:        *clients * 2,
		MaxIdleConnsPerHost: *clients * 2,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	hc := &http.Client{Transport: tr}

	var (
		mu      sync.Mutex
		results []result
		served  = map[int]bool{} // pids that have served, under mu
		wg      sync.WaitGroup
	)
	boot0 := boottime()
	t0 := time.Now()
	end, hardEnd := t0.Add(*dur), t0.Add(max(*dur, *maxDur))
	// more says whether a client starts another request at now.
	more := func(now time.Time) bool {
		if now.Before(end) {
			return true
		}
		if !now.Before(hardEnd) {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		return len(served) < *target
	}
	for c := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []result
			for {
				now := time.Now()
				if !more(now) {
					break
				}
				r := get(hc, *url, *timeout, c, now, t0)
				mine = append(mine, r)
				if r.err == "" {
					mu.Lock()
					served[r.pid] = true
					mu.Unlock()
				}
			}
			mu.Lock()
			results = append(results, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	tr.CloseIdleConnections()

	sort.Slice(results, func(i, j int) bool { return results[i].start < results[j].start })
	if *raw != "" {
		if err := figures.WriteCSV(*raw, "client,start_ms,latency_ms,status,pid,spawned_ticks,error", results, csvRow); err != nil {
			fmt.Fprintln(os.Stderr, "burst:", err)
			os.Exit(1)
		}
	}
	fmt.Println(summary(*label, results, *dur, elapsed, *target, boot0, *hz))
}

// get does one request; the body must be "PID STARTTIME".
func get(hc *http.Client, url string, timeout time.Duration, client int, start, t0 time.Time) (r result) {
	r = result{client: client, start: start.Sub(t0)}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	defer func() { r.latency = time.Since(start) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		r.err = err.Error()
		return r
	}
	resp, err := hc.Do(req)
	if err != nil {
		r.err = classify(err)
		return r
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	r.status = resp.StatusCode
	if err != nil {
		r.err = "body: " + classify(err)
		return r
	}
	if resp.StatusCode != http.StatusOK {
		r.err = "status " + strconv.Itoa(resp.StatusCode)
		return r
	}
	f := strings.Fields(string(body))
	if len(f) < 1 {
		r.err = "no pid in body"
		return r
	}
	if r.pid, err = strconv.Atoi(f[0]); err != nil || r.pid <= 0 {
		r.err = "no pid in body"
		return r
	}
	if len(f) > 1 {
		r.spawned, _ = strconv.ParseInt(f[1], 10, 64)
	}
	return r
}

// classify names a failure kind; a request past its timeout ends with its
// context's deadline.
func classify(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return figures.ErrKind(err)
}

// summary is one line: label, then key=value figures (times in ms from the
// burst start, latencies in ms over every request started in the window,
// failed ones included at the time they failed).
func summary(label string, rs []result, dur, elapsed time.Duration, target int, boot0 time.Duration, hz int) string {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }
	line := figures.NewLine(label)
	kv := line.Add

	// First completion and spawn time per worker.
	type seen struct {
		first   time.Duration
		sent    time.Duration
		spawned int64
	}
	workers := map[int]*seen{}
	failures := map[string]int{}
	lat := make([]time.Duration, 0, len(rs))
	inWindow, ok, failedAfter := 0, 0, 0
	for _, r := range rs {
		if r.start < dur {
			inWindow++
			lat = append(lat, r.latency)
			if r.err != "" {
				failures[r.err]++
			} else {
				ok++
			}
		} else if r.err != "" {
			failedAfter++
		}
		if r.err != "" {
			continue
		}
		done := r.start + r.latency
		if s := workers[r.pid]; s == nil {
			workers[r.pid] = &seen{first: done, sent: r.start, spawned: r.spawned}
		} else if done < s.first {
			s.first, s.sent = done, r.start
		}
	}
	firsts := make([]*seen, 0, len(workers))
	for _, s := range workers {
		firsts = append(firsts, s)
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i].first < firsts[j].first })
	if len(firsts) >= target {
		kv(fmt.Sprintf("t%d", target), ms(firsts[target-1].first))
		kv(fmt.Sprintf("t%d_sent", target), ms(firsts[target-1].sent))
	} else {
		kv(fmt.Sprintf("t%d", target), "never")
		kv(fmt.Sprintf("t%d_sent", target), "never")
	}
	// spawnN: the Nth earliest creation time among the workers seen.
	var spawns []int64
	for _, s := range firsts {
		if s.spawned > 0 {
			spawns = append(spawns, s.spawned)
		}
	}
	sort.Slice(spawns, func(i, j int) bool { return spawns[i] < spawns[j] })
	if len(spawns) >= target && boot0 > 0 && hz > 0 {
		at := time.Duration(spawns[target-1]) * time.Second / time.Duration(hz)
		kv(fmt.Sprintf("spawn%d", target), ms(at-boot0))
	} else {
		kv(fmt.Sprintf("spawn%d", target), "-")
	}
	kv("workers", strconv.Itoa(len(workers)))
	kv("requests", strconv.Itoa(inWindow))
	kv("ok", strconv.Itoa(ok))
	kv("rps", strconv.FormatFloat(float64(inWindow)/dur.Seconds(), 'f', 0, 64))
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	kv("p50", ms(figures.Pct(lat, 50)))
	kv("p99", ms(figures.Pct(lat, 99)))
	if len(lat) > 0 {
		kv("max", ms(lat[len(lat)-1]))
	} else {
		kv("max", "-")
	}
	nfail := inWindow - ok
	kv("failures", strconv.Itoa(nfail))
	kv("ran", ms(elapsed))
	kv("failures_after", strconv.Itoa(failedAfter))
	// Distinct workers that had served by these times: the ramp.
	var ramp []string
	for _, at := range []time.Duration{50, 100, 200, 500, 1000, 2000, 3000, 4000, 5000, 10000} {
		n := 0
		for _, s := range firsts {
			if s.first <= at*time.Millisecond {
				n++
			}
		}
		ramp = append(ramp, strconv.Itoa(n))
	}
	kv("ramp", strings.Join(ramp, ","))
	if nfail > 0 {
		kv("failed", figures.Kinds(failures))
	}
	return line.String()
}

// csvRow is r as a line of the -raw file.
func csvRow(r result) string {
	return fmt.Sprintf("%d,%.3f,%.3f,%d,%d,%d,%q", r.client, float64(r.start)/1e6, float64(r.latency)/1e6,
		r.status, r.pid, r.spawned, r.err)
}

// boottime is CLOCK_BOOTTIME, the clock of /proc/PID/stat's starttime; 0 if
// it cannot be read.
func boottime() time.Duration {
	const clockBoottime = 7
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}
