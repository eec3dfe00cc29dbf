package spawner

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Rlimits are applied by a re-exec of fcgivisor itself: no Go code runs
// between fork and exec, and prlimit(2) on a child that already changed
// its user needs CAP_SYS_RESOURCE. The re-exec'ed fcgivisor, already with
// the worker's credentials and environment, sets the limit on itself and
// execs the worker (moby/sys reexec does the same).

// LimitsArg is the argv[1] that makes fcgivisor apply limits and exec.
const LimitsArg = "__exec-with-limits"

// WithLimits rewrites spec so that self (fcgivisor's executable) sets
// RLIMIT_NOFILE to nofile and then execs the original command.
func WithLimits(spec Spec, self string, nofile uint64) Spec {
	args := append([]string{self, LimitsArg, strconv.FormatUint(nofile, 10), spec.Path}, spec.Args...)
	spec.Path, spec.Args = self, args
	return spec
}

// ExecWithLimits is the re-exec'ed side: args are what WithLimits put after
// LimitsArg. It only returns on error.
func ExecWithLimits(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("%s: want NOFILE PATH ARGV...", LimitsArg)
	}
	n, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %w", LimitsArg, err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}); err != nil {
		return fmt.Errorf("rlimit_nofile %d: %w", n, err)
	}
	return syscall.Exec(args[1], args[2:], os.Environ())
}
