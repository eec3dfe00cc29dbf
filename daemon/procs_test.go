package daemon

import "testing"

func TestProcs(t *testing.T) {
	for _, c := range []struct {
		key  int
		env  string
		cpus int
		want int
	}{
		{0, "", 1, 1},
		{0, "", 2, 1},
		{0, "", 3, 2},
		{0, "", 4, 2},
		{0, "", 16, 8},
		{0, "", 0, 1}, // never 0: that would mean "leave it"
		{0, "3", 16, 0},
		{6, "3", 16, 6},
		{1, "", 64, 1},
	} {
		if got := Procs(c.key, c.env, c.cpus); got != c.want {
			t.Errorf("Procs(max_procs %d, GOMAXPROCS %q, %d CPUs) = %d, want %d", c.key, c.env, c.cpus, got, c.want)
		}
	}
}
