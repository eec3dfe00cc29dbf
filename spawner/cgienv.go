package spawner

import (
	"strings"

	"github.com/fcgivisor/fcgivisor/fastcgi"
)

// CGIEnv is the environment of a CGI run: the request's meta-variables
// (vars, as NAME=value, in order), then extra ("K=V") for the names they
// do not set. A name an environment cannot carry (empty, or with "=" or
// NUL), or a value with NUL, is left out.
func CGIEnv(vars []fastcgi.Param, extra []string) []string {
	env := make([]string, 0, len(vars)+len(extra))
	set := make(map[string]bool, len(vars))
	for _, v := range vars {
		if v.Name == "" || strings.ContainsAny(v.Name, "=\x00") || strings.ContainsRune(v.Value, 0) {
			continue
		}
		env = append(env, v.Name+"="+v.Value)
		set[v.Name] = true
	}
	for _, kv := range extra {
		if k, _, _ := strings.Cut(kv, "="); !set[k] {
			env = append(env, kv)
		}
	}
	return env
}
