// This file implements the package's entry points, Load and Parse, and the
// errors they return.

package conf

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is one problem in a config file.
type Error struct {
	File string // the name given to Load or Parse
	Line int    // 1-based; 0 when unknown
	Key  string // dotted path, e.g. "pool.php.workers", "http.route[0].pool"; "" for syntax errors
	Msg  string
}

// Error formats e as "FILE:LINE: KEY: msg", leaving out the parts that are
// empty or 0.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem Load or Parse found, sorted by line (problems
// without a line last). It is never empty when returned. errors.As finds it
// and, through Unwrap, its first *Error.
type Errors []*Error

// Error returns one line per problem.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the *Error values, for errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Load reads, decodes, applies defaults and validates the config file at
// path. A file that cannot be read gives the *fs.PathError from os.ReadFile
// (so errors.Is(err, fs.ErrNotExist) works); any other failure is an Errors
// listing every problem found.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse is Load on bytes already read. name is used in messages, stored in
// Config.File, and its directory is the base of relative paths.
func Parse(name string, data []byte) (*Config, error) {
	src := string(data)
	var root toml.Primitive
	md, err := toml.Decode(src, &root)
	if err != nil {
		return nil, Errors{syntaxError(name, src, err)}
	}
	d := &decoder{
		md:      md,
		file:    name,
		lines:   indexLines(src),
		defined: map[string]bool{},
		failed:  map[string]bool{},
	}
	cfg := &Config{File: name}
	d.table(root, "", reflect.ValueOf(cfg).Elem())
	for n, p := range cfg.Pool {
		p.Name = n
	}
	d.finish(cfg, baseDir(name))
	if errs := d.result(); len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// syntaxError turns an error from toml.Decode of src into an *Error. The
// parser stops at the first syntax error, so there is only one.
func syntaxError(name, src string, err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		line := pe.Position.Line
		if line < 1 || line > strings.Count(src, "\n")+1 {
			// toml v1.6.0 says line 0 for a string cut by "\r\n" on the
			// first line (FuzzConfig); the byte offset is right.
			line = strings.Count(src[:min(max(pe.Position.Start, 0), len(src))], "\n") + 1
		}
		return &Error{File: name, Line: line, Msg: "syntax error: " + pe.Message}
	}
	return &Error{File: name, Msg: err.Error()}
}

// baseDir is the directory relative paths in the file named name are
// resolved against.
func baseDir(name string) string {
	dir := filepath.Dir(name)
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// result returns the errors found, sorted by line, without those under a key
// whose value did not decode (they would only repeat it).
func (d *decoder) result() Errors {
	var out Errors
	for _, e := range d.errs {
		if !d.underFailed(e) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b *Error) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Line, b.Line)
	})
	return out
}

// underFailed reports whether e is a later error about a key (or a key under
// it) whose value already failed to decode.
func (d *decoder) underFailed(e *Error) bool {
	if len(d.failed) == 0 {
		return false
	}
	// The decode error itself is kept: it is the first error for its key.
	for _, prev := range d.errs {
		if prev == e {
			break
		}
		if prev.Key == e.Key {
			return d.failed[e.Key]
		}
	}
	for k := keyParent(e.Key); k != ""; k = keyParent(k) {
		if d.failed[k] {
			return true
		}
	}
	return false
}

// Pools returns the pools sorted by name. The slice is new on each call; the
// pools are shared and must not be modified.
func (c *Config) Pools() []*Pool {
	out := make([]*Pool, 0, len(c.Pool))
	for _, p := range c.Pool {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Pool) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Summary describes c in one line for `fcgivisor check`:
//
//	fcgivisor.toml: ok: 2 pools (go, php), 3 routes, listen 127.0.0.1:8080, admin unix:/run/fcgivisor/admin.sock, status 0.0.0.0:9253
func (c *Config) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ok: %s", c.File, plural(len(c.Pool), "pool"))
	if len(c.Pool) > 0 {
		names := make([]string, 0, len(c.Pool))
		for _, p := range c.Pools() {
			names = append(names, p.Name)
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(names, ", "))
	}
	fmt.Fprintf(&b, ", %s", plural(len(c.HTTP.Routes), "route"))
	if len(c.HTTP.Listen) > 0 {
		fmt.Fprintf(&b, ", listen %s", strings.Join(c.HTTP.Listen, ", "))
	} else {
		b.WriteString(", no http listen")
	}
	fmt.Fprintf(&b, ", admin %s", c.Admin.Listen)
	if c.Status.Listen != "" {
		fmt.Fprintf(&b, ", status %s", c.Status.Listen)
	}
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// AdminAddress finds the admin.listen address in a config file even when
// the file is otherwise invalid, so that `fcgivisor reload` can reach the
// running instance and hand it the file to refuse. Only [server]
// runtime_dir and [admin] listen are read, leniently.
func AdminAddress(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var f struct {
		Server struct {
			RuntimeDir string `toml:"runtime_dir"`
		} `toml:"server"`
		Admin struct {
			Listen string `toml:"listen"`
		} `toml:"admin"`
	}
	if _, err := toml.Decode(string(data), &f); err != nil {
		return "", fmt.Errorf("%s: cannot find admin.listen: %w", path, err)
	}
	base := baseDir(path)
	if f.Admin.Listen != "" {
		return resolveAddr(base, f.Admin.Listen), nil
	}
	dir := f.Server.RuntimeDir
	if dir == "" {
		dir = defaultRuntimeDir
	}
	return "unix:" + filepath.Join(resolve(base, dir), "admin.sock"), nil
}
