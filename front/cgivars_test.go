package front

import (
	"net/http"
	"testing"
)

// The table of common header variables holds what building them gives,
// under the names as net/http canonicalizes them (the only ones it meets).
func TestHeaderVarsTable(t *testing.T) {
	for k, v := range headerVars {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("headerVars key %q is not canonical (%q): never looked up", k, c)
		}
		if b := buildHeaderVar(k); b != v {
			t.Errorf("headerVars[%q] = %q, built %q", k, v, b)
		}
	}
	if got := headerVar("X-Custom-Thing"); got != "HTTP_X_CUSTOM_THING" {
		t.Errorf("headerVar(X-Custom-Thing) = %q", got)
	}
}
