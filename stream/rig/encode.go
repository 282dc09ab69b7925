package rig

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/affectd/affectd/stream/osc"
)

// MaxDatagram is the size bundles are kept under: a bundle that would grow
// past it is split in two, so that no datagram is fragmented on a
// network with a 1500-byte MTU. (A single message is never split; none
// of ours comes near.)
const MaxDatagram = 1400

// bundleHeader is "#bundle" and the time tag "immediately".
var bundleHeader = osc.Bundle(nil, osc.Immediately)

// Datagrams are the OSC datagrams of one frame, in one reused buffer: the
// VMC and OSC encoders fill it, the sender reads it with Len and At. In
// bundle mode, messages are gathered into bundles of at most MaxDatagram
// bytes, in order (a message goes to a new bundle when it would not fit);
// otherwise each message is a datagram of its own. Once its buffers have
// grown, filling it allocates nothing. The zero value is ready (single
// messages); it belongs to one goroutine.
type Datagrams struct {
	buf    []byte
	ends   []int // end of each closed datagram in buf
	bundle bool
	open   bool // a bundle is open, from start
	start  int  // where the open datagram starts
	elem   int  // where the current bundle element's size is
}

// Reset empties d; its next datagrams are bundles when bundle is true.
func (d *Datagrams) Reset(bundle bool) {
	d.buf, d.ends = d.buf[:0], d.ends[:0]
	d.bundle, d.open, d.start = bundle, false, 0
}

// Len is the number of datagrams.
func (d *Datagrams) Len() int { return len(d.ends) }

// At is datagram i (valid until the next Reset).
func (d *Datagrams) At(i int) []byte {
	start := 0
	if i > 0 {
		start = d.ends[i-1]
	}
	return d.buf[start:d.ends[i]:d.ends[i]]
}

// Size is the bytes of all the datagrams.
func (d *Datagrams) Size() int {
	if len(d.ends) == 0 {
		return 0
	}
	return d.ends[len(d.ends)-1]
}

// begin starts a message; its arguments are appended to d.buf, then end
// closes it.
func (d *Datagrams) begin(address, tags string) {
	if !d.bundle {
		d.start = len(d.buf)
		d.buf = osc.Message(d.buf, address, tags)
		return
	}
	if !d.open {
		d.start, d.open = len(d.buf), true
		d.buf = append(d.buf, bundleHeader...)
	}
	d.buf, d.elem = osc.Element(d.buf)
	d.buf = osc.Message(d.buf, address, tags)
}

// end closes the message begun last. A bundle that it grew past
// MaxDatagram is closed before it, and the message moves to a new bundle.
func (d *Datagrams) end() {
	if !d.bundle {
		d.ends = append(d.ends, len(d.buf))
		return
	}
	d.buf = osc.EndElement(d.buf, d.elem)
	if len(d.buf)-d.start <= MaxDatagram || d.elem == d.start+len(bundleHeader) {
		return
	}
	// Close the bundle before this element and open a new one: shift
	// the element up by a header's length and write the header before it.
	n := len(d.buf) - d.elem
	d.ends = append(d.ends, d.elem)
	d.buf = append(d.buf, bundleHeader...)
	copy(d.buf[d.elem+len(bundleHeader):], d.buf[d.elem:d.elem+n])
	copy(d.buf[d.elem:], bundleHeader)
	d.start = d.elem
	d.elem += len(bundleHeader)
}

// Finish closes the open bundle: call it after the last message (VMC.Encode
// does; OSC.Encode leaves it to its caller).
func (d *Datagrams) Finish() {
	if d.bundle && d.open {
		d.ends = append(d.ends, len(d.buf))
		d.open = false
	}
}

// VMC addresses.
const (
	vmcVal   = "/VMC/Ext/Blend/Val"
	vmcApply = "/VMC/Ext/Blend/Apply"
	vmcBone  = "/VMC/Ext/Bone/Pos"
	vmcOK    = "/VMC/Ext/OK"
	vmcTime  = "/VMC/Ext/T"
)

// Names choose the blend-shape names a VMC target gets.
const (
	NamesARKit = "arkit" // the 52 ARKit names, for "perfect sync" avatars
	NamesVRM   = "vrm"   // the VRM 0.x presets of VRM (see VRMWeights)
)

// VMC encodes one frame for a VMC receiver (Virtual Motion Capture
// protocol, OSC over UDP), as the Assistant side that sends a face to a
// Performer:
//
//	/VMC/Ext/Blend/Val   (s name, f weight)  one per blend shape
//	/VMC/Ext/Blend/Apply ()                  after all of the frame's Val
//	/VMC/Ext/Bone/Pos    (s "Head", f 0, f 0, f 0, f qx, f qy, f qz, f qw)
//	/VMC/Ext/OK          (i 1)
//	/VMC/Ext/T           (f seconds since the output started)
//
// as bundles (split under MaxDatagram; Apply comes after the last Val,
// in the same bundle or a later one) or as single messages, one per
// datagram, for receivers that want no bundles. It is read-only once
// made.
type VMC struct {
	vrm, bundle bool
}

// NewVMC makes a VMC encoder sending names (NamesARKit or NamesVRM), in
// bundles or single messages.
func NewVMC(names string, bundle bool) (*VMC, error) {
	switch names {
	case NamesARKit, NamesVRM:
	default:
		return nil, fmt.Errorf("rig: vmc names: want %q or %q, got %q", NamesARKit, NamesVRM, names)
	}
	return &VMC{vrm: names == NamesVRM, bundle: bundle}, nil
}

// Encode fills d (reset first) with one frame: the ARKit weights w (or
// the VRM presets derived from them), the head rotation and the time t in
// seconds.
func (e *VMC) Encode(d *Datagrams, w *[NumARKit]float32, head Quat, t float32) {
	d.Reset(e.bundle)
	if e.vrm {
		var v [NumVRM]float32
		VRMWeights(&v, w)
		for i, name := range VRM {
			vmcBlend(d, name, v[i])
		}
	} else {
		for i, name := range ARKit {
			vmcBlend(d, name, w[i])
		}
	}
	d.begin(vmcApply, "")
	d.end()
	d.begin(vmcBone, "sfffffff")
	d.buf = osc.String(d.buf, "Head")
	for _, v := range [7]float32{0, 0, 0, head.X, head.Y, head.Z, head.W} {
		d.buf = osc.Float(d.buf, v)
	}
	d.end()
	d.begin(vmcOK, "i")
	d.buf = osc.Int(d.buf, 1)
	d.end()
	d.begin(vmcTime, "f")
	d.buf = osc.Float(d.buf, t)
	d.end()
	d.Finish()
}

func vmcBlend(d *Datagrams, name string, v float32) {
	d.begin(vmcVal, "sf")
	d.buf = osc.String(d.buf, name)
	d.buf = osc.Float(d.buf, v)
	d.end()
}

// LiveLinkVersion is the Live Link Face packet version written.
const LiveLinkVersion = 6

// liveLinkValues is the number of floats in a packet: the 52 ARKit
// weights, then head, left eye and right eye yaw, pitch and roll.
const liveLinkValues = NumARKit + 9

// LiveLink encodes Apple Live Link Face packets (version 6, one UDP
// datagram per frame, all numbers big-endian):
//
//	u8  6
//	i32 length, then the device id (UTF-8)
//	i32 length, then the subject name (UTF-8)
//	i32 frame number, f32 sub-frame (0), i32 rate numerator, i32 denominator
//	u8  61, then 61 f32: the 52 ARKit weights in ARKit order, head yaw,
//	    pitch, roll (radians, LiveLinkHead's convention), left eye yaw,
//	    pitch, roll and right eye yaw, pitch, roll (0: not estimated)
//
// Its fields are set by the caller and read-only while encoding.
type LiveLink struct {
	DeviceID, Subject string
	// FPSNum/FPSDen is the source's frame rate (e.g. 25/1, 30000/1001).
	FPSNum, FPSDen int32
}

// Append appends the packet of one frame (frame numbers wrap at 2³²).
func (e *LiveLink) Append(b []byte, frame uint64, w *[NumARKit]float32, yaw, pitch, roll float32) []byte {
	b = append(b, LiveLinkVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.DeviceID)))
	b = append(b, e.DeviceID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Subject)))
	b = append(b, e.Subject...)
	b = binary.BigEndian.AppendUint32(b, uint32(frame))
	b = binary.BigEndian.AppendUint32(b, math.Float32bits(0))
	b = binary.BigEndian.AppendUint32(b, uint32(e.FPSNum))
	b = binary.BigEndian.AppendUint32(b, uint32(e.FPSDen))
	b = append(b, liveLinkValues)
	for _, v := range w {
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(v))
	}
	for _, v := range [9]float32{yaw, pitch, roll} {
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}
