package integration

// The admin endpoint on admin.listen (/ping, /status, /metrics) and
// `fcgivisor status`, against running instances.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// adminDoc is the /status JSON (also printed by `fcgivisor status --json`):
// its field names are a contract with users' tools, so a rename fails here.
type adminDoc struct {
	Pools []adminPool `json:"pools"`
}

type adminPool struct {
	Name       string        `json:"name"`
	Mode       string        `json:"mode"`
	State      string        `json:"state"`
	Queue      int           `json:"queue"`
	MaxWorkers int           `json:"max_workers"`
	BusySlots  int           `json:"busy_slots"`
	IdleSlots  int           `json:"idle_slots"`
	Workers    []adminWorker `json:"workers"`
	Totals     struct {
		Accepted  int64            `json:"accepted"`
		Responses map[string]int64 `json:"responses"`
		Err5xx    int64            `json:"5xx"`
		Timeouts  int64            `json:"timeouts"`
		Spawns    int64            `json:"spawns"`
	} `json:"totals"`
}

type adminWorker struct {
	Pid        int     `json:"pid"`
	State      string  `json:"state"`
	Requests   int64   `json:"requests"`
	AgeSeconds float64 `json:"age_seconds"`
	RSSBytes   int64   `json:"rss_bytes"`
	Request    *struct {
		URI     string  `json:"uri"`
		Seconds float64 `json:"seconds"`
	} `json:"request"`
}

func (p *adminPool) pids() []int {
	var pids []int
	for _, w := range p.Workers {
		pids = append(pids, w.Pid)
	}
	slices.Sort(pids)
	return pids
}

func (p *adminPool) served() int64 {
	var n int64
	for _, w := range p.Workers {
		n += w.Requests
	}
	return n
}

// adminClient talks HTTP to an admin endpoint.
type adminClient struct {
	addr   string // for messages
	client *http.Client
}

func newAdminClient(t testing.TB, network, address string) *adminClient {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, address)
		},
		DisableKeepAlives: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &adminClient{addr: network + ":" + address, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// do sends a request; it does not fail t, so it may run in any goroutine.
func (a *adminClient) do(method, path string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, "http://admin"+path, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s on %s: %w", method, path, a.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func (a *adminClient) get(t testing.TB, path string) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := a.do(http.MethodGet, path)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// status GETs /status and returns the pool named name, the only one.
func (a *adminClient) status(t testing.TB, name string) *adminPool {
	t.Helper()
	resp, body := a.get(t, "/status")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), clip(body))
	}
	return onePool(t, body, name)
}

func onePool(t testing.TB, body []byte, name string) *adminPool {
	t.Helper()
	var doc adminDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("/status is not status JSON: %v\n%s", err, clip(body))
	}
	if len(doc.Pools) != 1 || doc.Pools[0].Name != name {
		t.Fatalf("/status lists pools %+v, want just %q", doc.Pools, name)
	}
	return &doc.Pools[0]
}

// adminLang is the pool the admin tests watch: C (two single-slot
// workers), or Go when no C worker can be built here.
func adminLang(t testing.TB) lang {
	if cWorkerSkip {
		return lang{"go"}
	}
	l := lang{"c"}
	l.need(t)
	return l
}

func pidsOf(ps []procID) []int {
	var pids []int
	for _, p := range ps {
		pids = append(pids, p.pid)
	}
	slices.Sort(pids)
	return pids
}

// inFlight sends GET path in the background; the result arrives on the
// channel.
func inFlight(in *instance, path string) <-chan error {
	done := make(chan error, 1)
	go func() {
		resp, body, err := in.do(context.Background(), http.MethodGet, path, nil, nil)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %d %q", path, resp.StatusCode, clip(body))
		}
		done <- err
	}()
	return done
}

// waitBusy polls /status until a worker serves uri, and fails t if the
// request ends first.
func waitBusy(t testing.TB, a *adminClient, name, uri string, done <-chan error) (*adminPool, *adminWorker) {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for {
		p := a.status(t, name)
		for i := range p.Workers {
			if w := &p.Workers[i]; w.Request != nil && w.Request.URI == uri {
				return p, w
			}
		}
		select {
		case err := <-done:
			t.Fatalf("%s ended (err %v) before /status showed it in progress; last status: %+v", uri, err, p)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/status did not show %s in progress within %v: %+v", uri, eventTimeout, p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func metricLines(t testing.TB, a *adminClient) []string {
	t.Helper()
	resp, body := a.get(t, "/metrics")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: %d %q", resp.StatusCode, ct)
	}
	return strings.Split(string(body), "\n")
}

// TestAdmin drives one instance and checks what the admin endpoint and
// `fcgivisor status` report against what the test did and what /proc says.
func TestAdmin(t *testing.T) {
	t.Parallel()
	l := adminLang(t)
	in := start(t, options{langs: []string{l.name}})
	nWorkers := defaultPool(l).workers
	sock := filepath.Join(in.runtimeDir, "admin.sock")
	a := newAdminClient(t, "unix", sock)

	// admin.listen defaults to unix:<runtime_dir>/admin.sock, mode 0600.
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatalf("no admin socket at the default address: %v", err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket %s has mode %v, want a socket with mode 0600", sock, fi.Mode())
	}

	if resp, body := a.get(t, "/ping"); resp.StatusCode != http.StatusOK || string(body) != "pong\n" {
		t.Errorf("GET /ping: %d %q, want 200 \"pong\\n\"", resp.StatusCode, body)
	}
	if resp, _ := a.get(t, "/nothing"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing: %d, want 404", resp.StatusCode)
	}
	if resp, _, err := a.do(http.MethodPost, "/status"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status: %v %v, want 405", resp, err)
	}

	// Before any request: the pool and exactly the workers fcgivisor runs.
	p := a.status(t, l.name)
	if p.Mode != "static" || p.State != "running" || p.Queue != 0 || p.MaxWorkers != nWorkers {
		t.Errorf("pool %s: mode %q state %q queue %d max_workers %d, want static running 0 %d", l.name, p.Mode, p.State, p.Queue, p.MaxWorkers, nWorkers)
	}
	procs := pidsOf(in.poolWorkers(l))
	if got := p.pids(); len(got) != nWorkers || !slices.Equal(got, procs) {
		t.Fatalf("/status lists workers %v; fcgivisor's %s children are %v, want %d", got, l.name, procs, nWorkers)
	}
	for _, w := range p.Workers {
		if w.State != "idle" || w.Requests != 0 || w.Request != nil || w.AgeSeconds <= 0 || w.RSSBytes <= 0 {
			t.Errorf("fresh worker %+v: want idle, 0 requests, no request, age > 0, RSS > 0", w)
		}
	}
	if p.Totals.Accepted != 0 || len(p.Totals.Responses) != 0 || p.Totals.Spawns != int64(nWorkers) {
		t.Errorf("fresh pool totals %+v, want nothing accepted and %d spawns", p.Totals, nWorkers)
	}

	// Every ?pid answer names a worker /status lists.
	const pidRequests = 4
	for range pidRequests {
		if pid := in.workerPid(t, l); !slices.Contains(p.pids(), pid) {
			t.Errorf("?pid answered %d, not among the workers /status lists: %v", pid, p.pids())
		}
	}

	// N requests are counted: accepted at once, the answer and each
	// worker's count once the answer is out (after the client has it).
	const n = 20
	for range n {
		in.expect(t, l.path("/counted"), http.StatusOK, "hello from "+l.name+"\n")
	}
	total := int64(pidRequests + n)
	settled := func(want int64) *adminPool {
		t.Helper()
		var p *adminPool
		waitFor(eventTimeout, func() bool {
			p = a.status(t, l.name)
			return p.Totals.Responses["200"] >= want && p.served() >= want && p.BusySlots == 0
		})
		return p
	}
	p = settled(total)
	if p.Totals.Accepted != total || p.Totals.Responses["200"] != total || len(p.Totals.Responses) != 1 || p.Totals.Err5xx != 0 || p.served() != total {
		t.Errorf("after %d requests: accepted %d, responses %v, 5xx %d, served by workers %d; want %d, {200: %d}, 0, %d",
			total, p.Totals.Accepted, p.Totals.Responses, p.Totals.Err5xx, p.served(), total, total, total)
	}

	// A request in flight: its worker is busy and shows the URI.
	uri := l.path("/busy?sleep=800")
	done := inFlight(in, uri)
	p, w := waitBusy(t, a, l.name, uri, done)
	if w.State != "busy" || w.Request.Seconds < 0 || w.Request.Seconds > 5 || p.BusySlots != 1 {
		t.Errorf("worker serving %s: %+v (request %+v), busy slots %d; want busy, 0-5 s, 1 busy slot", uri, w, *w.Request, p.BusySlots)
	}
	if !slices.Contains(procs, w.Pid) {
		t.Errorf("busy worker %d is not one of %v", w.Pid, procs)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// `fcgivisor status` shows a request in flight in its worker's row.
	uri2 := l.path("/cli?sleep=2500")
	done = inFlight(in, uri2)
	_, w = waitBusy(t, a, l.name, uri2, done)
	code, out := runCLI(t, nil, "", "status", "-c", in.configPath)
	if code != 0 {
		t.Fatalf("fcgivisor status: exit %d, want 0; output:\n%s", code, out)
	}
	row := ""
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == strconv.Itoa(w.Pid) {
			row = line
		}
	}
	if f := strings.Fields(row); len(f) < 6 || f[1] != "busy" || !strings.Contains(row, uri2+" (") {
		t.Errorf("fcgivisor status: the row of worker %d is %q, want it busy with %s; output:\n%s", w.Pid, row, uri2, out)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Idle again, every figure settled: /metrics has the same numbers.
	total += 2
	settled(total)
	lines := metricLines(t, a)
	metricsOK := true
	for _, want := range []string{
		fmt.Sprintf(`fcgivisor_requests_total{pool=%q,code="200"} %d`, l.name, total),
		fmt.Sprintf(`fcgivisor_requests_accepted_total{pool=%q} %d`, l.name, total),
		fmt.Sprintf(`fcgivisor_workers{pool=%q,state="idle"} %d`, l.name, nWorkers),
		fmt.Sprintf(`fcgivisor_workers{pool=%q,state="busy"} 0`, l.name),
		fmt.Sprintf(`fcgivisor_pool_state{pool=%q,state="running"} 1`, l.name),
		fmt.Sprintf(`fcgivisor_queue_length{pool=%q} 0`, l.name),
		fmt.Sprintf(`fcgivisor_worker_spawns_total{pool=%q} %d`, l.name, nWorkers),
		`# TYPE fcgivisor_requests_total counter`,
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("/metrics lacks the line %s", want)
			metricsOK = false
		}
	}
	for _, pid := range procs {
		prefix := fmt.Sprintf(`fcgivisor_worker_rss_bytes{pool=%q,pid="%d"} `, l.name, pid)
		if !slices.ContainsFunc(lines, func(s string) bool { return strings.HasPrefix(s, prefix) && !strings.HasSuffix(s, " 0") }) {
			t.Errorf("/metrics has no non-zero RSS for worker %d", pid)
			metricsOK = false
		}
	}
	if !metricsOK {
		t.Logf("/metrics:\n%s", strings.Join(lines, "\n"))
	}

	// `fcgivisor status`: a block for the pool, a row per worker.
	code, out = runCLI(t, nil, "", "status", "-c", in.configPath)
	if code != 0 {
		t.Fatalf("fcgivisor status: exit %d, want 0; output:\n%s", code, out)
	}
	head := fmt.Sprintf("pool %s (static, running): workers %d/%d", l.name, nWorkers, nWorkers)
	if !strings.Contains(out, head) || !strings.Contains(out, fmt.Sprintf("accepted %d, 5xx 0", total)) {
		t.Errorf("fcgivisor status does not show %q and the totals:\n%s", head, out)
	}
	for _, pid := range procs {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 6 && f[0] == strconv.Itoa(pid) && f[1] == "idle" {
				found = true
			}
		}
		if !found {
			t.Errorf("fcgivisor status has no idle row for worker %d:\n%s", pid, out)
		}
	}

	// `fcgivisor status --json`: the status JSON, the same workers.
	code, out = runCLI(t, nil, "", "status", "--json", "-c", in.configPath)
	if code != 0 {
		t.Fatalf("fcgivisor status --json: exit %d, want 0; output:\n%s", code, out)
	}
	jp := onePool(t, []byte(out), l.name)
	if !slices.Equal(jp.pids(), procs) || jp.Totals.Responses["200"] != total {
		t.Errorf("fcgivisor status --json: workers %v, responses %v; want %v, 200: %d", jp.pids(), jp.Totals.Responses, procs, total)
	}
}

// TestAdminStatusNotRunning: `fcgivisor status` without an instance says
// so and exits 1, whether the socket is missing or left stale by a killed
// run.
func TestAdminStatusNotRunning(t *testing.T) {
	t.Parallel()
	rt := shortTempDir(t)
	cfg := filepath.Join(t.TempDir(), "fcgivisor.toml")
	if err := os.WriteFile(cfg, []byte(renderConfig(&options{}, rt, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(rt, "admin.sock")
	want := "cannot reach fcgivisor at unix:" + sock + ": is it running?"
	check := func(what string) {
		t.Helper()
		for _, args := range [][]string{{"status", "-c", cfg}, {"status", "--json", "-c", cfg}} {
			code, out := runCLI(t, nil, "", args...)
			if code != 1 || !strings.Contains(out, want) {
				t.Errorf("fcgivisor %s (%s): exit %d, want 1 and %q; output:\n%s", strings.Join(args, " "), what, code, want, out)
			}
		}
	}
	check("no socket")

	// A socket file nobody accepts on.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatal(err)
	}
	check("stale socket")
}

// TestAdminListenInUse: an admin socket another instance serves is a
// start-up error (exit 1, the address and the reason), and the running
// instance keeps it.
func TestAdminListenInUse(t *testing.T) {
	t.Parallel()
	l := adminLang(t)
	first := start(t, options{langs: []string{l.name}})
	sock := filepath.Join(first.runtimeDir, "admin.sock")

	o := options{langs: []string{l.name}, server: []string{"", "[admin]", "listen = " + tomlString("unix:"+sock)}}
	cfg := filepath.Join(t.TempDir(), "second.toml")
	if err := os.WriteFile(cfg, []byte(renderConfig(&o, shortTempDir(t), freePort(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, nil, "", "run", "-c", cfg)
	if code != 1 || !strings.Contains(out, "admin.listen") || !strings.Contains(out, sock) || !strings.Contains(out, "in use") {
		t.Errorf("fcgivisor run on a served admin socket: exit %d, want 1 and a message naming admin.listen %s in use; output:\n%s", code, sock, out)
	}
	if resp, body := newAdminClient(t, "unix", sock).get(t, "/ping"); resp.StatusCode != http.StatusOK || string(body) != "pong\n" {
		t.Errorf("the first instance's admin socket after the refused start: %d %q", resp.StatusCode, body)
	}
}

// TestAdminTCP: admin.listen on a TCP address serves the same endpoints,
// and `fcgivisor status` reaches it there.
func TestAdminTCP(t *testing.T) {
	t.Parallel()
	l := adminLang(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	in := start(t, options{langs: []string{l.name}, server: []string{"", "[admin]", "listen = " + tomlString(addr)}})
	a := newAdminClient(t, "tcp", addr)
	if resp, body := a.get(t, "/ping"); resp.StatusCode != http.StatusOK || string(body) != "pong\n" {
		t.Errorf("GET /ping on %s: %d %q", addr, resp.StatusCode, body)
	}
	if _, err := os.Lstat(filepath.Join(in.runtimeDir, "admin.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin.listen = %s, yet runtime_dir has admin.sock (%v)", addr, err)
	}
	pids := a.status(t, l.name).pids()
	if want := pidsOf(in.poolWorkers(l)); !slices.Equal(pids, want) {
		t.Errorf("/status over TCP lists workers %v, want %v", pids, want)
	}
	code, out := runCLI(t, nil, "", "status", "-c", in.configPath)
	if code != 0 || !strings.Contains(out, "pool "+l.name+" (static, running)") {
		t.Errorf("fcgivisor status over TCP: exit %d, want 0 and the pool; output:\n%s", code, out)
	}
	for _, pid := range pids {
		if !strings.Contains(out, "\n  "+strconv.Itoa(pid)+" ") {
			t.Errorf("fcgivisor status over TCP: no row for worker %d:\n%s", pid, out)
		}
	}
}

// TestAdminDuringDrain: after SIGTERM the front stops accepting, but the
// admin endpoint answers until the drain is over, showing the request
// still in progress; once fcgivisor has exited the socket is gone.
func TestAdminDuringDrain(t *testing.T) {
	t.Parallel()
	l := adminLang(t)
	in := start(t, options{langs: []string{l.name}})
	sock := filepath.Join(in.runtimeDir, "admin.sock")
	a := newAdminClient(t, "unix", sock)

	uri := l.path("/drain?sleep=1500")
	done := inFlight(in, uri)
	waitBusy(t, a, l.name, uri, done)
	in.snapshot()
	in.signal(syscall.SIGTERM)
	if !waitFor(eventTimeout, func() bool {
		c, err := net.DialTimeout("tcp", in.base[len("http://"):], time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}) {
		t.Fatalf("fcgivisor still accepts HTTP connections %v after SIGTERM", eventTimeout)
	}
	// Draining: the front refuses connections; the admin endpoint answers.
	select {
	case err := <-done:
		t.Fatalf("the request ended (%v) before the drain could be observed", err)
	default:
	}
	p := a.status(t, l.name)
	busy := false
	for _, w := range p.Workers {
		busy = busy || (w.Request != nil && w.Request.URI == uri)
	}
	if !busy {
		t.Errorf("/status during the drain does not show %s in progress: %+v", uri, p)
	}
	if err := <-done; err != nil {
		t.Errorf("the request in flight at SIGTERM: %v", err)
	}
	in.checkExit(t)
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin socket %s left after exit (%v)", sock, err)
	}
}
