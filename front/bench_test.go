package front

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fcgivisor/fcgivisor/fastcgi"
)

// Benchmarks of the front's hot path (issue 14, "measure first"). Run with
//
//	go test -run XXX -bench . -benchmem ./front
//
// Their figures are in bench/README.md, "Go benchmarks of the hot path".

// benchRequest is r as the front's server hands it over: a local address
// in its context, RemoteAddr set.
func benchRequest(r *http.Request) *request {
	la := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	r = r.WithContext(withServerAddr(r.Context(), la))
	r.RemoteAddr = "127.0.0.1:54321"
	return &request{
		r:              r,
		scriptName:     "/index.php",
		documentRoot:   "/srv/www",
		contentLength:  r.ContentLength,
		serverSoftware: "fcgivisor/bench",
	}
}

// BenchmarkMetaVarsGET: a typical browser GET (Host, User-Agent, Accept,
// Accept-Encoding, Accept-Language, Cookie), into a reused slice as
// serveFastCGI does.
func BenchmarkMetaVarsGET(b *testing.B) {
	r := httptest.NewRequest("GET", "/index.php?page=2&sort=name", nil)
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	r.Header.Set("Accept-Encoding", "gzip, deflate, br")
	r.Header.Set("Accept-Language", "en-US,en;q=0.5")
	r.Header.Set("Cookie", "session=0123456789abcdef; theme=dark")
	benchMetaVars(b, benchRequest(r))
}

// BenchmarkMetaVarsPOST20: a POST with a form body and 20 request headers.
func BenchmarkMetaVarsPOST20(b *testing.B) {
	body := "name=value&other=thing"
	r := httptest.NewRequest("POST", "/api/v1/items?debug=0", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Content-Length", fmt.Sprint(len(body)))
	r.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	for i := len(r.Header); i < 20; i++ {
		r.Header.Set(fmt.Sprintf("X-Custom-Header-%02d", i), strings.Repeat("v", 24))
	}
	if len(r.Header) != 20 {
		b.Fatalf("%d headers, want 20", len(r.Header))
	}
	benchMetaVars(b, benchRequest(r))
}

func benchMetaVars(b *testing.B, q *request) {
	var vars []fastcgi.Param
	b.ReportAllocs()
	for b.Loop() {
		vars = metaVars(vars[:0], q)
	}
	b.ReportMetric(float64(len(vars)), "params")
}

// typicalAnswer is a worker's answer: 5 header lines and a short body.
const typicalAnswer = "Status: 200 OK\r\n" +
	"Content-Type: text/html; charset=UTF-8\r\n" +
	"X-Powered-By: PHP/8.2.28\r\n" +
	"Cache-Control: no-store, no-cache, must-revalidate\r\n" +
	"Set-Cookie: PHPSESSID=0123456789abcdef; path=/; HttpOnly\r\n" +
	"\r\n" +
	"hello from php\n"

// BenchmarkReadCGIResponse parses typicalAnswer's header block with a
// reused bufio.Reader (as the front's buffers); the header map is cleared
// between runs (net/http gives each response a new one).
func BenchmarkReadCGIResponse(b *testing.B) {
	src := strings.NewReader(typicalAnswer)
	br := bufio.NewReaderSize(nil, 4096)
	h := make(http.Header)
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(typicalAnswer)
		clear(h)
		status, err := readCGIResponse(src, br, h)
		if err != nil || status != 200 || len(h) != 4 {
			b.Fatalf("status %d, %d headers, err %v", status, len(h), err)
		}
	}
}

// BenchmarkServeHTTPRecorder: the front's ServeHTTP for GET /w/ through
// httptest.NewRecorder, to a real supervisor.Pool of one worker (the test
// binary, net/http/fcgi answering its pid) on a kept FastCGI connection.
// The recorder and request are built per op (their allocations count).
func BenchmarkServeHTTPRecorder(b *testing.B) {
	f := startWorkerFront(b, "", nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/w/", nil)
		r.RemoteAddr = "127.0.0.1:54321"
		f.srv.ServeHTTP(w, r)
		if w.Code != 200 || w.Body.Len() == 0 {
			b.Fatalf("%d %q", w.Code, w.Body)
		}
	}
}

// BenchmarkServeHTTPLoopback: the same through a real loopback TCP
// connection, kept alive: the front's net/http server, the pool, the
// worker. Allocations include the benchmark's own http.Client.
func BenchmarkServeHTTPLoopback(b *testing.B) {
	f := startWorkerFront(b, "", nil, nil)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(f.url + "/w/")
		if err != nil {
			b.Fatal(err)
		}
		buf.Reset()
		_, err = io.Copy(&buf, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("%d %v", resp.StatusCode, err)
		}
	}
}
