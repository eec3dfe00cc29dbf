// This file implements a best-effort index from key paths to source lines.
// BurntSushi/toml keeps key positions to itself (and keys every element of an
// array of tables under one name), so errors found after decoding would have
// no line without it.

package conf

import (
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// keyChild returns the path of key k inside table path p, quoting k as TOML
// would ("pool.php.env.\"A=B\"").
func keyChild(p, k string) string {
	q := toml.Key{k}.String()
	if p == "" {
		return q
	}
	return p + "." + q
}

// keyElem returns the path of element i of the array at path p: "http.route[2]".
func keyElem(p string, i int) string {
	return p + "[" + strconv.Itoa(i) + "]"
}

// keyParent returns the path one step up from key: "http.route[2]" for
// "http.route[2].pool", "http.route" for "http.route[2]", "" at the top. It
// reads the syntax keyChild and keyElem write.
func keyParent(key string) string {
	last := 0 // start of the last step
	for i := 0; i < len(key); {
		switch key[i] {
		case '[':
			last = i
			for i < len(key) && key[i] != ']' {
				i++
			}
			i++
		case '.':
			last = i
			i++
		case '"':
			i++
			for i < len(key) && key[i] != '"' {
				if key[i] == '\\' {
					i++
				}
				i++
			}
			i++
		default:
			i++
		}
	}
	return key[:last]
}

// lineIndex maps key paths (as keyChild and keyElem write them) to 1-based
// lines. Keys written in the file, table headers and array elements are
// explicit; tables that exist only as a prefix of a dotted key or header
// ("pool" in [pool.php]) are implicit and give way to an explicit line.
type lineIndex struct {
	explicit map[string]int
	implicit map[string]int
}

// line returns the line of key, or of its closest ancestor in the index, or
// 0.
func (ix lineIndex) line(key string) int {
	for key != "" {
		if l, ok := ix.explicit[key]; ok {
			return l
		}
		if l, ok := ix.implicit[key]; ok {
			return l
		}
		key = keyParent(key)
	}
	return 0
}

// indexLines scans src, which the TOML parser has accepted, and records the
// line of every table header, key and array element. It understands comments,
// the four string forms, multi-line arrays and inline tables; on anything it
// does not understand it skips ahead, never failing.
func indexLines(src string) lineIndex {
	s := &lineScanner{
		src:    src,
		ix:     lineIndex{explicit: map[string]int{}, implicit: map[string]int{}},
		arrays: map[string]int{},
	}
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			s.newlines = append(s.newlines, i)
		}
	}
	table := ""
	for {
		s.skipSpace(true)
		if s.pos >= len(src) {
			break
		}
		start := s.pos
		if src[s.pos] == '[' {
			double := strings.HasPrefix(src[s.pos:], "[[")
			if double {
				s.pos += 2
			} else {
				s.pos++
			}
			table = s.header(s.key(), double, start)
		} else {
			segs := s.key()
			s.skipSpace(false)
			if s.pos < len(src) && src[s.pos] == '=' {
				s.pos++
				s.value(s.join(table, segs, start))
			}
		}
		s.skipLine()
		if s.pos == start {
			s.pos++ // never loop on input we do not understand
		}
	}
	return s.ix
}

type lineScanner struct {
	src      string
	pos      int
	newlines []int // offsets of '\n', for lineAt
	ix       lineIndex
	arrays   map[string]int // array-of-tables path -> elements seen so far
}

func (s *lineScanner) lineAt(pos int) int {
	return sort.SearchInts(s.newlines, pos) + 1
}

func (s *lineScanner) record(key string, pos int, explicit bool) {
	m := s.ix.implicit
	if explicit {
		m = s.ix.explicit
	}
	if _, ok := m[key]; !ok {
		m[key] = s.lineAt(pos)
	}
}

// header records a [table] or [[array.table]] header starting at pos and
// returns the path of the table it opens. A step through an array of tables
// means its last element, as in TOML.
func (s *lineScanner) header(segs []string, double bool, pos int) string {
	cur := ""
	for i, seg := range segs {
		cur = keyChild(cur, seg)
		last := i == len(segs)-1
		if !last {
			if n, ok := s.arrays[cur]; ok {
				cur = keyElem(cur, n-1)
			}
			s.record(cur, pos, false)
			continue
		}
		if double {
			n := s.arrays[cur]
			s.arrays[cur] = n + 1
			s.record(cur, pos, true)
			cur = keyElem(cur, n)
		}
		s.record(cur, pos, true)
	}
	return cur
}

// join records a (possibly dotted) key at pos inside table and returns its
// path.
func (s *lineScanner) join(table string, segs []string, pos int) string {
	cur := table
	for i, seg := range segs {
		cur = keyChild(cur, seg)
		s.record(cur, pos, i == len(segs)-1)
	}
	return cur
}

// skipSpace skips blanks and comments, and newlines too when nl is set.
func (s *lineScanner) skipSpace(nl bool) {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
			s.pos++
		case '\n':
			if !nl {
				return
			}
			s.pos++
		case '#':
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		default:
			return
		}
	}
}

// skipLine moves past the end of the current line.
func (s *lineScanner) skipLine() {
	for s.pos < len(s.src) && s.src[s.pos] != '\n' {
		s.pos++
	}
	if s.pos < len(s.src) {
		s.pos++
	}
}

func isBare(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// key reads a dotted key: bare, "basic" and 'literal' parts separated by dots.
func (s *lineScanner) key() []string {
	var segs []string
	for {
		s.skipSpace(false)
		if s.pos >= len(s.src) {
			return segs
		}
		switch c := s.src[s.pos]; {
		case c == '"':
			start := s.pos
			s.basicString()
			raw := s.src[start:s.pos]
			if v, err := strconv.Unquote(raw); err == nil {
				segs = append(segs, v)
			} else {
				segs = append(segs, strings.Trim(raw, `"`))
			}
		case c == '\'':
			start := s.pos + 1
			s.literalString()
			segs = append(segs, strings.TrimSuffix(s.src[start:s.pos], "'"))
		case isBare(c):
			start := s.pos
			for s.pos < len(s.src) && isBare(s.src[s.pos]) {
				s.pos++
			}
			segs = append(segs, s.src[start:s.pos])
		default:
			return segs
		}
		s.skipSpace(false)
		if s.pos >= len(s.src) || s.src[s.pos] != '.' {
			return segs
		}
		s.pos++
	}
}

// value reads one value whose path is key, recording the elements of arrays
// and the keys of inline tables.
func (s *lineScanner) value(key string) {
	s.skipSpace(false)
	if s.pos >= len(s.src) {
		return
	}
	switch s.src[s.pos] {
	case '"':
		if strings.HasPrefix(s.src[s.pos:], `"""`) {
			s.multiline(`"""`, true)
		} else {
			s.basicString()
		}
	case '\'':
		if strings.HasPrefix(s.src[s.pos:], `'''`) {
			s.multiline(`'''`, false)
		} else {
			s.literalString()
		}
	case '[':
		s.pos++
		for i := 0; ; {
			s.skipSpace(true)
			if s.pos >= len(s.src) {
				return
			}
			switch s.src[s.pos] {
			case ']':
				s.pos++
				return
			case ',':
				s.pos++
				i++
				continue
			}
			start := s.pos
			elem := keyElem(key, i)
			s.record(elem, start, true)
			s.value(elem)
			if s.pos == start {
				s.pos++
			}
		}
	case '{':
		s.pos++
		for {
			s.skipSpace(true) // TOML 1.1 allows newlines in inline tables
			if s.pos >= len(s.src) {
				return
			}
			switch s.src[s.pos] {
			case '}':
				s.pos++
				return
			case ',':
				s.pos++
				continue
			}
			start := s.pos
			segs := s.key()
			s.skipSpace(false)
			if s.pos < len(s.src) && s.src[s.pos] == '=' {
				s.pos++
				s.value(s.join(key, segs, start))
			}
			if s.pos == start {
				s.pos++
			}
		}
	default:
		// A number, boolean or date: up to the next delimiter. A date may
		// hold a space ("1979-05-27 07:32:00Z"), so blanks do not end it.
		for s.pos < len(s.src) && !strings.ContainsRune(",]}#\n", rune(s.src[s.pos])) {
			s.pos++
		}
	}
}

// basicString skips a "..." string, honouring backslash escapes.
func (s *lineScanner) basicString() {
	s.pos++
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case '\\':
			s.pos += 2
		case '"':
			s.pos++
			return
		case '\n':
			return
		default:
			s.pos++
		}
	}
}

// literalString skips a '...' string.
func (s *lineScanner) literalString() {
	s.pos++
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case '\'':
			s.pos++
			return
		case '\n':
			return
		default:
			s.pos++
		}
	}
}

// multiline skips a multi-line string, basic or literal (delim is three
// double or three single quotes). Up to two quotes right
// before the closing delimiter belong to the string.
func (s *lineScanner) multiline(delim string, escapes bool) {
	s.pos += 3
	for s.pos < len(s.src) {
		if escapes && s.src[s.pos] == '\\' {
			s.pos += 2
			continue
		}
		if strings.HasPrefix(s.src[s.pos:], delim) {
			s.pos += 3
			for extra := 0; extra < 2 && s.pos < len(s.src) && s.src[s.pos] == delim[0]; extra++ {
				s.pos++
			}
			return
		}
		s.pos++
	}
}
