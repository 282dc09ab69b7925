package iris

import (
	"math"

	"github.com/affectd/affectd/track/mesh"
)

// BlendShapes names Blend's values, in order (ARKit's names; Left and Right
// are the subject's sides: Left is Eyes.Left, the eye on the image's right).
var BlendShapes = []string{
	"eyeBlinkLeft", "eyeBlinkRight",
	"eyeWideLeft", "eyeWideRight",
	"eyeSquintLeft", "eyeSquintRight",
	"eyeLookUpLeft", "eyeLookUpRight",
	"eyeLookDownLeft", "eyeLookDownRight",
	"eyeLookInLeft", "eyeLookInRight",
	"eyeLookOutLeft", "eyeLookOutRight",
}

// Blend's normalisation. All absolute (no per-face neutral): the lid
// constants are set from the iris model's contour on the test photos
// (TestBlink), where the open eyes measure Openness 0.261 and 0.251
// (astronaut, right and left), 0.236 and 0.214 (Grace Hopper), the lids
// closed by a warp 0.091–0.139, and the lower lid's drop (lowerDrop) 0.124,
// 0.108, 0.096 and 0.056 open. The lid measures come from the iris model's
// contour, not the mesh's lids (159/145, 386/374): on the closed-eye warps
// the mesh's lid aperture stayed at its open value (0.22–0.26 of the eye
// width) while the contour's closed.
const (
	// eyeBlink is 0 at an Openness of OpenNorm or more (the least open of
	// the measured open eyes, 0.214, gives 0.05) and 1 at OpenClosed or
	// less (the most closed warp, 0.091), linear between.
	OpenNorm   = 0.22
	OpenClosed = 0.10
	// eyeWide is 0 at an Openness of WideFrom or less and 1 at WideFull.
	// There is no wide-eyed test photo: WideFrom is just above the widest
	// measured open eye (0.261), WideFull a guess.
	WideFrom = 0.28
	WideFull = 0.38
	// eyeSquint is 0 while the lower lid's middle is LowerNorm or more of
	// the eye width below the corner line and 1 at LowerSquint. Not
	// validated on a real squint; on the closed-eye warps the iris model
	// pulls its lower lid up too (to 0.04–0.08), so eyeSquint co-fires with
	// eyeBlink there.
	LowerNorm   = 0.09
	LowerSquint = 0.02
	// The eye-in-head angle (degrees) at which a look shape reaches 1:
	// about three quarters of the eye's range of motion (≈45° sideways,
	// ≈40° up, ≈50° down). The angles are the gaze vectors' (the pupillary
	// axis; the ≈5° angle kappa to the line of sight is not corrected,
	// being below the per-eye accuracy) in the head frame of the canonical
	// face fit, so the shapes stay at rest when the head turns and the eyes
	// follow it. Their rest values carry the gaze estimate's absolute
	// errors: the astronaut, looking into the camera with her head pitched
	// 9.5° down by the fit, reads eyeLookUp ≈0.5.
	LookSideDeg = 35
	LookUpDeg   = 30
	LookDownDeg = 40
)

// Openness is an eye's lid aperture over its width: the area enclosed by
// the iris model's eyelid contour (points 0..15) over the squared distance
// between its corners, i.e. the mean lid-to-lid height over the width.
func Openness(e *Eye) float64 {
	c := &e.Contour
	var a float64
	// Lower lid 0..8 (outer to inner), then the upper lid back from inner
	// to outer: 15..9.
	var poly [16]mesh.Point3
	copy(poly[:9], c[0:9])
	for i := 0; i < 7; i++ {
		poly[9+i] = c[15-i]
	}
	for i := range poly {
		p, q := poly[i], poly[(i+1)%len(poly)]
		a += float64(p.X*q.Y - q.X*p.Y)
	}
	w := math.Hypot(float64(c[ContourInner].X-c[ContourOuter].X), float64(c[ContourInner].Y-c[ContourOuter].Y))
	if !(w > 0) {
		return 0
	}
	return math.Abs(a) / 2 / (w * w)
}

// lowerDrop is how far the lower lid's middle (points 3..5) lies below the
// corner line (negative: above it), over the eye width.
func lowerDrop(e *Eye) float64 {
	c := &e.Contour
	o, i := c[ContourOuter], c[ContourInner]
	dx, dy := float64(i.X-o.X), float64(i.Y-o.Y)
	w := math.Hypot(dx, dy)
	if !(w > 0) {
		return 0
	}
	// The corner line's unit normal pointing down the face (image y down).
	nx, ny := -dy/w, dx/w
	if ny < 0 {
		nx, ny = -nx, -ny
	}
	var s float64
	for _, p := range c[3:6] {
		s += nx*float64(p.X-o.X) + ny*float64(p.Y-o.Y)
	}
	return s / 3 / w
}

func ramp(x, zero, one float64) float32 {
	v := (x - zero) / (one - zero)
	if math.IsNaN(v) {
		return 0
	}
	return float32(min(1, max(0, v)))
}

// Blend gives the eye blend shapes (BlendShapes' order, each 0..1) of a
// face from its mesh fit and the Eyes that Fitter.Fit made of it:
//   - eyeBlink from Openness, eyeWide from Openness above the open norm,
//     eyeSquint from the lower lid's rise towards the corner line;
//   - eyeLook* from each eye's gaze vector turned into the head frame:
//     up/down from its pitch, in (towards the nose) and out from its yaw.
//
// Each side uses only its own eye's measures.
func Blend(m *mesh.Mesh, e *Eyes) [14]float32 {
	var out [14]float32
	h := headPose(m)
	for side, eye := range [2]*Eye{&e.Left, &e.Right} {
		o := Openness(eye)
		out[0+side] = ramp(o, OpenNorm, OpenClosed)
		out[2+side] = ramp(o, WideFrom, WideFull)
		out[4+side] = ramp(lowerDrop(eye), LowerNorm, LowerSquint)
		if !h.ok {
			continue
		}
		if eye.Gaze == ([3]float32{}) {
			continue // no gaze (a degenerate mesh)
		}
		g := h.r.tmul(vec3{float64(eye.Gaze[0]), float64(eye.Gaze[1]), float64(eye.Gaze[2])})
		yaw := math.Atan2(g[0], -g[2]) * 180 / math.Pi   // > 0: towards the subject's left
		pitch := math.Atan2(g[1], -g[2]) * 180 / math.Pi // > 0: down
		// Inwards (nasal) is towards the subject's left for the right eye.
		in := yaw
		if side == 0 {
			in = -yaw
		}
		out[6+side] = ramp(-pitch, 0, LookUpDeg)
		out[8+side] = ramp(pitch, 0, LookDownDeg)
		out[10+side] = ramp(in, 0, LookSideDeg)
		out[12+side] = ramp(-in, 0, LookSideDeg)
	}
	return out
}
