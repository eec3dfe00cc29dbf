package supervisor

import (
	"context"
	"log/slog"
	"syscall"

	"github.com/fcgivisor/fcgivisor/conf"
)

// A decision is one pass of the pool's logic over its state under p.mu
// (scaling, recycling, releasing a slot): it reads the configuration once,
// at its start, and collects the effects to run once p.mu is released.
type decision struct {
	cfg *conf.Pool
	effects
}

// decide starts a decision on the pool's current configuration.
func (p *Pool) decide() *decision { return &decision{cfg: p.conf()} }

// effects is what a decision taken under p.mu does once p.mu is released:
// signals to send and lines to log, in the order decided. A function whose
// name ends in Locked never signals or logs itself; it appends to the
// effects its caller passes, and the caller calls run after unlocking (see
// the lock rules at the top of pool.go).
type effects []effect

// effect is one signal (proc set) or one log line (log set).
type effect struct {
	proc Process
	sig  syscall.Signal

	log   *slog.Logger
	level slog.Level
	msg   string
	args  []any
}

// signal sends sig to w's process group. It is the only way the pool
// signals a worker.
func (fx *effects) signal(w *worker, sig syscall.Signal) {
	fx.signalProcess(w.proc, sig)
}

// signalProcess sends sig to proc's process group: a worker's, or a
// slowlog_command's (slowlog.go).
func (fx *effects) signalProcess(proc Process, sig syscall.Signal) {
	*fx = append(*fx, effect{proc: proc, sig: sig})
}

// logs logs msg with args at level.
func (fx *effects) logs(log *slog.Logger, level slog.Level, msg string, args ...any) {
	*fx = append(*fx, effect{log: log, level: level, msg: msg, args: args})
}

// run does the effects, once; call it without holding p.mu.
func (fx *effects) run() {
	todo := *fx
	*fx = nil
	for _, e := range todo {
		if e.proc != nil {
			e.proc.SignalGroup(e.sig)
		} else {
			e.log.Log(context.Background(), e.level, e.msg, e.args...)
		}
	}
}
