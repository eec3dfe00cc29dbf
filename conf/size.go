// This file implements the two small value types of the schema, Size and
// FileMode, which check their own syntax while the file is decoded.

package conf

import (
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"strings"
)

// sizeUnits lists the units Size accepts.
func sizeUnits() []struct {
	name string
	mult int64
} {
	return []struct {
		name string
		mult int64
	}{
		{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
		{"B", 1},
	}
}

const sizeHelp = `a whole number of bytes with an optional unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. "64MiB"`

// UnmarshalText parses a size such as "64MiB", "512KiB", "10MB", "100B" or
// "100" (bytes). Units are case-sensitive; a space between the number and the
// unit is allowed. The empty string is 0.
func (s *Size) UnmarshalText(text []byte) error {
	str := strings.TrimSpace(string(text))
	if str == "" {
		*s = 0
		return nil
	}
	if str[0] == '-' {
		return fmt.Errorf("invalid size %q: must not be negative (want %s)", string(text), sizeHelp)
	}
	i := 0
	for i < len(str) && str[i] >= '0' && str[i] <= '9' {
		i++
	}
	if i == 0 {
		return fmt.Errorf("invalid size %q (want %s)", string(text), sizeHelp)
	}
	n, err := strconv.ParseInt(str[:i], 10, 64)
	if err != nil {
		return fmt.Errorf("invalid size %q: too large", string(text))
	}
	unit := strings.TrimSpace(str[i:])
	mult := int64(0)
	if unit == "" {
		mult = 1
	}
	for _, u := range sizeUnits() {
		if u.name == unit {
			mult = u.mult
		}
	}
	if mult == 0 {
		return fmt.Errorf("invalid size %q: unknown unit %q (want %s)", string(text), unit, sizeHelp)
	}
	if n > math.MaxInt64/mult {
		return fmt.Errorf("invalid size %q: too large", string(text))
	}
	*s = Size(n * mult)
	return nil
}

// String formats s with the unit that divides it exactly into the smallest
// number ("64MiB", "10MB", "100B"); UnmarshalText reads it back.
func (s Size) String() string {
	if s == 0 {
		return "0"
	}
	n, unit := int64(s), "B"
	if s > 0 {
		for _, u := range sizeUnits() {
			if int64(s)%u.mult == 0 && int64(s)/u.mult < n {
				n, unit = int64(s)/u.mult, u.name
			}
		}
	}
	return strconv.FormatInt(n, 10) + unit
}

// MarshalText formats s as String does, so that sizes read the same in JSON
// and TOML output as in the config file.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses an octal permission string: "0660", "660" or "0o660".
// Bits above 0777 (setuid, setgid, sticky) are refused.
func (m *FileMode) UnmarshalText(text []byte) error {
	str := string(text)
	digits := strings.TrimPrefix(strings.TrimPrefix(str, "0o"), "0O")
	if digits == "" || strings.ContainsAny(digits, "+-_") {
		return fmt.Errorf("invalid mode %q (want an octal permission string such as \"0660\")", str)
	}
	v, err := strconv.ParseUint(digits, 8, 32)
	if err != nil {
		return fmt.Errorf("invalid mode %q (want an octal permission string such as \"0660\")", str)
	}
	if v > 0o777 {
		return fmt.Errorf("invalid mode %q: above 0777 (only permission bits, no setuid, setgid or sticky)", str)
	}
	*m = FileMode(v)
	return nil
}

// String formats m as four octal digits, "0660".
func (m FileMode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

// MarshalText formats m as String does.
func (m FileMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// Perm returns m as an fs.FileMode for os.Chmod.
func (m FileMode) Perm() fs.FileMode { return fs.FileMode(m) & fs.ModePerm }
