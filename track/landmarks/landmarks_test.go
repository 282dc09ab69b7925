package landmarks

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/track"
)

var (
	predOnce sync.Once
	predErr  error
	testPred *Predictor

	detOnce sync.Once
	detErr  error
	testDet *track.Detector
)

// predictor is the model shared by the tests (Fit is safe for concurrent
// use).
func predictor(t testing.TB) *Predictor {
	t.Helper()
	predOnce.Do(func() { testPred, predErr = Load(DefaultModelPath) })
	if predErr != nil {
		t.Fatal(predErr)
	}
	return testPred
}

// detector is BlazeFace, back 256 model, refining with its default 4 runs.
func detector(t testing.TB) *track.Detector {
	t.Helper()
	lib := testenv.RequireORT(t)
	detOnce.Do(func() {
		c, err := testenv.Cache()
		if err != nil {
			detErr = err
			return
		}
		testDet, detErr = track.NewDetector(track.DetectorOptions{LibraryPath: lib,
			ModelPath: filepath.Join(c, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")})
	})
	if detErr != nil {
		t.Fatal(detErr)
	}
	return testDet
}

func photo(t testing.TB, name string) gocv.Mat {
	t.Helper()
	c, err := testenv.Cache()
	if err != nil {
		t.Fatal(err)
	}
	m := gocv.IMRead(filepath.Join(c, "photos", name), gocv.IMReadColor)
	if m.Empty() {
		t.Fatalf("cannot read %s: run `make setup`", name)
	}
	return m
}

// detectOne returns the strongest face in a frame.
func detectOne(t testing.TB, m gocv.Mat) track.Detection {
	t.Helper()
	dets, err := detector(t).Detect(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(dets) == 0 {
		t.Fatal("no face detected")
	}
	return dets[0]
}

// eachFrame decodes a clip and calls fn with every frame.
func eachFrame(t testing.TB, path string, fn func(i int, m gocv.Mat)) {
	t.Helper()
	vc, err := gocv.OpenVideoCaptureWithAPI(path, gocv.VideoCaptureFFmpeg)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	m := gocv.NewMat()
	defer m.Close()
	for i := 0; vc.Read(&m) && !m.Empty(); i++ {
		fn(i, m)
	}
}

func dist(a, b track.Point) float64 { return math.Hypot(float64(a.X-b.X), float64(a.Y-b.Y)) }

// Hand-annotated eye centres of the astronaut photo (testmedia.FaceTable).
var astronautEyes = [2]track.Point{{X: 202.6, Y: 101.0}, {X: 247.3, Y: 103.7}}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.dat")
	_, err := Load(missing)
	if !errors.Is(err, ErrModel) {
		t.Fatalf("missing file: %v, want ErrModel", err)
	}
	if !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "apt-get install libdlib-data") {
		t.Errorf("missing file: %q should name the path and suggest libdlib-data", err)
	}
	text := filepath.Join(dir, "text.dat")
	if err := os.WriteFile(text, []byte("this is not a shape predictor\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.dat")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A dlib version 1 header and then a truncated shape.
	truncated := filepath.Join(dir, "truncated.dat")
	if err := os.WriteFile(truncated, []byte{0x01, 0x01, 0x01, 0x88}, 0o644); err != nil {
		t.Fatal(err)
	}
	// The real model, cut short.
	model, err := os.Open(DefaultModelPath)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1<<20)
	_, err = io.ReadFull(model, head)
	model.Close()
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.dat")
	if err := os.WriteFile(cut, head, 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := testenv.Cache()
	for _, p := range []string{text, empty, truncated, cut, dir, filepath.Join(c, "photos", "astronaut.png")} {
		_, err := Load(p)
		if !errors.Is(err, ErrModel) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want ErrModel naming the path", p, err)
		} else {
			t.Logf("%s: %v", filepath.Base(p), err)
		}
	}
}

func TestCloseIdempotent(t *testing.T) {
	p, err := Load(DefaultModelPath)
	if err != nil {
		t.Fatal(err)
	}
	m := photo(t, "astronaut.png")
	defer m.Close()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Fit(m, track.Rect{X: 170, Y: 70, W: 100, H: 100}); !errors.Is(err, ErrClosed) {
		t.Errorf("Fit after Close: %v, want ErrClosed", err)
	}
}

func TestFitErrors(t *testing.T) {
	p := predictor(t)
	m := photo(t, "astronaut.png")
	defer m.Close()
	gray := gocv.NewMat()
	defer gray.Close()
	gocv.CvtColor(m, &gray, gocv.ColorBGRToGray)
	empty := gocv.NewMat()
	defer empty.Close()
	box := track.Rect{X: 170, Y: 70, W: 100, H: 100}
	if _, err := p.Fit(gray, box); err == nil {
		t.Error("gray frame: no error")
	}
	if _, err := p.Fit(empty, box); err == nil {
		t.Error("empty frame: no error")
	}
	for _, b := range []track.Rect{{W: 0, H: 10}, {W: 10, H: -1}, {X: float32(math.NaN()), W: 10, H: 10}} {
		if _, err := p.Fit(m, b); err == nil {
			t.Errorf("box %+v: no error", b)
		}
	}
	// A box partly or wholly outside the frame is no error (the pixels
	// outside read as black, as in dlib).
	if _, err := p.Fit(m, track.Rect{X: 480, Y: -40, W: 100, H: 100}); err != nil {
		t.Error(err)
	}
}

// TestMatchesDlib: Fit runs dlib's cascade: from an integer box, its points
// are dlib::shape_predictor's before dlib rounds them to integers.
func TestMatchesDlib(t *testing.T) {
	p := predictor(t)
	ref, err := loadRef(DefaultModelPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.close()
	for _, name := range []string{"astronaut.png", "grace_hopper_512x512.jpg"} {
		m := photo(t, name)
		b := PredictorBox(detectOne(t, m).Box)
		l, tp := int(math.Round(float64(b.X))), int(math.Round(float64(b.Y)))
		r, bt := int(math.Round(float64(b.X+b.W))), int(math.Round(float64(b.Y+b.H)))
		want, err := ref.fit(m, l, tp, r, bt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.FitPredictorBox(m, track.Rect{X: float32(l), Y: float32(tp), W: float32(r - l), H: float32(bt - tp)})
		if err != nil {
			t.Fatal(err)
		}
		var worst float64
		for i := range got {
			worst = max(worst, math.Abs(float64(got[i].X-want[i].X)), math.Abs(float64(got[i].Y-want[i].Y)))
		}
		t.Logf("%s: largest difference from dlib's integer points %.3f px", name, worst)
		if worst > 0.5+1e-3 {
			t.Errorf("%s: a point is %.3f px from dlib's own fit (> its 0.5 px rounding)", name, worst)
		}
		m.Close()
	}
}

func TestAstronaut(t *testing.T) {
	p := predictor(t)
	m := photo(t, "astronaut.png")
	defer m.Close()
	det := detectOne(t, m)
	s, err := p.Fit(m, det.Box)
	if err != nil {
		t.Fatal(err)
	}
	re, le := s.RightEye(), s.LeftEye()
	er, el := dist(re, astronautEyes[0]), dist(le, astronautEyes[1])
	t.Logf("BlazeFace box %+v; eye centres %v %v: %.2f and %.2f px from the annotation", det.Box, re, le, er, el)
	t.Logf("BlazeFace keypoint eyes: %.2f and %.2f px", dist(det.Keypoints[track.KeyRightEye], astronautEyes[0]),
		dist(det.Keypoints[track.KeyLeftEye], astronautEyes[1]))
	if er > 3 || el > 3 {
		t.Errorf("eye centres %.2f and %.2f px from the annotation, want ≤ 3", er, el)
	}
	eyeY := max(re.Y, le.Y)
	nose, mouth := s[NoseTip], s.Mouth()
	switch {
	case !(nose.Y > eyeY+10):
		t.Errorf("nose tip %v not below the eyes (y %.1f)", nose, eyeY)
	case !(s[MouthRight].Y > nose.Y+5 && s[MouthLeft].Y > nose.Y+5):
		t.Errorf("mouth corners %v %v not below the nose %v", s[MouthRight], s[MouthLeft], nose)
	case !(s[Chin].Y > mouth.Y+10):
		t.Errorf("chin %v not below the mouth %v", s[Chin], mouth)
	case !(s[MouthRight].X < nose.X && nose.X < s[MouthLeft].X):
		t.Errorf("nose %v not between the mouth corners", nose)
	case !(s[JawRight].X < s[RightEyeOuter].X-5 && s[JawLeft].X > s[LeftEyeOuter].X+5):
		t.Errorf("jaw ends %v %v not outside the eyes", s[JawRight], s[JawLeft])
	case !(s[19].Y < re.Y-5 && s[24].Y < le.Y-5):
		t.Errorf("brows %v %v not above the eyes", s[19], s[24])
	}
	// The jaw line runs down from the right ear to the chin and up again.
	for i := 1; i <= 8; i++ {
		if s[i].Y < s[i-1].Y-1 || s[16-i].Y < s[17-i].Y-1 {
			t.Errorf("jaw line not descending towards the chin at %d", i)
		}
	}
	// Align4 and Keypoints agree with the named points.
	a := s.Align4()
	k := s.Keypoints()
	lips := s.LipCentre()
	if a[0] != re || a[1] != le || a[2] != nose || a[3] != lips ||
		k[track.KeyRightEye] != re || k[track.KeyLeftEye] != le || k[track.KeyNose] != nose ||
		k[track.KeyMouth] != lips || k[track.KeyRightEar] != s[0] || k[track.KeyLeftEar] != s[16] {
		t.Error("Align4/Keypoints disagree with the landmarks")
	}
	pose, err := EstimatePose(s, m.Cols(), m.Rows())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pose %+v", pose)
	if math.Abs(float64(pose.Yaw)) > 20 || math.Abs(float64(pose.Pitch)) > 20 || math.Abs(float64(pose.Roll)) > 10 ||
		pose.T[2] < 200 || pose.T[2] > 2000 {
		t.Errorf("astronaut pose %+v: the face is roughly frontal, upright, within 2 m", pose)
	}
}

// idealBox iterates box → fit → the box the predictor's mean shape best
// matches the fit in (a similarity fit of all 68 points), to its fixed
// point: the box the predictor would want for this face.
func idealBox(t testing.TB, p *Predictor, m gocv.Mat, start track.Rect) (track.Rect, Shape) {
	t.Helper()
	mean, err := p.MeanShape()
	if err != nil {
		t.Fatal(err)
	}
	w := make([]float32, N)
	for i := range w {
		w[i] = 1
	}
	b := start
	var s Shape
	for range 6 {
		if s, err = p.FitPredictorBox(m, b); err != nil {
			t.Fatal(err)
		}
		sim, err := track.FitSimilarity(mean[:], s[:], w)
		if err != nil {
			t.Fatal(err)
		}
		c := sim.Apply(track.Point{X: 0.5, Y: 0.5})
		k := sim.Scale()
		b = track.Rect{X: c.X - k/2, Y: c.Y - k/2, W: k, H: k}
	}
	return b, s
}

// TestPredictorBoxMeasured measures the BlazeFace → predictor box transform
// on the test faces (the photos, mirrored, and frames of the clips at both
// sizes, small to large) and checks the constants agree with it.
func TestPredictorBoxMeasured(t *testing.T) {
	p := predictor(t)
	type sample struct {
		name             string
		scale, dx, dy    float64
		eyeErrBF, eyeErr float64 // eye error of Fit from BlazeFace's box and from the ideal box, px, when known
	}
	var samples []sample
	add := func(name string, m gocv.Mat, bf track.Rect, eyes *[2]track.Point) {
		ib, s := idealBox(t, p, m, PredictorBox(bf))
		smp := sample{
			name:  name,
			scale: float64(ib.W / bf.W),
			dx:    float64((ib.Center().X - bf.Center().X) / bf.W),
			dy:    float64((ib.Center().Y - bf.Center().Y) / bf.H),
		}
		if eyes != nil {
			f, err := p.Fit(m, bf)
			if err != nil {
				t.Fatal(err)
			}
			smp.eyeErrBF = (dist(f.RightEye(), eyes[0]) + dist(f.LeftEye(), eyes[1])) / 2
			smp.eyeErr = (dist(s.RightEye(), eyes[0]) + dist(s.LeftEye(), eyes[1])) / 2
		}
		samples = append(samples, smp)
	}
	for _, pf := range testmedia.FaceTable {
		m := photo(t, pf.File)
		eyes := [2]track.Point{{X: float32(pf.RightEye[0]), Y: float32(pf.RightEye[1])}, {X: float32(pf.LeftEye[0]), Y: float32(pf.LeftEye[1])}}
		add(pf.Identity, m, detectOne(t, m).Box, &eyes)
		flipped := gocv.NewMat()
		gocv.Flip(m, &flipped, 1)
		w := float32(m.Cols() - 1)
		meyes := [2]track.Point{{X: w - eyes[1].X, Y: eyes[1].Y}, {X: w - eyes[0].X, Y: eyes[0].Y}}
		add(pf.Identity+" mirrored", flipped, detectOne(t, flipped).Box, &meyes)
		flipped.Close()
		m.Close()
	}
	for _, size := range testmedia.Sizes {
		for _, name := range []string{"two_faces", "growing"} {
			clip := testmedia.MustEnsure(t, name, size[0], size[1])
			truth, err := clip.Truth()
			if err != nil {
				t.Fatal(err)
			}
			var dets []track.Detection
			eachFrame(t, clip.Path, func(i int, m gocv.Mat) {
				if i%15 != 7 {
					return
				}
				dets, err = detector(t).Detect(m, dets[:0])
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range truth.Frames[i].Faces {
					gt := track.Rect{X: float32(f.Box[0]), Y: float32(f.Box[1]), W: float32(f.Box[2]), H: float32(f.Box[3])}
					if f.Visible < 1 || f.Occluded > 0 || gt.W < 60 {
						continue
					}
					for _, d := range dets {
						if d.Box.IoU(gt) > 0.6 {
							eyes := [2]track.Point{{X: float32(f.Eyes[0][0]), Y: float32(f.Eyes[0][1])}, {X: float32(f.Eyes[1][0]), Y: float32(f.Eyes[1][1])}}
							add(fmt.Sprintf("%s %dx%d #%d %s", name, size[0], size[1], i, f.Identity), m, d.Box, &eyes)
						}
					}
				}
			})
		}
	}
	var ms, mx, my, eBF, eIdeal float64
	for _, s := range samples {
		t.Logf("%-36s scale %.3f  shift %+.3f %+.3f   eye error %.2f px (ideal box %.2f)", s.name, s.scale, s.dx, s.dy, s.eyeErrBF, s.eyeErr)
		ms += s.scale
		mx += s.dx
		my += s.dy
		eBF += s.eyeErrBF
		eIdeal += s.eyeErr
	}
	n := float64(len(samples))
	ms, mx, my, eBF, eIdeal = ms/n, mx/n, my/n, eBF/n, eIdeal/n
	var ss, sy float64
	for _, s := range samples {
		ss += (s.scale - ms) * (s.scale - ms)
		sy += (s.dy - my) * (s.dy - my)
	}
	t.Logf("%d samples: scale %.3f ± %.3f, shift %+.3f, %+.3f ± %.3f; mean eye error %.2f px from BlazeFace's box, %.2f from the ideal box",
		len(samples), ms, math.Sqrt(ss/n), mx, my, math.Sqrt(sy/n), eBF, eIdeal)
	if math.Abs(ms-BoxScale) > 0.03 || math.Abs(mx-BoxShiftX) > 0.02 || math.Abs(my-BoxShiftY) > 0.02 {
		t.Errorf("constants (%.3f, %+.3f, %+.3f) disagree with the measurement (%.3f, %+.3f, %+.3f)",
			BoxScale, BoxShiftX, BoxShiftY, ms, mx, my)
	}
}

// rot is the test's own pose → rotation (head frame → camera), written from
// Pose's documented convention: Q = Rz(roll)·Ry(−yaw)·Rx(−pitch), then the
// head frame's y and z negated.
func rot(yaw, pitch, roll float64) [3][3]float64 {
	r := math.Pi / 180
	a, b, c := roll*r, -yaw*r, -pitch*r
	rz := [3][3]float64{{math.Cos(a), -math.Sin(a), 0}, {math.Sin(a), math.Cos(a), 0}, {0, 0, 1}}
	ry := [3][3]float64{{math.Cos(b), 0, math.Sin(b)}, {0, 1, 0}, {-math.Sin(b), 0, math.Cos(b)}}
	rx := [3][3]float64{{1, 0, 0}, {0, math.Cos(c), -math.Sin(c)}, {0, math.Sin(c), math.Cos(c)}}
	mul := func(x, y [3][3]float64) (z [3][3]float64) {
		for i := range 3 {
			for j := range 3 {
				for k := range 3 {
					z[i][j] += x[i][k] * y[k][j]
				}
			}
		}
		return z
	}
	q := mul(rz, mul(ry, rx))
	return mul(q, [3][3]float64{{1, 0, 0}, {0, -1, 0}, {0, 0, -1}})
}

// project places MeanFace3D at a pose in front of a camera and returns the
// shape it images as; the landmarks not in the model are set to the
// projection of the model's centroid.
func project(c Camera, yaw, pitch, roll float64, tr [3]float64) Shape {
	R := rot(yaw, pitch, roll)
	proj := func(p Point3) track.Point {
		v := [3]float64{float64(p.X), float64(p.Y), float64(p.Z)}
		var w [3]float64
		for i := range 3 {
			w[i] = R[i][0]*v[0] + R[i][1]*v[1] + R[i][2]*v[2] + tr[i]
		}
		return track.Point{X: float32(float64(c.Fx)*w[0]/w[2] + float64(c.Cx)), Y: float32(float64(c.Fy)*w[1]/w[2] + float64(c.Cy))}
	}
	var centroid Point3
	for _, mp := range MeanFace3D {
		centroid.X += mp.P.X / float32(len(MeanFace3D))
		centroid.Y += mp.P.Y / float32(len(MeanFace3D))
		centroid.Z += mp.P.Z / float32(len(MeanFace3D))
	}
	var s Shape
	for i := range s {
		s[i] = proj(centroid)
	}
	for _, mp := range MeanFace3D {
		s[mp.Index] = proj(mp.P)
	}
	return s
}

func TestPoseRoundTrip(t *testing.T) {
	const w, h = 640, 480
	cam := DefaultCamera(w, h)
	angles := []float64{-40, -25, -10, 0, 10, 25, 40}
	trans := [][3]float64{{0, 0, 600}, {-120, 60, 900}, {150, -80, 1500}, {40, 30, 350}}
	var worstA, worstT float64
	for _, tr := range trans {
		for _, yaw := range angles {
			for _, pitch := range angles {
				for _, roll := range angles {
					s := project(cam, yaw, pitch, roll, tr)
					p, err := EstimatePose(s, w, h)
					if err != nil {
						t.Fatalf("pose (%v, %v, %v) at %v: %v", yaw, pitch, roll, tr, err)
					}
					ea := max(math.Abs(float64(p.Yaw)-yaw), math.Abs(float64(p.Pitch)-pitch), math.Abs(float64(p.Roll)-roll))
					et := math.Hypot(math.Hypot(float64(p.T[0])-tr[0], float64(p.T[1])-tr[1]), float64(p.T[2])-tr[2]) /
						math.Hypot(math.Hypot(tr[0], tr[1]), tr[2])
					worstA, worstT = max(worstA, ea), max(worstT, et)
					if ea > 1 || et > 0.02 {
						t.Errorf("pose (yaw %v, pitch %v, roll %v) at %v: got %+v", yaw, pitch, roll, tr, p)
					}
				}
			}
		}
	}
	t.Logf("%d poses: worst angle error %.2g°, worst translation error %.2g%%", len(trans)*len(angles)*len(angles)*len(angles), worstA, 100*worstT)
}

// TestPoseSigns checks the documented signs against the image, without the
// test's own rotation helper: a face turned to its own left shows its nose
// tip right of the eyes' midpoint, one looking up shows the nose tip closer
// to the eyes, and a head tilted to its own left (clockwise) has its left eye
// lower than its right.
func TestPoseSigns(t *testing.T) {
	cam := DefaultCamera(640, 480)
	tr := [3]float64{0, 0, 600}
	front := project(cam, 0, 0, 0, tr)
	frontDrop := front[NoseTip].Y - mid(front[RightEyeInner], front[LeftEyeInner]).Y
	if p, _ := cam.EstimatePose(front); math.Abs(float64(p.Yaw))+math.Abs(float64(p.Pitch))+math.Abs(float64(p.Roll)) > 0.1 {
		t.Errorf("frontal face: pose %+v, want zeros", p)
	}
	yawed := project(cam, 20, 0, 0, tr)
	if nose, eyes := yawed[NoseTip].X, mid(yawed[RightEyeInner], yawed[LeftEyeInner]).X; !(nose > eyes+5) {
		t.Errorf("yaw +20: nose tip x %.1f not right of the eyes' %.1f", nose, eyes)
	}
	up := project(cam, 0, 20, 0, tr)
	if drop := up[NoseTip].Y - mid(up[RightEyeInner], up[LeftEyeInner]).Y; !(drop < frontDrop-3) {
		t.Errorf("pitch +20: nose tip %.1f px below the eyes, frontal %.1f: want it higher", drop, frontDrop)
	}
	rolled := project(cam, 0, 0, 20, tr)
	if !(rolled[LeftEyeOuter].Y > rolled[RightEyeOuter].Y+10) {
		t.Errorf("roll +20: left eye %v not below the right %v", rolled[LeftEyeOuter], rolled[RightEyeOuter])
	}
	for _, c := range []struct {
		s                Shape
		yaw, pitch, roll float64
	}{{yawed, 20, 0, 0}, {up, 0, 20, 0}, {rolled, 0, 0, 20}} {
		p, err := cam.EstimatePose(c.s)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(float64(p.Yaw)-c.yaw) > 0.5 || math.Abs(float64(p.Pitch)-c.pitch) > 0.5 || math.Abs(float64(p.Roll)-c.roll) > 0.5 {
			t.Errorf("want (%v, %v, %v), got %+v", c.yaw, c.pitch, c.roll, p)
		}
	}
	if p, err := cam.EstimatePose(Shape{}); err == nil {
		t.Errorf("all landmarks at one point: pose %+v, want an error", p)
	}
}

// TestRollFollowsRotation rotates the astronaut photo in the image plane
// about the principal point: the estimated roll must follow, yaw and pitch
// stay.
func TestRollFollowsRotation(t *testing.T) {
	p := predictor(t)
	src := photo(t, "astronaut.png")
	defer src.Close()
	canvas := gocv.NewMat()
	defer canvas.Close()
	gocv.CopyMakeBorder(src, &canvas, 192, 192, 192, 192, gocv.BorderConstant, color.RGBA{})
	centre := image.Pt(canvas.Cols()/2, canvas.Rows()/2)
	rotated := gocv.NewMat()
	defer rotated.Close()
	var base Pose
	for _, deg := range []float64{0, -20, -10, 10, 20} {
		// OpenCV's positive angle turns the image anticlockwise: the roll
		// (clockwise positive) changes by −deg.
		m := gocv.GetRotationMatrix2D(centre, deg, 1)
		gocv.WarpAffine(canvas, &rotated, m, image.Pt(canvas.Cols(), canvas.Rows()))
		m.Close()
		s, err := p.Fit(rotated, detectOne(t, rotated).Box)
		if err != nil {
			t.Fatal(err)
		}
		pose, err := EstimatePose(s, rotated.Cols(), rotated.Rows())
		if err != nil {
			t.Fatal(err)
		}
		if deg == 0 {
			base = pose
		}
		dRoll := float64(pose.Roll - base.Roll)
		t.Logf("image turned %+3.0f° anticlockwise: yaw %+6.2f pitch %+6.2f roll %+6.2f (roll change %+6.2f)", deg, pose.Yaw, pose.Pitch, pose.Roll, dRoll)
		if math.Abs(dRoll+deg) > 3 {
			t.Errorf("turned %+v°: roll changed by %+.2f°, want %+v ± 3", deg, dRoll, -deg)
		}
		if math.Abs(float64(pose.Yaw-base.Yaw)) > 5 || math.Abs(float64(pose.Pitch-base.Pitch)) > 5 {
			t.Errorf("turned %+v°: yaw/pitch %.2f/%.2f moved from %.2f/%.2f by more than 5°", deg, pose.Yaw, pose.Pitch, base.Yaw, base.Pitch)
		}
	}
}

// TestConcurrentFit: fits from several goroutines on one predictor equal
// the sequential ones, bit for bit (run under -race).
func TestConcurrentFit(t *testing.T) {
	p := predictor(t)
	type job struct {
		m   gocv.Mat
		box track.Rect
	}
	var jobs []job
	for _, name := range []string{"astronaut.png", "grace_hopper_512x512.jpg"} {
		m := photo(t, name)
		defer m.Close()
		b := detectOne(t, m).Box
		for k := range 8 {
			d := float32(k) * 0.7
			jobs = append(jobs, job{m, track.Rect{X: b.X + d, Y: b.Y - d/2, W: b.W * (1 + d/50), H: b.H * (1 + d/50)}})
		}
	}
	want := make([]Shape, len(jobs))
	for i, j := range jobs {
		var err error
		if want[i], err = p.Fit(j.m, j.box); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 5 {
				for i := range jobs {
					j := jobs[(i+g*3+r)%len(jobs)]
					s, err := p.Fit(j.m, j.box)
					if err != nil {
						errs <- err
						return
					}
					if s != want[(i+g*3+r)%len(jobs)] {
						errs <- fmt.Errorf("goroutine %d: fit %d differs from the sequential one", g, (i+g*3+r)%len(jobs))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMeanFaceMatchesPredictor cross-checks MeanFace3D's x and y against the
// predictor's frontal mean shape, scaled to the model's eye distance.
func TestMeanFaceMatchesPredictor(t *testing.T) {
	ms, err := predictor(t).MeanShape()
	if err != nil {
		t.Fatal(err)
	}
	// The model's eye centres: the means of its corners, as Shape.RightEye
	// averages the six eye points (the lids cancel on the mean shape).
	model := map[int]Point3{}
	for _, mp := range MeanFace3D {
		model[mp.Index] = mp.P
	}
	eyeDist := float64((model[LeftEyeOuter].X+model[LeftEyeInner].X)/2 - (model[RightEyeOuter].X+model[RightEyeInner].X)/2)
	re, le := ms.RightEye(), ms.LeftEye()
	k := eyeDist / dist(re, le) // mm per unit of the mean shape
	// Anchor both at the midpoint of the inner eye corners.
	o := mid(ms[RightEyeInner], ms[LeftEyeInner])
	var worst float64
	for _, mp := range MeanFace3D {
		x := float64(ms[mp.Index].X-o.X) * k
		y := -float64(ms[mp.Index].Y-o.Y) * k
		d := math.Hypot(x-float64(mp.P.X), y-float64(mp.P.Y))
		worst = max(worst, d)
		if d > 2.5 {
			t.Errorf("point %d: model (%.1f, %.1f) mm, predictor's mean shape (%.1f, %.1f) mm", mp.Index, mp.P.X, mp.P.Y, x, y)
		}
	}
	t.Logf("eye centres %.1f mm apart; largest x/y difference from the predictor's mean shape %.1f mm", eyeDist, worst)

	// The mean shape, seen square-on at the image centre, is a frontal
	// face to the pose solver.
	var s Shape
	for i, q := range ms {
		s[i] = track.Point{X: 220 + 200*q.X, Y: 140 + 200*q.Y}
	}
	pose, err := EstimatePose(s, 640, 480)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pose of the predictor's mean shape: %+v", pose)
	if math.Abs(float64(pose.Yaw)) > 1 || math.Abs(float64(pose.Pitch)) > 3 || math.Abs(float64(pose.Roll)) > 1 {
		t.Errorf("the predictor's mean shape at the image centre has pose %+v, want ≈ 0", pose)
	}
}

// TestAlignmentJitter compares the aligner's crops from BlazeFace's refined
// keypoints and from landmark keypoints on the one_face clip: the true eye
// centres, mapped into each crop, should not move from frame to frame (the
// face only translates). It reports the spread of their crop positions.
func TestAlignmentJitter(t *testing.T) {
	p := predictor(t)
	det := detector(t)
	clip := testmedia.MustEnsure(t, "one_face", 640, 360)
	truth, err := clip.Truth()
	if err != nil {
		t.Fatal(err)
	}
	al, err := track.NewAligner(224, track.DefaultMargin, [3]float32{0.5, 0.5, 0.5}, [3]float32{0.5, 0.5, 0.5})
	if err != nil {
		t.Fatal(err)
	}
	// The third way is for comparison only: landmark keypoints with the
	// mouth between the corners (which rise with a smile) rather than at
	// the lip centre.
	const ways = 3
	names := [ways]string{"BlazeFace refined keypoints", "landmark keypoints", "landmarks, mouth = corners' mid"}
	var pos [ways][][2]track.Point // per way, per frame: the true eyes in the crop
	var geom [ways][3]float64      // per way: sums of eye distance, nose and mouth drop (in eye distances)
	var dets []track.Detection
	eachFrame(t, clip.Path, func(i int, m gocv.Mat) {
		if len(truth.Frames[i].Faces) != 1 {
			return
		}
		gt := truth.Frames[i].Faces[0]
		gtBox := track.Rect{X: float32(gt.Box[0]), Y: float32(gt.Box[1]), W: float32(gt.Box[2]), H: float32(gt.Box[3])}
		dets, err = det.Detect(m, dets[:0])
		if err != nil {
			t.Fatal(err)
		}
		var d *track.Detection
		for j := range dets {
			if dets[j].Box.IoU(gtBox) > 0.5 {
				d = &dets[j]
				break
			}
		}
		if d == nil {
			t.Logf("frame %d: face not detected", i)
			return
		}
		ref, ok, err := det.Refine(m, *d)
		if err != nil || !ok {
			t.Fatalf("frame %d: refine: ok %v, %v", i, ok, err)
		}
		s, err := p.Fit(m, d.Box)
		if err != nil {
			t.Fatal(err)
		}
		eyes := [2]track.Point{{X: float32(gt.Eyes[0][0]), Y: float32(gt.Eyes[0][1])}, {X: float32(gt.Eyes[1][0]), Y: float32(gt.Eyes[1][1])}}
		corners := s.Keypoints()
		corners[track.KeyMouth] = s.Mouth()
		for w, kp := range [ways][track.NumKeypoints]track.Point{ref.Keypoints, s.Keypoints(), corners} {
			sim, err := al.Transform(kp)
			if err != nil {
				t.Fatal(err)
			}
			pos[w] = append(pos[w], [2]track.Point{sim.Apply(eyes[0]), sim.Apply(eyes[1])})
			d := dist(kp[track.KeyRightEye], kp[track.KeyLeftEye])
			em := mid(kp[track.KeyRightEye], kp[track.KeyLeftEye])
			geom[w][0] += d
			geom[w][1] += float64(kp[track.KeyNose].Y-em.Y) / d
			geom[w][2] += float64(kp[track.KeyMouth].Y-em.Y) / d
		}
	})
	if len(pos[0]) < 100 {
		t.Fatalf("only %d frames with the face detected", len(pos[0]))
	}
	var std [ways]float64
	for w := range ways {
		// Spread about the mean position (both eyes, both axes pooled: the
		// RMS distance from the mean, over √2 for a per-axis figure), and
		// the RMS frame-to-frame step (over √2: equal to the spread for
		// independent noise).
		var sum, step float64
		var means [2][2]float64
		for e := range 2 {
			var mx, my float64
			for _, f := range pos[w] {
				mx += float64(f[e].X)
				my += float64(f[e].Y)
			}
			n := float64(len(pos[w]))
			mx, my = mx/n, my/n
			means[e] = [2]float64{mx, my}
			for i, f := range pos[w] {
				dx, dy := float64(f[e].X)-mx, float64(f[e].Y)-my
				sum += dx*dx + dy*dy
				if i > 0 {
					step += math.Pow(dist(f[e], pos[w][i-1][e]), 2)
				}
			}
		}
		n := float64(len(pos[w]))
		std[w] = math.Sqrt(sum / (2 * n) / 2)
		t.Logf("%-28s: true eyes in the 224 px crop move with std %.3f px per axis (frame-to-frame step %.3f px/√2), over %d frames",
			names[w], std[w], math.Sqrt(step/(2*(n-1))/2), len(pos[w]))
		t.Logf("%-28s  keypoints: eyes %.1f px apart (frame), nose %.3f and mouth %.3f eye distances below the eyes (template 0.55, 1.02)",
			"", geom[w][0]/n, geom[w][1]/n, geom[w][2]/n)
		tm := al.Template()
		t.Logf("%-28s  mean crop positions of the true eyes (%.1f, %.1f) and (%.1f, %.1f); template (%.1f, %.1f) and (%.1f, %.1f)",
			"", means[0][0], means[0][1], means[1][0], means[1][1], tm[0].X, tm[0].Y, tm[1].X, tm[1].Y)
	}
	if std[1] > 1.2*std[0] {
		t.Errorf("landmark alignment jitter %.3f px is more than 20%% above BlazeFace's %.3f px", std[1], std[0])
	}
}

func BenchmarkFit(b *testing.B) {
	p := predictor(b)
	clip := testmedia.MustEnsure(b, "one_face", 640, 360)
	var frame gocv.Mat
	eachFrame(b, clip.Path, func(i int, m gocv.Mat) {
		if i == 0 {
			frame = m.Clone()
		}
	})
	defer frame.Close()
	box := detectOne(b, frame).Box
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Fit(frame, box); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/face")
}

func BenchmarkPose(b *testing.B) {
	const w, h = 640, 360
	s := project(DefaultCamera(w, h), 15, -10, 5, [3]float64{30, -20, 700})
	for b.Loop() {
		if _, err := EstimatePose(s, w, h); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFitDlib is dlib's own shape_predictor on BenchmarkFit's face,
// for comparison (integer box and points, its memory layout).
func BenchmarkFitDlib(b *testing.B) {
	ref, err := loadRef(DefaultModelPath)
	if err != nil {
		b.Fatal(err)
	}
	defer ref.close()
	clip := testmedia.MustEnsure(b, "one_face", 640, 360)
	var frame gocv.Mat
	eachFrame(b, clip.Path, func(i int, m gocv.Mat) {
		if i == 0 {
			frame = m.Clone()
		}
	})
	defer frame.Close()
	bx := PredictorBox(detectOne(b, frame).Box)
	l, t := int(math.Round(float64(bx.X))), int(math.Round(float64(bx.Y)))
	r, bt := int(math.Round(float64(bx.X+bx.W))), int(math.Round(float64(bx.Y+bx.H)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := ref.fit(frame, l, t, r, bt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/face")
}

// openFaceR is OpenFace's Euler2RotationMatrix: R = Rx(a)·Ry(b)·Rz(c),
// written out as OpenFace writes it (RotationHelpers.h), not through this
// package's code.
func openFaceR(a, b, c float64) [3][3]float64 {
	s1, s2, s3 := math.Sin(a), math.Sin(b), math.Sin(c)
	c1, c2, c3 := math.Cos(a), math.Cos(b), math.Cos(c)
	return [3][3]float64{
		{c2 * c3, -c2 * s3, s2},
		{c1*s3 + c3*s1*s2, c1*c3 - s1*s2*s3, -c2 * s1},
		{s1*s3 - c1*c3*s2, c3*s1 + c1*s2*s3, c1 * c2},
	}
}

// projectOpenFace projects MeanFace3D rotated by OpenFace's (Rx, Ry, Rz)
// about its head frame (x the subject's left, y down, z into the head:
// MeanFace3D with y and z negated) and moved to tr in the camera frame.
func projectOpenFace(c Camera, r [3]float64, tr [3]float64) Shape {
	R := openFaceR(r[0], r[1], r[2])
	var s Shape
	for i := range s {
		s[i] = track.Point{X: c.Cx, Y: c.Cy}
	}
	for _, mp := range MeanFace3D {
		v := [3]float64{float64(mp.P.X), -float64(mp.P.Y), -float64(mp.P.Z)}
		var w [3]float64
		for i := range 3 {
			w[i] = R[i][0]*v[0] + R[i][1]*v[1] + R[i][2]*v[2] + tr[i]
		}
		s[mp.Index] = track.Point{X: float32(float64(c.Fx)*w[0]/w[2] + float64(c.Cx)), Y: float32(float64(c.Fy)*w[1]/w[2] + float64(c.Cy))}
	}
	return s
}

// TestOpenFacePose: the mean face projected through known rotations in
// OpenFace's convention (about each axis, both signs, and combined) comes
// back from the solver as those angles in Pose.R; and the signs mean what
// OpenFace says: + Rx looks down, + Ry turns to the subject's right (the
// nose towards the image's left), + Rz tilts the top of the head towards
// the image's right.
func TestOpenFacePose(t *testing.T) {
	cam := DefaultCamera(640, 480)
	tr := [3]float64{20, -10, 650}
	const d = 0.35 // 20°
	cases := [][3]float64{{0, 0, 0}, {d, 0, 0}, {-d, 0, 0}, {0, d, 0}, {0, -d, 0}, {0, 0, d}, {0, 0, -d},
		{d, -d / 2, d / 3}, {-d / 2, d, -d}, {0.5, 0.6, -0.4}}
	for _, want := range cases {
		p, err := cam.EstimatePose(projectOpenFace(cam, want, tr))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if math.Abs(float64(p.R[i])-want[i]) > 0.01 {
				t.Errorf("OpenFace angles %v: got %v", want, p.R)
				break
			}
		}
	}
	front := projectOpenFace(cam, [3]float64{}, tr)
	drop := func(s Shape) float32 { return s[NoseTip].Y - mid(s[RightEyeInner], s[LeftEyeInner]).Y }
	side := func(s Shape) float32 { return s[NoseTip].X - mid(s[RightEyeInner], s[LeftEyeInner]).X }
	if down := projectOpenFace(cam, [3]float64{d, 0, 0}, tr); !(drop(down) > drop(front)+3) {
		t.Errorf("Rx +20°: the nose tip does not drop below the eyes (%.1f px, frontal %.1f)", drop(down), drop(front))
	}
	if right := projectOpenFace(cam, [3]float64{0, d, 0}, tr); !(side(right) < side(front)-5) {
		t.Errorf("Ry +20°: the nose tip does not move to the image's left (%.1f px, frontal %.1f)", side(right), side(front))
	}
	if tilt := projectOpenFace(cam, [3]float64{0, 0, d}, tr); !(tilt[LeftEyeOuter].Y > tilt[RightEyeOuter].Y+10) {
		t.Errorf("Rz +20°: the subject's left eye is not the lower one")
	}
}
