// This file implements the access log (http.access_log, issue 13): one
// line per request, written once its answer is complete, in the combined
// format of nginx and Apache or as a JSON object.

package front

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fcgivisor/fcgivisor/supervisor"
)

// Access log formats (http.access_log_format).
const (
	formatCombined = "combined"
	formatJSON     = "json"
)

// accessLog is where access lines go. The daemon owns the target (opens
// it, reopens it on SIGUSR1, closes it); the front formats each line and
// writes it whole, with one Write, under mu: lines never interleave, and
// once SetAccessLog has returned nothing writes to the target it replaced,
// so the daemon may close it. A write costs the lock and one write(2) to a
// file or stderr (no fsync); a slow disk slows the ends of requests, as it
// would nginx's.
type accessLog struct {
	on  atomic.Bool // w != nil; read without mu by ServeHTTP
	log *slog.Logger

	mu     sync.Mutex
	w      io.Writer     // guarded by mu; nil: off
	json   bool          // guarded by mu
	buf    []byte        // guarded by mu: the line being written
	jbuf   bytes.Buffer  // guarded by mu: the JSON line being written
	enc    *json.Encoder // guarded by mu; writes to jbuf
	failed bool          // guarded by mu: the last write failed, and the log said so
}

// SetAccessLog makes w the access log's target, with format "combined" or
// "json" (http.access_log_format); nil turns the log off. Lines being
// written finish first: once it returns, the previous target is not
// written to again.
func (s *Server) SetAccessLog(w io.Writer, format string) {
	a := &s.access
	a.mu.Lock()
	defer a.mu.Unlock()
	a.w, a.json, a.failed = w, format == formatJSON, false
	a.on.Store(w != nil)
}

// write formats rec in the current format and writes it.
func (a *accessLog) write(rec *accessRecord) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.w == nil {
		return
	}
	var line []byte
	if a.json {
		if a.enc == nil {
			a.enc = json.NewEncoder(&a.jbuf)
			a.enc.SetEscapeHTML(false)
		}
		a.jbuf.Reset()
		a.enc.Encode(rec.jsonLine()) // a struct of strings and numbers: cannot fail
		line = a.jbuf.Bytes()
	} else {
		a.buf = rec.appendCombined(a.buf[:0])
		line = a.buf
	}
	_, err := a.w.Write(line)
	switch {
	case err != nil && !a.failed:
		// Once, not per request: a full disk would flood the log.
		a.log.Error("access log: write failed; lines are lost until a write succeeds", "err", err)
		a.failed = true
	case err == nil && a.failed:
		a.log.Info("access log: writing again")
		a.failed = false
	}
	if cap(a.buf) > 64<<10 {
		a.buf = nil // one huge line is not kept
	}
}

// accessEntry is what the handlers that serve a request tell the access
// log: ServeHTTP puts one in the request's context when the log is on,
// entryOf finds it, and its methods do nothing on nil (the log is off).
// Only the request's goroutine touches it.
type accessEntry struct {
	kind     string // of the route that answered: pool, cgi, static, status; "" the front itself
	pool     string
	script   string        // the CGI program run: a cgi route's script, a pool's command as CGI fallback
	pid      int           // the worker's or CGI program's; 0 unknown
	upstream time.Duration // time in Pool.Serve and CGI runs
	ran      bool          // upstream counts: something was asked
	trace    supervisor.Trace
}

type accessKey struct{}

// entryOf returns the access entry of r, or nil when the log is off.
func entryOf(r *http.Request) *accessEntry {
	e, _ := r.Context().Value(accessKey{}).(*accessEntry)
	return e
}

// answered records that rt (nil: the front itself) answers the request,
// forgetting what an earlier route (a fall-through, a local redirect's
// first program) recorded.
func (e *accessEntry) answered(rt *route) {
	if e == nil {
		return
	}
	*e = accessEntry{}
	switch {
	case rt == nil:
	case rt.pool != nil:
		e.kind, e.pool = "pool", rt.pool.Name()
	case rt.cgi != nil:
		e.kind = "cgi"
	case rt.cfg.Status != 0:
		e.kind = "status"
	default:
		e.kind = "static"
	}
}

// traced returns ctx carrying e's supervisor.Trace, so that Pool.Serve
// tells which worker it sent the request to.
func (e *accessEntry) traced(ctx context.Context) context.Context {
	if e == nil {
		return ctx
	}
	return supervisor.WithTrace(ctx, &e.trace)
}

// served records a Pool.Serve call that began at start.
func (e *accessEntry) served(start time.Time) {
	if e == nil {
		return
	}
	e.ranSince(start)
	if e.trace.PID != 0 {
		e.pid = e.trace.PID
	}
}

// startedCGI records a CGI program started for the request.
func (e *accessEntry) startedCGI(script string, pid int) {
	if e != nil {
		e.script, e.pid = script, pid
	}
}

// ranSince adds the time since start to the upstream time.
func (e *accessEntry) ranSince(start time.Time) {
	if e != nil {
		e.upstream += time.Since(start)
		e.ran = true
	}
}

// accessRecord is one line of the access log.
type accessRecord struct {
	r        *http.Request
	end      time.Time // when the answer was complete: the time logged
	duration time.Duration
	status   int
	bytes    int64 // of the body sent
	entry    *accessEntry
}

// newAccessRecord is the line for r, answered through sw, which began at
// start and ends now.
func newAccessRecord(r *http.Request, sw *statusWriter, e *accessEntry, start time.Time) *accessRecord {
	end := time.Now()
	rec := &accessRecord{r: r, end: end, duration: end.Sub(start), status: sw.status, bytes: sw.n, entry: e}
	if rec.status == 0 {
		rec.status = http.StatusOK // what net/http sends for a handler that wrote nothing
		if r.Context().Err() != nil {
			rec.status = 499 // nothing sent: the client went away first (nginx's code)
		}
	}
	if r.Method == http.MethodHead {
		rec.bytes = 0 // net/http counts what it discards
	}
	return rec
}

// remote is the client's address as nginx's $remote_addr: an IP without
// its port, and "unix:" for a client on a Unix socket (net/http says "@"
// or "").
func (rec *accessRecord) remote() string {
	host, _ := splitAddr(rec.r.RemoteAddr)
	return host
}

func (rec *accessRecord) user() string {
	user, _, _ := rec.r.BasicAuth()
	return user
}

// combinedTime is $time_local of nginx, %t of Apache.
const combinedTime = "02/Jan/2006:15:04:05 -0700"

// appendCombined appends rec in the combined format of nginx and Apache
// and a newline:
//
//	$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//
// Each value is escaped as nginx escapes it (appendEscaped), and an empty
// one is "-", so that log analysers split every line the same way.
func (rec *accessRecord) appendCombined(b []byte) []byte {
	r := rec.r
	b = append(b, rec.remote()...) // an IP or "unix:": nothing to escape
	b = append(b, " - "...)
	b = appendField(b, rec.user())
	b = append(b, " ["...)
	b = rec.end.AppendFormat(b, combinedTime)
	b = append(b, `] "`...)
	b = appendEscaped(b, r.Method)
	b = append(b, ' ')
	b = appendEscaped(b, r.RequestURI)
	b = append(b, ' ')
	b = appendEscaped(b, r.Proto)
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(rec.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, rec.bytes, 10)
	b = append(b, ` "`...)
	b = appendField(b, r.Referer())
	b = append(b, `" "`...)
	b = appendField(b, r.UserAgent())
	return append(b, "\"\n"...)
}

// appendField appends s escaped, or "-" when it is empty, as nginx writes
// a variable.
func appendField(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

// appendEscaped appends s with the bytes nginx's log escapes (escape=default)
// written as \xHH: control bytes, '"', '\' and bytes from 0x7f on. A
// client cannot forge a field or a line.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

// accessJSON is a line of the json format. Durations are in seconds.
type accessJSON struct {
	Time         string   `json:"time"`
	RemoteAddr   string   `json:"remote_addr"`
	RemoteUser   string   `json:"remote_user"`
	Method       string   `json:"method"`
	URI          string   `json:"uri"`
	Protocol     string   `json:"protocol"`
	Status       int      `json:"status"`
	Bytes        int64    `json:"bytes"`
	Host         string   `json:"host"`
	Referer      string   `json:"referer"`
	UserAgent    string   `json:"user_agent"`
	Duration     float64  `json:"duration"`
	UpstreamTime *float64 `json:"upstream_time"` // null: no worker or program was asked
	Route        string   `json:"route"`
	Pool         string   `json:"pool"`
	PID          *int     `json:"pid"` // null: unknown
	Script       string   `json:"script"`
}

// jsonTime is RFC 3339 with milliseconds.
const jsonTime = "2006-01-02T15:04:05.000Z07:00"

func (rec *accessRecord) jsonLine() *accessJSON {
	r := rec.r
	j := &accessJSON{
		Time: rec.end.Format(jsonTime), RemoteAddr: rec.remote(), RemoteUser: rec.user(),
		Method: r.Method, URI: r.RequestURI, Protocol: r.Proto, Status: rec.status, Bytes: rec.bytes,
		Host: r.Host, Referer: r.Referer(), UserAgent: r.UserAgent(), Duration: seconds(rec.duration),
	}
	if e := rec.entry; e != nil {
		j.Route, j.Pool, j.Script = e.kind, e.pool, e.script
		if e.ran {
			up := seconds(e.upstream)
			j.UpstreamTime = &up
		}
		if e.pid != 0 {
			pid := e.pid
			j.PID = &pid
		}
	}
	return j
}

// seconds is d in seconds, to the microsecond.
func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)) / float64(time.Second)
}
