package osc

import (
	"bytes"
	"testing"
	"time"
)

// TestEncoding checks the bytes of OSC 1.0's own examples: strings padded
// with 1–4 NULs, a message with s, f and i arguments, and a bundle.
func TestEncoding(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want []byte
	}{
		{"", []byte{0, 0, 0, 0}},
		{"a", []byte{'a', 0, 0, 0}},
		{"abc", []byte{'a', 'b', 'c', 0}},
		{"abcd", []byte{'a', 'b', 'c', 'd', 0, 0, 0, 0}},
	} {
		if got := String(nil, tc.s); !bytes.Equal(got, tc.want) {
			t.Errorf("String(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
	// The spec's example: "/foo" 1000 -1 "hello" 1.234 5.678.
	b := Message(nil, "/foo", "iisff")
	b = Int(b, 1000)
	b = Int(b, -1)
	b = String(b, "hello")
	b = Float(b, 1.234)
	b = Float(b, 5.678)
	want := []byte{
		0x2f, 0x66, 0x6f, 0x6f, 0, 0, 0, 0,
		0x2c, 0x69, 0x69, 0x73, 0x66, 0x66, 0, 0,
		0, 0, 0x03, 0xe8, 0xff, 0xff, 0xff, 0xff,
		0x68, 0x65, 0x6c, 0x6c, 0x6f, 0, 0, 0,
		0x3f, 0x9d, 0xf3, 0xb6, 0x40, 0xb5, 0xb2, 0x2d,
	}
	if !bytes.Equal(b, want) {
		t.Errorf("message:\n got %x\nwant %x", b, want)
	}
	// A bundle of two messages, parsed back.
	b = Bundle(nil, Immediately)
	b, at := Element(b)
	b = Message(b, "/VMC/Ext/Blend/Val", "sf")
	b = String(b, "jawOpen")
	b = Float(b, 0.5)
	b = EndElement(b, at)
	b, at = Element(b)
	b = Message(b, "/VMC/Ext/Blend/Apply", "")
	b = EndElement(b, at)
	msgs, err := Parse(b)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("Parse: %v %+v", err, msgs)
	}
	if m := msgs[0]; m.Address != "/VMC/Ext/Blend/Val" || m.Tags != "sf" || m.Args[0] != "jawOpen" || m.Args[1] != float32(0.5) {
		t.Errorf("first element: %+v", m)
	}
	if m := msgs[1]; m.Address != "/VMC/Ext/Blend/Apply" || m.Tags != "" || len(m.Args) != 0 {
		t.Errorf("second element: %+v", m)
	}
}

// TestTimeTag: 1900 is zero, the Unix epoch 2208988800 s later, and half
// a second is half the fraction's range.
func TestTimeTag(t *testing.T) {
	if got := TimeTag(time.Unix(0, 0)); got != 2208988800<<32 {
		t.Errorf("Unix epoch: %x", got)
	}
	if got := TimeTag(time.Unix(0, 5e8)); got != 2208988800<<32|1<<31 {
		t.Errorf("half a second: %x", got)
	}
}

// TestNoAllocations: building a message into a slice with room allocates
// nothing.
func TestNoAllocations(t *testing.T) {
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		b := Bundle(buf[:0], Immediately)
		b, at := Element(b)
		b = Message(b, "/VMC/Ext/Blend/Val", "sf")
		b = String(b, "mouthSmileLeft")
		b = Float(b, 0.25)
		EndElement(b, at)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per bundle", allocs)
	}
}

// FuzzParse: any bytes parse or fail without panicking, and what parses
// re-encodes to the same bytes.
func FuzzParse(f *testing.F) {
	f.Add(Float(String(Message(nil, "/a", "sf"), "x"), 0.5))
	f.Add(Bundle(nil, Immediately))
	f.Fuzz(func(t *testing.T, p []byte) {
		msgs, err := Parse(p)
		if err != nil || len(p) == 0 || p[0] == '#' {
			return
		}
		m := msgs[0]
		b := Message(nil, m.Address, m.Tags)
		for _, a := range m.Args {
			switch v := a.(type) {
			case string:
				b = String(b, v)
			case float32:
				b = Float(b, v)
			case int32:
				b = Int(b, v)
			}
		}
		if !bytes.Equal(b, p) {
			t.Fatalf("%x re-encodes as %x", p, b)
		}
	})
}
