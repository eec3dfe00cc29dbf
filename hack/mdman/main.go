// Command mdman turns a Markdown document of this repository into a man
// page (roff, man macros): `make` builds fcgivisor.toml(5) from
// docs/configuration.md with it.
//
//	go run ./hack/mdman -name fcgivisor.toml -section 5 \
//	    -summary "configuration file of fcgivisor" -version v1.2.3 \
//	    -see "fcgivisor(1)" docs/configuration.md > fcgivisor.toml.5
//
// It knows the Markdown the docs use, no more: the first "# " heading (its
// text is dropped: NAME and the summary replace it, and what follows is
// DESCRIPTION), "## " and "### " headings (.SH, .SS), paragraphs, "- " and
// "1. " lists, fenced code blocks (shown as written), pipe tables and, in
// text, `code` (bold), **strong** (bold) and [links](target) (the text,
// without the target). A table becomes one tagged paragraph per row, the
// first cell as the tag: a terminal is too narrow for the reference's
// five columns, and a row reads as a definition of its key.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	var o options
	flag.StringVar(&o.name, "name", "", "the page's name (fcgivisor.toml)")
	flag.StringVar(&o.section, "section", "5", "its section")
	flag.StringVar(&o.summary, "summary", "", "the NAME line's text after the name")
	flag.StringVar(&o.version, "version", "dev", "the version in the footer")
	flag.StringVar(&o.manual, "manual", "File Formats", "the manual's title in the header")
	flag.StringVar(&o.see, "see", "", "SEE ALSO: comma-separated pages, e.g. \"fcgivisor(1)\"")
	flag.Parse()
	if flag.NArg() != 1 || o.name == "" {
		fmt.Fprintln(os.Stderr, "usage: mdman -name NAME [-section N] [-summary TEXT] [-version V] [-see PAGES] FILE.md")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mdman:", err)
		os.Exit(1)
	}
	defer f.Close()
	w := bufio.NewWriter(os.Stdout)
	if err := convert(w, f, o); err != nil {
		fmt.Fprintln(os.Stderr, "mdman:", err)
		os.Exit(1)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "mdman:", err)
		os.Exit(1)
	}
}

type options struct {
	name, section, summary, version, manual, see string
}

// convert writes the page: the header, NAME, the document, SEE ALSO.
func convert(w io.Writer, r io.Reader, o options) error {
	var lines []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, strings.TrimRight(sc.Text(), " \t"))
	}
	if err := sc.Err(); err != nil {
		return err
	}
	fmt.Fprintf(w, ".TH %s %s \"\" %s %s\n.nh\n.ad l\n", strings.ToUpper(roffArg(o.name)), o.section,
		quoted(o.name+" "+o.version), quoted(o.manual))
	fmt.Fprintf(w, ".SH NAME\n%s \\- %s\n", text(o.name), text(o.summary))
	c := converter{w: w, lines: lines}
	if err := c.blocks(); err != nil {
		return err
	}
	if o.see != "" {
		var pages []string
		for _, p := range strings.Split(o.see, ",") {
			name, sec, _ := strings.Cut(strings.TrimSpace(p), "(")
			pages = append(pages, fmt.Sprintf(".BR %s (%s", roffArg(name), sec))
		}
		fmt.Fprintf(w, ".SH SEE ALSO\n%s\n", strings.Join(pages, ",\n"))
	}
	return nil
}

// converter walks the document's lines block by block.
type converter struct {
	w       io.Writer
	lines   []string
	i       int
	sawDesc bool // the first "# " heading became DESCRIPTION
}

func (c *converter) blocks() error {
	for c.i < len(c.lines) {
		line := c.lines[c.i]
		switch {
		case line == "":
			c.i++
		case strings.HasPrefix(line, "#"):
			c.heading(line)
		case strings.HasPrefix(line, "```"):
			if err := c.code(); err != nil {
				return err
			}
		case strings.HasPrefix(line, "|"):
			if err := c.table(); err != nil {
				return err
			}
		case listItem(line) != "":
			c.list()
		default:
			c.paragraph()
		}
	}
	return nil
}

func (c *converter) heading(line string) {
	c.i++
	level := len(line) - len(strings.TrimLeft(line, "#"))
	title := strings.TrimSpace(line[level:])
	switch {
	case level == 1 && !c.sawDesc:
		c.sawDesc = true
		fmt.Fprintln(c.w, ".SH DESCRIPTION")
	case level <= 2:
		if !strings.ContainsAny(title, "[`") {
			title = strings.ToUpper(title)
		}
		fmt.Fprintf(c.w, ".SH %s\n", quoted(plain(title)))
	default:
		fmt.Fprintf(c.w, ".SS %s\n", quoted(plain(title)))
	}
}

// code shows a fenced block as written, indented.
func (c *converter) code() error {
	start := c.i
	c.i++
	fmt.Fprintln(c.w, ".PP\n.RS 4\n.nf")
	for ; c.i < len(c.lines); c.i++ {
		if strings.HasPrefix(c.lines[c.i], "```") {
			c.i++
			fmt.Fprintln(c.w, ".fi\n.RE")
			return nil
		}
		fmt.Fprintln(c.w, line(escape(c.lines[c.i], true)))
	}
	return fmt.Errorf("line %d: code block not closed", start+1)
}

// paragraph joins the lines up to a blank line or another block.
func (c *converter) paragraph() {
	var parts []string
	for ; c.i < len(c.lines); c.i++ {
		l := c.lines[c.i]
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "```") || strings.HasPrefix(l, "|") ||
			(len(parts) > 0 && listItem(l) != "") {
			break
		}
		parts = append(parts, strings.TrimSpace(l))
	}
	fmt.Fprintf(c.w, ".PP\n%s\n", line(text(strings.Join(parts, " "))))
}

// list renders "- " and "1. " items, each with its indented continuation
// lines, up to the first line that is neither.
func (c *converter) list() {
	for c.i < len(c.lines) {
		marker := listItem(c.lines[c.i])
		if marker == "" {
			return
		}
		parts := []string{strings.TrimSpace(c.lines[c.i][len(marker):])}
		for c.i++; c.i < len(c.lines); c.i++ {
			l := c.lines[c.i]
			if l == "" || !strings.HasPrefix(l, " ") || listItem(strings.TrimSpace(l)) != "" && !strings.HasPrefix(l, "  ") {
				break
			}
			parts = append(parts, strings.TrimSpace(l))
		}
		tag := `\(bu`
		if m := strings.TrimSpace(marker); m != "-" && m != "*" {
			tag = m
		}
		fmt.Fprintf(c.w, ".IP %s 4\n%s\n", tag, line(text(strings.Join(parts, " "))))
	}
}

// listItem returns the marker of a list item line ("- ", "12. "), or "".
func listItem(l string) string {
	if strings.HasPrefix(l, "- ") || strings.HasPrefix(l, "* ") {
		return l[:2]
	}
	n := 0
	for n < len(l) && l[n] >= '0' && l[n] <= '9' {
		n++
	}
	if n > 0 && strings.HasPrefix(l[n:], ". ") {
		return l[:n+2]
	}
	return ""
}

// table renders each row as a tagged paragraph: the first cell is the
// tag; the other cells follow as "header: cell" on one line, except a last
// column that explains the row ("what it does", "meaning"), which follows
// as text.
func (c *converter) table() error {
	start := c.i
	var rows [][]string
	for ; c.i < len(c.lines) && strings.HasPrefix(c.lines[c.i], "|"); c.i++ {
		rows = append(rows, cells(c.lines[c.i]))
	}
	if len(rows) < 2 || !isRule(rows[1]) {
		return fmt.Errorf("line %d: a table needs a header and a |---| line", start+1)
	}
	header, rows := rows[0], rows[2:]
	last := len(header) - 1
	explains := last > 0 && (header[last] == "what it does" || header[last] == "meaning" || len(header) == 2)
	for n, row := range rows {
		if len(row) != len(header) {
			return fmt.Errorf("line %d: %d cells, the header has %d", start+3+n, len(row), len(header))
		}
		fmt.Fprintf(c.w, ".TP\n%s\n.br\n", line(text(row[0])))
		var fields []string
		for k := 1; k < len(row); k++ {
			if k == last && explains {
				break
			}
			fields = append(fields, fmt.Sprintf(`\fI%s\fR: %s`, text(header[k]), text(row[k])))
		}
		if len(fields) > 0 {
			fmt.Fprintln(c.w, line(strings.Join(fields, "; ")))
		}
		if explains {
			if len(fields) > 0 {
				fmt.Fprintln(c.w, ".br")
			}
			fmt.Fprintln(c.w, line(text(row[last])))
		}
	}
	return nil
}

// cells splits a table row at its unescaped pipes; "\|" is a pipe.
func cells(row string) []string {
	row = strings.TrimSpace(row)
	row = strings.TrimPrefix(row, "|")
	if strings.HasSuffix(row, "|") && !strings.HasSuffix(row, `\|`) {
		row = row[:len(row)-1]
	}
	var out []string
	var cur strings.Builder
	for i := 0; i < len(row); i++ {
		switch {
		case row[i] == '\\' && i+1 < len(row) && row[i+1] == '|':
			cur.WriteByte('|')
			i++
		case row[i] == '|':
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(row[i])
		}
	}
	return append(out, strings.TrimSpace(cur.String()))
}

func isRule(row []string) bool {
	for _, c := range row {
		if strings.Trim(c, "-: ") != "" || !strings.Contains(c, "-") {
			return false
		}
	}
	return true
}
