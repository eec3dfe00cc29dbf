// This file keeps a copy of each request's FastCGI params for ?vars.
//
// net/http/fcgi turns the params into an *http.Request and hands the handler
// only the ones it did not use (fcgi.ProcessEnv): SCRIPT_NAME, PATH_INFO,
// HTTPS, REMOTE_HOST, REQUEST_URI and the HTTP_* headers as sent are gone.
// To show the params exactly as received, paramsConn watches the records
// going into net/http/fcgi and, before the empty PARAMS record that ends a
// request's params, adds one more param, rawParamsName, whose value is the
// request's whole PARAMS stream. The handler reads it back with
// fcgi.ProcessEnv and decodes it. Every other byte passes through unchanged.
package main

import (
	"encoding/binary"
	"net"
	"net/http"
	"net/http/fcgi"
)

const (
	rawParamsName = "FCGIVISOR_EXAMPLE_RAW_PARAMS"
	typeParams    = 4     // FCGI_PARAMS
	headerLen     = 8     // FCGI_HEADER_LEN
	maxContent    = 65535 // largest contentLength of one record
)

type paramsListener struct{ net.Listener }

func (l paramsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &paramsConn{Conn: c, raw: map[uint16][]byte{}, buf: make([]byte, 64<<10)}, nil
}

// paramsConn is used by the one net/http/fcgi goroutine that reads the
// connection, so it needs no lock.
type paramsConn struct {
	net.Conn
	buf []byte            // read buffer
	in  []byte            // bytes read, not yet a whole record
	out []byte            // whole records, ready for net/http/fcgi
	raw map[uint16][]byte // PARAMS content so far, per request id
}

func (c *paramsConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		n, err := c.Conn.Read(c.buf)
		c.in = append(c.in, c.buf[:n]...)
		c.split()
		if err != nil && len(c.out) == 0 {
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	if len(c.out) == 0 {
		c.out = c.out[:0:0] // let a large slice go
	}
	return n, nil
}

// split moves every whole record from c.in to c.out, adding the raw-params
// records where a request's params end.
func (c *paramsConn) split() {
	for len(c.in) >= headerLen {
		typ := c.in[1]
		id := binary.BigEndian.Uint16(c.in[2:4])
		contentLen := int(binary.BigEndian.Uint16(c.in[4:6]))
		total := headerLen + contentLen + int(c.in[6])
		if len(c.in) < total {
			break
		}
		if typ == typeParams {
			if contentLen > 0 {
				c.raw[id] = append(c.raw[id], c.in[headerLen:headerLen+contentLen]...)
			} else {
				c.out = appendParamRecords(c.out, id, rawParamsName, c.raw[id])
				delete(c.raw, id)
			}
		}
		c.out = append(c.out, c.in[:total]...)
		c.in = c.in[total:]
	}
	if len(c.in) == 0 {
		c.in = c.in[:0:0]
	}
}

// appendParamRecords appends one name-value pair as PARAMS records of at
// most maxContent bytes each.
func appendParamRecords(out []byte, id uint16, name string, value []byte) []byte {
	pairBytes := appendLen(nil, len(name))
	pairBytes = appendLen(pairBytes, len(value))
	pairBytes = append(pairBytes, name...)
	pairBytes = append(pairBytes, value...)
	for len(pairBytes) > 0 {
		n := min(len(pairBytes), maxContent)
		out = append(out, 1, typeParams, byte(id>>8), byte(id), byte(n>>8), byte(n), 0, 0)
		out = append(out, pairBytes[:n]...)
		pairBytes = pairBytes[n:]
	}
	return out
}

func appendLen(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

// requestParams returns the request's FastCGI params in the order received.
// Without paramsConn (plain fcgi.Serve) it falls back to fcgi.ProcessEnv,
// which lacks the params net/http/fcgi consumed.
func requestParams(r *http.Request) []pair {
	env := fcgi.ProcessEnv(r)
	raw, ok := env[rawParamsName]
	if !ok {
		var ps []pair
		for k, v := range env {
			ps = append(ps, pair{k, v})
		}
		return ps
	}
	return decodePairs([]byte(raw))
}

// decodePairs decodes FastCGI name-value pairs; it stops at the first
// malformed one.
func decodePairs(b []byte) []pair {
	var ps []pair
	for len(b) > 0 {
		nameLen, n := readLen(b)
		if n == 0 {
			break
		}
		b = b[n:]
		valueLen, n := readLen(b)
		if n == 0 {
			break
		}
		b = b[n:]
		if nameLen+valueLen > len(b) {
			break
		}
		ps = append(ps, pair{string(b[:nameLen]), string(b[nameLen : nameLen+valueLen])})
		b = b[nameLen+valueLen:]
	}
	return ps
}

func readLen(b []byte) (length, used int) {
	if len(b) == 0 {
		return 0, 0
	}
	if b[0] < 128 {
		return int(b[0]), 1
	}
	if len(b) < 4 {
		return 0, 0
	}
	return int(binary.BigEndian.Uint32(b) &^ (1 << 31)), 4
}
