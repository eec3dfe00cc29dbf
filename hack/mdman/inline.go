package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// text renders Markdown inline text as roff: `code` and **strong** bold,
// [a link](target) as its text, backslash escapes as the character.
func text(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case s[i] == '`':
			code, n := codeSpan(s[i:])
			if n == 0 {
				b.WriteString(escape(s[i:i+1], false))
				i++
				continue
			}
			b.WriteString(`\fB` + escape(code, true) + `\fR`)
			i += n
		case strings.HasPrefix(s[i:], "**"):
			end := strings.Index(s[i+2:], "**")
			if end <= 0 {
				b.WriteString("**")
				i += 2
				continue
			}
			b.WriteString(`\fB` + text(s[i+2:i+2+end]) + `\fR`)
			i += end + 4
		case s[i] == '[':
			label, n := link(s[i:])
			if n == 0 {
				b.WriteByte('[')
				i++
				continue
			}
			b.WriteString(text(label))
			i += n
		case s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\`*_{}[]()#+-.!|<>", s[i+1]) >= 0:
			b.WriteString(escape(s[i+1:i+2], false))
			i += 2
		default:
			_, n := utf8.DecodeRuneInString(s[i:])
			b.WriteString(escape(s[i:i+n], false))
			i += n
		}
	}
	return b.String()
}

// codeSpan reads the code span s starts with (`a`, “ a`b “): its text and
// its length in s, or 0 when the backticks are not closed.
func codeSpan(s string) (string, int) {
	n := len(s) - len(strings.TrimLeft(s, "`"))
	fence := s[:n]
	end := strings.Index(s[n:], fence)
	if end < 0 {
		return "", 0
	}
	code := s[n : n+end]
	if n > 1 && strings.HasPrefix(code, " ") && strings.HasSuffix(code, " ") && len(code) > 2 {
		code = code[1 : len(code)-1]
	}
	return code, n + end + n
}

// link reads the link s starts with, [label](target), whose label may hold
// code spans with brackets ([`[[http.route]]`](#httproute)): its label and
// its length in s, or 0 when s does not start with a link.
func link(s string) (string, int) {
	depth := 0
	for j := 0; j < len(s); j++ {
		switch s[j] {
		case '`':
			if _, n := codeSpan(s[j:]); n > 0 {
				j += n - 1
			}
		case '[':
			depth++
		case ']':
			depth--
			if depth > 0 {
				continue
			}
			if !strings.HasPrefix(s[j+1:], "(") {
				return "", 0
			}
			end := strings.IndexByte(s[j+1:], ')')
			if end < 0 {
				return "", 0
			}
			return s[1:j], j + 1 + end + 1
		}
	}
	return "", 0
}

// escape makes s literal roff text: a backslash is \e; in code, a hyphen
// is \- (a minus, so that copied flags and paths keep their ASCII hyphen);
// a character beyond ASCII is its \[uXXXX] escape, which needs no input
// encoding (groff without preconv, mandoc).
func escape(s string, code bool) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-' && code:
			b.WriteString(`\-`)
		case r >= utf8.RuneSelf:
			fmt.Fprintf(&b, `\[u%04X]`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// line keeps a text line from reading as a roff request: one starting with
// a dot or an apostrophe gets a zero-width \& first.
func line(s string) string {
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		return `\&` + s
	}
	return s
}

// quoted is s as one macro argument.
func quoted(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `\(dq`) + `"`
}

// plain renders a heading's text for a macro argument.
func plain(s string) string { return text(s) }

// roffArg is a page name as a macro argument: hyphens as minus signs.
func roffArg(s string) string { return strings.ReplaceAll(escape(s, false), "-", `\-`) }
