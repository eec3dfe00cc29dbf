package main

// `fcgivisor manpage` (hidden) prints fcgivisor(1) in roff. The synopsis
// and the commands with their flags are rendered from the command tree, so
// the page always shows what the binary accepts; the description and the
// sections that the CLI definitions do not hold are written here. `make`
// installs its output as man1/fcgivisor.1; fcgivisor.toml(5) comes from
// docs/configuration.md (hack/mdman).

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// manDescription is roff: the DESCRIPTION section.
const manDescription = `.SH DESCRIPTION
\fBfcgivisor\fR preforks and supervises pools of FastCGI workers of any
language (php\-cgi, C programs built on libfcgi, Go net/http/fcgi, Perl
FCGI, ...), as PHP\-FPM does for PHP, and serves them through a small HTTP
front, through each pool's public FastCGI socket (for nginx, Apache, Caddy
or lighttpd), and as one\-shot CGI.
.PP
\fBfcgivisor run\fR runs it in the foreground, as the ExecStart of
fcgivisor.service; the other commands check a configuration file or talk to
the running instance through its admin socket. The file is described in
.BR fcgivisor.toml (5).
Each command that takes \fB\-c\fR uses the first of: \fB\-c\fR \fIFILE\fR,
\fB$FCGIVISOR_CONFIG\fR, \fI./fcgivisor.toml\fR,
\fI/etc/fcgivisor/fcgivisor.toml\fR.
`

// manTail is roff: the sections after COMMANDS.
const manTail = `.SH SIGNALS
.TP
.B SIGHUP
Reload the configuration file (as \fBfcgivisor reload\fR). An invalid file changes nothing.
.TP
.BR SIGTERM ", " SIGINT
Graceful stop: stop accepting, let requests in progress finish (\fBshutdown_timeout\fR), stop the workers, exit 0. A second one stops at once.
.TP
.B SIGQUIT
Immediate stop.
.TP
.B SIGUSR1
Reopen \fBlog_file\fR (logrotate).
.TP
.B SIGUSR2
Rolling restart of every worker: each is replaced first and stopped once idle.
.SH EXIT STATUS
0 on success; 1 for an invalid configuration file (every error is printed as \fIFILE\fB:\fILINE\fB:\fR \fIKEY\fB:\fR \fIproblem\fR), a start that failed, an instance that cannot be reached, or a reload it refused.
.SH ENVIRONMENT
.TP
.B FCGIVISOR_CONFIG
The configuration file, when \fB\-c\fR is not given.
.TP
.BR LISTEN_FDS ", " LISTEN_PID ", " LISTEN_FDNAMES
Sockets passed by systemd socket activation, matched to the \fBhttp.listen\fR addresses and pool \fBlisten\fR sockets of the configuration.
.TP
.BR NOTIFY_SOCKET ", " WATCHDOG_USEC ", " WATCHDOG_PID
sd_notify(3): READY=1, RELOADING=1, STOPPING=1, STATUS= and the watchdog.
.PP
fcgivisor reads these and never passes them on: a worker's environment is exactly its pool's \fBenv\fR and \fBinherit_env\fR.
.SH FILES
.TP
.I /etc/fcgivisor/fcgivisor.toml
The configuration file.
.TP
.I /run/fcgivisor/
The default \fBruntime_dir\fR: worker sockets (\fIw/\fR), the lock (\fIfcgivisor.lock\fR) and the admin socket (\fIadmin.sock\fR, mode 0600).
.TP
.IR fcgivisor.service ", " fcgivisor.socket ", " fcgivisor\-php.socket
The systemd units, in \fI/lib/systemd/system\fR (package) or \fI/usr/local/lib/systemd/system\fR (\fBmake install\fR).
.TP
.I /etc/logrotate.d/fcgivisor
Rotates \fI/var/log/fcgivisor/*.log\fR and sends SIGUSR1.
.SH EXAMPLES
.nf
fcgivisor check \-c /etc/fcgivisor/fcgivisor.toml
systemctl enable \-\-now fcgivisor
fcgivisor status
systemctl reload fcgivisor
.fi
.SH SEE ALSO
.BR fcgivisor.toml (5),
.BR systemctl (1),
.BR systemd.socket (5),
.BR logrotate (8),
.BR php\-cgi (1)
`

func manpageCommand() *cli.Command {
	return &cli.Command{
		Name:   "manpage",
		Usage:  "print the fcgivisor(1) man page (roff)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			_, err := fmt.Fprint(c.App.Writer, manPage(c.App))
			return err
		},
	}
}

// manPage renders app's command tree as fcgivisor(1): a synopsis line
// and an entry per visible command, with its flags.
func manPage(app *cli.App) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH FCGIVISOR 1 \"\" \"fcgivisor %s\" \"User Commands\"\n.nh\n.ad l\n", roffText(fullVersion()))
	fmt.Fprintf(&b, ".SH NAME\nfcgivisor \\- %s\n.SH SYNOPSIS\n.nf\n", roffText(app.Usage))
	for _, c := range app.VisibleCommands() {
		fmt.Fprintf(&b, "\\fBfcgivisor %s\\fR", roffText(c.Name))
		for _, f := range c.VisibleFlags() {
			if name, _, _ := manFlag(f); name != "" && !isHelpFlag(f) {
				fmt.Fprintf(&b, " [%s]", name)
			}
		}
		if c.ArgsUsage != "" {
			fmt.Fprintf(&b, " %s", roffText(c.ArgsUsage))
		}
		b.WriteString("\n")
	}
	b.WriteString(".fi\n" + manDescription + ".SH COMMANDS\n")
	for _, c := range app.VisibleCommands() {
		fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", roffText(strings.Join(c.Names(), ", ")), roffText(c.Usage))
		for _, f := range c.VisibleFlags() {
			if name, usage, aliases := manFlag(f); name != "" && !isHelpFlag(f) {
				fmt.Fprintf(&b, ".RS\n.TP\n%s\n%s\n.RE\n", aliases, usage)
			}
		}
	}
	b.WriteString(manTail)
	return b.String()
}

func isHelpFlag(f cli.Flag) bool { return slices.Contains(f.Names(), "help") }

// manFlag renders f as the synopsis shows it ("\\fB\\-c\\fR \\fIFILE\\fR"), its
// usage, and every name of it with the placeholder, for the flag's entry.
func manFlag(f cli.Flag) (synopsis, usage, names string) {
	df, ok := f.(cli.DocGenerationFlag)
	if !ok {
		return "", "", ""
	}
	placeholder, usage := flagPlaceholder(df)
	var all []string
	for _, n := range slices.Backward(f.Names()) { // short name first
		dash := "\\-"
		if len(n) > 1 {
			dash = "\\-\\-"
		}
		all = append(all, "\\fB"+dash+roffText(n)+"\\fR")
	}
	if placeholder != "" {
		placeholder = " \\fI" + roffText(placeholder) + "\\fR"
	}
	return all[0] + placeholder, roffText(usage), strings.Join(all, ", ") + placeholder
}

// flagPlaceholder is the name of a flag's value, as --help shows it: the
// word the usage quotes in backticks (then the usage without them), else
// VALUE; "" for a flag without value.
func flagPlaceholder(f cli.DocGenerationFlag) (placeholder, usage string) {
	usage = f.GetUsage()
	if before, rest, ok := strings.Cut(usage, "`"); ok {
		if word, after, ok := strings.Cut(rest, "`"); ok {
			placeholder, usage = word, before+word+after
		}
	}
	if placeholder == "" && f.TakesValue() {
		placeholder = "VALUE"
	}
	return placeholder, usage
}

// roffText escapes s for a roff text line: backslashes, hyphens (which
// roff would print as typographic ones, breaking copy and paste of flags),
// and a leading dot or quote that would make the line a request.
func roffText(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
