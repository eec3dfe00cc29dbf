// This file implements Dump: the effective config written back as TOML,
// every default filled in (fcgivisor check --dump, issue 13).

package conf

import (
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Dump writes c as a TOML file that Load reads back into an equal Config
// (but File): each table with every key and its effective value, the
// defaults Load filled in included, paths and Unix addresses as Load
// resolved them (absolute), durations as Go writes them ("1m30s"), sizes
// and file modes as the strings Load parses ("64MiB", "0660").
//
// Left out are the keys Load would refuse where they stand, which hold
// their zero value in c: a route's keys that do not apply to its kind
// (script on a cgi route, status on a pool route ...), suffix and index
// beside script, and listen_mode, listen_owner and listen_group at their
// defaults in a table without a Unix socket. So are env, inherit_env,
// deny and allowed_clients when absent from the file (nil): writing them
// empty would read back as empty, not absent.
func (c *Config) Dump(w io.Writer) error {
	var d dumper
	d.table("server", reflect.ValueOf(c.Server), nil)
	d.table("admin", reflect.ValueOf(c.Admin), nil)
	st := c.Status
	d.table("status", reflect.ValueOf(st), listenPerms(isUnix(st.Listen), st.ListenMode, st.ListenOwner, st.ListenGroup))
	h := c.HTTP
	d.table("http", reflect.ValueOf(h), listenPerms(slices.ContainsFunc(h.Listen, isUnix), h.ListenMode, h.ListenOwner, h.ListenGroup))
	for _, r := range h.Routes {
		d.table("[http.route]", reflect.ValueOf(*r), routeOmits(r))
	}
	if c.Pool != nil && len(c.Pool) == 0 {
		d.b.WriteString("\n[pool]\n") // written so, but empty: not nil
	}
	for _, p := range c.Pools() {
		d.table("pool."+toml.Key{p.Name}.String(), reflect.ValueOf(*p), listenPerms(isUnix(p.Listen), p.ListenMode, p.ListenOwner, p.ListenGroup))
	}
	_, err := io.WriteString(w, d.b.String())
	return err
}

// dumper builds the TOML text.
type dumper struct{ b strings.Builder }

// table writes the header [name] and the keys of the struct v in field
// order, but those omit names and those holding tables ([[http.route]]:
// written by Dump, after all of [http]). Dump passes "[http.route]" as
// name for an element of [[http.route]].
func (d *dumper) table(name string, v reflect.Value, omit func(key string) bool) {
	if d.b.Len() > 0 {
		d.b.WriteByte('\n')
	}
	d.b.WriteString("[" + name + "]\n")
	byName, names := tomlFields(v.Type())
	for _, k := range names {
		f := v.Field(byName[k])
		switch {
		case omit != nil && omit(k):
		case (f.Kind() == reflect.Slice || f.Kind() == reflect.Map) && f.IsNil():
		case holdsTables(f.Type()) && f.Len() == 0:
			fmt.Fprintf(&d.b, "%s = []\n", toml.Key{k}.String()) // route = []: empty, not nil
		case holdsTables(f.Type()):
		default:
			fmt.Fprintf(&d.b, "%s = %s\n", toml.Key{k}.String(), dumpValue(f))
		}
	}
}

// holdsTables reports whether a field of type t is written as tables of
// its own: a slice or map of struct pointers.
func holdsTables(t reflect.Type) bool {
	if t.Kind() != reflect.Slice && t.Kind() != reflect.Map {
		return false
	}
	e := t.Elem()
	return e.Kind() == reflect.Pointer && e.Elem().Kind() == reflect.Struct
}

// dumpValue writes v as a TOML value that the decoder reads back as v.
func dumpValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return quote(dumpDuration(x))
	case FileMode:
		return quote(x.String())
	case Size:
		return quote(x.String())
	}
	switch v.Kind() {
	case reflect.String:
		return quote(v.String())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Slice:
		elems := make([]string, v.Len())
		for i := range elems {
			elems[i] = dumpValue(v.Index(i))
		}
		return "[" + strings.Join(elems, ", ") + "]"
	case reflect.Map:
		keys := slices.Sorted(maps.Keys(v.Interface().(map[string]string)))
		if len(keys) == 0 {
			return "{}"
		}
		kv := make([]string, len(keys))
		for i, k := range keys {
			kv[i] = toml.Key{k}.String() + " = " + quote(v.MapIndex(reflect.ValueOf(k)).String())
		}
		return "{ " + strings.Join(kv, ", ") + " }"
	}
	panic(fmt.Sprintf("conf: Dump cannot write a %s", v.Type())) // a field type added without its case here
}

// dumpDuration is d as time.ParseDuration reads it, without the zero
// units Duration.String adds: "1h", "1h30m", "2m", "1m0.5s", "250ms".
func dumpDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// quote writes s as a TOML basic string. Bytes other than control
// characters, '"' and '\' are copied as they are (the file was UTF-8).
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func isUnix(addr string) bool {
	network, _, err := ParseAddr(addr)
	return err == nil && network == "unix"
}

// listenPerms omits listen_mode, listen_owner and listen_group at their
// defaults when the table has no Unix socket: Load refuses them there
// (unixOnly), and a default is what leaving them out gives.
func listenPerms(unix bool, mode FileMode, owner, group string) func(string) bool {
	return func(k string) bool {
		switch k {
		case "listen_mode":
			return !unix && mode == defaultListenMode
		case "listen_owner":
			return !unix && owner == ""
		case "listen_group":
			return !unix && group == ""
		}
		return false
	}
}

// routeOmits omits the keys of r that Load refuses for its kind
// (decoder.routeKeys, decoder.poolRoute), and the other targets.
func routeOmits(r *Route) func(string) bool {
	keys := []string{"prefix", "suffix"}
	switch {
	case r.Pool != "" && r.Script != "":
		keys = []string{"prefix", "pool", "script", "env"}
	case r.Pool != "":
		keys = append(keys, "pool", "script", "index", "env")
	case r.CGI != "":
		keys = append(keys, "cgi", "timeout", "max_concurrent", "user", "group", "env")
	case r.Static != "":
		keys = append(keys, "static", "index", "deny", "user")
	default:
		keys = append(keys, "status")
	}
	return func(k string) bool { return !slices.Contains(keys, k) }
}
