package supervisor

import "context"

// Trace tells the caller of Serve which worker its request went to, for
// the access log's pid (issue 13). The caller puts it in the request's
// context with WithTrace; Serve fills it in on the caller's goroutine,
// before it returns, so the caller reads it after Serve without a lock.
type Trace struct {
	// PID is the pid of the worker the request was last sent to; 0 when
	// it reached none.
	PID int
}

type traceKey struct{}

// WithTrace returns ctx carrying t, for Serve to fill in.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// traceOf returns the Trace ctx carries, or nil.
func traceOf(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

// sent records that the request goes to the worker pid; nil-safe.
func (t *Trace) sent(pid int) {
	if t != nil {
		t.PID = pid
	}
}
