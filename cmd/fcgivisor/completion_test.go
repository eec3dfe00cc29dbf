package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binDir    string // holds fcgivisor, built once for the tests that run it
	buildErr  error
)

// binary builds this command once, as make does, into a directory the
// tests put first in PATH: completion scripts run "fcgivisor".
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "fcgivisor-cmd-test-"); buildErr != nil {
			return
		}
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		cmd := exec.Command(goTool, "build", "-trimpath", "-tags", "urfave_cli_no_docs,nethttpomithttp2", "-o", filepath.Join(binDir, "fcgivisor"), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{err, out}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "fcgivisor")
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + string(e.out) }

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// fcgivisor runs fcgivisor with args and returns its stdout.
func fcgivisor(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary(t), args...).Output()
	if err != nil {
		t.Fatalf("fcgivisor %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// shell runs script with the named shell, fcgivisor first in PATH.
func shell(t *testing.T, name string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed", name)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary(t))+":"+os.Getenv("PATH"), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeScript(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCompletionScripts: `fcgivisor completion SHELL` prints a script that
// the shell accepts (bash -n, zsh -n, fish -n); another name is an error.
func TestCompletionScripts(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		t.Run(sh, func(t *testing.T) {
			script := fcgivisor(t, "completion", sh)
			if len(script) < 100 || !strings.Contains(script, "fcgivisor") {
				t.Fatalf("fcgivisor completion %s printed %q", sh, script)
			}
			shell(t, sh, "-n", writeScript(t, "fcgivisor."+sh, script))
		})
	}
	if out, err := exec.Command(binary(t), "completion", "tcsh").CombinedOutput(); err == nil || !strings.Contains(string(out), "bash, zsh or fish") {
		t.Errorf("fcgivisor completion tcsh: %v, %q; want exit 1 naming the shells", err, out)
	}
}

// TestBashCompletion completes command lines as bash does on TAB.
func TestBashCompletion(t *testing.T) {
	script := writeScript(t, "fcgivisor", fcgivisor(t, "completion", "bash"))
	etc := writeScript(t, "fcgivisor.toml", "")
	for _, c := range []struct {
		words []string // the last one is being completed
		want  string   // COMPREPLY, sorted, space-separated
	}{
		{[]string{"fcgivisor", ""}, "check completion h help reload run status stop version"},
		{[]string{"fcgivisor", "st"}, "status stop"},
		{[]string{"fcgivisor", "status", "--"}, "--config --help --json"},
		{[]string{"fcgivisor", "status", "--j"}, "--json"},
		{[]string{"fcgivisor", "reload", "-c", etc[:len(etc)-5]}, etc},
		{[]string{"fcgivisor", "completion", ""}, "bash fish zsh"},
		{[]string{"fcgivisor", "run", "--config=x", "zz-no-such-file"}, ""},
	} {
		quoted := make([]string, len(c.words))
		for i, w := range c.words {
			quoted[i] = "'" + w + "'"
		}
		got := shell(t, "bash", "--norc", "-c", `source "$1"
COMP_WORDS=(`+strings.Join(quoted, " ")+`); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_fcgivisor; printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '`, "bash", script)
		if strings.TrimSpace(got) != c.want {
			t.Errorf("bash completion of %q: %q, want %q", strings.Join(c.words, " "), strings.TrimSpace(got), c.want)
		}
	}
}

// TestFishCompletion asks fish what it completes, with the script loaded
// as fish loads it from vendor_completions.d.
func TestFishCompletion(t *testing.T) {
	script := writeScript(t, "fcgivisor.fish", fcgivisor(t, "completion", "fish"))
	for line, want := range map[string][]string{
		"fcgivisor st":          {"status", "stop"},
		"fcgivisor ":            {"check", "completion", "help", "reload", "run", "status", "stop", "version"},
		"fcgivisor status --":   {"--config", "--json"},
		"fcgivisor completion ": {"bash", "fish", "zsh"},
	} {
		out := shell(t, "fish", "--no-config", "-c", "source $argv[1]; complete -C $argv[2]", script, line)
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			got = append(got, strings.SplitN(l, "\t", 2)[0])
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("fish completion of %q: %q lacks %q", line, got, w)
			}
		}
	}
}

// TestZshCompletion loads the script both ways zsh does: autoloaded from a
// directory of $fpath (the installed _fcgivisor), and sourced; either way
// compinit then completes fcgivisor with _fcgivisor.
func TestZshCompletion(t *testing.T) {
	script := fcgivisor(t, "completion", "zsh")
	dir := filepath.Dir(writeScript(t, "_fcgivisor", script))
	const show = `; print -r -- "${_comps[fcgivisor]}"`
	if got := shell(t, "zsh", "-f", "-c", `fpath=("$1" $fpath); autoload -U compinit; compinit -u -D`+show, "zsh", dir); strings.TrimSpace(got) != "_fcgivisor" {
		t.Errorf("zsh with _fcgivisor in $fpath completes fcgivisor with %q, want _fcgivisor", got)
	}
	if got := shell(t, "zsh", "-f", "-c", `autoload -U compinit; compinit -u -D; source "$1"`+show, "zsh", filepath.Join(dir, "_fcgivisor")); strings.TrimSpace(got) != "_fcgivisor" {
		t.Errorf("zsh after source <(fcgivisor completion zsh) completes fcgivisor with %q, want _fcgivisor", got)
	}
}

// TestManPage: `fcgivisor manpage` is fcgivisor(1), with every command and
// flag of the CLI; groff reads it without a warning, and man shows it.
func TestManPage(t *testing.T) {
	page := fcgivisor(t, "manpage")
	if !strings.HasPrefix(page, ".TH FCGIVISOR 1 ") {
		t.Fatalf("the page starts with %q", strings.SplitN(page, "\n", 2)[0])
	}
	for _, want := range []string{
		`\fBfcgivisor run\fR [\fB\-c\fR \fIFILE\fR]`,
		`\fBfcgivisor status\fR [\fB\-c\fR \fIFILE\fR] [\fB\-\-json\fR]`,
		`\fBfcgivisor completion\fR bash|zsh|fish`,
		".SH COMMANDS", ".SH SIGNALS", ".SH FILES", ".SH SEE ALSO",
		".BR fcgivisor.toml (5)",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(page, "manpage") {
		t.Error("the page shows the hidden manpage command")
	}
	file := writeScript(t, "fcgivisor.1", page)
	if groff, err := exec.LookPath("groff"); err == nil {
		out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", file).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("groff -man -ww: %v\n%s", err, out)
		}
	}
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man is not installed")
	}
	cmd := exec.Command("man", "-l", file)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fcgivisor status [-c FILE] [--json]") {
		t.Errorf("man -l: %v\n%s", err, out)
	}
}
