package rig

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/stream/osc"
)

// testWeights are ARKit weights: jawOpen 0.5, shape i elsewhere i/100.
func testWeights() *[NumARKit]float32 {
	var w [NumARKit]float32
	for i := range w {
		w[i] = float32(i) / 100
	}
	w[iJawOpen] = 0.5
	return &w
}

// checkVMC checks one VMC frame: the Val messages (names in order, with
// the weights), Apply after all of them, the Head bone, OK and T.
func checkVMC(t *testing.T, d *Datagrams, names []string, weights []float32, head Quat, tm float32) {
	t.Helper()
	msgs := parseAll(t, d)
	if len(msgs) != len(names)+4 {
		t.Fatalf("%d messages, want %d", len(msgs), len(names)+4)
	}
	for i, name := range names {
		m := msgs[i]
		if m.Address != "/VMC/Ext/Blend/Val" || m.Tags != "sf" || m.Args[0] != name || m.Args[1] != weights[i] {
			t.Errorf("message %d: %+v, want Val %s %v", i, m, name, weights[i])
		}
	}
	rest := msgs[len(names):]
	if m := rest[0]; m.Address != "/VMC/Ext/Blend/Apply" || m.Tags != "" {
		t.Errorf("after the values: %+v, want Apply", m)
	}
	m := rest[1]
	if m.Address != "/VMC/Ext/Bone/Pos" || m.Tags != "sfffffff" || m.Args[0] != "Head" {
		t.Fatalf("bone: %+v", m)
	}
	var f [7]float32
	for i := range f {
		f[i] = m.Args[i+1].(float32)
	}
	if f[0] != 0 || f[1] != 0 || f[2] != 0 || (Quat{f[3], f[4], f[5], f[6]}) != head {
		t.Errorf("bone %v, want position 0 and %+v", f, head)
	}
	if n := math.Sqrt(float64(f[3]*f[3] + f[4]*f[4] + f[5]*f[5] + f[6]*f[6])); math.Abs(n-1) > 1e-6 {
		t.Errorf("quaternion norm %v", n)
	}
	if m := rest[2]; m.Address != "/VMC/Ext/OK" || m.Tags != "i" || m.Args[0] != int32(1) {
		t.Errorf("OK: %+v", m)
	}
	if m := rest[3]; m.Address != "/VMC/Ext/T" || m.Tags != "f" || m.Args[0] != tm {
		t.Errorf("T: %+v", m)
	}
}

// TestVMC checks VMC frames as bundles and as single messages, with
// ARKit and VRM names.
func TestVMC(t *testing.T) {
	w := testWeights()
	head := UnityHead(&analysis.Pose{Yaw: 20, Pitch: -10, Roll: 5})
	var vrm [NumVRM]float32
	VRMWeights(&vrm, w)
	for _, c := range []struct {
		name    string
		names   string
		bundle  bool
		want    []string
		weights []float32
	}{
		{"arkit bundle", NamesARKit, true, ARKit[:], w[:]},
		{"arkit single", NamesARKit, false, ARKit[:], w[:]},
		{"vrm bundle", NamesVRM, true, VRM[:], vrm[:]},
		{"vrm single", NamesVRM, false, VRM[:], vrm[:]},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := NewVMC(c.names, c.bundle)
			if err != nil {
				t.Fatal(err)
			}
			var d Datagrams
			e.Encode(&d, w, head, 1.5)
			checkVMC(t, &d, c.want, c.weights, head, 1.5)
			lastVal, apply := -1, -1
			for i := range d.Len() {
				p := d.At(i)
				if len(p) > MaxDatagram {
					t.Errorf("datagram %d: %d bytes", i, len(p))
				}
				bundle := bytes.HasPrefix(p, []byte("#bundle\x00"))
				if bundle != c.bundle {
					t.Errorf("datagram %d: bundle %v", i, bundle)
				}
				msgs, _ := osc.Parse(p)
				if !c.bundle && len(msgs) != 1 {
					t.Errorf("datagram %d: %d messages", i, len(msgs))
				}
				for _, m := range msgs {
					switch m.Address {
					case "/VMC/Ext/Blend/Val":
						lastVal = i
					case "/VMC/Ext/Blend/Apply":
						apply = i
					}
				}
			}
			if apply < lastVal {
				t.Errorf("Apply in datagram %d before a Val in %d", apply, lastVal)
			}
			if c.bundle && c.names == NamesARKit && d.Len() < 2 {
				t.Errorf("52 values in %d datagram: want them split", d.Len())
			}
			if !c.bundle && d.Len() != len(c.want)+4 {
				t.Errorf("%d datagrams, want one per message", d.Len())
			}
			if d.Size() != len(d.buf) {
				t.Errorf("Size %d of %d", d.Size(), len(d.buf))
			}
		})
	}
	if _, err := NewVMC("blendshapes", true); err == nil {
		t.Error("bad names accepted")
	}
}

// TestDatagramsSplit fills bundles with messages of many sizes: every
// datagram stays under MaxDatagram and the messages keep their order.
func TestDatagramsSplit(t *testing.T) {
	var d Datagrams
	for _, bundle := range []bool{true, false} {
		d.Reset(bundle)
		var want []string
		for i := range 300 {
			addr := "/x/" + strings.Repeat("a", i%97) + "/" + strconv.Itoa(i)
			want = append(want, addr)
			d.begin(addr, "i")
			d.buf = osc.Int(d.buf, int32(i))
			d.end()
		}
		d.Finish()
		got := parseAll(t, &d)
		if len(got) != len(want) {
			t.Fatalf("bundle %v: %d messages, want %d", bundle, len(got), len(want))
		}
		for i, m := range got {
			if m.Address != want[i] || m.Args[0] != int32(i) {
				t.Fatalf("bundle %v: message %d = %+v", bundle, i, m)
			}
		}
		for i := range d.Len() {
			if n := len(d.At(i)); n > MaxDatagram {
				t.Errorf("bundle %v: datagram %d has %d bytes", bundle, i, n)
			}
		}
		if bundle && d.Len() > 300*90/MaxDatagram+10 {
			t.Errorf("%d bundles: badly filled", d.Len())
		}
	}
}

// liveLinkPacket is a decoded Live Link Face v6 packet.
type liveLinkPacket struct {
	version          uint8
	device, subject  string
	frame            int32
	subframe         float32
	rateNum, rateDen int32
	values           []float32
}

// decodeLiveLink reads a packet as RIG_PROTOCOLS.md describes it, on its
// own (no encoder code): u8 version, i32-prefixed device id and subject,
// i32 frame, f32 sub-frame, i32 rate numerator and denominator, u8 count
// and count big-endian f32.
func decodeLiveLink(p []byte) (liveLinkPacket, error) {
	var pk liveLinkPacket
	short := errors.New("short packet")
	take := func(n int) ([]byte, error) {
		if len(p) < n {
			return nil, short
		}
		b := p[:n]
		p = p[n:]
		return b, nil
	}
	u32 := func() (uint32, error) {
		b, err := take(4)
		if err != nil {
			return 0, err
		}
		return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), nil
	}
	str := func() (string, error) {
		n, err := u32()
		if err != nil || n > 1024 {
			return "", short
		}
		b, err := take(int(n))
		return string(b), err
	}
	b, err := take(1)
	if err != nil {
		return pk, err
	}
	pk.version = b[0]
	if pk.device, err = str(); err != nil {
		return pk, err
	}
	if pk.subject, err = str(); err != nil {
		return pk, err
	}
	var u [4]uint32
	for i := range u {
		if u[i], err = u32(); err != nil {
			return pk, err
		}
	}
	pk.frame, pk.subframe, pk.rateNum, pk.rateDen = int32(u[0]), math.Float32frombits(u[1]), int32(u[2]), int32(u[3])
	if b, err = take(1); err != nil {
		return pk, err
	}
	for range int(b[0]) {
		v, err := u32()
		if err != nil {
			return pk, err
		}
		pk.values = append(pk.values, math.Float32frombits(v))
	}
	if len(p) != 0 {
		return pk, errors.New("trailing bytes")
	}
	return pk, nil
}

// TestLiveLinkPacket decodes the packet of a synthetic face.
func TestLiveLinkPacket(t *testing.T) {
	f := testFace(t, 3, 100)
	r := frame(1234, 0, f)
	var w [NumARKit]float32
	NewARKitMap(testLayout().BlendShapes).Weights(&w, f.Blend, NoShaping)
	yaw, pitch, roll := LiveLinkHead(f.Pose)
	e := LiveLink{DeviceID: "affectd-cam1", Subject: "Ana", FPSNum: 30000, FPSDen: 1001}
	p := e.Append([]byte("junk"), r.Seq, &w, yaw, pitch, roll)
	if string(p[:4]) != "junk" {
		t.Fatal("Append overwrote the buffer's start")
	}
	pk, err := decodeLiveLink(p[4:])
	if err != nil {
		t.Fatal(err)
	}
	if pk.version != 6 || pk.device != "affectd-cam1" || pk.subject != "Ana" || pk.frame != 1234 ||
		pk.subframe != 0 || pk.rateNum != 30000 || pk.rateDen != 1001 || len(pk.values) != 61 {
		t.Fatalf("header: %+v", pk)
	}
	if pk.values[17] != 0.5 {
		t.Errorf("jawOpen (17) = %v, want 0.5", pk.values[17])
	}
	want := map[int]float32{17: 0.5, 23: 0.8, 7: 0.25} // jawOpen, mouthSmileLeft, eyeBlinkRight
	for i := range 52 {
		if pk.values[i] != want[i] {
			t.Errorf("shape %d (%s) = %v, want %v", i, ARKit[i], pk.values[i], want[i])
		}
	}
	// Head: our pose in radians (+ yaw to the subject's left, + pitch up,
	// + roll to the subject's left), the eyes 0.
	const rad = math.Pi / 180
	for i, v := range []float64{20 * rad, -10 * rad, 5 * rad, 0, 0, 0, 0, 0, 0} {
		if math.Abs(float64(pk.values[52+i])-v) > 1e-3 {
			t.Errorf("value %d = %v, want %v", 52+i, pk.values[52+i], v)
		}
	}
}

// TestOSCProfile checks a face's addresses and values.
func TestOSCProfile(t *testing.T) {
	l := testLayout()
	e := NewOSC("cam1", l)
	f := testFace(t, 3, 100)
	var w [NumARKit]float32
	NewARKitMap(l.BlendShapes).Weights(&w, f.Blend, NoShaping)
	var d Datagrams
	d.Reset(true)
	e.EncodeAbsent(&d, 2)
	e.Encode(&d, 3, &f, &w)
	d.Finish()
	got := map[string]osc.Parsed{}
	msgs := parseAll(t, &d)
	for _, m := range msgs {
		if _, dup := got[m.Address]; dup {
			t.Errorf("%s twice", m.Address)
		}
		got[m.Address] = m
	}
	if msgs[0].Address != "/affectd/cam1/2/present" || msgs[0].Tags != "F" || msgs[1].Address != "/affectd/cam1/3/present" || msgs[1].Tags != "T" {
		t.Errorf("first: %+v %+v", msgs[0], msgs[1])
	}
	want := map[string][]any{
		"/affectd/cam1/3/au/AU1":             {float32(0)},
		"/affectd/cam1/3/au/AU12":            {float32(2)},
		"/affectd/cam1/3/au/AU45":            {float32(4.5)},
		"/affectd/cam1/3/va":                 {float32(0.25), float32(-0.5)},
		"/affectd/cam1/3/expr/neutral":       {float32(0.1)},
		"/affectd/cam1/3/expr/happiness":     {float32(0.7)},
		"/affectd/cam1/3/expr/sad_ness":      {float32(0.2)},
		"/affectd/cam1/3/blend/jawOpen":      {float32(0.5)},
		"/affectd/cam1/3/blend/eyeBlinkLeft": {float32(0)},
		"/affectd/cam1/3/blend/tongueOut":    {float32(0)},
		"/affectd/cam1/3/pose":               {float32(0.17), float32(-0.35), float32(0.09)},
	}
	for addr, args := range want {
		m, ok := got[addr]
		if !ok {
			t.Errorf("no %s", addr)
			continue
		}
		if len(m.Args) != len(args) || strings.Count(m.Tags, "f") != len(args) {
			t.Errorf("%s: %+v, want %v", addr, m, args)
			continue
		}
		for i := range args {
			if m.Args[i] != args[i] {
				t.Errorf("%s: %+v, want %v", addr, m, args)
			}
		}
	}
	blends := 0
	for a := range got {
		if strings.HasPrefix(a, "/affectd/cam1/3/blend/") {
			blends++
		}
	}
	if n := len(lmau.AUs) + 1 + 3 + blends + 1 + 2; blends != 52 || len(msgs) != n {
		t.Errorf("%d messages, %d blend shapes; want %d, 52", len(msgs), blends, n)
	}
	for i := range d.Len() {
		if len(d.At(i)) > MaxDatagram {
			t.Errorf("datagram %d: %d bytes", i, len(d.At(i)))
		}
	}

	// A face without model values, pose or landmarks: present, zero
	// blend shapes, nothing else.
	d.Reset(true)
	bare := analysis.Face{ID: "cam1/4"}
	var zero [NumARKit]float32
	e.Encode(&d, 4, &bare, &zero)
	d.Finish()
	if msgs := parseAll(t, &d); len(msgs) != 1+52 {
		t.Errorf("bare face: %d messages", len(msgs))
	}

	// A layout without a valence head, and a stream with odd characters.
	e = NewOSC("a b#c", &analysis.Layout{Heads: []analysis.HeadInfo{{Name: "expr", Labels: []string{"x/y"}}}})
	d.Reset(true)
	f.Values = [][]float32{{0.5}}
	e.Encode(&d, 1, &f, &w)
	d.Finish()
	seen := map[string]bool{}
	for _, m := range parseAll(t, &d) {
		seen[m.Address] = true
	}
	if !seen["/affectd/a_b_c/1/expr/x_y"] || seen["/affectd/a_b_c/1/va"] {
		t.Errorf("sanitised addresses: %v", seen)
	}
}

// TestOSCCache checks that ended faces leave the address cache and that
// it stays bounded.
func TestOSCCache(t *testing.T) {
	e := NewOSC("cam1", testLayout())
	var d Datagrams
	for n := uint64(1); n <= 3; n++ {
		e.EncodeAbsent(&d, n)
	}
	e.Forget(2)
	if e.Cached() != 2 {
		t.Errorf("%d cached, want 2", e.Cached())
	}
	for n := uint64(10); n < 10+3*maxFaceCache; n++ {
		e.EncodeAbsent(&d, n)
		if e.Cached() > maxFaceCache {
			t.Fatalf("%d cached", e.Cached())
		}
	}
}

// TestEncodeAllocs checks that encoding a frame allocates nothing once
// the buffers have grown.
func TestEncodeAllocs(t *testing.T) {
	w := testWeights()
	f := testFace(t, 3, 100)
	head := UnityHead(f.Pose)
	var d Datagrams
	vmcB, _ := NewVMC(NamesARKit, true)
	vmcS, _ := NewVMC(NamesVRM, false)
	o := NewOSC("cam1", testLayout())
	ll := LiveLink{DeviceID: "d", Subject: "s", FPSNum: 25, FPSDen: 1}
	var buf []byte
	m := NewARKitMap(lmau.BlendShapes)
	for _, c := range []struct {
		name string
		run  func()
	}{
		{"vmc arkit bundle", func() { vmcB.Encode(&d, w, head, 1) }},
		{"vmc vrm single", func() { vmcS.Encode(&d, w, head, 1) }},
		{"osc", func() {
			d.Reset(true)
			o.EncodeAbsent(&d, 2)
			o.Encode(&d, 3, &f, w)
			d.Finish()
		}},
		{"livelink", func() {
			y, p, r := LiveLinkHead(f.Pose)
			buf = ll.Append(buf[:0], 7, w, y, p, r)
		}},
		{"weights", func() { m.Weights(w, f.Blend, Shaping{Gain: 1.5, DeadZone: 0.1}) }},
	} {
		c.run() // warm up
		if n := testing.AllocsPerRun(100, c.run); n != 0 {
			t.Errorf("%s: %v allocations per frame", c.name, n)
		}
	}
}
