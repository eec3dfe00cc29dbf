// Command forkexec times syscall.ForkExec, the call fcgivisor's CGI path
// makes for every request (from its forker threads, with Pdeathsig and
// Setpgid as there): the time from the call until the child has exec'd.
// For all of it the calling thread holds its P (the clone is a raw vfork
// system call), so with GOMAXPROCS=1 no other goroutine of the process
// runs meanwhile.
//
//	go run ./bench/forkexec [-n 2000] PROGRAM
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"slices"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 2000, "children to start, one after another")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: forkexec [-n N] PROGRAM")
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		log.Fatal(err)
	}
	fd := devnull.Fd()
	attr := &syscall.ProcAttr{
		Files: []uintptr{fd, fd, fd},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true},
	}
	ds := make([]time.Duration, 0, *n)
	for range *n {
		t := time.Now()
		pid, err := syscall.ForkExec(flag.Arg(0), []string{flag.Arg(0)}, attr)
		ds = append(ds, time.Since(t))
		if err != nil {
			log.Fatal(err)
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
			log.Fatal(err)
		}
	}
	slices.Sort(ds)
	q := func(p int) time.Duration { return ds[len(ds)*p/100] }
	fmt.Printf("ForkExec of %s, %d children, GOMAXPROCS %d: p50 %v p90 %v p99 %v\n",
		flag.Arg(0), *n, runtime.GOMAXPROCS(0), q(50), q(90), q(99))
}
