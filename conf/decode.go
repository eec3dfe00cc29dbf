// This file implements decoding: walking the parsed TOML one key at a time
// into the Config structs, so that each bad value is reported with its own
// key and line and does not hide the next one.

package conf

import (
	"encoding"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// decoder holds the state of one Parse call.
//
// toml.Decode into the structs would stop at the first bad value, match
// field names case-insensitively ("Workers" would set workers), and its
// MetaData.Undecoded names every element of an array of tables alike
// (http.route.pool), which loses the line. So the file is decoded into one
// toml.Primitive, and the decoder walks it: tables are matched against the
// struct tags exactly, a key with no field is reported as unknown, and each
// value is decoded on its own with MetaData.PrimitiveDecode, which reports
// UnmarshalText and duration errors as toml.ParseError.
type decoder struct {
	md    toml.MetaData
	file  string
	lines lineIndex
	errs  []*Error

	// defined holds the paths of the keys present in the file, so that
	// defaults go only to absent keys.
	defined map[string]bool
	// failed holds the paths of keys whose value did not decode; they are
	// treated as absent, and later errors under them are dropped.
	failed map[string]bool
}

func (d *decoder) errorAt(key string, line int, msg string) {
	if line == 0 {
		line = d.lines.line(key)
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: msg})
}

func (d *decoder) errorf(key, format string, args ...any) {
	d.errorAt(key, 0, fmt.Sprintf(format, args...))
}

// fail reports that the value at key could not be decoded.
func (d *decoder) fail(key string, line int, msg string) {
	d.failed[key] = true
	delete(d.defined, key)
	d.errorAt(key, line, msg)
}

// isSet reports whether key was in the file (and decoded).
func (d *decoder) isSet(key string) bool { return d.defined[key] }

// raw returns the plain Go value of p: string, int64, float64, bool,
// time.Time, []any, map[string]any or []map[string]any.
func (d *decoder) raw(p toml.Primitive) any {
	var v any
	if err := d.md.PrimitiveDecode(p, &v); err != nil {
		return nil
	}
	return v
}

// describe names the TOML type of a raw value for messages, with the value
// itself when it is short.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			return "a string"
		}
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the float %v", v)
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case time.Time:
		return "a datetime"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

func (d *decoder) mismatch(key string, raw any, want string) bool {
	d.fail(key, 0, fmt.Sprintf("expected %s, got %s", want, describe(raw)))
	return false
}

func tomlFields(t reflect.Type) (byName map[string]int, names []string) {
	byName = map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" || !t.Field(i).IsExported() {
			continue
		}
		byName[name] = i
		names = append(names, name)
	}
	return byName, names
}

// kids returns the entries of the TOML table p (raw is its value); a value
// that is not a table is reported at key.
func (d *decoder) kids(p toml.Primitive, key string, raw any) (map[string]toml.Primitive, bool) {
	if _, ok := raw.(map[string]any); !ok {
		return nil, d.mismatch(key, raw, "a table")
	}
	var kids map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(p, &kids); err != nil {
		d.fail(key, 0, err.Error())
		return nil, false
	}
	return kids, true
}

// table decodes the TOML table p into the struct v.
func (d *decoder) table(p toml.Primitive, key string, v reflect.Value) bool {
	kids, ok := d.kids(p, key, d.raw(p))
	if !ok {
		return false
	}
	fields, names := tomlFields(v.Type())
	for _, k := range slices.Sorted(maps.Keys(kids)) {
		ck := keyChild(key, k)
		i, ok := fields[k]
		if !ok {
			msg := "unknown key"
			if s := suggest(k, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errorf(ck, "%s", msg)
			continue
		}
		d.defined[ck] = true
		d.value(kids[k], ck, v.Field(i))
	}
	return true
}

// value decodes p into v, whose path is key. It reports false when the
// value (or part of it) did not decode. It picks the decoding by v's type;
// each kind of value has its own method below.
func (d *decoder) value(p toml.Primitive, key string, v reflect.Value) bool {
	t := v.Type()
	raw := d.raw(p)
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return d.duration(p, key, v, raw)
	case t == reflect.TypeFor[FileMode]():
		return d.fileMode(p, key, v, raw)
	case t == reflect.TypeFor[LogTarget]():
		return d.logTarget(key, v, raw)
	case reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()):
		return d.text(p, key, v, raw)
	case t.Kind() == reflect.Struct:
		return d.table(p, key, v)
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		nv := reflect.New(t.Elem())
		ok := d.table(p, key, nv.Elem())
		v.Set(nv)
		return ok
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		return d.mapValue(p, key, v, raw)
	case t.Kind() == reflect.Slice:
		return d.array(p, key, v, raw)
	}
	return d.plain(p, key, v, raw)
}

// duration decodes a time.Duration, which must be a string: toml reads an
// integer as nanoseconds, so "30" would be 30ns.
func (d *decoder) duration(p toml.Primitive, key string, v reflect.Value, raw any) bool {
	if _, ok := raw.(string); !ok {
		return d.mismatch(key, raw, `a duration string such as "30s"`)
	}
	return d.leaf(p, key, v)
}

// fileMode decodes a FileMode, which must be a quoted string: an integer
// cannot tell 0o660 from 660.
func (d *decoder) fileMode(p toml.Primitive, key string, v reflect.Value, raw any) bool {
	switch raw.(type) {
	case string:
	case int64:
		d.fail(key, 0, `must be a quoted octal string such as "0660", not an integer (0o660 and 660 would be different numbers)`)
		return false
	default:
		return d.mismatch(key, raw, `a quoted octal string such as "0660"`)
	}
	return d.leaf(p, key, v)
}

// logTarget decodes a LogTarget: a string, or the boolean http.access_log
// was before it took a target (true: stderr, false: none).
func (d *decoder) logTarget(key string, v reflect.Value, raw any) bool {
	switch raw := raw.(type) {
	case string:
		v.SetString(raw)
	case bool:
		if raw {
			v.SetString(string(LogStderr))
		}
	default:
		return d.mismatch(key, raw, `"stderr", a file path, or "" (none)`)
	}
	return true
}

// text decodes a type with UnmarshalText (Size) from a string or an
// integer.
func (d *decoder) text(p toml.Primitive, key string, v reflect.Value, raw any) bool {
	switch raw.(type) {
	case string, int64:
		return d.leaf(p, key, v)
	}
	return d.mismatch(key, raw, "a string")
}

// mapValue decodes a table into a map with string keys (env), one entry
// at a time.
func (d *decoder) mapValue(p toml.Primitive, key string, v reflect.Value, raw any) bool {
	t := v.Type()
	kids, ok := d.kids(p, key, raw)
	if !ok {
		return false
	}
	m := reflect.MakeMapWithSize(t, len(kids))
	for _, k := range slices.Sorted(maps.Keys(kids)) {
		ck := keyChild(key, k)
		d.defined[ck] = true
		ev := reflect.New(t.Elem()).Elem()
		// A value that failed stays in the map (as decoded so far), so
		// that a route naming this pool does not also report "no pool".
		ok = d.value(kids[k], ck, ev) && ok
		m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev)
	}
	v.Set(m)
	return ok
}

// array decodes an array, or an array of tables, into a slice, one element
// at a time.
func (d *decoder) array(p toml.Primitive, key string, v reflect.Value, raw any) bool {
	t := v.Type()
	want := "an array"
	if t.Elem().Kind() == reflect.Pointer && t.Elem().Elem().Kind() == reflect.Struct {
		want = "an array of tables"
	}
	switch raw.(type) {
	case []any, []map[string]any:
	default:
		return d.mismatch(key, raw, want)
	}
	var elems []toml.Primitive
	if err := d.md.PrimitiveDecode(p, &elems); err != nil {
		d.fail(key, 0, err.Error())
		return false
	}
	s := reflect.MakeSlice(t, len(elems), len(elems))
	ok := true
	for i := range elems {
		ek := keyElem(key, i)
		d.defined[ek] = true
		ok = d.value(elems[i], ek, s.Index(i)) && ok
	}
	v.Set(s)
	return ok
}

// plain decodes a string, boolean or integer. It checks the TOML type
// here, for a clear message and because toml would put a negative integer
// into a uint64 unchecked.
func (d *decoder) plain(p toml.Primitive, key string, v reflect.Value, raw any) bool {
	switch v.Type().Kind() {
	case reflect.String:
		if _, ok := raw.(string); !ok {
			return d.mismatch(key, raw, "a string")
		}
	case reflect.Bool:
		if _, ok := raw.(bool); !ok {
			return d.mismatch(key, raw, "a boolean (true or false)")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if _, ok := raw.(int64); !ok {
			return d.mismatch(key, raw, "an integer")
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := raw.(int64)
		if !ok {
			return d.mismatch(key, raw, "an integer")
		}
		if n < 0 {
			d.fail(key, 0, fmt.Sprintf("must not be negative, got %d", n))
			return false
		}
	}
	return d.leaf(p, key, v)
}

// leaf decodes a single value with the toml library, turning its
// toml.ParseError (from UnmarshalText, duration parsing or a range check)
// into an *Error for key.
func (d *decoder) leaf(p toml.Primitive, key string, v reflect.Value) bool {
	err := d.md.PrimitiveDecode(p, v.Addr().Interface())
	if err == nil {
		return true
	}
	v.Set(reflect.Zero(v.Type()))
	msg, line := err.Error(), 0
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg = pe.Message
		// Our index knows which element of an array of tables this
		// is; toml's position does not, so it is only the fallback.
		if d.lines.line(key) == 0 {
			line = pe.Position.Line
		}
	}
	if v.Type() == reflect.TypeFor[time.Duration]() {
		msg += ` (want a number with a unit: ns, us, ms, s, m or h, e.g. "30s" or "1m30s")`
	}
	d.fail(key, line, msg)
	return false
}

// suggest returns the name in names closest to k, if it is close enough to
// be a likely typo: equal but for case, or within two edits.
func suggest(k string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if strings.EqualFold(n, k) {
			return n
		}
		if dist := editDistance(strings.ToLower(k), n); dist < bestDist && dist < len(n)/2 {
			best, bestDist = n, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
