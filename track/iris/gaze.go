package iris

import (
	"math"

	"github.com/affectd/affectd/track/mesh"
)

// Gaze model: OpenFace 2's (GazeAnalysis::EstimateGaze in
// lib/local/GazeAnalyser/src/GazeEstimation.cpp), on the face mesh instead
// of OpenFace's 3D landmarks, and under the mesh's orthographic projection
// instead of a pinhole camera.
//
//  1. Head pose: a similarity fit (orthogonal Procrustes with scale) of
//     MediaPipe's canonical face (23 rigid points: forehead, nose, eye
//     corners; see canonical) to the mesh gives the head's rotation and
//     the scale in frame pixels per millimetre. The mesh's z shares the x
//     and y pixel scale, so this is a 3D fit.
//  2. Each eyeball's centre of rotation: the midpoint of the mesh's two eye
//     corners (33/133, 263/362; OpenFace uses its landmarks 36/39 and
//     42/45, the same points) moved by (0, −EyeCentreUpMM, EyeCentreBackMM)
//     millimetres in the head frame (x towards the subject's left, y down
//     the face, z into the head).
//  3. The iris centre lies on a sphere of radius IrisRotationMM about that
//     centre: the camera ray through the iris model's iris centre (parallel
//     to z, the projection being orthographic) meets the sphere's near side,
//     and the gaze is the unit vector from the centre to that point. A ray
//     that misses the sphere (an iris centre further from the eyeball centre
//     in the image than the radius) is taken at the sphere's rim (gaze
//     perpendicular to the camera axis).
//
// Departures from OpenFace's constants, and why:
//   - OpenFace intersects the ray with a 12 mm sphere (the eyeball's
//     radius); here the sphere is the one the visible iris centre moves on
//     as the eye turns: the entrance pupil is ≈3.05 mm behind the corneal
//     apex (Gullstrand's schematic eye) and the centre of rotation ≈13.5 mm
//     behind it (Fry & Hill 1962), 10.45 mm apart. 12 mm would make the
//     angles ≈13% too small for a given iris displacement.
//   - OpenFace puts the centre 3.5 mm above its corners' midpoint; here
//     0.5 mm: in primary gaze the pupil centre sits ≈0.5 mm above the
//     middle of the lid aperture (clinical norms: upper lid margin to pupil
//     centre MRD1 ≈ 4–4.5 mm, lower MRD2 ≈ 5–5.5 mm), and in the canonical
//     face the corners' midpoint is level with the aperture's middle (26.25
//     vs 26.29 mm). With 3.5 mm both test photos' subjects, who look into
//     the camera, read 11–12° downwards (with 0.5 mm, 5° upwards). The 7 mm depth is OpenFace's (the
//     centre of rotation 13.5 mm behind a corneal apex ≈6.5 mm in front of
//     the corners); it only matters when the head turns.
//   - The eye corners are the mesh's, not the iris model's: the iris model's
//     corners follow the iris (they moved by ≈0.3 of the iris displacement
//     of TestGazeKnownDirection's horizontal warps, the mesh's by ≈0.1),
//     which cut the angles' response to ≈0.6 of the true change. The
//     cost: where the mesh misplaces an outer corner (glasses frames:
//     12.7 px on Grace Hopper's right eye, eye width 40 px), that eye's
//     angle is off (+23° there, where the iris model's corners would give
//     −3°).
//   - The scale comes from the whole face (step 1), so an iris's measured
//     size does not enter; the test uses the iris size instead, to stay
//     independent.
//
// Angles, as OpenFace's gaze_angle_x/y: for the mean g of the two eyes'
// unit gaze vectors, AngleX = atan2(g.x, −g.z) and AngleY = atan2(g.y,
// −g.z), in radians, in camera axes (x right, y down, z away from the
// camera). Looking straight into the camera gives ≈0; AngleX > 0 when the
// gaze turns towards the image's right (the subject looks to their own
// left) and AngleY > 0 when it turns down. OpenFace's documentation says the
// same: looking left to right (the subject's) takes gaze_angle_x from
// positive to negative, up to down takes gaze_angle_y from negative to
// positive.
//
// What is not modelled: perspective (the rays are parallel: for a face off
// the camera axis the angles are relative to the optical axis, not to the
// line of sight to the camera, off by up to half the field of view), the
// angle kappa between the pupillary axis (which the gaze vectors follow)
// and the visual axis (≈5° nasal; OpenFace and Blend ignore it too), the
// cornea's refraction, and each person's own eye size (the
// constants are adult means).
//
// Measured limits (TestGazeKnownDirection, iris discs moved in real photos
// by a physical eye model): horizontal changes of ±10° and ±20° read within
// 5° (≈0.8 of the true change at 20°); vertical ones read at only ≈0.2–0.6
// of the true change, for two measured reasons:
//   - the iris model moves its iris centre by only 0.5–0.87 of a vertical
//     iris move (≈0.5 downwards at 20°), and by about as much (±0.14) when
//     its crop is held where it was on the unwarped photo: the model
//     under-reads, whatever the crop's placement. No anchor makes up for
//     that; a gain would have to be fitted to this test, which could then
//     no longer check it;
//   - the mesh follows the moved lid and iris: its eye corners by 0.13–0.53
//     of the move, but also its brows (up to 0.53), forehead (0.06–0.52) and
//     nose bridge (up to 0.46); only the lower nose and chin stay (≤ 0.14).
//     So an eyeball centre placed by the head fit of the canonical points
//     other than the eye corners (forehead and nose) moves too (0.11–0.33),
//     and it was tried and left out: with it the vertical ±20° warps read
//     −11 to −12° and +8 to +10° instead of −7 to −9° and +4 to +7°, but
//     Grace Hopper's unwarped gaze_angle_y went from −5° to −31°: the
//     canonical face puts her eye corners 4–5 mm below the mesh's, and at
//     5.5° a millimetre, a mean face's eye height relative to the forehead
//     and nose cannot place an eyeball centre. The corners are the
//     person's own.
const (
	// IrisRotationMM is the distance from the eye's centre of rotation to
	// the visible iris centre (entrance pupil): 13.5 − 3.05 mm.
	IrisRotationMM = 10.45
	// EyeCentreUpMM and EyeCentreBackMM place the centre of rotation
	// relative to the eye corners' midpoint.
	EyeCentreUpMM   = 0.5
	EyeCentreBackMM = 7.0
)

// canonical holds rigid points of MediaPipe's canonical face model
// (mediapipe/modules/face_geometry/data/canonical_face_model.obj, the
// mesh's mean face in centimetres), in millimetres and in camera axes (x
// towards the subject's left, y down, z into the head): forehead, nose
// ridge and wings, eye corners. Its eye corners are 26.6 mm apart and the
// two eyes' corner midpoints 63.0 mm (the mean adult interpupillary
// distance).
var canonical = [...]struct {
	i       int
	x, y, z float64
}{
	{10, 0.00, -82.62, -44.82},
	{151, 0.00, -65.45, -50.27},
	{9, 0.00, -48.86, -53.85},
	{8, 0.00, -40.19, -52.85},
	{168, 0.00, -32.71, -52.36},
	{6, 0.00, -24.73, -57.89},
	{197, 0.00, -17.28, -63.17},
	{195, 0.00, -10.59, -67.75},
	{5, 0.00, -3.66, -72.43},
	{4, 0.00, 4.63, -75.87},
	{1, 0.00, 11.27, -74.76},
	{98, -14.06, 17.14, -52.41},
	{327, 14.06, 17.14, -52.41},
	{129, -17.86, 9.78, -48.50},
	{358, 17.86, 9.78, -48.50},
	{33, -44.46, -26.64, -31.73},
	{133, -18.56, -25.85, -37.58},
	{362, 18.56, -25.85, -37.58},
	{263, 44.46, -26.64, -31.73},
	{109, -18.91, -82.36, -42.75},
	{338, 18.91, -82.36, -42.75},
	{67, -35.24, -80.06, -37.29},
	{297, 35.24, -80.06, -37.29},
}

type vec3 [3]float64

func v3(p mesh.Point3) vec3 { return vec3{float64(p.X), float64(p.Y), float64(p.Z)} }

func (a vec3) add(b vec3) vec3      { return vec3{a[0] + b[0], a[1] + b[1], a[2] + b[2]} }
func (a vec3) sub(b vec3) vec3      { return vec3{a[0] - b[0], a[1] - b[1], a[2] - b[2]} }
func (a vec3) scale(s float64) vec3 { return vec3{a[0] * s, a[1] * s, a[2] * s} }
func (a vec3) dot(b vec3) float64   { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
func (a vec3) finite() bool         { d := a.dot(a); return !math.IsNaN(d) && !math.IsInf(d, 0) }
func (a vec3) f32() [3]float32      { return [3]float32{float32(a[0]), float32(a[1]), float32(a[2])} }

type mat3 [3][3]float64

func (m *mat3) mul(v vec3) vec3 {
	return vec3{m[0][0]*v[0] + m[0][1]*v[1] + m[0][2]*v[2], m[1][0]*v[0] + m[1][1]*v[1] + m[1][2]*v[2], m[2][0]*v[0] + m[2][1]*v[1] + m[2][2]*v[2]}
}

// tmul is mᵀv.
func (m *mat3) tmul(v vec3) vec3 {
	return vec3{m[0][0]*v[0] + m[1][0]*v[1] + m[2][0]*v[2], m[0][1]*v[0] + m[1][1]*v[1] + m[2][1]*v[2], m[0][2]*v[0] + m[1][2]*v[1] + m[2][2]*v[2]}
}

func (m *mat3) det() float64 {
	return m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) - m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) + m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
}

// polar returns the orthogonal factor of m's polar decomposition (the
// rotation nearest to m, when det m > 0) by Newton's iteration
// X ← (X + X⁻ᵀ)/2, and false if m is singular or the result is not a
// rotation.
func polar(m mat3) (mat3, bool) {
	x := m
	for it := 0; it < 50; it++ {
		det := x.det()
		if !(math.Abs(det) > 1e-300) {
			return x, false
		}
		// X⁻ᵀ is the cofactor matrix over the determinant.
		var n mat3
		var diff float64
		for i := 0; i < 3; i++ {
			for j := 0; j < 3; j++ {
				i1, i2, j1, j2 := (i+1)%3, (i+2)%3, (j+1)%3, (j+2)%3
				cof := x[i1][j1]*x[i2][j2] - x[i1][j2]*x[i2][j1]
				n[i][j] = (x[i][j] + cof/det) / 2
				diff = max(diff, math.Abs(n[i][j]-x[i][j]))
			}
		}
		x = n
		if diff < 1e-12 {
			break
		}
	}
	return x, math.Abs(x.det()-1) < 1e-6
}

// head is the head pose of step 1: frame ≈ px·R·(canonical − cc) + mc.
type head struct {
	r      mat3    // the head's axes (columns) in camera axes
	px     float64 // frame pixels per millimetre
	cc, mc vec3    // the canonical points' centroid (mm) and the mesh's (px)
	ok     bool
}

// headPose fits the canonical points to the mesh by a similarity.
func headPose(m *mesh.Mesh) head {
	var h head
	n := float64(len(canonical))
	for _, c := range canonical {
		h.cc = h.cc.add(vec3{c.x, c.y, c.z}.scale(1 / n))
		h.mc = h.mc.add(v3(m.Points[c.i]).scale(1 / n))
	}
	var cov mat3 // Σ (mesh − mc)(canonical − cc)ᵀ
	var cn float64
	for _, c := range canonical {
		a := v3(m.Points[c.i]).sub(h.mc)
		b := vec3{c.x, c.y, c.z}.sub(h.cc)
		for i := 0; i < 3; i++ {
			for j := 0; j < 3; j++ {
				cov[i][j] += a[i] * b[j]
			}
		}
		cn += b.dot(b)
	}
	var ok bool
	if h.r, ok = polar(cov); !ok {
		return h
	}
	// Least-squares scale: Σ a·(R b) / Σ |b|² = tr(Rᵀ cov) / Σ |b|².
	var tr float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			tr += h.r[i][j] * cov[i][j]
		}
	}
	h.px = tr / cn
	h.ok = h.px > 0 && !math.IsInf(h.px, 0)
	return h
}

// eyeCentre is step 2 for the eye with corners a, b.
func (h *head) eyeCentre(a, b mesh.Point3) vec3 {
	c := v3(a).add(v3(b)).scale(0.5)
	return c.add(h.r.mul(vec3{0, -EyeCentreUpMM, EyeCentreBackMM}).scale(h.px))
}

// eyeGaze is step 3 for the eyeball centre c and the iris centre p.
func (h *head) eyeGaze(c vec3, p mesh.Point3) vec3 {
	r := IrisRotationMM * h.px
	dx, dy := float64(p.X)-c[0], float64(p.Y)-c[1]
	d2 := dx*dx + dy*dy
	if d2 >= r*r {
		d := math.Sqrt(d2)
		return vec3{dx / d, dy / d, 0}
	}
	return vec3{dx / r, dy / r, -math.Sqrt(r*r-d2) / r}
}

// gaze fills in e's gaze vectors and angles from the mesh m; it leaves them
// zero when the head pose fit fails (a degenerate mesh).
func gaze(m *mesh.Mesh, e *Eyes) {
	h := headPose(m)
	if !h.ok {
		return
	}
	P := &m.Points
	gr := h.eyeGaze(h.eyeCentre(P[mesh.RightEyeOuter], P[mesh.RightEyeInner]), e.Right.Iris[0])
	gl := h.eyeGaze(h.eyeCentre(P[mesh.LeftEyeOuter], P[mesh.LeftEyeInner]), e.Left.Iris[0])
	if !gr.finite() || !gl.finite() {
		return
	}
	e.Right.Gaze, e.Left.Gaze = gr.f32(), gl.f32()
	g := gr.add(gl)
	e.AngleX, e.AngleY = float32(math.Atan2(g[0], -g[2])), float32(math.Atan2(g[1], -g[2]))
}
