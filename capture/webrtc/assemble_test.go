package webrtc

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// vp8 is a VP8 RTP payload: the payload descriptor (S set on a frame's
// first packet), then data.
func vp8(start bool, data []byte) []byte {
	d := byte(0)
	if start {
		d = 0x10
	}
	return append([]byte{d}, data...)
}

// TestAssemblerFrames: packets joined into frames by the marker bit; a
// lost packet marks its frame lost; the timestamp unwraps.
func TestAssemblerFrames(t *testing.T) {
	a := newAssembler(&codecs.VP8Packet{}, 1<<20)
	var out []unit
	push := func(seq uint16, ts uint32, marker bool, payload []byte) []unit {
		out = a.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: marker}, Payload: payload}, out[:0])
		return out
	}
	push(1, 1000, false, vp8(true, []byte("ab")))
	push(2, 1000, false, vp8(false, []byte("cd")))
	u := push(3, 1000, true, vp8(false, []byte("ef")))
	if len(u) != 1 || u[0].fault != frameOK || string(u[0].data) != "abcdef" || u[0].ts != 1000 {
		t.Fatalf("a frame of three packets: %+v", u)
	}
	push(4, 4000, false, vp8(true, []byte("gh")))
	u = push(6, 4000, true, vp8(false, []byte("ij"))) // 5 lost
	if len(u) != 1 || u[0].fault != frameLoss || u[0].data != nil {
		t.Fatalf("a frame with a lost packet: %+v", u)
	}
	u = push(7, 7000, true, vp8(true, []byte("kl")))
	if len(u) != 1 || u[0].fault != frameOK || string(u[0].data) != "kl" {
		t.Fatalf("the next frame: %+v", u)
	}
}

// TestAssemblerBounded: a publisher that never sets the marker bit, or
// sends frames far larger than the limit, never makes the assembler hold
// more than the limit (before, the buffer grew by every packet: 1.5 GB in
// a minute).
func TestAssemblerBounded(t *testing.T) {
	const max = 64 << 10
	a := newAssembler(&codecs.VP8Packet{}, max)
	payload := vp8(false, bytes.Repeat([]byte{0x5a}, 1200))
	var out []unit
	frames := 0
	for i := 0; i < 20000; i++ { // 24 MB, one timestamp, no marker
		out = a.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: 90000}, Payload: payload}, out[:0])
		frames += len(out)
		if cap(a.buf) > max {
			t.Fatalf("after %d packets the assembler holds %d bytes (limit %d)", i+1, cap(a.buf), max)
		}
	}
	if frames != 0 {
		t.Fatalf("%d frames out of an unended one", frames)
	}
	out = a.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: 20000 % 65536, Timestamp: 90000, Marker: true}, Payload: payload}, out[:0])
	if len(out) != 1 || out[0].fault != frameTooLarge || out[0].data != nil {
		t.Fatalf("the oversize frame's end: %+v", out)
	}
	// No marker ever, the timestamp moving on: each frame ends (lost) when
	// the next begins, and nothing accumulates.
	b := newAssembler(&codecs.VP8Packet{}, max)
	lost := 0
	for i := 0; i < 3000; i++ {
		out = b.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(3000 * (i / 10))}, Payload: payload}, out[:0])
		for _, u := range out {
			if u.fault != frameLoss {
				t.Fatalf("an unended frame came out as %+v", u)
			}
			lost++
		}
		if cap(b.buf) > max {
			t.Fatalf("holds %d bytes", cap(b.buf))
		}
	}
	if lost != 299 {
		t.Errorf("%d unended frames reported, want 299", lost)
	}
}

// TestUnwrap: the 32-bit RTP clock wraps every 13.3 hours at 90 kHz; the
// extended timestamp keeps growing (before, PTS broke at the wrap).
func TestUnwrap(t *testing.T) {
	var u unwrapper
	ts := uint32(1<<32 - 90000) // a second before the wrap
	first := u.extend(ts)
	for i := 1; i <= 50; i++ {
		ts += 3600 // 25 fps
		if got, want := u.extend(ts), first+int64(i)*3600; got != want {
			t.Fatalf("step %d (raw %d): %d, want %d", i, ts, got, want)
		}
	}
	if got := u.extend(ts - 3600); got != first+49*3600 { // one step back: a reordered packet
		t.Errorf("a step back: %d", got)
	}
}

// FuzzAssemble: any packets at all (H.264 and VP8 payloads, sequence
// numbers, timestamps, markers) keep the assembler within its limit, and
// only whole, bounded frames come out with data.
func FuzzAssemble(f *testing.F) {
	f.Add([]byte{0x10, 1, 2, 3}, false)
	f.Add([]byte{0x7c, 0x85, 1, 2, 3, 0x7c, 0x45, 4, 5}, true)
	f.Add([]byte{0x18, 0, 2, 0x67, 1, 0, 2, 0x68, 2}, true)
	f.Fuzz(func(t *testing.T, data []byte, h264 bool) {
		const max = 4096
		var dep rtp.Depacketizer = &codecs.VP8Packet{}
		if h264 {
			dep = &codecs.H264Packet{}
		}
		a := newAssembler(dep, max)
		var out []unit
		// Each packet: 2 bytes seq, 1 byte ts step, 1 byte flags+length, payload.
		for len(data) >= 4 {
			seq := binary.BigEndian.Uint16(data)
			ts := uint32(data[2]) * 3000
			marker := data[3]&0x80 != 0
			n := int(data[3] & 0x7f)
			data = data[4:]
			n = min(n, len(data))
			payload := data[:n]
			data = data[n:]
			for rep := 0; rep < 1+int(seq%4); rep++ { // repeats grow frames past max
				out = a.push(&rtp.Packet{Header: rtp.Header{SequenceNumber: seq + uint16(rep), Timestamp: ts, Marker: marker && rep == int(seq%4)}, Payload: payload}, out[:0])
				for _, u := range out {
					if (u.data != nil) != (u.fault == frameOK) || len(u.data) > max {
						t.Fatalf("unit %+v", u)
					}
				}
				if cap(a.buf) > max {
					t.Fatalf("holds %d bytes", cap(a.buf))
				}
			}
		}
	})
}
