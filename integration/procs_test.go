package integration

import (
	"os"
	"runtime"
	"testing"
)

// server.max_procs (issue 14): fcgivisor runs its Go code on half the CPUs
// Go finds by default, rounded up, unless GOMAXPROCS is in its environment;
// the key overrides both, and a reload applies a new value at once.
func TestMaxProcs(t *testing.T) {
	t.Parallel()
	l := lang{"go"}
	cpus := runtime.GOMAXPROCS(0) // Go's default, unless the tests run with GOMAXPROCS set
	if os.Getenv("GOMAXPROCS") != "" {
		cpus = runtime.NumCPU()
	}
	gomaxprocs := func(in *instance) int {
		doc, _ := fullStatus(t, in.admin(t), l.name)
		return doc.GOMAXPROCS
	}

	o := options{langs: []string{l.name}, env: []string{"GOMAXPROCS="}}
	in := start(t, o)
	if got, want := gomaxprocs(in), max(1, (cpus+1)/2); got != want {
		t.Errorf("default: gomaxprocs %d, want %d (half of %d CPUs, rounded up)", got, want, cpus)
	}
	o.server = []string{"max_procs = 3"}
	in.rewrite(t, o)
	in.reload(t)
	if got := gomaxprocs(in); got != 3 {
		t.Errorf("after a reload to max_procs = 3: gomaxprocs %d", got)
	}
	o.server = nil
	in.rewrite(t, o)
	in.reload(t)
	if got, want := gomaxprocs(in), max(1, (cpus+1)/2); got != want {
		t.Errorf("after a reload without max_procs: gomaxprocs %d, want %d", got, want)
	}

	in = start(t, options{langs: []string{l.name}, env: []string{"GOMAXPROCS=2"}})
	if got := gomaxprocs(in); got != 2 {
		t.Errorf("GOMAXPROCS=2 in the environment: gomaxprocs %d", got)
	}
	in = start(t, options{langs: []string{l.name}, env: []string{"GOMAXPROCS=2"}, server: []string{"max_procs = 5"}})
	if got := gomaxprocs(in); got != 5 {
		t.Errorf("GOMAXPROCS=2 in the environment and max_procs = 5: gomaxprocs %d", got)
	}
}

// fcgivisor's GC target is 75 unless GOGC is in its environment (issue
// 14: a MB less peak RSS under load); /status shows the one in use.
func TestGCPercent(t *testing.T) {
	t.Parallel()
	l := lang{"go"}
	gcPercent := func(in *instance) int {
		doc, _ := fullStatus(t, in.admin(t), l.name)
		return doc.GCPercent
	}
	in := start(t, options{langs: []string{l.name}, env: []string{"GOGC="}})
	if got := gcPercent(in); got != 75 {
		t.Errorf("default: gc_percent %d, want 75", got)
	}
	in = start(t, options{langs: []string{l.name}, env: []string{"GOGC=100"}})
	if got := gcPercent(in); got != 100 {
		t.Errorf("GOGC=100 in the environment: gc_percent %d, want 100", got)
	}
	in = start(t, options{langs: []string{l.name}, env: []string{"GOGC=off"}})
	if got := gcPercent(in); got != -1 {
		t.Errorf("GOGC=off in the environment: gc_percent %d, want -1 (off)", got)
	}
}
