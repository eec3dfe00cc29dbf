package conf

import "testing"

func TestLineIndex(t *testing.T) {
	src := `# comment [not.a.table]
title = "x" # key = 1
s = """
not = "a key"
[not.a.table]
"""
lit = '''
[[neither]]
'''
'quoted key' = 1
"dq.key" = { inner = 1, "a b" = { deep = true } }
dotted . path = "v"
arr = [
  # comment, with a comma
  "a,]",   # 0
  [1, 2],  # 1
  { k = "}" },
  1979-05-27 07:32:00Z,
]

[http]
listen = ["a", "b"]

[[http.route]]
pool = "p"
[http.route.sub]
x = 1

[[http.route]] # second
  pool = "q"

[pool.php.env]
A = "1"

[pool.php]
command = ["x"]
`
	ix := indexLines(src)
	for key, want := range map[string]int{
		"title":                 2,
		"s":                     3,
		"not":                   0,
		"lit":                   7,
		"neither":               0,
		`"quoted key"`:          10,
		`"dq.key"`:              11,
		`"dq.key".inner`:        11,
		`"dq.key"."a b".deep`:   11,
		"dotted.path":           12,
		"dotted":                12,
		"arr":                   13,
		"arr[0]":                15,
		"arr[1]":                16,
		"arr[1][1]":             16,
		"arr[2]":                17,
		"arr[2].k":              17,
		"arr[3]":                18,
		"arr[4]":                13, // no such element: falls back to arr
		"http":                  21,
		"http.listen":           22,
		"http.listen[1]":        22,
		"http.route":            24,
		"http.route[0]":         24,
		"http.route[0].pool":    25,
		"http.route[0].sub":     26,
		"http.route[0].sub.x":   27,
		"http.route[1]":         29,
		"http.route[1].pool":    30,
		"http.route[1].missing": 29,
		"pool":                  32,
		"pool.php":              35, // the explicit header wins over the implicit [pool.php.env]
		"pool.php.env":          32,
		"pool.php.env.A":        33,
		"pool.php.command":      36,
		"pool.go.command":       32, // falls back to pool
		"nowhere":               0,
	} {
		if got := ix.line(key); got != want {
			t.Errorf("line(%s) = %d, want %d", key, got, want)
		}
	}
}

func TestKeyParent(t *testing.T) {
	for in, want := range map[string]string{
		"http.route[2].pool":    "http.route[2]",
		"http.route[2]":         "http.route",
		"http.route":            "http",
		"http":                  "",
		`pool.php.env."A.B[1]"`: "pool.php.env",
		`pool."a\"b".x`:         `pool."a\"b"`,
		"a[0][1]":               "a[0]",
	} {
		if got := keyParent(in); got != want {
			t.Errorf("keyParent(%s) = %s, want %s", in, got, want)
		}
	}
}
