package fastcgi

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestAppendParamsLengths(t *testing.T) {
	v127 := strings.Repeat("a", 127)
	v128 := strings.Repeat("b", 128)
	v65536 := strings.Repeat("c", 65536)
	n128 := strings.Repeat("N", 128)
	tests := []struct {
		name  string
		param Param
		want  []byte // built by hand: nameLength, valueLength, name, value
	}{
		{"empty", Param{"", ""}, []byte{0, 0}},
		{"1+1", Param{"K", "v"}, []byte{1, 1, 'K', 'v'}},
		{"value 127: 1-byte length", Param{"K", v127}, cat([]byte{1, 127, 'K'}, []byte(v127))},
		{"value 128: 4-byte length", Param{"K", v128}, cat([]byte{1, 0x80, 0, 0, 128, 'K'}, []byte(v128))},
		{"value 65536", Param{"K", v65536}, cat([]byte{1, 0x80, 1, 0, 0, 'K'}, []byte(v65536))},
		{"name 128", Param{n128, "v"}, cat([]byte{0x80, 0, 0, 128, 1}, []byte(n128), []byte("v"))},
		{"both long", Param{n128, v128}, cat([]byte{0x80, 0, 0, 128, 0x80, 0, 0, 128}, []byte(n128), []byte(v128))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := appendParams(nil, []Param{tt.param})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("appendParams = % x..., want % x...", got[:min(len(got), 12)], tt.want[:min(len(tt.want), 12)])
			}
			back, err := parseParams(nil, tt.want)
			if err != nil {
				t.Fatal(err)
			}
			if len(back) != 1 || back[0] != tt.param {
				t.Fatalf("parseParams gave %d params, want the one encoded", len(back))
			}
		})
	}
}

func TestParseParamsOrderAndNonCanonical(t *testing.T) {
	// Another encoder may use the 4-byte form for short lengths; it must
	// still read.
	b := cat([]byte{0x80, 0, 0, 1, 2, 'A', 'x', 'y'}, []byte{1, 0, 'B'}, []byte{1, 1, 'A', 'z'})
	got, err := parseParams(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	want := []Param{{"A", "xy"}, {"B", ""}, {"A", "z"}}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

func TestParseParamsTruncated(t *testing.T) {
	for _, b := range [][]byte{
		{1},                         // no value length
		{0x80, 0, 0},                // 4-byte name length cut
		{1, 0x80, 0},                // 4-byte value length cut
		{1, 1, 'K'},                 // value missing
		{2, 0, 'K'},                 // name cut
		{0xff, 0xff, 0xff, 0xff, 0}, // huge name length
		{1, 0xff, 0xff, 0xff, 0xff, 'K'},
	} {
		if _, err := parseParams(nil, b); !errors.Is(err, ErrProtocol) {
			t.Errorf("parseParams(% x) = %v, want ErrProtocol", b, err)
		}
	}
}

// splitRecords cuts b into records by hand, checking 8-byte alignment.
func splitRecords(t *testing.T, b []byte) []rawRecord {
	t.Helper()
	var recs []rawRecord
	for len(b) > 0 {
		if len(b) < 8 {
			t.Fatalf("%d bytes left, not a header", len(b))
		}
		n, pad := int(b[4])<<8|int(b[5]), int(b[6])
		if b[0] != 1 || (n+pad)%8 != 0 || len(b) < 8+n+pad {
			t.Fatalf("bad record header % x with %d bytes left", b[:8], len(b))
		}
		recs = append(recs, rawRecord{typ: recType(b[1]), content: b[8 : 8+n]})
		b = b[8+n+pad:]
	}
	return recs
}

func TestAppendStreamSplitsAt65535(t *testing.T) {
	content := pattern(1, 2*65535+1)
	b := appendStream(nil, typeStdin, 1, content)
	recs := splitRecords(t, b)
	wantLens := []int{65535, 65535, 1, 0}
	if len(recs) != len(wantLens) {
		t.Fatalf("got %d records, want %d", len(recs), len(wantLens))
	}
	var joined []byte
	for i, r := range recs {
		if r.typ != typeStdin || len(r.content) != wantLens[i] {
			t.Errorf("record %d: %v with %d bytes, want STDIN with %d", i, r.typ, len(r.content), wantLens[i])
		}
		joined = append(joined, r.content...)
	}
	if !bytes.Equal(joined, content) {
		t.Error("records do not carry the content")
	}
	// The header of the first record, by hand: 65535 bytes, padding 1.
	if want := []byte{1, 5, 0, 1, 0xff, 0xff, 1, 0}; !bytes.Equal(b[:8], want) {
		t.Errorf("first header % x, want % x", b[:8], want)
	}

	// An empty stream is the empty record alone.
	if got, want := appendStream(nil, typeParams, 1, nil), []byte{1, 4, 0, 1, 0, 0, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf("empty stream % x, want % x", got, want)
	}
}

func TestAppendRecordPadding(t *testing.T) {
	for n := range 17 {
		b := appendRecord([]byte("xx"), typeStdout, 0x0102, bytes.Repeat([]byte{7}, n))[2:]
		want := cat([]byte{1, 6, 1, 2, 0, byte(n), byte(-n & 7), 0}, bytes.Repeat([]byte{7}, n), make([]byte, -n&7))
		if !bytes.Equal(b, want) {
			t.Errorf("n=%d: % x, want % x", n, b, want)
		}
	}
}

func TestBeginRequestBytes(t *testing.T) {
	got := appendBeginRequest(nil, 1, roleResponder, flagKeepConn)
	want := []byte{1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0}
	if !bytes.Equal(got, want) {
		t.Errorf("% x, want % x", got, want)
	}
}
