package fastcgi

import (
	"io"
	"testing"
)

// TestBufferedIgnoresPadding: once a record's content was read, its
// padding does not count as answer waiting: a worker that pads its
// records (libfcgi, PHP, net/http/fcgi) and pauses after a chunk must
// see the chunk flushed to the client.
func TestBufferedIgnoresPadding(t *testing.T) {
	more := make(chan struct{})
	c := startApp(t, func(a *fakeApp) error {
		if _, _, _, err := a.readRequest(); err != nil {
			return err
		}
		if err := a.write(makeRecord(typeStdout, 1, []byte("partial"), 1)); err != nil {
			return err
		}
		<-more
		return a.write(stdout("rest"), okEnd())
	})
	resp, err := c.Do(&Request{Params: []Param{{"REQUEST_METHOD", "GET"}}, KeepConn: true})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := resp.Read(buf)
	if err != nil || string(buf[:n]) != "partial" {
		t.Fatalf("Read = %q, %v; want \"partial\"", buf[:n], err)
	}
	if b := resp.Buffered(); b != 0 {
		t.Errorf("Buffered = %d with only the record's padding left, want 0", b)
	}
	close(more)
	rest, err := io.ReadAll(resp)
	if err != nil || string(rest) != "rest" {
		t.Fatalf("the rest: %q, %v", rest, err)
	}
	if !resp.Close() {
		t.Error("not reusable after a complete answer")
	}
}
