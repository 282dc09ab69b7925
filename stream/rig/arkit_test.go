package rig

import (
	"math"
	"testing"

	"github.com/affectd/affectd/infer/lmau"
)

// TestARKitNames checks the 52 names: unique, in Live Link Face's order
// at the places the code relies on, and covering the landmark backend's.
func TestARKitNames(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range ARKit {
		if seen[n] {
			t.Errorf("%s twice", n)
		}
		seen[n] = true
	}
	for _, c := range []struct {
		i    int
		name string
	}{
		{0, "eyeBlinkLeft"}, {13, "eyeWideRight"}, {17, "jawOpen"}, {51, "tongueOut"},
		{iEyeBlinkLeft, "eyeBlinkLeft"}, {iEyeSquintLeft, "eyeSquintLeft"}, {iEyeBlinkRight, "eyeBlinkRight"},
		{iEyeSquintRight, "eyeSquintRight"}, {iJawOpen, "jawOpen"}, {iMouthFunnel, "mouthFunnel"},
		{iMouthPucker, "mouthPucker"}, {iMouthSmileLeft, "mouthSmileLeft"}, {iMouthSmileRight, "mouthSmileRight"},
		{iMouthFrownLeft, "mouthFrownLeft"}, {iMouthFrownRight, "mouthFrownRight"},
		{iMouthStretchLeft, "mouthStretchLeft"}, {iMouthStretchRight, "mouthStretchRight"},
		{iBrowDownLeft, "browDownLeft"}, {iBrowDownRight, "browDownRight"}, {iBrowInnerUp, "browInnerUp"},
		{iCheekSquintLeft, "cheekSquintLeft"}, {iCheekSquintRight, "cheekSquintRight"},
	} {
		if ARKit[c.i] != c.name {
			t.Errorf("ARKit[%d] = %s, want %s", c.i, ARKit[c.i], c.name)
		}
	}
	for _, n := range lmau.BlendShapes {
		if ARKitIndex(n) < 0 {
			t.Errorf("the landmark backend's %s is not an ARKit name", n)
		}
	}
	if ARKitIndex("JawOpen") != 17 || ARKitIndex("smile") != -1 {
		t.Error("ARKitIndex")
	}
}

// TestARKitMap places the landmark backend's 16 shapes and leaves the
// other 36 at 0.
func TestARKitMap(t *testing.T) {
	m := NewARKitMap(append(append([]string(nil), lmau.BlendShapes...), "notAShape", "jawOpen"))
	names := m.EstimatedNames()
	if len(names) != len(lmau.BlendShapes) {
		t.Fatalf("estimated %v", names)
	}
	var mask uint64
	for _, n := range lmau.BlendShapes {
		mask |= 1 << ARKitIndex(n)
	}
	if m.Estimated() != mask {
		t.Errorf("mask %x, want %x", m.Estimated(), mask)
	}
	blend := make([]float32, len(lmau.BlendShapes)+2)
	for i := range blend {
		blend[i] = float32(i+1) / 20
	}
	blend[len(blend)-1] = 0.99 // a second jawOpen: ignored
	var w [NumARKit]float32
	for i := range w {
		w[i] = 7 // overwritten
	}
	m.Weights(&w, blend, NoShaping)
	for k, name := range ARKit {
		want := float32(0)
		for i, n := range lmau.BlendShapes {
			if n == name {
				want = blend[i]
			}
		}
		if w[k] != want {
			t.Errorf("%s = %v, want %v", name, w[k], want)
		}
	}
	m.Weights(&w, nil, NoShaping)
	if w != [NumARKit]float32{} {
		t.Error("nil blend: want zeros")
	}
	m.Weights(&w, blend[:3], NoShaping) // short: the rest 0
	if w[iJawOpen] != blend[0] || w[iMouthFrownLeft] != 0 {
		t.Errorf("short blend: %v", w)
	}
}

// TestShaping checks gain and dead zone.
func TestShaping(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		s       Shaping
		in, out float32
	}{
		{NoShaping, 0.3, 0.3}, {NoShaping, 1.2, 1}, {NoShaping, -0.1, 0}, {NoShaping, nan, 0},
		{Shaping{Gain: 2}, 0.3, 0.6}, {Shaping{Gain: 2}, 0.6, 1},
		{Shaping{Gain: 1, DeadZone: 0.2}, 0.2, 0}, {Shaping{Gain: 1, DeadZone: 0.2}, 0.1, 0},
		{Shaping{Gain: 1, DeadZone: 0.2}, 0.6, 0.5}, {Shaping{Gain: 1, DeadZone: 0.2}, 1, 1},
		{Shaping{Gain: 0.5, DeadZone: 0.5}, 1, 0.5}, {Shaping{Gain: 3, DeadZone: 0.5}, 0.6, 0.6},
	} {
		if got := c.s.Apply(c.in); math.Abs(float64(got-c.out)) > 1e-6 {
			t.Errorf("%+v.Apply(%v) = %v, want %v", c.s, c.in, got, c.out)
		}
	}
}

// TestVRMWeights checks the VRM table.
func TestVRMWeights(t *testing.T) {
	set := func(kv ...any) *[NumARKit]float32 {
		var w [NumARKit]float32
		for i := 0; i < len(kv); i += 2 {
			w[ARKitIndex(kv[i].(string))] = float32(kv[i+1].(float64))
		}
		return &w
	}
	for _, c := range []struct {
		name string
		in   *[NumARKit]float32
		want map[string]float32 // the others 0
	}{
		{"neutral", set(), nil},
		{"open", set("jawOpen", 0.8), map[string]float32{"A": 0.8}},
		{"open and spread", set("jawOpen", 0.5, "mouthStretchLeft", 0.4, "mouthStretchRight", 0.6),
			map[string]float32{"A": 0.25, "E": 0.25, "I": 0.25}},
		{"pucker", set("mouthPucker", 0.6, "jawOpen", 0.5), map[string]float32{"A": 0.5, "U": 0.3}},
		{"funnel", set("mouthFunnel", 0.7), map[string]float32{"O": 0.7}},
		{"wink", set("eyeBlinkLeft", 0.9, "eyeBlinkRight", 0.1),
			map[string]float32{"Blink": 0.1, "Blink_L": 0.8}},
		{"blink", set("eyeBlinkLeft", 1.0, "eyeBlinkRight", 1.0), map[string]float32{"Blink": 1}},
		{"smile", set("mouthSmileLeft", 0.6, "mouthSmileRight", 0.8), map[string]float32{"Joy": 0.7}},
		{"smile with eyes", set("mouthSmileLeft", 0.8, "mouthSmileRight", 0.8, "cheekSquintLeft", 0.5, "cheekSquintRight", 0.5),
			map[string]float32{"Joy": 0.3, "Fun": 0.5}},
		{"angry", set("browDownLeft", 0.5, "browDownRight", 0.7), map[string]float32{"Angry": 0.6}},
		{"sad", set("mouthFrownLeft", 0.8, "mouthFrownRight", 0.8, "browInnerUp", 1.0), map[string]float32{"Sorrow": 0.8}},
		{"frown", set("mouthFrownLeft", 0.8, "mouthFrownRight", 0.8), map[string]float32{"Sorrow": 0.4}},
		{"surprise", set("browInnerUp", 1.0), nil},
		{"out of range", set("jawOpen", 3.0, "mouthSmileLeft", -2.0, "mouthSmileRight", -2.0), map[string]float32{"A": 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var v [NumVRM]float32
			VRMWeights(&v, c.in)
			for i, name := range VRM {
				if want := c.want[name]; math.Abs(float64(v[i]-want)) > 1e-6 {
					t.Errorf("%s = %v, want %v", name, v[i], want)
				}
			}
		})
	}
	want := []string{"A", "I", "U", "E", "O", "Blink", "Blink_L", "Blink_R", "Joy", "Angry", "Sorrow", "Fun"}
	for i, n := range want {
		if VRM[i] != n {
			t.Errorf("VRM[%d] = %s, want %s", i, VRM[i], n)
		}
	}
}
