// Command reload is the load tool of bench/reload.sh: C clients each loop
// GET URL over their own keep-alive HTTP/1.1 connection for D while the
// tool runs a reload command N times, evenly spaced (at (i+0.5)*D/N: 1, 3,
// 5, 7, 9 s for 5 reloads in 10 s), and it records every request.
//
// The HTTP client is a plain net.Conn with http.ReadResponse, not
// http.Client: net/http's Transport silently sends a GET again when a
// reused connection fails, which would hide exactly the failures this
// measures. Every request counts once. A failure is a non-200 status, a
// 200 whose body lacks -expect, a connection that could not be made, a
// reset or EOF (on a fresh or a reused connection: both are told apart in
// the failure kinds), or a request past -timeout. After a failure the
// client opens a new connection.
//
// It prints one line of key=value figures (see summary), and with -raw
// writes every request as CSV. The reload command runs with sh -c, with
// GEN=1..N in its environment, synchronously, from its own goroutine: a
// slow command delays the next reload, not the clients.
//
// Standard library only, besides the summary line, percentiles and
// failure kinds it shares with bench/burst (bench/internal/figures).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fcgivisor/fcgivisor/bench/internal/figures"
)

type result struct {
	client  int
	start   time.Duration // since t0
	latency time.Duration
	status  int    // 0: no response
	err     string // "" when the request succeeded
}

type reloadRun struct {
	at   time.Duration // when the command was started, since t0
	took time.Duration
	err  string
}

func main() {
	rawURL := flag.String("url", "", "URL to GET (required)")
	clients := flag.Int("c", 32, "concurrent clients")
	dur := flag.Duration("d", 10*time.Second, "how long the clients start requests")
	timeout := flag.Duration("timeout", 5*time.Second, "per-request timeout (a request past it is a failure)")
	reloads := flag.Int("reloads", 5, "how many times to run -cmd, evenly spaced over -d")
	cmd := flag.String("cmd", "", "reload command (sh -c; GEN=1..N in its environment)")
	expect := flag.String("expect", "", "a 200 body must contain this")
	near := flag.Duration("near", 500*time.Millisecond, "near_* figures: requests in flight when a reload command started or started within this after it")
	label := flag.String("label", "", "first field of the summary line")
	raw := flag.String("raw", "", "write every request to this CSV file")
	flag.Parse()
	u, err := url.Parse(*rawURL)
	if err != nil || u.Host == "" || *clients < 1 || *dur <= 0 || (*reloads > 0 && *cmd == "") {
		flag.Usage()
		os.Exit(2)
	}
	reqLine := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: fcgivisor-bench-reload\r\n\r\n"
	tmpl, _ := http.NewRequest(http.MethodGet, *rawURL, nil) // for ReadResponse (method GET)

	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
		runs    []reloadRun
	)
	t0 := time.Now()
	end := t0.Add(*dur)
	for c := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &client{addr: u.Host, req: reqLine, tmpl: tmpl, expect: *expect}
			defer cl.close()
			var mine []result
			for {
				now := time.Now()
				if !now.Before(end) {
					break
				}
				r := cl.do(now.Add(*timeout))
				r.client, r.start, r.latency = c, now.Sub(t0), time.Since(now)
				mine = append(mine, r)
			}
			mu.Lock()
			results = append(results, mine...)
			mu.Unlock()
		}()
	}
	var rwg sync.WaitGroup
	if *reloads > 0 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for i := range *reloads {
				at := t0.Add(time.Duration((float64(i) + 0.5) * float64(*dur) / float64(*reloads)))
				time.Sleep(time.Until(at))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c := exec.CommandContext(ctx, "sh", "-c", *cmd)
				c.Env = append(os.Environ(), "GEN="+strconv.Itoa(i+1))
				c.Stdout, c.Stderr = os.Stderr, os.Stderr
				s := time.Now()
				err := c.Run()
				cancel()
				r := reloadRun{at: s.Sub(t0), took: time.Since(s)}
				if err != nil {
					r.err = err.Error()
					fmt.Fprintf(os.Stderr, "reload: command %d: %v\n", i+1, err)
				}
				runs = append(runs, r)
			}
		}()
	}
	wg.Wait()
	rwg.Wait()
	elapsed := time.Since(t0)

	sort.Slice(results, func(i, j int) bool { return results[i].start < results[j].start })
	if *raw != "" {
		if err := figures.WriteCSV(*raw, "client,start_ms,latency_ms,status,error", results, csvRow); err != nil {
			fmt.Fprintln(os.Stderr, "reload:", err)
			os.Exit(1)
		}
	}
	fmt.Println(summary(*label, results, runs, *dur, elapsed, *near))
}

// client is one keep-alive HTTP/1.1 connection, reopened after a failure
// or a "Connection: close".
type client struct {
	addr, req, expect string
	tmpl              *http.Request
	conn              net.Conn
	br                *bufio.Reader
	cr                *countReader
	used              int // requests completed on conn
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (cl *client) close() {
	if cl.conn != nil {
		cl.conn.Close()
		cl.conn = nil
	}
}

func (cl *client) do(deadline time.Time) (r result) {
	if cl.conn == nil {
		d := net.Dialer{Deadline: deadline}
		conn, err := d.Dial("tcp", cl.addr)
		if err != nil {
			r.err = "connect: " + classify(err)
			return r
		}
		cl.conn, cl.used = conn, 0
		cl.cr = &countReader{r: conn}
		cl.br = bufio.NewReader(cl.cr)
	}
	where := "new conn"
	if cl.used > 0 {
		where = "reused conn"
	}
	fail := func(what string, err error) result {
		r.err = what + " (" + where + "): " + classify(err)
		cl.close()
		return r
	}
	cl.conn.SetDeadline(deadline)
	cl.cr.n = 0
	if _, err := io.WriteString(cl.conn, cl.req); err != nil {
		return fail("write", err)
	}
	resp, err := http.ReadResponse(cl.br, cl.tmpl)
	if err != nil {
		if cl.cr.n == 0 && cl.br.Buffered() == 0 {
			return fail("no response", err)
		}
		return fail("header", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.status = resp.StatusCode
	if err != nil {
		return fail("body", err)
	}
	cl.used++
	if resp.Close {
		cl.close()
	}
	if resp.StatusCode != http.StatusOK {
		r.err = "status " + strconv.Itoa(resp.StatusCode)
		return r
	}
	if cl.expect != "" && !strings.Contains(string(body), cl.expect) {
		r.err = fmt.Sprintf("unexpected body (%d bytes)", len(body))
	}
	return r
}

// classify names a failure kind; a request past its timeout ends with the
// connection's deadline, and a write to a closed connection with EPIPE.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	}
	return figures.ErrKind(err)
}

// summary is one line: label, then key=value figures; latencies in ms over
// every request (failed ones included at the time they failed).
func summary(label string, rs []result, runs []reloadRun, dur, elapsed, near time.Duration) string {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }
	line := figures.NewLine(label)
	kv := line.Add

	failures := map[string]int{}
	var lat, nearLat []time.Duration
	var failAt []string
	ok := 0
	for _, r := range rs {
		lat = append(lat, r.latency)
		for _, rr := range runs {
			if r.start+r.latency > rr.at && r.start < rr.at+near {
				nearLat = append(nearLat, r.latency)
				break
			}
		}
		if r.err != "" {
			failures[r.err]++
			failAt = append(failAt, strconv.FormatFloat(float64(r.start)/1e6, 'f', 0, 64))
		} else {
			ok++
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Slice(nearLat, func(i, j int) bool { return nearLat[i] < nearLat[j] })
	kv("requests", strconv.Itoa(len(rs)))
	kv("ok", strconv.Itoa(ok))
	kv("rps", strconv.FormatFloat(float64(len(rs))/dur.Seconds(), 'f', 0, 64))
	kv("p50", ms(figures.Pct(lat, 50)))
	kv("p99", ms(figures.Pct(lat, 99)))
	kv("max", ms(figures.Pct(lat, 100)))
	kv("near_n", strconv.Itoa(len(nearLat)))
	kv("near_p99", ms(figures.Pct(nearLat, 99)))
	kv("near_max", ms(figures.Pct(nearLat, 100)))
	kv("failures", strconv.Itoa(len(rs)-ok))
	kv("ran", ms(elapsed))
	var at, took []string
	reloadErrs := 0
	for _, rr := range runs {
		at = append(at, strconv.FormatFloat(float64(rr.at)/1e6, 'f', 0, 64))
		took = append(took, ms(rr.took))
		if rr.err != "" {
			reloadErrs++
		}
	}
	kv("reloads", strconv.Itoa(len(runs)))
	kv("reload_errors", strconv.Itoa(reloadErrs))
	if len(runs) > 0 {
		kv("reload_at", strings.Join(at, ","))
		kv("reload_cmd_ms", strings.Join(took, ","))
	}
	if len(failures) > 0 {
		kv("failed", figures.Kinds(failures))
		if len(failAt) > 20 {
			failAt = append(failAt[:20], "...")
		}
		kv("failed_at_ms", strings.Join(failAt, ","))
	}
	return line.String()
}

// csvRow is r as a line of the -raw file.
func csvRow(r result) string {
	return fmt.Sprintf("%d,%.3f,%.3f,%d,%q", r.client, float64(r.start)/1e6, float64(r.latency)/1e6, r.status, r.err)
}
