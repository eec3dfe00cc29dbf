package daemon

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fcgivisor/fcgivisor/fastcgi"
)

// fcgiConn dials a pool's public socket.
func fcgiConn(t *testing.T, path string) (*fastcgi.Conn, error) {
	t.Helper()
	nc, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return fastcgi.NewConn(nc), nil
}

// fcgiGet runs one request on c and returns the body the worker wrote
// after its header.
func fcgiGet(t *testing.T, c *fastcgi.Conn, keep bool) (string, error) {
	t.Helper()
	resp, err := c.Do(&fastcgi.Request{KeepConn: keep, Params: []fastcgi.Param{
		{Name: "REQUEST_METHOD", Value: "GET"}, {Name: "SERVER_PROTOCOL", Value: "HTTP/1.1"},
		{Name: "REQUEST_URI", Value: "/x"}, {Name: "SCRIPT_NAME", Value: "/x"}, {Name: "HTTP_HOST", Value: "test"},
	}})
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp)
	resp.Close()
	_, body, _ := strings.Cut(string(b), "\r\n\r\n")
	return body, err
}

// publicGet asks one request on a new connection to path.
func publicGet(t *testing.T, path string) (string, error) {
	t.Helper()
	c, err := fcgiConn(t, path)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return fcgiGet(t, c, false)
}

// TestPublicSockets: a pool's listen socket is served before start
// returns; a reload keeps it by address (a kept connection then reaches
// the new generation), moves a changed address, opens a new pool's and
// closes a removed pool's; a reload whose new address cannot be opened is
// refused with nothing changed.
func TestPublicSockets(t *testing.T) {
	f := newFixture(t)
	aSock, bSock, bMoved, cSock := f.sock("a-pub"), f.sock("b-pub"), f.sock("b-pub2"), f.sock("c-pub")
	f.write(nil, pool{name: "a", greeting: "a1", listen: aSock}, pool{name: "b", greeting: "b1", listen: bSock})
	in := f.start()
	for path, want := range map[string]string{aSock: " a1", bSock: " b1"} {
		if body, err := publicGet(t, path); err != nil || !strings.HasSuffix(body, want) {
			t.Fatalf("%s: %q, %v; want a body ending %q", path, body, err, want)
		}
	}
	kept, err := fcgiConn(t, aSock)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	if body, err := fcgiGet(t, kept, true); err != nil || !strings.HasSuffix(body, " a1") {
		t.Fatalf("kept connection: %q, %v", body, err)
	}

	// a: new generation, same socket; b: moved; c: added.
	f.write(nil, pool{name: "a", greeting: "a2", listen: aSock}, pool{name: "b", greeting: "b1", listen: bMoved},
		pool{name: "c", greeting: "c1", listen: cSock})
	if err := in.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, f.log)
	}
	if body, err := fcgiGet(t, kept, true); err != nil || !strings.HasSuffix(body, " a2") {
		t.Errorf("kept connection after the reload: %q, %v; want the new generation (a2)", body, err)
	}
	for path, want := range map[string]string{aSock: " a2", bMoved: " b1", cSock: " c1"} {
		if body, err := publicGet(t, path); err != nil || !strings.HasSuffix(body, want) {
			t.Errorf("%s after the reload: %q, %v; want a body ending %q", path, body, err, want)
		}
	}
	if _, err := os.Stat(bSock); !os.IsNotExist(err) {
		t.Errorf("b's old socket %s: %v, want it removed", bSock, err)
	}
	if _, err := publicGet(t, bSock); err == nil {
		t.Errorf("b's old address still serves")
	}

	// c removed; and a reload to an address that cannot be opened is
	// refused: every socket stays as it was.
	f.write(nil, pool{name: "a", greeting: "a2", listen: aSock}, pool{name: "b", greeting: "b1", listen: bMoved})
	if err := in.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, f.log)
	}
	if _, err := os.Stat(cSock); !os.IsNotExist(err) {
		t.Errorf("removed pool c's socket %s: %v, want it removed", cSock, err)
	}
	f.write(nil, pool{name: "a", greeting: "a3", listen: f.dir + "/missing/a.sock"}, pool{name: "b", greeting: "b1", listen: bMoved})
	if err := in.reload(); err == nil || !strings.Contains(err.Error(), "pool.a.listen") {
		t.Errorf("reload to a listen path in a missing directory: %v, want an error naming pool.a.listen", err)
	}
	if body, err := publicGet(t, aSock); err != nil || !strings.HasSuffix(body, " a2") {
		t.Errorf("a after the refused reload: %q, %v; want a2", body, err)
	}
}
