package osc

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
)

// An OSC 1.0 packet is built by appending to a byte slice, so that a
// caller that keeps its slice allocates nothing per message once it has
// grown: Message starts a message with its address and type tags, the
// argument functions add the arguments the tags announce, in order.
// Bundle starts a bundle; Element and EndElement frame each of its
// elements with its size.

// Immediately is the time tag that means "now" (1: zero seconds, one
// fraction unit).
const Immediately uint64 = 1

// ntpEpoch is 1900-01-01, NTP's and OSC's time origin, in Unix seconds.
const ntpEpoch = -2208988800

// TimeTag is t as an OSC (NTP) time tag: seconds since 1900 in the high 32
// bits, the fraction in the low 32.
func TimeTag(t time.Time) uint64 {
	secs := t.Unix() - ntpEpoch
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return uint64(secs)<<32 | frac
}

// String appends an OSC string: its bytes, a NUL, NULs to a multiple of 4.
func String(b []byte, s string) []byte {
	start := len(b)
	b = append(b, s...)
	switch (len(b) - start) % 4 {
	case 0:
		return append(b, 0, 0, 0, 0)
	case 1:
		return append(b, 0, 0, 0)
	case 2:
		return append(b, 0, 0)
	default:
		return append(b, 0)
	}
}

// Message appends a message's address and type tags (without the leading
// ','; e.g. "sf"); the arguments follow.
func Message(b []byte, address, tags string) []byte {
	b = String(b, address)
	start := len(b)
	b = append(b, ',')
	b = append(b, tags...)
	switch (len(b) - start) % 4 {
	case 0:
		return append(b, 0, 0, 0, 0)
	case 1:
		return append(b, 0, 0, 0)
	case 2:
		return append(b, 0, 0)
	default:
		return append(b, 0)
	}
}

// Float appends an f argument (float32, big-endian).
func Float(b []byte, v float32) []byte {
	return binary.BigEndian.AppendUint32(b, math.Float32bits(v))
}

// Int appends an i argument (int32, big-endian).
func Int(b []byte, v int32) []byte {
	return binary.BigEndian.AppendUint32(b, uint32(v))
}

// Bundle appends a bundle's header: "#bundle" and its time tag.
func Bundle(b []byte, tag uint64) []byte {
	b = String(b, "#bundle")
	return binary.BigEndian.AppendUint64(b, tag)
}

// Element starts a bundle element: it reserves the element's size and
// returns where it is, for EndElement.
func Element(b []byte) ([]byte, int) {
	return append(b, 0, 0, 0, 0), len(b)
}

// EndElement writes the size of the element begun at at.
func EndElement(b []byte, at int) []byte {
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

// Parsed is a decoded message, for tests and tools: its address, its type
// tags (without ',') and its arguments (string, float32, int32, bool).
type Parsed struct {
	Address string
	Tags    string
	Args    []any
}

// Errors of Parse.
var (
	ErrShort     = errors.New("osc: packet too short")
	ErrMalformed = errors.New("osc: malformed packet")
)

// Parse decodes a packet into its messages (a bundle's, depth first) and
// the time tags of the bundles that held them (Immediately for a bare
// message). It accepts exactly what this package writes and what OSC 1.0
// allows of s, f, i, T, F; anything else is ErrMalformed.
func Parse(p []byte) ([]Parsed, error) {
	var out []Parsed
	return out, parse(p, &out, 0)
}

func parse(p []byte, out *[]Parsed, depth int) error {
	if depth > 8 {
		return ErrMalformed
	}
	if len(p) < 4 || len(p)%4 != 0 {
		return ErrShort
	}
	if p[0] == '#' {
		s, rest, err := readString(p)
		if err != nil || s != "#bundle" || len(rest) < 8 {
			return ErrMalformed
		}
		rest = rest[8:]
		for len(rest) > 0 {
			if len(rest) < 4 {
				return ErrShort
			}
			n := int(binary.BigEndian.Uint32(rest))
			rest = rest[4:]
			if n < 0 || n > len(rest) {
				return ErrMalformed
			}
			if err := parse(rest[:n], out, depth+1); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return nil
	}
	addr, rest, err := readString(p)
	if err != nil || len(addr) == 0 || addr[0] != '/' {
		return ErrMalformed
	}
	tags, rest, err := readString(rest)
	if err != nil || len(tags) == 0 || tags[0] != ',' {
		return ErrMalformed
	}
	m := Parsed{Address: addr, Tags: tags[1:]}
	for _, t := range m.Tags {
		switch t {
		case 's':
			var s string
			if s, rest, err = readString(rest); err != nil {
				return err
			}
			m.Args = append(m.Args, s)
		case 'f', 'i':
			if len(rest) < 4 {
				return ErrShort
			}
			u := binary.BigEndian.Uint32(rest)
			rest = rest[4:]
			if t == 'f' {
				m.Args = append(m.Args, math.Float32frombits(u))
			} else {
				m.Args = append(m.Args, int32(u))
			}
		case 'T', 'F':
			m.Args = append(m.Args, t == 'T')
		default:
			return ErrMalformed
		}
	}
	if len(rest) != 0 {
		return ErrMalformed
	}
	*out = append(*out, m)
	return nil
}

// readString reads a padded OSC string.
func readString(p []byte) (string, []byte, error) {
	for i, c := range p {
		if c == 0 {
			end := (i/4 + 1) * 4
			if end > len(p) {
				return "", nil, ErrShort
			}
			for _, z := range p[i:end] {
				if z != 0 {
					return "", nil, ErrMalformed
				}
			}
			return string(p[:i]), p[end:], nil
		}
	}
	return "", nil, ErrShort
}
