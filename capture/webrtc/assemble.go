package webrtc

import (
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// assembler turns a track's RTP packets into access units (whole frames):
// depacketized, joined until the marker bit, with losses and oversize
// frames marked. What it buffers is bounded by max, whatever the
// publisher sends: a frame that outgrows it stops growing and is dropped
// at its end, and a frame a publisher never ends (no marker) ends when
// the next frame's timestamp begins. It belongs to the session's reader.
type assembler struct {
	dep  rtp.Depacketizer
	max  int // bytes of one access unit
	buf  []byte
	ts   uint32 // the frame's RTP timestamp
	have bool   // buf holds a frame's start
	bad  frameFault

	expect  uint16
	haveSeq bool
	clock   unwrapper
}

// frameFault says why an access unit is dropped.
type frameFault int

const (
	frameOK       frameFault = iota
	frameLoss                // packets lost or reordered, or a payload the depacketizer rejected
	frameTooLarge            // more than max bytes
)

func newAssembler(dep rtp.Depacketizer, max int) *assembler {
	return &assembler{dep: dep, max: max}
}

// unit is an assembled frame. data is valid until the next push.
type unit struct {
	data  []byte
	fault frameFault
	ts    int64 // the unwrapped RTP timestamp
}

// push adds a packet. It returns the frames it completes: the one the
// packet's marker ends, and before it one left unended by its publisher
// when this packet starts a new timestamp. A faulty unit has no data.
func (a *assembler) push(pkt *rtp.Packet, out []unit) []unit {
	if a.have && pkt.Timestamp != a.ts {
		// A new frame began without the last one's marker: it is lost.
		out = append(out, unit{fault: frameLoss, ts: a.clock.extend(a.ts)})
		a.reset()
	}
	if a.haveSeq && pkt.SequenceNumber != a.expect {
		a.fault(frameLoss)
		if h, ok := a.dep.(*codecs.H264Packet); ok {
			*h = codecs.H264Packet{} // drop a half-reassembled FU-A
		}
	}
	a.expect, a.haveSeq = pkt.SequenceNumber+1, true
	a.ts, a.have = pkt.Timestamp, true
	if len(pkt.Payload) > 0 && a.bad == frameOK {
		data, err := a.dep.Unmarshal(pkt.Payload)
		switch {
		case err != nil:
			a.fault(frameLoss)
		case len(a.buf)+len(data) > a.max:
			a.fault(frameTooLarge)
			a.buf = a.buf[:0]
		default:
			if need := len(a.buf) + len(data); need > cap(a.buf) {
				// Grow by hand: append could double past max.
				nb := make([]byte, len(a.buf), min(max(2*cap(a.buf), need), a.max))
				copy(nb, a.buf)
				a.buf = nb
			}
			a.buf = append(a.buf, data...)
		}
	}
	if !pkt.Marker {
		return out
	}
	u := unit{fault: a.bad, ts: a.clock.extend(a.ts)}
	if a.bad == frameOK {
		if len(a.buf) == 0 {
			u.fault = frameLoss
		} else {
			u.data = a.buf
		}
	}
	out = append(out, u)
	a.reset()
	return out
}

func (a *assembler) fault(f frameFault) {
	if a.bad == frameOK {
		a.bad = f
	}
}

// reset starts the next frame (keeping the buffer's memory: it is bounded).
func (a *assembler) reset() {
	a.buf, a.have, a.bad = a.buf[:0], false, frameOK
}

// unwrapper extends 32-bit RTP timestamps to 64 bits across wraps (at
// 90 kHz the 32-bit clock wraps every 13.3 hours), taking each step as the
// shortest way round: a step of more than 2³¹ ticks backwards is a wrap
// forwards.
type unwrapper struct {
	last int64
	raw  uint32
	have bool
}

func (u *unwrapper) extend(ts uint32) int64 {
	if !u.have {
		u.last, u.raw, u.have = int64(ts), ts, true
		return u.last
	}
	u.last += int64(int32(ts - u.raw))
	u.raw = ts
	return u.last
}
