package spawner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/internal/testlog"
)

// cgiHelper runs the CGI helpers of the test binary (see TestMain).
func cgiHelper(name string) {
	switch name {
	case "cgi-echo":
		// Reads its stdin, answers with its length, writes two stderr
		// lines and exits with $CGI_EXIT.
		b, _ := io.ReadAll(os.Stdin)
		fmt.Printf("Content-Type: text/plain\n\ngot %d\n", len(b))
		fmt.Fprint(os.Stderr, "line one\nline two\n")
		code, _ := strconv.Atoi(os.Getenv("CGI_EXIT"))
		os.Exit(code)
	case "cgi-fork":
		// Forks a grandchild that stays in our process group, prints its
		// pid and hangs.
		gc := exec.Command(selfPath())
		gc.Env = []string{"SPAWNER_HELPER=hold"}
		if err := gc.Start(); err != nil {
			os.Exit(2)
		}
		fmt.Println(gc.Process.Pid)
		time.Sleep(time.Minute)
	case "cgi-escape":
		// Forks a grandchild that leaves our process group (a session of
		// its own) holding our stdout, prints its pid and hangs.
		gc := exec.Command(selfPath())
		gc.Env = []string{"SPAWNER_HELPER=hold"}
		gc.Stdout = os.Stdout
		gc.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := gc.Start(); err != nil {
			os.Exit(2)
		}
		fmt.Println(gc.Process.Pid)
		time.Sleep(time.Minute)
	case "cgi-linger":
		// Answers, closes its stdout and stderr, and exits 0 only once
		// it gets SIGTERM.
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		fmt.Print("ok\n")
		os.Stdout.Close()
		os.Stderr.Close()
		<-term
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", name)
		os.Exit(2)
	}
}

func selfPath() string {
	exe, err := os.Executable()
	if err != nil {
		os.Exit(2)
	}
	return exe
}

// cgiSpec runs the test binary as the CGI helper name.
func cgiSpec(t *testing.T, name string, env ...string) Spec {
	return Spec{Path: self(t), Args: []string{"cgi"}, Env: append([]string{"SPAWNER_HELPER=" + name}, env...)}
}

// readLine reads the first line the program c prints.
func readLine(t *testing.T, c *CGI) string {
	t.Helper()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("first line of pid %d: %v", c.Pid, err)
	}
	return strings.TrimSpace(line)
}

// waitGone waits until the process pidText is gone: killed and reaped
// (a zombie would stay in /proc).
func waitGone(t *testing.T, pidText string) {
	t.Helper()
	proc := "/proc/" + pidText
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(proc); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists: not killed, or not reaped", proc)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closed reports whether ch is closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A program that answers and exits: its stdin is the body, Read its
// stdout, its stderr is logged per line with its pid, and Close returns
// once it was reaped, with a non-zero exit logged and OnEnd run.
func TestCGIRunsAndIsReaped(t *testing.T) {
	cr := NewCGIRunner(startParent(t))
	logs := &testlog.Buffer{}
	ended := make(chan struct{})
	c, err := cr.Start(context.Background(), cgiSpec(t, "cgi-echo", "CGI_EXIT=3"), CGIOptions{
		Timeout: 10 * time.Second, Log: slog.New(slog.NewTextHandler(logs, nil)), OnEnd: func() { close(ended) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stdin.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.Stdin.Close()
	out, err := io.ReadAll(c)
	if err != nil || string(out) != "Content-Type: text/plain\n\ngot 5\n" {
		t.Fatalf("stdout %q, %v", out, err)
	}
	if closed(ended) {
		t.Fatal("OnEnd ran before Close")
	}
	c.Close()
	if !closed(ended) || !c.Exited() {
		t.Fatalf("after Close: OnEnd ran %v, reaped %v", closed(ended), c.Exited())
	}
	if st := c.Status(); !st.Exited() || st.ExitStatus() != 3 {
		t.Fatalf("status %v, want exit 3", st)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("Err() = %v for a program nobody killed", err)
	}
	pid := "pid=" + strconv.Itoa(c.Pid)
	for _, want := range []string{"msg=\"line one\" " + pid + " stream=stderr", "msg=\"line two\" " + pid + " stream=stderr", "msg=\"cgi program exited\" " + pid + " status=3"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if err := cr.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown with no run left: %v", err)
	}
}

// The timeout kills the program's whole process group, a forked
// grandchild included, and Err says so.
func TestCGITimeoutKillsGroup(t *testing.T) {
	cr := NewCGIRunner(startParent(t))
	logs := &testlog.Buffer{}
	start := time.Now()
	c, err := cr.Start(context.Background(), cgiSpec(t, "cgi-fork"), CGIOptions{
		Timeout: 300 * time.Millisecond, Log: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Stdin.Close()
	gc := readLine(t, c)
	io.ReadAll(c) // ends with the kill
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("output ended after %v, want about the 300ms timeout", d)
	}
	if err := c.Err(); !errors.Is(err, ErrCGITimeout) {
		t.Fatalf("Err() = %v, want ErrCGITimeout", err)
	}
	c.Close()
	if st := c.Status(); st.Signal() != syscall.SIGKILL {
		t.Fatalf("status %v, want SIGKILL", st)
	}
	waitGone(t, gc)
	if !strings.Contains(logs.String(), "cgi program timed out: killing its process group") {
		t.Errorf("timeout not logged:\n%s", logs)
	}
}

// A caller whose context is done (a client that went away) gets the
// program's group killed, a forked grandchild included.
func TestCGICancelKillsGroup(t *testing.T) {
	cr := NewCGIRunner(startParent(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := cr.Start(ctx, cgiSpec(t, "cgi-fork"), CGIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Stdin.Close()
	gc := readLine(t, c)
	cancel()
	io.ReadAll(c) // ends with the kill
	if err := c.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err() = %v, want context.Canceled", err)
	}
	c.Close()
	if st := c.Status(); st.Signal() != syscall.SIGKILL {
		t.Fatalf("status %v, want SIGKILL", st)
	}
	waitGone(t, gc)
}

// Something that escaped the group and holds stdout does not block the
// caller past the kill: Read fails, and a deadline the caller sets
// afterwards (copyBody's wait for more output) does not lift the kill's.
func TestCGIKillUnblocksReadsOfEscapedPipe(t *testing.T) {
	cr := NewCGIRunner(startParent(t))
	c, err := cr.Start(context.Background(), cgiSpec(t, "cgi-escape"), CGIOptions{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Stdin.Close()
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	gc := strings.TrimSpace(line)
	gcPid, _ := strconv.Atoi(gc)
	defer func() {
		syscall.Kill(gcPid, syscall.SIGKILL) // our grandchild: the reaper reaps it
		waitGone(t, gc)
	}()
	if _, err := br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after the timeout: %v, want the kill's deadline", err)
	}
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read after SetReadDeadline(zero): %v, want the kill's deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetReadDeadline lifted the kill's deadline: Read blocks on the escaped holder")
	}
	c.Close()
}

// Detach: the caller returns at once; the runner waits for the exit, the
// caller's context no longer kills the program, and OnEnd (the place
// given back) runs at the exit, not before.
func TestCGIDetachWaitsForExit(t *testing.T) {
	cr := NewCGIRunner(startParent(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan struct{})
	c, err := cr.Start(ctx, cgiSpec(t, "cgi-linger"), CGIOptions{Timeout: 10 * time.Second, OnEnd: func() { close(ended) }})
	if err != nil {
		t.Fatal(err)
	}
	c.Stdin.Close()
	if out, err := io.ReadAll(c); err != nil || string(out) != "ok\n" {
		t.Fatalf("stdout %q, %v", out, err)
	}
	c.Detach()
	cancel() // the request is over: this must not kill the program
	select {
	case <-ended:
		t.Fatal("OnEnd ran while the program still runs")
	case <-time.After(200 * time.Millisecond):
	}
	if c.Exited() {
		t.Fatalf("the program exited after Detach and cancel: %v", Describe(c.Status()))
	}
	c.SignalGroup(syscall.SIGTERM)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("OnEnd did not run after the exit")
	}
	if st := c.Status(); !st.Exited() || st.ExitStatus() != 0 || c.Err() != nil {
		t.Fatalf("status %v, Err %v: want exit 0 on SIGTERM, not killed", st, c.Err())
	}
	if err := cr.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown with no run left: %v", err)
	}
}

// Shutdown waits for the runs until its context is done, then kills the
// groups left, waits until each run has ended (OnEnd included) and
// returns the context's error; Start is refused from then on.
func TestCGIShutdownKillsAndWaits(t *testing.T) {
	cr := NewCGIRunner(startParent(t))
	var ends [2]chan struct{}
	var runs [2]*CGI
	var gc string
	for i, name := range []string{"cgi-linger", "cgi-fork"} {
		ends[i] = make(chan struct{})
		c, err := cr.Start(context.Background(), cgiSpec(t, name), CGIOptions{OnEnd: func() { close(ends[i]) }})
		if err != nil {
			t.Fatal(err)
		}
		c.Stdin.Close()
		if line := readLine(t, c); name == "cgi-fork" {
			gc = line
		}
		runs[i] = c
	}
	runs[0].Detach() // answered, its exit awaited by the runner
	go runs[1].Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := cr.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("Shutdown returned after %v: it did not wait for the runs", d)
	}
	for i, c := range runs {
		if !closed(ends[i]) || !c.Exited() {
			t.Fatalf("run %d after Shutdown: OnEnd ran %v, reaped %v; want both", i, closed(ends[i]), c.Exited())
		}
		if st := c.Status(); st.Signal() != syscall.SIGKILL {
			t.Errorf("run %d: status %v, want SIGKILL", i, st)
		}
	}
	waitGone(t, gc)
	if _, err := cr.Start(context.Background(), cgiSpec(t, "cgi-echo"), CGIOptions{}); err == nil {
		t.Fatal("Start after Shutdown started a program")
	}
}
