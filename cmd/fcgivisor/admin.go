package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/front"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// The admin client: `status`, `reload` and `stop` reach the running
// instance through the admin.listen of the config file, read even when the
// rest of the file is invalid: a reload of an invalid file is the
// instance's to refuse, with every error, and a stop must work whatever
// the file says.

// status is `fcgivisor status`: GET /status from the running instance and
// print it as a table, or as the JSON received.
func status(w io.Writer, path string, asJSON bool) error {
	addr, body, err := admin(path, http.MethodGet, "/status")
	if err != nil {
		return err
	}
	if asJSON {
		_, err := w.Write(body)
		return err
	}
	var doc front.AdminStatus
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("fcgivisor at %s answered /status with something that is not status JSON: %w", addr, err)
	}
	writeStatusTable(w, &doc, time.Now())
	return nil
}

// adminCommand is `fcgivisor stop` and `fcgivisor reload`: a POST to the
// admin endpoint, whose answer is printed.
func adminCommand(w io.Writer, path, endpoint string) error {
	_, body, err := admin(path, http.MethodPost, endpoint)
	if err != nil {
		return err
	}
	_, err = w.Write(body)
	return err
}

// admin sends a request to the admin endpoint named in the config file at
// path, and returns the endpoint's address and the body of a 200 answer.
func admin(path, method, endpoint string) (addr string, body []byte, err error) {
	if addr, err = conf.AdminAddress(path); err != nil {
		return "", nil, err
	}
	network, address, err := conf.ParseAddr(addr)
	if err != nil {
		return addr, nil, fmt.Errorf("admin.listen: %w", err)
	}
	var d net.Dialer
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{ // no Proxy: never via $http_proxy
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, address)
			},
			DisableKeepAlives: true,
		},
	}
	req, err := http.NewRequest(method, "http://fcgivisor-admin"+endpoint, nil)
	if err != nil {
		return addr, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return addr, nil, unreachable(addr, err)
	}
	defer resp.Body.Close()
	if body, err = io.ReadAll(resp.Body); err != nil {
		return addr, nil, fmt.Errorf("read the answer of fcgivisor at %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return addr, nil, fmt.Errorf("fcgivisor at %s answered %s %s with %s: %s", addr, method, endpoint, resp.Status, strings.TrimSpace(string(body)))
	}
	return addr, body, nil
}

// unreachable says why the admin endpoint at addr could not be reached,
// and what to do about it.
func unreachable(addr string, err error) error {
	var op *net.OpError
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("cannot reach fcgivisor at %s: permission denied (the admin socket has mode 0600: run this as the user fcgivisor runs as, or as root)", addr)
	case errors.As(err, &op) && op.Op == "dial":
		return fmt.Errorf("cannot reach fcgivisor at %s: is it running? (%v)", addr, op.Err)
	}
	return fmt.Errorf("cannot reach fcgivisor at %s: %w", addr, err)
}

// writeStatusTable prints fcgivisor's version and uptime, then one block
// per pool: a headline (name, mode, state, workers, queue), its start and
// maxima, the totals, a row per worker, and its other generations (a
// reload's draining ones) with theirs.
func writeStatusTable(w io.Writer, doc *front.AdminStatus, now time.Time) {
	if doc.Version != "" {
		fmt.Fprintf(w, "fcgivisor %s (%s)", printable(doc.Version), printable(doc.GoVersion))
		if !doc.StartTime.IsZero() {
			fmt.Fprintf(w, ", up %s", since(doc.StartTime, now))
		}
		fmt.Fprintln(w)
	}
	if len(doc.Pools) == 0 {
		fmt.Fprintln(w, "no pools")
		return
	}
	for i := range doc.Pools {
		if i > 0 || doc.Version != "" {
			fmt.Fprintln(w)
		}
		p := &doc.Pools[i]
		writePoolHeadline(w, p)
		writePoolTotals(w, p, now)
		writeWorkers(w, p.Workers)
		for j := range p.Generations {
			writeGeneration(w, &p.Generations[j], now)
		}
	}
}

// since is how long ago t was, to the second.
func since(t, now time.Time) time.Duration { return now.Sub(t).Round(time.Second) }

func writePoolHeadline(w io.Writer, p *front.AdminPool) {
	retiring := 0
	for _, ws := range p.Workers {
		if ws.State == "retiring" {
			retiring++
		}
	}
	fmt.Fprintf(w, "pool %s (%s, %s): workers %d/%d", printable(p.Name), p.Mode, p.State, len(p.Workers)-retiring, p.MaxWorkers)
	if retiring > 0 {
		fmt.Fprintf(w, " +%d retiring", retiring)
	}
	fmt.Fprintf(w, " (%d busy, %d idle), slots %d busy %d idle, queue %d", p.BusyWorkers, p.IdleWorkers, p.BusySlots, p.IdleSlots, p.Queue)
	if p.Queue > 0 {
		fmt.Fprintf(w, " (oldest %.1fs)", p.OldestQueuedSeconds)
	}
	fmt.Fprintln(w)
}

func writePoolTotals(w io.Writer, p *front.AdminPool, now time.Time) {
	if !p.StartTime.IsZero() {
		fmt.Fprintf(w, "  started %s (%s ago), max queue %d, max busy workers %d\n",
			p.StartTime.Local().Format(time.DateTime), since(p.StartTime, now), p.MaxQueue, p.MaxBusyWorkers)
	}
	t := p.Totals
	recycled, causes := counts(t.Recycled, "%s %d")
	fmt.Fprintf(w, "  totals: accepted %d, 5xx %d, timeouts %d, slow %d, spawns %d, exits %d, recycled %d",
		t.Accepted, t.Responses5xx, t.Timeouts, t.SlowRequests, t.Spawns, t.Exits, recycled)
	if causes != "" {
		fmt.Fprintf(w, " (%s)", causes)
	}
	fmt.Fprintf(w, ", max_workers reached %d", t.MaxWorkersReached)
	if t.CGIFallbacks > 0 || t.CGIFallbacksRefused > 0 {
		fmt.Fprintf(w, ", cgi fallbacks %d (refused %d)", t.CGIFallbacks, t.CGIFallbacksRefused)
	}
	fmt.Fprintln(w)
	if _, codes := counts(t.Responses, "%d: %d"); codes != "" {
		fmt.Fprintf(w, "  responses: %s\n", codes)
	}
	if p.LastExit != "" {
		fmt.Fprintf(w, "  last exit: %s\n", printable(p.LastExit))
	}
	if p.LastStderr != "" {
		fmt.Fprintf(w, "  last stderr: %s\n", printable(p.LastStderr))
	}
}

// writeGeneration prints another generation of a pool: a headline and its
// workers.
func writeGeneration(w io.Writer, g *front.AdminGeneration, now time.Time) {
	what := "generation"
	if g.Draining {
		what = "draining generation"
	}
	fmt.Fprintf(w, "  %s (%s, started %s ago): workers %d (%d busy, %d idle), slots %d busy %d idle, queue %d\n",
		what, g.State, since(g.GenerationStartTime, now), g.TotalWorkers, g.BusyWorkers, g.IdleWorkers, g.BusySlots, g.IdleSlots, g.Queue)
	writeWorkers(w, g.Workers)
}

// counts sums m and lists its entries in key order, each printed with
// format (key, count) and joined by ", ".
func counts[K int | string](m map[K]int64, format string) (sum int64, list string) {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		sum += m[k]
		parts = append(parts, fmt.Sprintf(format, k, m[k]))
	}
	return sum, strings.Join(parts, ", ")
}

func writeWorkers(w io.Writer, workers []supervisor.WorkerStatus) {
	if len(workers) == 0 {
		fmt.Fprintln(w, "  no workers")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PID\tSTATE\tREQUESTS\tAGE\tRSS\tREQUEST\tLAST REQUEST")
	for _, ws := range workers {
		rss, req, last := "-", "-", "-"
		if ws.RSSBytes > 0 {
			rss = mib(ws.RSSBytes)
		}
		if r := ws.Request; r != nil {
			req = fmt.Sprintf("%s %s (%.1fs, cpu %.2fs)", printable(r.Method), printable(r.URI), r.Seconds, r.CPUSeconds)
		}
		if r := ws.LastRequest; r != nil {
			last = fmt.Sprintf("%s %s (%.3fs, cpu %.2fs, %s)", printable(r.Method), printable(r.URI), r.Seconds, r.CPUSeconds, mib(r.RSSBytes))
		}
		age := time.Duration(ws.AgeSeconds * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(tw, "  %d\t%s\t%d\t%s\t%s\t%s\t%s\n", ws.Pid, ws.State, ws.Requests, age, rss, req, last)
	}
	tw.Flush()
}

// mib is n bytes in MiB, for people.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// printable returns s, or s quoted when it holds characters that are not
// printable: request URIs and worker output must not drive the terminal.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
