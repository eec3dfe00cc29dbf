package fastcgi

import (
	"fmt"
	"io"
)

// GetValues sends FCGI_GET_VALUES for names (spec section 4.1) and returns
// the variables the application answered with (it answers the names it
// knows, possibly none). The answer proves the application accepted the
// connection and reads it: fcgivisor uses it to tell when a new worker
// serves. Not while a request is in flight; set a deadline on NetConn to
// bound the wait.
func (c *Conn) GetValues(names ...string) (map[string]string, error) {
	if c.cur != nil {
		return nil, fmt.Errorf("fastcgi: GetValues during a request")
	}
	ps := make([]Param, len(names))
	for i, n := range names {
		ps[i].Name = n
	}
	content, err := appendParams(nil, ps)
	if err != nil {
		return nil, err
	}
	if _, err := c.nc.Write(appendRecord(nil, typeGetValues, 0, content)); err != nil {
		return nil, fmt.Errorf("fastcgi: sending GET_VALUES: %w", err)
	}
	for {
		h, err := c.rr.next()
		if err != nil {
			return nil, fmt.Errorf("fastcgi: waiting for GET_VALUES_RESULT: %w", err)
		}
		if h.id != 0 {
			return nil, protocolError("%v record for request ID %d before GET_VALUES_RESULT", h.typ, h.id)
		}
		switch h.typ {
		case typeUnknownType:
			return nil, nil // an application that does not know GET_VALUES still read it
		case typeGetValuesResult:
			b := make([]byte, h.contentLength)
			if _, err := io.ReadFull(&c.rr, b); err != nil {
				return nil, err
			}
			pairs, err := parseParams(nil, b)
			if err != nil {
				return nil, err
			}
			m := make(map[string]string, len(pairs))
			for _, p := range pairs {
				m[p.Name] = p.Value
			}
			return m, nil
		}
	}
}
