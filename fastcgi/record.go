// This file implements the FastCGI 1.0 wire format: record headers and
// padding, streams cut into records, name-value pairs, and a record reader
// that hands out record content as a stream without buffering whole records.

package fastcgi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrProtocol is wrapped by every error reporting bytes that are not valid
// FastCGI: the peer is broken or is not a FastCGI application.
var ErrProtocol = errors.New("fastcgi: protocol violation")

// protocolError returns an error wrapping ErrProtocol.
func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// recType is a record type (spec section 8).
type recType uint8

const (
	typeBeginRequest    recType = 1
	typeAbortRequest    recType = 2
	typeEndRequest      recType = 3
	typeParams          recType = 4
	typeStdin           recType = 5
	typeStdout          recType = 6
	typeStderr          recType = 7
	typeData            recType = 8
	typeGetValues       recType = 9
	typeGetValuesResult recType = 10
	typeUnknownType     recType = 11
)

func (t recType) String() string {
	switch t {
	case typeBeginRequest:
		return "BEGIN_REQUEST"
	case typeAbortRequest:
		return "ABORT_REQUEST"
	case typeEndRequest:
		return "END_REQUEST"
	case typeParams:
		return "PARAMS"
	case typeStdin:
		return "STDIN"
	case typeStdout:
		return "STDOUT"
	case typeStderr:
		return "STDERR"
	case typeData:
		return "DATA"
	case typeGetValues:
		return "GET_VALUES"
	case typeGetValuesResult:
		return "GET_VALUES_RESULT"
	case typeUnknownType:
		return "UNKNOWN_TYPE"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

const (
	version1   = 1     // the only FastCGI version
	headerLen  = 8     // bytes in a record header
	maxContent = 65535 // content bytes in one record; padding is 0 to 255 more
)

// role is the role field of BEGIN_REQUEST.
type role uint16

const roleResponder role = 1 // only the responder role is implemented

// flagKeepConn in BEGIN_REQUEST's flags asks the application to leave the
// connection open after the request: the web server then owns it.
const flagKeepConn uint8 = 1

// protocolStatus values of END_REQUEST.
const (
	statusRequestComplete uint8 = 0

	// StatusCantMpxConn: the application does not take a second request on
	// a connection that already carries one.
	StatusCantMpxConn uint8 = 1
	// StatusOverloaded: the application is out of some resource, such as
	// database connections; the request was not processed.
	StatusOverloaded uint8 = 2
	// StatusUnknownRole: the application does not implement the role asked
	// for (always RESPONDER here).
	StatusUnknownRole uint8 = 3
)

// header is a record header (spec section 3.3).
type header struct {
	version       uint8
	typ           recType
	id            uint16 // request ID; 0 for management records
	contentLength uint16
	paddingLength uint8
	// one reserved byte follows on the wire
}

func decodeHeader(b *[headerLen]byte) header {
	return header{
		version:       b[0],
		typ:           recType(b[1]),
		id:            binary.BigEndian.Uint16(b[2:4]),
		contentLength: binary.BigEndian.Uint16(b[4:6]),
		paddingLength: b[6],
	}
}

// padLen is the padding that aligns a record with n content bytes to 8
// bytes, as the spec recommends senders do.
func padLen(n int) int { return -n & 7 }

// putHeader writes into b[:headerLen] the header of a record carrying n
// content bytes padded to 8, and zeroes that padding in b[headerLen+n:]. It
// returns the whole record, b[:headerLen+n+padLen(n)]; b must hold it.
func putHeader(b []byte, t recType, id uint16, n int) []byte {
	p := padLen(n)
	encodeHeader((*[headerLen]byte)(b), t, id, n, p)
	// Padding is zeroed rather than left as it was: the buffer is reused, and
	// stale bytes of an earlier request body must not leak into this one.
	clear(b[headerLen+n : headerLen+n+p])
	return b[:headerLen+n+p]
}

// encodeHeader writes into h the header of a record of n content bytes
// followed by pad bytes of padding, and returns it.
func encodeHeader(h *[headerLen]byte, t recType, id uint16, n, pad int) []byte {
	h[0] = version1
	h[1] = byte(t)
	binary.BigEndian.PutUint16(h[2:4], id)
	binary.BigEndian.PutUint16(h[4:6], uint16(n))
	h[6] = byte(pad)
	h[7] = 0
	return h[:]
}

// appendRecord appends one record carrying content (at most maxContent
// bytes), padded to a multiple of 8 bytes.
func appendRecord(dst []byte, t recType, id uint16, content []byte) []byte {
	if len(content) > maxContent {
		panic("fastcgi: record content longer than 65535 bytes")
	}
	start := len(dst)
	n := len(content)
	need := headerLen + n + padLen(n)
	dst = append(dst, make([]byte, need)...)
	copy(dst[start+headerLen:], content)
	putHeader(dst[start:], t, id, n)
	return dst
}

// appendStream appends content as a whole stream: as many records of at
// most maxContent bytes as it takes (none when content is empty), then the
// empty record that ends every stream.
func appendStream(dst []byte, t recType, id uint16, content []byte) []byte {
	for len(content) > 0 {
		n := min(len(content), maxContent)
		dst = appendRecord(dst, t, id, content[:n])
		content = content[n:]
	}
	return appendRecord(dst, t, id, nil)
}

// appendBeginRequest appends a BEGIN_REQUEST record.
func appendBeginRequest(dst []byte, id uint16, r role, flags uint8) []byte {
	var body [8]byte // roleB1 roleB0 flags reserved[5]
	binary.BigEndian.PutUint16(body[0:2], uint16(r))
	body[2] = flags
	return appendRecord(dst, typeBeginRequest, id, body[:])
}

// maxPairLen is the longest name or value a name-value pair can carry: the
// 4-byte length form has 31 bits.
const maxPairLen = 1<<31 - 1

// appendPairLen appends the length of a name or value: one byte up to 127,
// else four bytes, big-endian, with the high bit set.
func appendPairLen(dst []byte, n int) []byte {
	if n <= 127 {
		return append(dst, byte(n))
	}
	return binary.BigEndian.AppendUint32(dst, uint32(n)|1<<31)
}

// readPairLen reads a length written by appendPairLen from the start of b.
// It returns the length and how many bytes it took, or ok false when b is
// too short.
func readPairLen(b []byte) (n, size int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	if b[0]&0x80 == 0 {
		return int(b[0]), 1, true
	}
	if len(b) < 4 {
		return 0, 0, false
	}
	return int(binary.BigEndian.Uint32(b) &^ (1 << 31)), 4, true
}

// appendParams appends params, in order, as the content of a name-value pair
// stream (PARAMS, GET_VALUES).
func appendParams(dst []byte, params []Param) ([]byte, error) {
	for _, p := range params {
		if len(p.Name) > maxPairLen || len(p.Value) > maxPairLen {
			return dst, fmt.Errorf("fastcgi: param %.40q: name or value longer than %d bytes", p.Name, maxPairLen)
		}
		dst = appendPairLen(dst, len(p.Name))
		dst = appendPairLen(dst, len(p.Value))
		dst = append(dst, p.Name...)
		dst = append(dst, p.Value...)
	}
	return dst, nil
}

// Value returns the value of the first param named name, "" when none is.
func Value(params []Param, name string) string {
	for _, p := range params {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// parseParams appends to dst the name-value pairs encoded in b, the whole
// content of a name-value pair stream. A pair cut short is a protocol error.
func parseParams(dst []Param, b []byte) ([]Param, error) {
	// One string holds every name and value, which are slices of it: one
	// allocation for the stream instead of two per pair. (A Param kept
	// keeps the whole stream's string alive: a few KiB.)
	s := string(b)
	for off := 0; off < len(b); {
		nameLen, n, ok := readPairLen(b[off:])
		if !ok {
			return dst, protocolError("name-value pair: truncated name length")
		}
		off += n
		valueLen, n, ok := readPairLen(b[off:])
		if !ok {
			return dst, protocolError("name-value pair: truncated value length")
		}
		off += n
		if left := len(b) - off; nameLen > left || valueLen > left-nameLen {
			return dst, protocolError("name-value pair: %d+%d bytes declared, %d left in the stream", nameLen, valueLen, left)
		}
		dst = append(dst, Param{Name: s[off : off+nameLen], Value: s[off+nameLen : off+nameLen+valueLen]})
		off += nameLen + valueLen
	}
	return dst, nil
}

// recordReader reads records one at a time. The content of the current
// record is read through Read, straight from the bufio.Reader: a record is
// never held whole, so memory stays bounded whatever the peer sends. next
// skips whatever is left of the current record, content and padding.
type recordReader struct {
	br   *bufio.Reader
	h    header // the current record
	left int    // content bytes of the current record not yet read
	pad  int    // padding bytes after them
	n    int64  // bytes consumed from br so far
	hbuf [headerLen]byte
}

// next moves to the next record and returns its header. It returns io.EOF
// only when the stream ended cleanly before a new record, and
// io.ErrUnexpectedEOF when it ended inside one. A header with a version other
// than 1 or an undefined type is a protocol error.
func (rr *recordReader) next() (header, error) {
	if err := rr.skip(); err != nil {
		return header{}, err
	}
	n, err := io.ReadFull(rr.br, rr.hbuf[:])
	rr.n += int64(n)
	if err != nil {
		return header{}, err
	}
	h := decodeHeader(&rr.hbuf)
	if h.version != version1 {
		return header{}, protocolError("record version %d, want 1", h.version)
	}
	if h.typ < typeBeginRequest || h.typ > typeUnknownType {
		return header{}, protocolError("undefined record type %d", uint8(h.typ))
	}
	rr.h = h
	rr.left = int(h.contentLength)
	rr.pad = int(h.paddingLength)
	return h, nil
}

// skip discards the rest of the current record, content and padding.
func (rr *recordReader) skip() error {
	k := rr.left + rr.pad
	if k == 0 {
		return nil
	}
	d, err := rr.br.Discard(k)
	rr.n += int64(d)
	if d <= rr.left {
		rr.left -= d
	} else {
		rr.pad -= d - rr.left
		rr.left = 0
	}
	return unexpectedEOF(err)
}

// Read reads content of the current record; it returns io.EOF at the end of
// the content, and io.ErrUnexpectedEOF if the stream ends before that.
func (rr *recordReader) Read(p []byte) (int, error) {
	if rr.left == 0 {
		return 0, io.EOF
	}
	if len(p) > rr.left {
		p = p[:rr.left]
	}
	n, err := rr.br.Read(p)
	rr.left -= n
	rr.n += int64(n)
	return n, unexpectedEOF(err)
}

// unexpectedEOF turns io.EOF into io.ErrUnexpectedEOF, for reads of bytes a
// header has announced.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
