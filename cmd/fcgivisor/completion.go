package main

// `fcgivisor completion bash|zsh|fish` prints a shell completion script.
// bash and zsh ask the binary itself what may come next (urfave/cli's
// --generate-bash-completion, enabled in main: commands, then a command's
// flags), so the scripts never go stale; fish gets the command tree written
// out when the script is printed. (urfave/cli's ToFishCompletion turns
// file completion off for -c FILE, and, called from within a command, also
// lists the help subcommand cli added to the running command.)

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// bashCompletion is installed as
// $(PREFIX)/share/bash-completion/completions/fcgivisor.
const bashCompletion = `# bash completion for fcgivisor: installed in
# /usr/share/bash-completion/completions/fcgivisor, or for this shell:
#   source <(fcgivisor completion bash)
_fcgivisor() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	COMPREPLY=()
	case $prev in
	-c | --config)
		compopt -o filenames 2>/dev/null
		COMPREPLY=($(compgen -f -- "$cur"))
		return 0
		;;
	esac
	local prog=${COMP_WORDS[0]} args=("${COMP_WORDS[@]:1:COMP_CWORD-1}")
	prog=${prog/#\~/$HOME}
	# The partial flag, for the binary to list the flags it starts; "--"
	# alone would end the binary's flags, so "-" stands for it.
	case $cur in
	--) args+=(-) ;;
	-*) args+=("$cur") ;;
	esac
	local words
	words=$("$prog" "${args[@]}" --generate-bash-completion 2>/dev/null) || return 0
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _fcgivisor fcgivisor
`

// zshCompletion is installed as _fcgivisor in a directory of $fpath
// (/usr/share/zsh/vendor-completions on Debian).
const zshCompletion = `#compdef fcgivisor
# zsh completion for fcgivisor: installed as _fcgivisor in a directory of
# $fpath, or for this shell:
#   source <(fcgivisor completion zsh)
_fcgivisor() {
	local -a opts
	local cur=${words[CURRENT]}
	case ${words[CURRENT-1]} in
	-c | --config)
		_files
		return
		;;
	esac
	local -a args
	args=(${words[2,CURRENT-1]})
	# "--" alone would end the binary's flags: "-" lists them all too.
	case $cur in
	--) args+=(-) ;;
	-*) args+=($cur) ;;
	esac
	opts=("${(@f)$(${words[1]} $args --generate-bash-completion 2>/dev/null)}")
	if [[ -n ${opts[1]} ]]; then
		_describe -t commands 'fcgivisor' opts
	else
		_files
	fi
}
if [[ $funcstack[1] == _fcgivisor ]]; then
	# Autoloaded from $fpath: this file is the function's body.
	_fcgivisor "$@"
else
	compdef _fcgivisor fcgivisor
fi
`

// enableCompletion makes app answer --generate-bash-completion: with its
// commands, or, after a command, with the command's flags when a flag is
// being typed and nothing otherwise, so that the shell completes file
// names (not with the help subcommand urfave/cli adds to every command).
func enableCompletion(app *cli.App) {
	app.EnableBashCompletion = true
	for _, cmd := range app.Commands {
		if cmd.BashComplete != nil {
			continue
		}
		cmd.BashComplete = func(c *cli.Context) {
			// As urfave/cli's own: the word before --generate-bash-completion.
			if n := len(os.Args); n > 2 && strings.HasPrefix(os.Args[n-2], "-") {
				cli.DefaultCompleteWithFlags(cmd)(c)
			}
		}
	}
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the completion script of a shell: bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "Prints the script that completes fcgivisor's commands and flags in the shell named.\n" +
			"Packages install them; for the running shell: source <(fcgivisor completion bash).",
		BashComplete: func(c *cli.Context) {
			if c.NArg() == 0 {
				fmt.Fprintln(c.App.Writer, "bash\nzsh\nfish")
			}
		},
		Action: func(c *cli.Context) error {
			var script string
			switch shell := c.Args().First(); shell {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				script = fishCompletion(c.App)
			default:
				return fmt.Errorf("completion: name a shell: bash, zsh or fish (got %q)", shell)
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

// fishCompletion writes app's commands and their flags as fish completions:
// commands while none is given, then the flags of the one given; files
// only for a flag whose value is a FILE.
func fishCompletion(app *cli.App) string {
	var b strings.Builder
	b.WriteString("# fish completion for fcgivisor: installed in\n" +
		"# /usr/share/fish/vendor_completions.d/fcgivisor.fish, or for this shell:\n" +
		"#   fcgivisor completion fish | source\n" +
		"complete -c fcgivisor -f\n")
	var names []string
	for _, c := range app.VisibleCommands() {
		names = append(names, c.Names()...)
		fmt.Fprintf(&b, "complete -c fcgivisor -n __fish_use_subcommand -a %s -d %s\n",
			fishQuote(strings.Join(c.Names(), " ")), fishQuote(c.Usage))
		seen := fishQuote("__fish_seen_subcommand_from " + strings.Join(c.Names(), " "))
		for _, f := range c.VisibleFlags() {
			df, ok := f.(cli.DocGenerationFlag)
			if !ok || isHelpFlag(f) {
				continue
			}
			fmt.Fprintf(&b, "complete -c fcgivisor -n %s", seen)
			for _, n := range f.Names() {
				if len(n) == 1 {
					fmt.Fprintf(&b, " -s %s", n)
				} else {
					fmt.Fprintf(&b, " -l %s", n)
				}
			}
			placeholder, usage := flagPlaceholder(df)
			switch {
			case placeholder == "FILE":
				b.WriteString(" -r -F")
			case df.TakesValue():
				b.WriteString(" -r")
			}
			fmt.Fprintf(&b, " -d %s\n", fishQuote(usage))
		}
	}
	fmt.Fprintf(&b, "complete -c fcgivisor -n %s -a 'bash zsh fish'\n", fishQuote("__fish_seen_subcommand_from completion"))
	fmt.Fprintf(&b, "complete -c fcgivisor -n %s -a %s\n", fishQuote("__fish_seen_subcommand_from help h"), fishQuote(strings.Join(names, " ")))
	return b.String()
}

// fishQuote is s as one single-quoted fish word.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}
