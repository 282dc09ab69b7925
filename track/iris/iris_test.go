package iris_test

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/iris"
	"github.com/affectd/affectd/track/landmarks"
	"github.com/affectd/affectd/track/mesh"
)

// Mesh lid lines (MediaPipe's annotations, as in human's facemeshcoords):
// the lid margins (Upper0, Lower0, outer to inner corner) and the skin line
// ≈7 mm above the upper margin (Upper2), per eye: [0] the subject's right
// (image left), [1] the left.
var (
	upper0 = [2][]int{{33, 246, 161, 160, 159, 158, 157, 173, 133}, {263, 466, 388, 387, 386, 385, 384, 398, 362}}
	lower0 = [2][]int{{33, 7, 163, 144, 145, 153, 154, 155, 133}, {263, 249, 390, 373, 374, 380, 381, 382, 362}}
	upper2 = [2][]int{{113, 225, 224, 223, 222, 221, 189}, {342, 445, 444, 443, 442, 441, 413}}
)

var colorBlack = color.RGBA{}

var photos = []string{"astronaut.png", "grace_hopper_512x512.jpg"}

type fixture struct {
	f   *iris.Fitter
	me  *mesh.Mesher
	det *track.Detector
}

func setup(t testing.TB) *fixture {
	t.Helper()
	lib := testenv.RequireORT(t)
	cache, _ := testenv.Cache()
	fx := &fixture{}
	var err error
	if fx.me, err = mesh.New(lib, testenv.HumanModel(t, "facemesh")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.me.Close() })
	if fx.f, err = iris.New(lib, testenv.HumanModel(t, "iris")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.f.Close() })
	if fx.det, err = track.NewDetector(track.DetectorOptions{LibraryPath: lib,
		ModelPath: filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.det.Close() })
	return fx
}

type face struct {
	name string
	img  gocv.Mat
	box  track.Rect
	m    mesh.Mesh
	e    iris.Eyes
}

// photo loads a test photo and fits its (one) face.
func (fx *fixture) photo(t testing.TB, name string) *face {
	t.Helper()
	cache, _ := testenv.Cache()
	img := gocv.IMRead(filepath.Join(cache, "photos", name), gocv.IMReadColor)
	if img.Empty() {
		t.Fatalf("%s: no image", name)
	}
	t.Cleanup(func() { img.Close() })
	dets, err := fx.det.Detect(img, nil)
	if err != nil || len(dets) == 0 {
		t.Fatalf("%s: %d faces, %v", name, len(dets), err)
	}
	fc := &face{name: name, img: img, box: dets[0].Box}
	fc.m, fc.e = fx.fit(t, img, fc.box)
	return fc
}

// fit runs the mesh and the iris model on img in box.
func (fx *fixture) fit(t testing.TB, img gocv.Mat, box track.Rect) (mesh.Mesh, iris.Eyes) {
	t.Helper()
	m, err := fx.me.Fit(img, box)
	if err != nil {
		t.Fatal(err)
	}
	e, err := fx.f.Fit(img, &m)
	if err != nil {
		t.Fatal(err)
	}
	return m, e
}

func d2(a, b mesh.Point3) float64 { return math.Hypot(float64(a.X-b.X), float64(a.Y-b.Y)) }
func deg(r float64) float64       { return r * 180 / math.Pi }

// eyeAngles are OpenFace's angles of one eye's gaze vector, in degrees.
func eyeAngles(e *iris.Eye) (x, y float64) {
	g := e.Gaze
	return deg(math.Atan2(float64(g[0]), -float64(g[2]))), deg(math.Atan2(float64(g[1]), -float64(g[2])))
}

// inPoly: is (x, y) inside the polygon (even-odd rule)?
func inPoly(x, y float64, poly []mesh.Point3) bool {
	in := false
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		a, b := poly[i], poly[j]
		if (float64(a.Y) > y) != (float64(b.Y) > y) &&
			x < float64(b.X-a.X)*(y-float64(a.Y))/float64(b.Y-a.Y)+float64(a.X) {
			in = !in
		}
	}
	return in
}

// aperture is the eye opening k as a polygon of the mesh's lid margins.
func aperture(m *mesh.Mesh, k int) []mesh.Point3 {
	var poly []mesh.Point3
	for _, i := range lower0[k] {
		poly = append(poly, m.Points[i])
	}
	for j := len(upper0[k]) - 2; j > 0; j-- {
		poly = append(poly, m.Points[upper0[k][j]])
	}
	return poly
}

// TestIrisOnRealFaces: on the test photos the iris model's eye corners
// (contour points 0 and 8) land on the mesh's (33/133, 263/362) and on
// dlib's (36/39, 42/45), the iris centre lies inside both the mesh's and the
// iris model's own lid aperture, and the iris radius is a plausible share of
// the eye width. This checks the crop ↔ frame geometry, the left eye's
// mirroring and the point order (a wrong mirroring puts a corner on the
// other corner, an eye width away).
//
// Measured: astronaut (eye width 20 px) corners 0.6–2.2 px from the mesh's
// and 0.6–1.4 px from dlib's; Grace Hopper (40 px, glasses) inner corners
// 2.2 px from the mesh's, outer 9.7 and 5.9 px, but 1.4–3.5 px from dlib's
// for all four: the mesh's outer corners there are the ones that are off
// (12.7 and 8.2 px from dlib's, track/mesh's test), so the bound against the
// mesh's outer corners is loose and the one against dlib's is not.
func TestIrisOnRealFaces(t *testing.T) {
	fx := setup(t)
	lm, err := landmarks.Load(landmarks.DefaultModelPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lm.Close()
	for _, name := range photos {
		fc := fx.photo(t, name)
		shape, err := lm.Fit(fc.img, fc.box)
		if err != nil {
			t.Fatal(err)
		}
		for k, eye := range []*iris.Eye{&fc.e.Right, &fc.e.Left} {
			outer, inner := fc.m.Points[mesh.RightEyeOuter], fc.m.Points[mesh.RightEyeInner]
			dOuter, dInner := shape[landmarks.RightEyeOuter], shape[landmarks.RightEyeInner]
			if k == 1 {
				outer, inner = fc.m.Points[mesh.LeftEyeOuter], fc.m.Points[mesh.LeftEyeInner]
				dOuter, dInner = shape[landmarks.LeftEyeOuter], shape[landmarks.LeftEyeInner]
			}
			co, ci := eye.Contour[iris.ContourOuter], eye.Contour[iris.ContourInner]
			w := d2(outer, inner)
			do, di := d2(co, outer), d2(ci, inner)
			lo := math.Hypot(float64(co.X-dOuter.X), float64(co.Y-dOuter.Y))
			li := math.Hypot(float64(ci.X-dInner.X), float64(ci.Y-dInner.Y))
			c := eye.Iris[0]
			inMesh := inPoly(float64(c.X), float64(c.Y), aperture(&fc.m, k))
			var lids []mesh.Point3
			lids = append(lids, eye.Contour[:9]...)
			for i := 15; i >= 9; i-- {
				lids = append(lids, eye.Contour[i])
			}
			inOwn := inPoly(float64(c.X), float64(c.Y), lids)
			rim := irisRadius(eye)
			t.Logf("%s eye %d: width %.1f px; outer corner %.1f px from the mesh's, %.1f from dlib's; inner %.1f and %.1f; iris centre (%.1f, %.1f) inside the mesh's lids %v, its own %v; radius %.1f px (%.2f of the width); openness %.3f",
				name, k, w, do, lo, di, li, c.X, c.Y, inMesh, inOwn, rim, rim/w, iris.Openness(eye))
			if di > 0.15*w || do > 0.3*w {
				t.Errorf("%s eye %d: corners %.1f (outer) and %.1f (inner) px from the mesh's (width %.1f px)", name, k, do, di, w)
			}
			if lo > 0.12*w || li > 0.12*w {
				t.Errorf("%s eye %d: corners %.1f (outer) and %.1f (inner) px from dlib's (width %.1f px)", name, k, lo, li, w)
			}
			if !inMesh || !inOwn {
				t.Errorf("%s eye %d: iris centre outside the lids (mesh's: inside %v, own: %v)", name, k, inMesh, inOwn)
			}
			if r := rim / w; r < 0.15 || r > 0.35 {
				t.Errorf("%s eye %d: iris radius %.2f of the eye width", name, k, r)
			}
		}
	}
}

// lidLine is the mesh polyline idx as a function of x (false outside it).
func lidLine(m *mesh.Mesh, idx []int) func(x float64) (float64, bool) {
	pts := make([]mesh.Point3, len(idx))
	for i, j := range idx {
		pts[i] = m.Points[j]
	}
	sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X })
	return func(x float64) (float64, bool) {
		for i := 1; i < len(pts); i++ {
			a, b := pts[i-1], pts[i]
			if x >= float64(a.X) && x <= float64(b.X) && b.X > a.X {
				f := (x - float64(a.X)) / float64(b.X-a.X)
				return float64(a.Y) + f*float64(b.Y-a.Y), true
			}
		}
		return 0, false
	}
}

// moveUpperLids returns img with the upper lid margin of eye k (the mesh's
// Upper0 line) moved to target[k](x, yu, yl) in each column between the
// corners, given the margin's height yu and the lower margin's yl there (nil:
// leave that eye alone): the skin from the mesh's Upper2 line (≈7 mm above
// the margin) down to the margin is stretched or squeezed to end at the
// target: the lowest quarter of that strip (the lid margin with its lashes)
// is translated, the rest stretched. Where the margin rises, the rows it
// uncovers keep their pixels.
func moveUpperLids(img gocv.Mat, m *mesh.Mesh, target [2]func(x, yu, yl float64) float64) gocv.Mat {
	w, h := img.Cols(), img.Rows()
	mapX := gocv.NewMatWithSize(h, w, gocv.MatTypeCV32F)
	defer mapX.Close()
	mapY := gocv.NewMatWithSize(h, w, gocv.MatTypeCV32F)
	defer mapY.Close()
	mx, _ := mapX.DataPtrFloat32()
	my, _ := mapY.DataPtrFloat32()
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			mx[y*w+x], my[y*w+x] = float32(x), float32(y)
		}
	}
	for k := range target {
		if target[k] == nil {
			continue
		}
		up, lo, top := lidLine(m, upper0[k]), lidLine(m, lower0[k]), lidLine(m, upper2[k])
		for x := 0; x < w; x++ {
			yu, ok1 := up(float64(x))
			yl, ok2 := lo(float64(x))
			ya, ok3 := top(float64(x))
			if !ok1 || !ok2 || !ok3 || yl < yu || ya >= yu {
				continue
			}
			yt := target[k](float64(x), yu, yl)
			if yt <= ya {
				continue
			}
			// The margin band (lashes, lid rim: the lowest quarter of the
			// skin strip) moves down as it is; the skin above stretches.
			b := (yu - ya) / 4
			for y := max(0, int(math.Ceil(ya))); y <= min(h-1, int(math.Floor(yt))); y++ {
				fy := float64(y)
				if fy >= yt-b {
					my[y*w+x] = float32(fy - (yt - yu))
				} else {
					my[y*w+x] = float32(ya + (fy-ya)*(yu-b-ya)/(yt-b-ya))
				}
			}
		}
	}
	out := gocv.NewMat()
	gocv.Remap(img, &out, &mapX, &mapY, gocv.InterpolationLinear, gocv.BorderReplicate, colorBlack)
	return out
}

// closeEyes returns img with the chosen eyes' ([0] the subject's right)
// upper lids pulled down onto the lower lid margins (moveUpperLids): the lash
// line comes to rest on the lower lid and the iris and sclera disappear
// under stretched lid skin. The lower lids are kept.
func closeEyes(img gocv.Mat, m *mesh.Mesh, which [2]bool) gocv.Mat {
	var target [2]func(x, yu, yl float64) float64
	for k := range which {
		if which[k] {
			target[k] = func(_, _, yl float64) float64 { return yl }
		}
	}
	return moveUpperLids(img, m, target)
}

// Physical eye model of the gaze test (kept apart from the estimator's
// constants): the visible iris is a disc of testIrisMM across (the mean
// horizontal visible iris diameter, 11.7 mm) on an eyeball of testEyeballMM
// radius (12 mm, an axial length of 24 mm), so its centre turns on a
// circle of sqrt(12² − 5.85²) = 10.48 mm about the eyeball's centre.
const (
	testIrisMM    = 11.7
	testEyeballMM = 12.0
)

// moveIris returns img with each eye's iris disc (centre and rim radius
// from the iris fit e) moved by d[k] pixels ([0] the subject's right eye):
//   - a vertical move takes the upper lid along (the upper lid follows the
//     eye in vertical gaze): its margin moves by d·sin(π·t), t going 0 → 1
//     from corner to corner, the skin above it stretching (moveUpperLids);
//     the lower lid and the corners stay;
//   - inside the new lid aperture, the uncovered part of the old disc and
//     any newly uncovered aperture are filled with the eye's sclera colour
//     (the mean of the brightest quarter of the aperture outside the disc),
//     and the moved disc is copied from the old one (its part that was
//     hidden under a lid is filled with the iris's mean colour);
//   - outside the aperture (lids, lashes, skin) only the lid move changes
//     anything. Disc edges are anti-aliased over one pixel.
func moveIris(t testing.TB, img gocv.Mat, m *mesh.Mesh, e *iris.Eyes, d [2][2]float64) gocv.Mat {
	t.Helper()
	// The upper lid's displacement at x: d_y·sin(π·t) between the corners.
	var lift [2]func(x float64) float64
	for k := range lift {
		a, b := float64(m.Points[lower0[k][0]].X), float64(m.Points[lower0[k][len(lower0[k])-1]].X)
		a, b = min(a, b), max(a, b)
		dy := d[k][1]
		lift[k] = func(x float64) float64 {
			if x <= a || x >= b {
				return 0
			}
			return dy * math.Sin(math.Pi*(x-a)/(b-a))
		}
	}
	var target [2]func(x, yu, yl float64) float64
	for k := range target {
		if d[k][1] != 0 {
			target[k] = func(x, yu, yl float64) float64 { return min(yu+lift[k](x), yl) }
		}
	}
	out := moveUpperLids(img, m, target)
	src, _ := img.DataPtrUint8()
	dst, _ := out.DataPtrUint8()
	w, h := img.Cols(), img.Rows()
	at := func(x, y float64) (c [3]float64) { // bilinear, clamped
		x, y = min(max(x, 0), float64(w-1)), min(max(y, 0), float64(h-1))
		x0, y0 := int(x), int(y)
		x1, y1 := min(x0+1, w-1), min(y0+1, h-1)
		fx, fy := x-float64(x0), y-float64(y0)
		for ch := 0; ch < 3; ch++ {
			v00, v01 := float64(src[(y0*w+x0)*3+ch]), float64(src[(y0*w+x1)*3+ch])
			v10, v11 := float64(src[(y1*w+x0)*3+ch]), float64(src[(y1*w+x1)*3+ch])
			c[ch] = (v00*(1-fx)+v01*fx)*(1-fy) + (v10*(1-fx)+v11*fx)*fy
		}
		return c
	}
	for k, eye := range []*iris.Eye{&e.Right, &e.Left} {
		old := aperture(m, k)
		// The new aperture: the upper lid's points moved with it.
		moved := make([]mesh.Point3, len(old))
		copy(moved, old)
		for i := len(lower0[k]); i < len(moved); i++ {
			moved[i].Y += float32(lift[k](float64(moved[i].X)))
		}
		cx, cy := float64(eye.Iris[0].X), float64(eye.Iris[0].Y)
		rho := irisRadius(eye) + 0.5 // take in the dark limbus
		x0, y0, x1, y1 := w, h, 0, 0
		for _, p := range append(old, moved...) {
			x0, y0 = min(x0, int(p.X)-1), min(y0, int(p.Y)-1)
			x1, y1 = max(x1, int(p.X)+2), max(y1, int(p.Y)+2)
		}
		x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
		// Sclera: the brightest quarter of the aperture outside the disc
		// (the aperture's rim holds lashes and lid shadow).
		type pix struct {
			lum float64
			c   [3]float64
		}
		var outside []pix
		var irisMean [3]float64
		var nIris float64
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				if !inPoly(float64(x), float64(y), old) {
					continue
				}
				var c [3]float64
				for ch := range c {
					c[ch] = float64(src[(y*w+x)*3+ch])
				}
				switch r := math.Hypot(float64(x)-cx, float64(y)-cy); {
				case r > rho+1:
					outside = append(outside, pix{lum: c[0] + c[1] + c[2], c: c})
				case r < rho-1:
					for ch := range c {
						irisMean[ch] += c[ch]
					}
					nIris++
				}
			}
		}
		if len(outside) == 0 || nIris == 0 {
			t.Fatalf("eye %d: no sclera or no iris visible", k)
		}
		sort.Slice(outside, func(i, j int) bool { return outside[i].lum > outside[j].lum })
		var scl [3]float64
		n := max(1, len(outside)/4)
		for _, p := range outside[:n] {
			for ch := range scl {
				scl[ch] += p.c[ch] / float64(n)
			}
		}
		for ch := range irisMean {
			irisMean[ch] /= nIris
		}
		dx, dy := d[k][0], d[k][1]
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				fx, fy := float64(x), float64(y)
				if !inPoly(fx, fy, moved) {
					continue
				}
				var v [3]float64
				if inPoly(fx, fy, old) {
					for ch := range v {
						v[ch] = float64(src[(y*w+x)*3+ch])
					}
				} else {
					v = scl
				}
				aOld := min(1, max(0, rho+0.5-math.Hypot(fx-cx, fy-cy)))
				aNew := min(1, max(0, rho+0.5-math.Hypot(fx-cx-dx, fy-cy-dy)))
				var s [3]float64
				if aNew > 0 {
					if qx, qy := fx-dx, fy-dy; inPoly(qx, qy, old) {
						s = at(qx, qy)
					} else {
						s = irisMean
					}
				}
				for ch := range v {
					c := v[ch]*(1-aOld) + scl[ch]*aOld
					c = c*(1-aNew) + s[ch]*aNew
					dst[(y*w+x)*3+ch] = uint8(min(255, max(0, math.Round(c))))
				}
			}
		}
	}
	return out
}

// irisRadius is the mean distance of the iris fit's rim points from its centre.
func irisRadius(e *iris.Eye) float64 {
	var r float64
	for _, p := range e.Iris[1:] {
		r += d2(p, e.Iris[0]) / 4
	}
	return r
}

// TestGazeKnownDirection: moving the iris disc of both eyes of a real photo
// (moveIris) by the amount a physical eye model gives for a rotation θ
// changes the estimated gaze angle by θ.
//
// The displacement comes from the image, not from the estimator: pixels per
// millimetre from the iris's measured diameter (the iris model's rim
// points, taken as testIrisMM = 11.7 mm across; the estimator's scale comes
// from fitting MediaPipe's canonical face to the whole mesh), and the iris
// centre's radius of rotation from a 12 mm eyeball carrying that disc
// (10.48 mm; the estimator's 10.45 mm comes from the schematic eye's pupil
// and centre-of-rotation distances). So the test checks the iris model's
// response to a moved iris, the crop ↔ frame mapping, how far the mesh's
// eye corners (the eyeball centre's anchor) follow the iris, and that the two
// scales agree (to 3.5% on the astronaut). It cannot check the eye-size
// constants (both sides use adult means that agree), nor absolute gaze (it
// compares with the unwarped photo), nor a real eye: a turning eye also
// foreshortens the iris and moves the corneal reflection, which the warp
// does not do, and the vertical warp's lid follows the iris 1:1.
//
// Horizontal (θ = ±10°, ±20°): the mean angle's change must be within 5°
// of θ. Measured, astronaut: −16.4, −9.9, +6.7, +16.7° (errors ≤ 3.6°);
// Grace Hopper: −16.6, −7.4, +7.2, +15.1° (≤ 4.9°; asserted within 6°:
// glasses).
//
// Vertical: NOT within 5°. Measured, astronaut: θ −20, −10, +10, +20° read
// −6.9, −3.8, +5.0, +6.8°; Grace Hopper −8.5, −5.8, +2.5, +4.3°. Two causes,
// both measured (gaze.go): the iris model moves its iris centre by only
// 0.5–0.87 of the vertical displacement (less downwards), as much with its
// crop held still, and the mesh's eye corners follow the moved lid and iris
// by 0.13–0.53 of it, so the eyeball centre rises and falls with the gaze
// (its brows, forehead and nose bridge follow too: an anchor on the head fit
// of those moves less, 0.11–0.33, but misplaces the eyeball centre by
// millimetres). Only the direction, and a change of at least a fifth of θ,
// is asserted.
//
// Absolute: the astronaut looks into the camera; her angles must be within
// 10° of zero (measured −7.4°, −5.4°: how exactly she looks is unknown).
func TestGazeKnownDirection(t *testing.T) {
	fx := setup(t)
	R := math.Sqrt(testEyeballMM*testEyeballMM - testIrisMM*testIrisMM/4)
	idx := blendIndex(t)
	for _, name := range photos {
		fc := fx.photo(t, name)
		ax0, ay0 := deg(float64(fc.e.AngleX)), deg(float64(fc.e.AngleY))
		rx0, ry0 := eyeAngles(&fc.e.Right)
		lx0, ly0 := eyeAngles(&fc.e.Left)
		t.Logf("%s: unwarped gaze_angle_x %.1f°, gaze_angle_y %.1f° (right eye %.1f°, %.1f°; left %.1f°, %.1f°)", name, ax0, ay0, rx0, ry0, lx0, ly0)
		if name == "astronaut.png" && (math.Abs(ax0) > 10 || math.Abs(ay0) > 10) {
			t.Errorf("%s looks into the camera, but the gaze angles are %.1f°, %.1f°", name, ax0, ay0)
		}
		b0 := iris.Blend(&fc.m, &fc.e)
		var pxmm [2]float64
		for k, eye := range []*iris.Eye{&fc.e.Right, &fc.e.Left} {
			pxmm[k] = 2 * irisRadius(eye) / testIrisMM
		}
		for _, axis := range []int{0, 1} {
			for _, th := range []float64{-20, -10, 10, 20} {
				var d [2][2]float64
				for k := range d {
					d[k][axis] = R * pxmm[k] * math.Sin(th*math.Pi/180)
				}
				img := moveIris(t, fc.img, &fc.m, &fc.e, d)
				m, e := fx.fit(t, img, fc.box)
				img.Close()
				ax, ay := deg(float64(e.AngleX))-ax0, deg(float64(e.AngleY))-ay0
				rx, ry := eyeAngles(&e.Right)
				lx, ly := eyeAngles(&e.Left)
				got, rd, ld, dir := ax, rx-rx0, lx-lx0, "x"
				if axis == 1 {
					got, rd, ld, dir = ay, ry-ry0, ly-ly0, "y"
				}
				b := iris.Blend(&m, &e)
				t.Logf("%s: θ_%s %+3.0f° (iris moved %.2f, %.2f px): Δgaze_angle_%s %+5.1f° (error %+4.1f°), right eye %+5.1f°, left eye %+5.1f°",
					name, dir, th, d[0][axis], d[1][axis], dir, got, got-th, rd, ld)
				switch {
				case axis == 0:
					tol := 5.0
					if name != "astronaut.png" {
						tol = 6
					}
					if math.Abs(got-th) > tol {
						t.Errorf("%s: θ_x %+.0f°: estimated change %+.1f° (> %.0f° off)", name, th, got, tol)
					}
					// Towards the image's right (θ > 0) is towards the
					// subject's left: inwards for the right eye, outwards
					// for the left. In − Out grows for the right eye and
					// Out − In for the left (each is monotonic in the
					// eye's yaw unless it saturates).
					r0 := b0[idx["eyeLookInRight"]] - b0[idx["eyeLookOutRight"]]
					r1 := b[idx["eyeLookInRight"]] - b[idx["eyeLookOutRight"]]
					l0 := b0[idx["eyeLookOutLeft"]] - b0[idx["eyeLookInLeft"]]
					l1 := b[idx["eyeLookOutLeft"]] - b[idx["eyeLookInLeft"]]
					t.Logf("    eyeLookInRight−eyeLookOutRight %+.2f → %+.2f, eyeLookOutLeft−eyeLookInLeft %+.2f → %+.2f", r0, r1, l0, l1)
					if name == "astronaut.png" && math.Abs(th) == 20 && ((r1-r0)*float32(th) <= 0 || (l1-l0)*float32(th) <= 0) {
						t.Errorf("%s: θ_x %+.0f°: the look shapes moved the wrong way", name, th)
					}
				default:
					if got*th <= 0 || math.Abs(got) < math.Abs(th)/5 {
						t.Errorf("%s: θ_y %+.0f°: estimated change %+.1f°", name, th, got)
					}
					s := "eyeLookDown"
					if th < 0 {
						s = "eyeLookUp"
					}
					t.Logf("    %sRight %.2f → %.2f, %sLeft %.2f → %.2f", s, b0[idx[s+"Right"]], b[idx[s+"Right"]], s, b0[idx[s+"Left"]], b[idx[s+"Left"]])
				}
			}
		}
	}
}

// blendIndex maps BlendShapes' names to their indices.
func blendIndex(t testing.TB) map[string]int {
	t.Helper()
	idx := map[string]int{}
	for i, n := range iris.BlendShapes {
		idx[n] = i
	}
	if len(idx) != 14 {
		t.Fatalf("%d blend shapes", len(idx))
	}
	return idx
}

// TestBlink: closing both eyes' lids (closeEyes) gives eyeBlink > 0.5 on
// both sides, the open photos < 0.2; closing one eye only gives > 0.5 on
// that side and < 0.2 on the other (the control: a measure that reacted to
// the whole face, or swapped the sides, fails it).
//
// Measured (Openness → eyeBlink, right / left): astronaut open 0.261 / 0.251
// → 0 / 0, both closed 0.091 / 0.126 → 1.00 / 0.78; Grace Hopper open
// 0.236 / 0.214 → 0 / 0.05, both closed 0.131 / 0.139 → 0.75 / 0.68. One eye
// closed gives the same value on that side and ≤ 0.01 on the other. The
// warp only moves the upper lid: it says nothing of real blinks' lower-lid
// and lash detail, and the blink thresholds were set from these same
// photos (blend.go), so the margins, not the pass, are the information.
func TestBlink(t *testing.T) {
	fx := setup(t)
	idx := blendIndex(t)
	bl, br := idx["eyeBlinkLeft"], idx["eyeBlinkRight"]
	for _, name := range photos {
		fc := fx.photo(t, name)
		b := iris.Blend(&fc.m, &fc.e)
		t.Logf("%s open: openness right %.3f left %.3f; blink right %.2f left %.2f; all %v", name,
			iris.Openness(&fc.e.Right), iris.Openness(&fc.e.Left), b[br], b[bl], b)
		if b[br] >= 0.2 || b[bl] >= 0.2 {
			t.Errorf("%s: open eyes give blink right %.2f, left %.2f", name, b[br], b[bl])
		}
		for _, c := range []struct {
			name  string
			which [2]bool // right, left
		}{{"both closed", [2]bool{true, true}}, {"right closed", [2]bool{true, false}}, {"left closed", [2]bool{false, true}}} {
			img := closeEyes(fc.img, &fc.m, c.which)
			m, e := fx.fit(t, img, fc.box)
			img.Close()
			b := iris.Blend(&m, &e)
			t.Logf("%s %s: openness right %.3f left %.3f; blink right %.2f left %.2f", name, c.name,
				iris.Openness(&e.Right), iris.Openness(&e.Left), b[br], b[bl])
			for k, i := range []int{br, bl} {
				if c.which[k] && b[i] <= 0.5 {
					t.Errorf("%s %s: %s %.2f", name, c.name, iris.BlendShapes[i], b[i])
				}
				if !c.which[k] && b[i] >= 0.2 {
					t.Errorf("%s %s: %s %.2f on the open eye", name, c.name, iris.BlendShapes[i], b[i])
				}
			}
		}
	}
}

// TestConcurrentFit: Fit on a pool of two runners from four goroutines at once (run under -race
// in make test) gives each caller the same result as a lone call; Fit after
// Close fails with ErrClosed, and Close is idempotent.
func TestConcurrentFit(t *testing.T) {
	fx := setup(t)
	var faces []*face
	for _, name := range photos {
		faces = append(faces, fx.photo(t, name))
	}
	pool, err := iris.NewPool(testenv.RequireORT(t), testenv.HumanModel(t, "iris"), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				fc := faces[(g+i)%len(faces)]
				e, err := pool.Fit(fc.img, &fc.m)
				if err != nil {
					errs <- err
					return
				}
				if e != fc.e {
					errs <- fmt.Errorf("%s: concurrent fit differs from the lone one", fc.name)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	lib := testenv.RequireORT(t)
	f, err := iris.New(lib, testenv.HumanModel(t, "iris"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fit(faces[0].img, &faces[0].m); !errors.Is(err, iris.ErrClosed) {
		t.Fatalf("Fit after Close: %v", err)
	}
}

// BenchmarkIris: both eyes (crops, model on one thread, mapping, gaze).
// Measured: 1.7 ms (2.45 ms with the converter's earlier PReLU form, which
// kept ONNX Runtime out of its NCHWc layout; tools/tfjs2onnx's prelu).
func BenchmarkIris(b *testing.B) {
	fx := setup(b)
	fc := fx.photo(b, "grace_hopper_512x512.jpg")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := fx.f.Fit(fc.img, &fc.m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "iris_ms")
}
