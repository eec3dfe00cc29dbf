package spawner

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary is the child: with SPAWNER_HELPER set it runs a helper
// instead of the tests (Go's os/exec/exec_test.go does the same).
func TestMain(m *testing.M) {
	if h := os.Getenv("SPAWNER_HELPER"); h != "" {
		helper(h)
		os.Exit(0)
	}
	// fcgivisor's main sets this; the orphan test needs it.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "subreaper:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func helper(name string) {
	switch name {
	case "env":
		for _, kv := range os.Environ() {
			fmt.Println(kv)
		}
		wd, _ := os.Getwd()
		fmt.Println("WD=" + wd)
		pgid, _ := unix.Getpgid(0)
		fmt.Println("PGID=" + strconv.Itoa(pgid))
		fmt.Println("PID=" + strconv.Itoa(os.Getpid()))
	case "sleep":
		fmt.Println("ready")
		time.Sleep(time.Minute)
	case "orphan":
		// Start a grandchild in our group, print its pid, exit: the
		// grandchild is reparented to the subreaper.
		exe, _ := os.Executable()
		cmd := exec.Command(exe)
		cmd.Env = []string{"SPAWNER_HELPER=sleep"}
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			os.Exit(2)
		}
		bufio.NewReader(out).ReadString('\n')
		fmt.Println(cmd.Process.Pid)
		os.Exit(0)
	case "exit7":
		os.Exit(7)
	case "hold":
		time.Sleep(time.Minute)
	default:
		cgiHelper(name)
	}
}

// reaper is shared by the tests of this binary: only one may call wait4.
var (
	parentOnce sync.Once
	testParent *Parent
)

func startParent(t *testing.T) *Parent {
	parentOnce.Do(func() {
		r, err := NewParent()
		if err != nil {
			panic(err)
		}
		testParent = r
		go r.Run(context.Background())
	})
	return testParent
}

func self(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func wait(t *testing.T, p *Process) unix.WaitStatus {
	t.Helper()
	select {
	case <-p.Done():
		return p.Status()
	case <-time.After(10 * time.Second):
		t.Fatalf("process %d did not exit", p.Pid)
	}
	return 0
}

func TestStartEnvDirGroup(t *testing.T) {
	r := startParent(t)
	t.Setenv("FCGIVISOR_LEAK", "secret")
	dir := t.TempDir()
	pr, pw, _ := os.Pipe()
	p, err := r.Start(Spec{
		Path:   self(t),
		Args:   []string{"worker"},
		Dir:    dir,
		Env:    []string{"SPAWNER_HELPER=env", "A=1"},
		Stdout: pw,
	})
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	pr.Close()
	if st := wait(t, p); st.ExitStatus() != 0 {
		t.Fatalf("exit status %v", st)
	}
	want := []string{"SPAWNER_HELPER=env", "A=1", "WD=" + dir, "PGID=" + strconv.Itoa(p.Pid), "PID=" + strconv.Itoa(p.Pid)}
	if !slices.Equal(lines, want) {
		t.Fatalf("child saw\n%q\nwant exactly\n%q (env is an allowlist; own process group)", lines, want)
	}
}

func TestExitStatus(t *testing.T) {
	r := startParent(t)
	p, err := r.Start(Spec{Path: self(t), Args: []string{"x"}, Env: []string{"SPAWNER_HELPER=exit7"}})
	if err != nil {
		t.Fatal(err)
	}
	if st := wait(t, p); !st.Exited() || st.ExitStatus() != 7 {
		t.Fatalf("status %v, want exit 7", st)
	}
}

func TestSignalGroupKillsGrandchildrenAndReapsOrphans(t *testing.T) {
	r := startParent(t)
	pr, pw, _ := os.Pipe()
	p, err := r.Start(Spec{Path: self(t), Args: []string{"x"}, Env: []string{"SPAWNER_HELPER=orphan"}, Stdout: pw})
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(pr).ReadString('\n')
	pr.Close()
	if err != nil {
		t.Fatal(err)
	}
	gc, _ := strconv.Atoi(strings.TrimSpace(line))
	wait(t, p)
	// The grandchild outlived its parent, in the same process group, and is
	// now our child (subreaper).
	if ppid := parentOf(gc); ppid != os.Getpid() {
		t.Fatalf("grandchild %d has parent %d, want the subreaper %d", gc, ppid, os.Getpid())
	}
	if err := p.SignalGroup(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The reaper must reap it: /proc/<pid> disappears (a zombie would stay).
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", gc)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still in /proc (not killed or not reaped)", gc)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// The forking thread must outlive the child: PR_SET_PDEATHSIG fires when it
// exits. Threads come and go here while the child must stay alive.
func TestChildSurvivesThreadChurn(t *testing.T) {
	r := startParent(t)
	pr, pw, _ := os.Pipe()
	p, err := r.Start(Spec{Path: self(t), Args: []string{"x"}, Env: []string{"SPAWNER_HELPER=sleep"}, Stdout: pw})
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	if _, err := bufio.NewReader(pr).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	// Goroutines that exit locked terminate their threads.
	for range 50 {
		done := make(chan struct{})
		go func() { runtime.LockOSThread(); close(done) }()
		<-done
	}
	runtime.GC()
	if p.Exited() {
		t.Fatalf("child died: %v", p.Status())
	}
	p.SignalGroup(syscall.SIGKILL)
	if st := wait(t, p); st.Signal() != syscall.SIGKILL {
		t.Fatalf("status %v, want SIGKILL", st)
	}
}

func TestStartMissingExecutable(t *testing.T) {
	r := startParent(t)
	_, err := r.Start(Spec{Path: "/nonexistent/x", Args: []string{"x"}})
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v, want ENOENT", err)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "plain"), []byte("x"), 0o644)
	for _, tc := range []struct {
		argv0, dir string
		env        []string
		path, want string
		err        string
	}{
		{argv0: exe, want: exe},
		{argv0: "./tool", dir: dir, want: exe},
		{argv0: "tool", env: []string{"PATH=" + dir}, want: exe},
		{argv0: "tool", path: dir, want: exe},
		{argv0: "tool", env: []string{"PATH=/nonexistent"}, path: dir, err: "not found"},
		{argv0: "./plain", dir: dir, err: "not an executable"},
		{argv0: "", err: "empty"},
	} {
		got, err := Resolve(tc.argv0, tc.dir, tc.env, tc.path)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Resolve(%q) err = %v, want %q", tc.argv0, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tc.argv0, got, err, tc.want)
		}
	}
}

// Children that exit at once, many started concurrently, each get their
// own exit status: an exit reaped before its fork registered the pid
// (Parent.early) reaches the right Process, and none is lost.
func TestConcurrentShortLivedChildrenGetTheirStatus(t *testing.T) {
	r := startParent(t) // the one Parent: two would reap each other's children
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code := i % 100
			p, err := r.Start(Spec{Path: "/bin/sh", Args: []string{"sh", "-c", "exit " + strconv.Itoa(code)}})
			if err != nil {
				errs <- err
				return
			}
			select {
			case <-p.Done():
			case <-time.After(10 * time.Second):
				errs <- fmt.Errorf("pid %d (exit %d) never reaped", p.Pid, code)
				return
			}
			if st := p.Status(); !st.Exited() || st.ExitStatus() != code {
				errs <- fmt.Errorf("pid %d: status %v, want exit %d", p.Pid, st, code)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSecondParentRefused(t *testing.T) {
	startParent(t)
	if r, err := NewParent(); err == nil || r != nil {
		t.Fatalf("a second Parent was made (%v): it would reap the first one's children", err)
	}
}
