package lmau

import (
	"cmp"
	"math"
	"slices"

	"github.com/affectd/affectd/track"
)

// Point is a landmark in frame pixels.
type Point = track.Point

// Shape is 68 landmarks in iBUG 300-W order: 0–16 jaw, 17–21 the subject's
// right brow, 22–26 left brow, 27–30 nose bridge, 31–35 nostrils, 36–41
// right eye, 42–47 left eye, 48–59 outer lips, 60–67 inner lips (the
// layout of track/landmarks).
type Shape = [68]track.Point

// AUs are the action units this backend estimates, in output order.
var AUs = []string{"AU1", "AU2", "AU4", "AU5", "AU12", "AU15", "AU20", "AU25", "AU26", "AU45"}

// Indices into AUs.
const (
	AU1 = iota
	AU2
	AU4
	AU5
	AU12
	AU15
	AU20
	AU25
	AU26
	AU45
	NumAUs
)

// Occurrence is the intensity at which an AU counts as present (OpenFace's
// AUxx_c is a separate classifier; here presence is intensity ≥ 1, "trace").
const Occurrence = 1.0

// The measurements, in units of the inter-eye distance, in the face frame
// (x towards the subject's left, y down). R/L are the subject's sides.
const (
	fBrowInnerR = iota // inner brow (21) above the inner eye corner (39)
	fBrowInnerL        // 22 above 42
	fBrowOuterR        // outer brow (17, 18) above the outer eye corner (36)
	fBrowOuterL        // 25, 26 above 45
	fBrowGap           // horizontal gap between the inner brows (21–22)
	fEyeOpenR          // mean lid opening (37–41, 38–40)
	fEyeOpenL          // 43–47, 44–46
	fCornerUpR         // lip corner (48) height relative to the nose base (33)
	fCornerUpL         // 54
	fCornerOutR        // lip corner (48) away from the face's midline
	fCornerOutL        // 54
	fLipGap            // inner lips apart (61–67, 62–66, 63–65)
	fJawDrop           // chin (8) below the nose base (33)
	numFeatures
)

// Features are one frame's measurements of one face.
type Features [numFeatures]float32

// Measure takes a face's measurements; ok is false for a degenerate shape
// (eyes on top of each other).
func Measure(s *Shape) (f Features, ok bool) {
	er, el := centre(s, 36, 41), centre(s, 42, 47)
	dx, dy := float64(el.X-er.X), float64(el.Y-er.Y)
	iod := math.Hypot(dx, dy)
	if iod < 1e-3 {
		return f, false
	}
	// Face frame: origin at the eye midpoint, x along the eye line, unit IOD.
	c, sn := dx/iod, dy/iod
	ox, oy := float64(er.X+el.X)/2, float64(er.Y+el.Y)/2
	var p [68][2]float64
	for i, q := range s {
		x, y := float64(q.X)-ox, float64(q.Y)-oy
		p[i] = [2]float64{(c*x + sn*y) / iod, (-sn*x + c*y) / iod}
	}
	y := func(i int) float64 { return p[i][1] }
	x := func(i int) float64 { return p[i][0] }
	dist := func(a, b int) float64 { return math.Hypot(p[a][0]-p[b][0], p[a][1]-p[b][1]) }
	midX := (x(27) + x(30) + x(33) + x(51) + x(57)) / 5
	f[fBrowInnerR] = float32(y(39) - y(21))
	f[fBrowInnerL] = float32(y(42) - y(22))
	f[fBrowOuterR] = float32(y(36) - (y(17)+y(18))/2)
	f[fBrowOuterL] = float32(y(45) - (y(25)+y(26))/2)
	f[fBrowGap] = float32(x(22) - x(21))
	f[fEyeOpenR] = float32((dist(37, 41) + dist(38, 40)) / 2)
	f[fEyeOpenL] = float32((dist(43, 47) + dist(44, 46)) / 2)
	// Relative to the nose base, not the lips: opening the mouth moves the
	// lower lip, not the corners' height.
	f[fCornerUpR] = float32(y(33) - y(48))
	f[fCornerUpL] = float32(y(33) - y(54))
	f[fCornerOutR] = float32(midX - x(48))
	f[fCornerOutL] = float32(x(54) - midX)
	f[fLipGap] = float32((dist(61, 67) + dist(62, 66) + dist(63, 65)) / 3)
	f[fJawDrop] = float32(y(8) - y(33))
	return f, true
}

func centre(s *Shape, a, b int) Point {
	var x, y float32
	for i := a; i <= b; i++ {
		x += s[i].X
		y += s[i].Y
	}
	n := float32(b - a + 1)
	return Point{X: x / n, Y: y / n}
}

// Gains: intensity 5 (FACS "E", the maximum) is reached at this change
// from the neutral, in inter-eye distances (IOD, eye centre to eye
// centre, about 62 mm on an adult): the reference deformation of each
// AU's 5. They are set so that ordinary expressions land inside the scale
// and only the strongest reach its top; earlier versions reached 5 at a
// third to a half of these and saturated on a broad smile.
//
//	AU1, AU2   inner / outer brow raised 0.20 IOD (≈ 12 mm)
//	AU4        brows lowered 0.10 IOD, or drawn together 0.12
//	AU5        upper lid raised: the lid opening grown by 0.06 IOD
//	AU12       lip corners raised 0.35 IOD against the nose base
//	           (≈ 22 mm; widening 0.30 IOD adds up to half as much)
//	AU15       lip corners lowered 0.12 IOD
//	AU20       lip corners pulled out 0.20 IOD without rising
//	AU25       inner lips 0.35 IOD apart
//	AU26       chin dropped 0.40 IOD
//	AU45       the eye closed to 15% of its neutral opening (rising
//	           from 75%)
const (
	gainBrowUp    = 5 / 0.20
	gainBrowDown  = 5 / 0.10
	gainBrowGap   = 5 / 0.12
	gainEyeWide   = 5 / 0.06
	gainCornerUp  = 5 / 0.35
	gainCornerDn  = 5 / 0.12
	gainCornerOut = 5 / 0.30
	gainStretch   = 5 / 0.20
	gainLipGap    = 5 / 0.35
	gainJawDrop   = 5 / 0.40
	// AU45: the eyes closed to this fraction of their neutral opening and
	// below count as a full blink; from startBlink on the intensity rises.
	fullBlink  = 0.15
	startBlink = 0.75
)

// Sides are per-side intensities where the face has two (for blend shapes).
type Sides struct {
	BrowInner, BrowOuter, BrowDown, EyeWide, Blink, Smile, Frown, Stretch [2]float32 // [right, left]
	JawOpen                                                               float32
}

// Estimate turns measurements and a neutral baseline into AU intensities
// (0–5) and per-side intensities.
func Estimate(f, neutral *Features) (au [NumAUs]float32, sides Sides) {
	d := func(i int) float32 { return f[i] - neutral[i] }
	pos := func(v float32) float32 { return max(v, 0) }
	clamp := func(v float32) float32 { return min(max(v, 0), 5) }
	for side := 0; side < 2; side++ {
		inner, outer := fBrowInnerR+side, fBrowOuterR+side
		sides.BrowInner[side] = clamp(gainBrowUp * pos(d(inner)))
		sides.BrowOuter[side] = clamp(gainBrowUp * pos(d(outer)))
		sides.BrowDown[side] = clamp(gainBrowDown*pos(-(d(inner)+d(outer))/2) + gainBrowGap*pos(-d(fBrowGap))/2)
		eye := fEyeOpenR + side
		sides.EyeWide[side] = clamp(gainEyeWide * pos(d(eye)))
		if n := neutral[eye]; n > 1e-4 {
			ratio := f[eye] / n
			sides.Blink[side] = clamp(5 * (startBlink - ratio) / (startBlink - fullBlink))
		}
		up, out := d(fCornerUpR+side), d(fCornerOutR+side)
		sides.Smile[side] = clamp(gainCornerUp*pos(up) + gainCornerOut*pos(out)/2)
		sides.Frown[side] = clamp(gainCornerDn * pos(-up))
		sides.Stretch[side] = clamp(gainStretch * pos(out-pos(up)))
	}
	mean := func(v [2]float32) float32 { return (v[0] + v[1]) / 2 }
	au[AU1] = mean(sides.BrowInner)
	au[AU2] = mean(sides.BrowOuter)
	au[AU4] = mean(sides.BrowDown)
	au[AU5] = mean(sides.EyeWide)
	au[AU12] = mean(sides.Smile)
	au[AU15] = mean(sides.Frown)
	au[AU20] = mean(sides.Stretch)
	au[AU25] = clamp(gainLipGap * pos(d(fLipGap)))
	au[AU26] = clamp(gainJawDrop * pos(d(fJawDrop)))
	au[AU45] = mean(sides.Blink)
	sides.JawOpen = au[AU26]
	return au, sides
}

// Prior is the population neutral every face starts from: the
// measurements of dlib's 68-point mean shape (the predictor's initial
// shape, the average of the iBUG 300-W training faces, frontal), measured
// here by TestPriorIsDlibMeanShape. On the test media's two photos, which
// are not neutral (the astronaut smiles with her lips parted), the brows,
// eyes and jaw lie within 0.05 eye distances of it, the smile's lip
// corners 0.17 higher and the lips 0.06 further apart.
var Prior = Features{0.2908, 0.2908, 0.2699, 0.2699, 0.3656, 0.1235, 0.1235, -0.2858, -0.2858, 0.4451, 0.4451, 0.0877, 1.0610}

// Neutral says where a face's neutral comes from.
type Neutral int

// Neutral modes.
const (
	// NeutralPrior starts from Prior and learns the face's own neutral
	// from its least active frames (default).
	NeutralPrior Neutral = iota
	// NeutralFirst takes the face's first frame as its neutral, fixed
	// (a recording that starts on a neutral face).
	NeutralFirst
	// NeutralFixed uses given measurements, fixed (a neutral picture of
	// the subject, measured beforehand).
	NeutralFixed
)

// Baseline is a face's neutral. With NeutralPrior it is the mean of Prior,
// counted as priorWeight frames at first and fading to a tenth of that as
// the window fills, and the face's calm frames among its last window: the
// quarter of them with the least activity (the sum of the AU intensities
// they show against Prior). A
// face that smiles most of the time is so measured against its calmest
// moments, not its first frame; a face that starts mid-expression reads
// it from frame 1; and a face that starts crying stops being measured
// against its tears once it has rested for a quarter of its frames. The
// zero value is a NeutralPrior baseline.
type Baseline struct {
	mode  Neutral
	f     Features // the neutral
	fixed Features // NeutralFixed's
	n     int      // frames seen
	win   []sample // the last window frames, a ring
	next  int      // the ring's next slot
	order []int32  // the window by activity (scratch)
	last  Features
	reset bool // calibrated: fixed at the frame it was asked on
}

type sample struct {
	f Features
	a float32 // activity against Prior
}

const (
	// priorWeight is how many calm frames Prior counts as.
	priorWeight = 50
	// window is how many of a face's last frames the neutral is learnt
	// from (30 s at 25 fps).
	window = 750
)

// NewBaseline makes a baseline: mode NeutralFixed uses fixed.
func NewBaseline(mode Neutral, fixed *Features) Baseline {
	b := Baseline{mode: mode}
	if fixed != nil {
		b.fixed = *fixed
	}
	return b
}

// activity is how much a face shows against Prior.
func activity(f *Features) float32 {
	au, _ := Estimate(f, &Prior)
	var a float32
	for _, v := range au {
		a += v
	}
	return a
}

// Update adds a frame's measurements.
func (b *Baseline) Update(f *Features) {
	b.last = *f
	first := b.n == 0
	b.n++
	switch {
	case b.reset:
		return
	case b.mode == NeutralFixed:
		b.f = b.fixed
		return
	case b.mode == NeutralFirst:
		if first {
			b.f = *f
		}
		return
	}
	s := sample{*f, activity(f)}
	if len(b.win) < window {
		b.win = append(b.win, s)
	} else {
		b.win[b.next] = s
		b.next = (b.next + 1) % window
	}
	// The quarter of the window's frames with the least activity, then
	// their mean with the prior's (fading as the window fills).
	b.order = b.order[:0]
	for i := range b.win {
		b.order = append(b.order, int32(i))
	}
	slices.SortStableFunc(b.order, func(x, y int32) int { return cmp.Compare(b.win[x].a, b.win[y].a) })
	pw := priorWeight * max(0.1, 1-float64(len(b.win))/window)
	var sum [numFeatures]float64
	for i := range sum {
		sum[i] = pw * float64(Prior[i])
	}
	calm := (len(b.order) + 3) / 4
	for _, i := range b.order[:calm] {
		for k, v := range b.win[i].f {
			sum[k] += float64(v)
		}
	}
	for i := range b.f {
		b.f[i] = float32(sum[i] / (pw + float64(calm)))
	}
}

// Neutral is the current neutral.
func (b *Baseline) Neutral() *Features { return &b.f }

// Reset makes the last measurements the neutral, fixed from now on
// (calibration).
func (b *Baseline) Reset() {
	if b.n > 0 {
		b.f = b.last
		b.reset = true
	}
}

// BlendShapes are the ARKit-named weights this backend gives, in output
// order, each from one intensity by the mapping table below.
var BlendShapes = []string{
	"jawOpen",
	"mouthSmileLeft", "mouthSmileRight",
	"mouthFrownLeft", "mouthFrownRight",
	"mouthStretchLeft", "mouthStretchRight",
	"eyeBlinkLeft", "eyeBlinkRight",
	"eyeWideLeft", "eyeWideRight",
	"browDownLeft", "browDownRight",
	"browInnerUp",
	"browOuterUpLeft", "browOuterUpRight",
}

// The mapping table: ARKit blend shape = intensity / 5 (clamped to [0,1])
// of one per-side movement. Left/Right are the subject's sides, as ARKit.
//
//	jawOpen            AU26 (jaw drop)
//	mouthSmile{L,R}    AU12 on that side (lip corner up and out)
//	mouthFrown{L,R}    AU15 on that side (lip corner down)
//	mouthStretch{L,R}  AU20 on that side (lip corner out, not up)
//	eyeBlink{L,R}      AU45 of that eye (lids closed)
//	eyeWide{L,R}       AU5 of that eye (upper lid raised)
//	browDown{L,R}      AU4 on that side (brow lowered, drawn in)
//	browInnerUp        AU1 (mean of both inner brows)
//	browOuterUp{L,R}   AU2 on that side (outer brow raised)
func blend(s *Sides, au *[NumAUs]float32) [16]float32 {
	const R, L = 0, 1
	v := [16]float32{
		s.JawOpen,
		s.Smile[L], s.Smile[R],
		s.Frown[L], s.Frown[R],
		s.Stretch[L], s.Stretch[R],
		s.Blink[L], s.Blink[R],
		s.EyeWide[L], s.EyeWide[R],
		s.BrowDown[L], s.BrowDown[R],
		au[AU1],
		s.BrowOuter[L], s.BrowOuter[R],
	}
	for i := range v {
		v[i] = min(max(v[i]/5, 0), 1)
	}
	return v
}

// Result is one face's estimate for one frame.
type Result struct {
	AU     [NumAUs]float32 // 0–5
	Active [NumAUs]bool    // AU ≥ Occurrence
	Blend  [16]float32     // 0–1, BlendShapes order
}

// Face is one face's landmark AU state: its neutral (Baseline) and a
// pending calibration. The zero value starts from Prior; it belongs to one
// goroutine.
type Face struct {
	Base      Baseline
	calibrate bool
}

// Update measures the face in a frame, learns its neutral and returns its
// estimate; ok is false for a degenerate shape.
func (fc *Face) Update(s *Shape) (r Result, ok bool) {
	f, ok := Measure(s)
	if !ok {
		return r, false
	}
	fc.Base.Update(&f)
	if fc.calibrate {
		fc.Base.Reset()
		fc.calibrate = false
	}
	var sides Sides
	r.AU, sides = Estimate(&f, fc.Base.Neutral())
	for i, v := range r.AU {
		r.Active[i] = v >= Occurrence
	}
	r.Blend = blend(&sides, &r.AU)
	return r, true
}

// Calibrate makes the face's next frame its neutral, fixed from then on.
func (fc *Face) Calibrate() { fc.calibrate = true }
