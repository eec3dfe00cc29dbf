// Command go-worker is the Go example FastCGI worker: a net/http/fcgi program
// that serves the examples' test protocol (examples/README.md) on the
// listening socket it inherits as fd 0 (FCGI_LISTENSOCK_FILENO), exactly as
// spawn-fcgi and fcgivisor hand it over. It serves many requests at once
// (goroutine per request), so its pool can use concurrency > 1.
package main

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// chunkSize is a multiple of 26, so every chunk of the ?size pattern starts
// with 'a' and one precomputed chunk serves every offset.
const chunkSize = 26 * 2520

func main() {
	// fcgi.Serve(nil, h) would build this same listener from os.Stdin; we
	// wrap it so ?vars can show the params exactly as sent (see params.go).
	l, err := net.FileListener(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "go worker: fd 0 is not a listening socket (run me under spawn-fcgi or fcgivisor): %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "go worker %d ready\n", os.Getpid())
	// No SIGTERM handler: like most Go programs this worker dies at once on
	// SIGTERM (libfcgi, FCGI.pm and php-cgi finish the request in flight and
	// exit 0), so a supervisor must drain it before stopping it.
	if err := fcgi.Serve(paramsListener{l}, http.HandlerFunc(serve)); err != nil {
		fmt.Fprintf(os.Stderr, "go worker: %v\n", err)
		os.Exit(1)
	}
}

// hoard keeps what ?grow=MB allocated.
var hoard [][]byte

func serve(w http.ResponseWriter, r *http.Request) {
	params := requestParams(r)
	key, val := firstQueryParam(lookup(params, "QUERY_STRING", r.URL.RawQuery))
	switch key {
	case "vars":
		sortPairs(params)
		text(w)
		for _, p := range params {
			fmt.Fprintf(w, "%s=%s\n", p.name, p.value)
		}
	case "penv":
		penv(w)
	case "grow":
		// Memory that stays: for max_memory recycling tests.
		mb, _ := strconv.Atoi(val)
		b := bytes.Repeat([]byte{1}, mb<<20)
		hoard = append(hoard, b)
		text(w)
		fmt.Fprintf(w, "grew %d MiB\n", mb)
	case "echo":
		w.Header().Set("Content-Type", "application/octet-stream")
		buf := make([]byte, 64<<10)
		if _, err := io.CopyBuffer(w, r.Body, buf); err != nil {
			fmt.Fprintf(os.Stderr, "go worker: echo: %v\n", err)
		}
	case "crc32":
		// The whole body is read before the answer starts.
		h := crc32.NewIEEE()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		text(w)
		fmt.Fprintf(w, "%d %08x\n", n, h.Sum32())
	case "size":
		n, _ := strconv.ParseInt(val, 10, 64)
		text(w)
		chunk := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz"), chunkSize/26)
		for n > 0 {
			k := min(n, chunkSize)
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	case "status":
		// net/http/fcgi always writes "Status: NNN <http.StatusText>", so the
		// reason phrase cannot be "Custom" here as in the other workers.
		code, err := strconv.Atoi(val)
		if err != nil || code < 100 || code > 999 {
			code = 500
		}
		text(w)
		w.WriteHeader(code)
		fmt.Fprintf(w, "status %d\n", code)
	case "location":
		w.Header().Set("Location", val)
		w.WriteHeader(http.StatusFound)
	case "sleep":
		ms, _ := strconv.Atoi(val)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		text(w)
		fmt.Fprintf(w, "slept %d\n", ms)
	case "pid":
		text(w)
		fmt.Fprintf(w, "%d\n", os.Getpid())
	case "stderr":
		// net/http/fcgi has no FCGI_STDERR writer: this goes to the process stderr.
		fmt.Fprintln(os.Stderr, val)
		text(w)
		io.WriteString(w, "ok\n")
	case "exit":
		os.Exit(3) // a crash mid-request: no answer
	default:
		text(w)
		io.WriteString(w, "hello from go\n")
	}
}

func text(w http.ResponseWriter) { w.Header().Set("Content-Type", "text/plain") }

// firstQueryParam returns the first key of a query string and its unescaped
// value: "size=5&x" gives "size", "5".
func firstQueryParam(q string) (key, val string) {
	first, _, _ := strings.Cut(q, "&")
	key, val, _ = strings.Cut(first, "=")
	if v, err := url.QueryUnescape(val); err == nil {
		val = v
	}
	return key, val
}

// penv writes the process environment as the kernel has it, sorted by name.
func penv(w http.ResponseWriter) {
	data, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var env []pair
	for _, kv := range strings.Split(string(data), "\x00") {
		if kv == "" {
			continue
		}
		name, value, _ := strings.Cut(kv, "=")
		env = append(env, pair{name, value})
	}
	sortPairs(env)
	text(w)
	for _, p := range env {
		fmt.Fprintf(w, "%s=%s\n", p.name, p.value)
	}
}

type pair struct{ name, value string }

func sortPairs(ps []pair) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
}

func lookup(ps []pair, name, def string) string {
	for _, p := range ps {
		if p.name == name {
			return p.value
		}
	}
	return def
}
