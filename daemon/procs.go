package daemon

import "github.com/fcgivisor/fcgivisor/conf"

// Procs is the GOMAXPROCS fcgivisor runs with, 0 to leave it as it is:
// server.max_procs when set (key > 0); else nothing when GOMAXPROCS is set
// in the environment (env != ""), since Go applied it already; else half
// of cpus (Go's own default: the CPUs of the affinity mask, within the
// cgroup's CPU limit), rounded up.
//
// Why half (issue 14, bench/README.md): fcgivisor shares the machine with
// the workers it serves, which do the application's work. On 2 vCPUs with
// the front, 4 C workers and the load generator, GOMAXPROCS 1 gave 12 %
// more requests a second than 2 at 32 connections, 20 % less CPU per
// request, and half the p99 (2.4 vs 5 ms): with a P per CPU, Go's
// scheduler wakes a second thread for each goroutine that becomes ready,
// and the front's goroutines hop between CPUs the workers need. A front
// that needs more than half the CPUs is one whose workers do almost
// nothing; set max_procs for it.
func Procs(key int, env string, cpus int) int {
	switch {
	case key > 0:
		return key
	case env != "":
		return 0
	}
	return max(1, (cpus+1)/2)
}

// applyProcs sets GOMAXPROCS for cfg, when o.SetProcs is set.
func (o *Options) applyProcs(cfg *conf.Config) {
	if o.SetProcs == nil {
		return
	}
	env, _ := o.Getenv("GOMAXPROCS")
	if n := Procs(cfg.Server.MaxProcs, env, o.CPUs); n > 0 {
		o.SetProcs(n)
	}
}
