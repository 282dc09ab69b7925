package rig

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/stream/osc"
)

// testLayout is a model with valence/arousal and expression heads, then
// the landmark backend's AUs and blend shapes.
func testLayout() *analysis.Layout {
	return &analysis.Layout{
		Heads: []analysis.HeadInfo{
			{Name: "va", Labels: []string{"valence", "arousal"}, Activation: "tanh", Source: "model", Range: "-1..1"},
			{Name: "expr", Labels: []string{"neutral", "happiness", "sad ness"}, Activation: "softmax", Source: "model", Range: "0..1"},
			{Name: "au", Labels: lmau.AUs, Activation: "intensity", Source: "landmarks", Range: "0..5"},
		},
		BlendShapes: lmau.BlendShapes,
	}
}

// blendIndex is name's index in lmau.BlendShapes.
func blendIndex(t testing.TB, name string) int {
	t.Helper()
	for i, n := range lmau.BlendShapes {
		if n == name {
			return i
		}
	}
	t.Fatalf("no blend shape %s", name)
	return -1
}

// testFace is face n of stream cam1 with values in every head: AU i is
// i/2, jawOpen 0.5, mouthSmileLeft 0.8, eyeBlinkRight 0.25, the others
// 0.
func testFace(t testing.TB, n int, box float32) analysis.Face {
	t.Helper()
	au := make([]float32, len(lmau.AUs))
	for i := range au {
		au[i] = float32(i) / 2
	}
	blend := make([]float32, len(lmau.BlendShapes))
	blend[blendIndex(t, "jawOpen")] = 0.5
	blend[blendIndex(t, "mouthSmileLeft")] = 0.8
	blend[blendIndex(t, "eyeBlinkRight")] = 0.25
	return analysis.Face{
		ID:         "cam1/" + strconv.Itoa(n),
		Box:        [4]float32{10, 20, box, box},
		Score:      0.9,
		Values:     [][]float32{{0.25, -0.5}, {0.1, 0.7, 0.2}, au},
		LandmarkAU: au,
		Pose:       &analysis.Pose{Yaw: 20, Pitch: -10, Roll: 5, T: [3]float32{0, 0, 600}, R: [3]float32{0.17, -0.35, 0.09}},
		Blend:      blend,
		Fit:        0.02,
	}
}

// frame is a result of stream cam1 captured at ms milliseconds.
func frame(seq uint64, ms int64, faces ...analysis.Face) *analysis.FrameResult {
	return &analysis.FrameResult{
		Stream: "cam1", Seq: seq,
		CapturedAt: time.UnixMilli(1_700_000_000_000 + ms),
		PTS:        time.Duration(ms) * time.Millisecond,
		Width:      640, Height: 480,
		Faces: faces,
	}
}

// parseAll decodes every datagram of d, in order.
func parseAll(t testing.TB, d *Datagrams) []osc.Parsed {
	t.Helper()
	var out []osc.Parsed
	for i := range d.Len() {
		m, err := osc.Parse(d.At(i))
		if err != nil {
			t.Fatalf("datagram %d: %v (%q)", i, err, d.At(i))
		}
		out = append(out, m...)
	}
	return out
}

// listen is a UDP receiver on 127.0.0.1.
func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadBuffer(4 << 20); err != nil {
		t.Log(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive reads datagrams until none comes for wait.
func receive(t testing.TB, c *net.UDPConn, wait time.Duration) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 65536)
	for {
		if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil {
			return out
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
}

// newOutput makes an output to c with o's other fields defaulted.
func newOutput(t testing.TB, c *net.UDPConn, o Options) *Output {
	t.Helper()
	if c != nil {
		o.Target = c.LocalAddr().String()
	}
	if o.Stream == "" {
		o.Stream = "cam1"
	}
	if o.Face == "" {
		o.Face = FaceLargest
	}
	if o.Gain == 0 {
		o.Gain = 1
	}
	if o.Kind == KindVMC && o.Names == "" {
		o.Names = NamesARKit
	}
	if o.Kind == KindLiveLink && o.Subject == "" {
		o.Subject = "affectd"
	}
	out, err := New(o, testLayout())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	return out
}
