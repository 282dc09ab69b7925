package rig

import "strings"

// NumARKit is the number of ARKit blend shapes.
const NumARKit = 52

// ARKit are Apple ARKit's 52 blend-shape names in Live Link Face's order
// (its packet's order, and the order of VMC's "arkit" names). Left and
// Right are the subject's own sides, as in ARKit.
var ARKit = [NumARKit]string{
	"eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
	"eyeSquintLeft", "eyeWideLeft",
	"eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
	"eyeSquintRight", "eyeWideRight",
	"jawForward", "jawRight", "jawLeft", "jawOpen",
	"mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
	"mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
	"mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
	"mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
	"mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
	"mouthUpperUpLeft", "mouthUpperUpRight",
	"browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
	"cheekPuff", "cheekSquintLeft", "cheekSquintRight",
	"noseSneerLeft", "noseSneerRight", "tongueOut",
}

// Indices into ARKit of the shapes the VRM mapping reads (checked against
// the names by the tests).
const (
	iEyeBlinkLeft      = 0
	iEyeSquintLeft     = 5
	iEyeBlinkRight     = 7
	iEyeSquintRight    = 12
	iJawOpen           = 17
	iMouthFunnel       = 19
	iMouthPucker       = 20
	iMouthSmileLeft    = 23
	iMouthSmileRight   = 24
	iMouthFrownLeft    = 25
	iMouthFrownRight   = 26
	iMouthStretchLeft  = 29
	iMouthStretchRight = 30
	iBrowDownLeft      = 41
	iBrowDownRight     = 42
	iBrowInnerUp       = 43
	iCheekSquintLeft   = 47
	iCheekSquintRight  = 48
)

// ARKitIndex is name's index in ARKit (matched regardless of case, so
// that "JawOpen" is jawOpen), or -1.
func ARKitIndex(name string) int {
	for i, n := range ARKit {
		if strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

// ARKitMap places the blend shapes of a layout (analysis.Layout's
// BlendShapes) in ARKit order. It is read-only once made: safe for
// concurrent use.
type ARKitMap struct {
	to   []int8 // per layout name: its ARKit index, -1 for none
	mask uint64
}

// NewARKitMap maps the layout's blend-shape names. Names that are not
// ARKit's are left out; of two names for one shape the first is used.
func NewARKitMap(names []string) *ARKitMap {
	m := &ARKitMap{to: make([]int8, len(names))}
	for i, n := range names {
		m.to[i] = -1
		if k := ARKitIndex(n); k >= 0 && m.mask&(1<<k) == 0 {
			m.to[i] = int8(k)
			m.mask |= 1 << k
		}
	}
	return m
}

// Estimated is the set of ARKit shapes the layout gives: bit i stands
// for ARKit[i]. The others are always 0.
func (m *ARKitMap) Estimated() uint64 { return m.mask }

// EstimatedNames are the ARKit names the layout gives, in ARKit order.
func (m *ARKitMap) EstimatedNames() []string {
	var out []string
	for i, n := range ARKit {
		if m.mask&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// Weights writes a face's blend shapes (in the layout's order, as
// analysis.Face.Blend) into dst in ARKit order, each through s; shapes
// the layout does not give are 0. A nil blend gives all zeros.
func (m *ARKitMap) Weights(dst *[NumARKit]float32, blend []float32, s Shaping) {
	*dst = [NumARKit]float32{}
	for i, v := range blend {
		if i >= len(m.to) {
			break
		}
		if k := m.to[i]; k >= 0 {
			dst[k] = s.Apply(v)
		}
	}
}

// Shaping is a target's gain and dead zone for blend-shape weights:
//
//	v' = clamp((v − DeadZone) / (1 − DeadZone) · Gain, 0, 1)   for v > DeadZone
//	v' = 0                                                      otherwise
//
// so weights at or under the dead zone are cut to 0, the rest are
// stretched back over 0..1 and multiplied by the gain. NaN gives 0.
// Options.Validate bounds Gain to (0, 10] and DeadZone to [0, 1).
type Shaping struct {
	Gain, DeadZone float32
}

// NoShaping passes weights through (clamped to 0..1).
var NoShaping = Shaping{Gain: 1}

// Apply shapes one weight.
func (s Shaping) Apply(v float32) float32 {
	if !(v > s.DeadZone) {
		return 0
	}
	v = (v - s.DeadZone) / (1 - s.DeadZone) * s.Gain
	if !(v > 0) {
		return 0
	}
	return min(v, 1)
}

// NumVRM is the number of VRM presets sent.
const NumVRM = 12

// VRM are the VRM 0.x blend-shape presets sent with the "vrm" names, in
// the order they are sent. Blink_L and Blink_R are the avatar's left and
// right eye, which are the subject's own (the avatar moves like the
// subject; mirroring is the receiver's option).
var VRM = [NumVRM]string{"A", "I", "U", "E", "O", "Blink", "Blink_L", "Blink_R", "Joy", "Angry", "Sorrow", "Fun"}

// VRMWeights derives the VRM 0.x presets from ARKit weights (after
// shaping), each clamped to 0..1. With mean(a, b) = (a + b) / 2:
//
//	open     = jawOpen
//	spread   = mean(mouthStretchLeft, mouthStretchRight)
//	A        = open · (1 − spread)          the open "aa" mouth
//	E        = open · spread                open and spread: A + E = jawOpen,
//	                                        so the mouth never opens twice
//	I        = spread · (1 − open)          spread lips, mouth closed ("ee")
//	U        = mouthPucker · (1 − open)     rounded, nearly closed ("oo")
//	O        = mouthFunnel                  rounded and open ("oh")
//	Blink    = min(eyeBlinkLeft, eyeBlinkRight)
//	Blink_L  = eyeBlinkLeft − Blink         what one eye closes beyond
//	Blink_R  = eyeBlinkRight − Blink        the other: Blink + Blink_L is the
//	                                        left eye's closure, never doubled
//	smile    = mean(mouthSmileLeft, mouthSmileRight)
//	squint   = max(mean(eyeSquintLeft, eyeSquintRight),
//	               mean(cheekSquintLeft, cheekSquintRight))
//	Fun      = min(smile, squint)           a smile that narrows the eyes
//	Joy      = smile − Fun                  the rest of the smile: Joy + Fun
//	                                        is the smile, never doubled
//	Angry    = mean(browDownLeft, browDownRight)
//	Sorrow   = mean(mouthFrownLeft, mouthFrownRight) · (0.5 + 0.5·browInnerUp)
//	                                        driven by the frown, deepened by
//	                                        raised inner brows; raised brows
//	                                        alone (surprise) give none
//
// The landmark backend (infer/lmau) estimates jawOpen, the smiles,
// frowns, stretches, blinks, brows and eyeWide, not pucker, funnel or the
// squints: with it U, O and Fun stay 0 and Joy is the mean smile. The
// presets LookUp, LookDown, LookLeft, LookRight and Neutral are not sent.
func VRMWeights(dst *[NumVRM]float32, w *[NumARKit]float32) {
	mean := func(a, b int) float32 { return (w[a] + w[b]) / 2 }
	open := clamp01(w[iJawOpen])
	spread := clamp01(mean(iMouthStretchLeft, iMouthStretchRight))
	blinkL, blinkR := clamp01(w[iEyeBlinkLeft]), clamp01(w[iEyeBlinkRight])
	blink := min(blinkL, blinkR)
	smile := clamp01(mean(iMouthSmileLeft, iMouthSmileRight))
	squint := clamp01(max(mean(iEyeSquintLeft, iEyeSquintRight), mean(iCheekSquintLeft, iCheekSquintRight)))
	fun := min(smile, squint)
	*dst = [NumVRM]float32{
		open * (1 - spread),
		spread * (1 - open),
		clamp01(w[iMouthPucker]) * (1 - open),
		open * spread,
		clamp01(w[iMouthFunnel]),
		blink,
		blinkL - blink,
		blinkR - blink,
		smile - fun,
		clamp01(mean(iBrowDownLeft, iBrowDownRight)),
		clamp01(mean(iMouthFrownLeft, iMouthFrownRight)) * (0.5 + 0.5*clamp01(w[iBrowInnerUp])),
		fun,
	}
	for i, v := range dst {
		dst[i] = clamp01(v)
	}
}

// clamp01 clamps v to [0, 1] (NaN: 0).
func clamp01(v float32) float32 {
	if !(v > 0) {
		return 0
	}
	return min(v, 1)
}
