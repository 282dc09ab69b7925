package lmau

import (
	"fmt"
	"math"
	"testing"
)

// neutral is a synthetic frontal face in the 68-point layout, in units of
// the eye distance (eye centres at (±0.5, 0)), placed in a 640×480 frame.
func neutral() Shape {
	var p [68][2]float64
	for i := 0; i <= 16; i++ { // jaw: half an ellipse from temple to temple
		th := math.Pi - float64(i)*math.Pi/16
		p[i] = [2]float64{math.Cos(th), 1.45 * math.Sin(th)}
	}
	brow := [][2]float64{{-0.85, -0.22}, {-0.7, -0.3}, {-0.5, -0.33}, {-0.32, -0.32}, {-0.15, -0.28}}
	for i, b := range brow {
		p[17+i] = b
		p[26-i] = [2]float64{-b[0], b[1]}
	}
	for i, q := range [][2]float64{{0, 0}, {0, 0.15}, {0, 0.3}, {0, 0.45}, {-0.18, 0.52}, {-0.09, 0.55}, {0, 0.57}, {0.09, 0.55}, {0.18, 0.52}} {
		p[27+i] = q
	}
	eye := [][2]float64{{-0.7, 0}, {-0.57, -0.06}, {-0.43, -0.06}, {-0.3, 0}, {-0.43, 0.06}, {-0.57, 0.06}}
	for i, e := range eye {
		p[36+i] = e
	}
	for i, e := range [][2]float64{{0.3, 0}, {0.43, -0.06}, {0.57, -0.06}, {0.7, 0}, {0.57, 0.06}, {0.43, 0.06}} {
		p[42+i] = e
	}
	for i, q := range [][2]float64{{-0.38, 0.9}, {-0.22, 0.83}, {-0.08, 0.8}, {0, 0.82}, {0.08, 0.8}, {0.22, 0.83}, {0.38, 0.9},
		{0.22, 0.98}, {0.08, 1.02}, {0, 1.03}, {-0.08, 1.02}, {-0.22, 0.98}} {
		p[48+i] = q
	}
	for i, q := range [][2]float64{{-0.3, 0.9}, {-0.1, 0.89}, {0, 0.89}, {0.1, 0.89}, {0.3, 0.9}, {0.1, 0.91}, {0, 0.91}, {-0.1, 0.91}} {
		p[60+i] = q
	}
	return place(p, 0, 100, 320, 200)
}

// place maps face units into the frame: rotation deg, eye distance iod
// pixels, eye midpoint at (cx, cy).
func place(p [68][2]float64, deg, iod, cx, cy float64) Shape {
	c, s := math.Cos(deg*math.Pi/180), math.Sin(deg*math.Pi/180)
	var out Shape
	for i, q := range p {
		x, y := q[0]*iod, q[1]*iod
		out[i] = Point{X: float32(cx + c*x - s*y), Y: float32(cy + s*x + c*y)}
	}
	return out
}

// units takes a shape back to face units (for editing).
func units(s Shape) [68][2]float64 {
	var p [68][2]float64
	for i, q := range s {
		p[i] = [2]float64{(float64(q.X) - 320) / 100, (float64(q.Y) - 200) / 100}
	}
	return p
}

func edit(f func(p *[68][2]float64)) Shape {
	p := units(neutral())
	f(&p)
	return place(p, 0, 100, 320, 200)
}

func openMouth(a float64) Shape {
	return edit(func(p *[68][2]float64) {
		for _, i := range []int{55, 56, 57, 58, 59, 65, 66, 67} { // lower lip
			p[i][1] += a
		}
		for i := 4; i <= 12; i++ { // the jaw drops with it
			p[i][1] += a * (1 - math.Abs(float64(i-8))/5)
		}
	})
}

// estimate runs a fresh estimator whose neutral is the first shape.
func estimate(t *testing.T, neutral, face Shape) Result {
	t.Helper()
	e := Face{Base: NewBaseline(NeutralFirst, nil)}
	if _, ok := e.Update(&neutral); !ok {
		t.Fatal("neutral: degenerate")
	}
	r, ok := e.Update(&face)
	if !ok {
		t.Fatal("degenerate")
	}
	return r
}

func others(r Result, keep ...int) float32 {
	var worst float32
	for i, v := range r.AU {
		skip := false
		for _, k := range keep {
			skip = skip || i == k
		}
		if !skip {
			worst = max(worst, v)
		}
	}
	return worst
}

func TestNeutralIsZero(t *testing.T) {
	r := estimate(t, neutral(), neutral())
	for i, v := range r.AU {
		if v != 0 || r.Active[i] {
			t.Errorf("%s = %v on the neutral face", AUs[i], v)
		}
	}
	for i, v := range r.Blend {
		if v != 0 {
			t.Errorf("%s = %v on the neutral face", BlendShapes[i], v)
		}
	}
}

func TestMouthOpening(t *testing.T) {
	var last25, last26 float32 = -1, -1
	for _, a := range []float64{0.02, 0.05, 0.1, 0.15, 0.2, 0.3} {
		r := estimate(t, neutral(), openMouth(a))
		t.Logf("mouth open %.2f: AU25 %.2f AU26 %.2f, others ≤ %.2f, jawOpen %.2f", a, r.AU[AU25], r.AU[AU26], others(r, AU25, AU26), r.Blend[0])
		if r.AU[AU25] <= last25 || r.AU[AU26] <= last26 {
			t.Errorf("opening %.2f: AU25 %.2f AU26 %.2f do not rise (were %.2f, %.2f)", a, r.AU[AU25], r.AU[AU26], last25, last26)
		}
		last25, last26 = r.AU[AU25], r.AU[AU26]
		if o := others(r, AU25, AU26); o > 0.1 {
			t.Errorf("opening %.2f: another AU at %.2f", a, o)
		}
	}
	if last25 < 3 || last26 < 2 {
		t.Errorf("wide open mouth: AU25 %.2f AU26 %.2f", last25, last26)
	}
}

func TestLidsClosed(t *testing.T) {
	closed := edit(func(p *[68][2]float64) {
		for _, i := range []int{37, 38, 43, 44} {
			p[i][1] = 0.05
		}
		for _, i := range []int{40, 41, 46, 47} {
			p[i][1] = 0.055
		}
	})
	r := estimate(t, neutral(), closed)
	t.Logf("lids closed: AU45 %.2f, eyeBlink %.2f/%.2f, others ≤ %.2f", r.AU[AU45], r.Blend[7], r.Blend[8], others(r, AU45))
	if r.AU[AU45] < 4 || !r.Active[AU45] || r.Blend[7] < 0.8 || r.Blend[8] < 0.8 {
		t.Errorf("AU45 %.2f, blinks %v/%v", r.AU[AU45], r.Blend[7], r.Blend[8])
	}
	if o := others(r, AU45); o > 0.1 {
		t.Errorf("another AU at %.2f", o)
	}
	// One eye: the blink is on that side only.
	wink := edit(func(p *[68][2]float64) {
		for _, i := range []int{43, 44} {
			p[i][1] = 0.05
		}
		for _, i := range []int{46, 47} {
			p[i][1] = 0.055
		}
	})
	r = estimate(t, neutral(), wink)
	if r.Blend[7] < 0.8 || r.Blend[8] > 0.05 { // eyeBlinkLeft, eyeBlinkRight
		t.Errorf("left wink: eyeBlinkLeft %.2f eyeBlinkRight %.2f", r.Blend[7], r.Blend[8])
	}
}

func TestSmile(t *testing.T) {
	smile := edit(func(p *[68][2]float64) {
		for _, i := range []int{48, 60} {
			p[i][0] -= 0.08
			p[i][1] -= 0.2
		}
		for _, i := range []int{54, 64} {
			p[i][0] += 0.08
			p[i][1] -= 0.2
		}
	})
	r := estimate(t, neutral(), smile)
	t.Logf("corners raised: AU12 %.2f, smile %.2f/%.2f, others: AU20 %.2f AU15 %.2f", r.AU[AU12], r.Blend[1], r.Blend[2], r.AU[AU20], r.AU[AU15])
	if r.AU[AU12] < 3 || !r.Active[AU12] {
		t.Errorf("AU12 %.2f", r.AU[AU12])
	}
	if o := others(r, AU12); o > 0.1 {
		t.Errorf("another AU at %.2f", o)
	}
	frown := edit(func(p *[68][2]float64) {
		for _, i := range []int{48, 54, 60, 64} {
			p[i][1] += 0.07
		}
	})
	if r := estimate(t, neutral(), frown); r.AU[AU15] < 2.5 || others(r, AU15) > 0.1 {
		t.Errorf("corners down: AU15 %.2f, others ≤ %.2f", r.AU[AU15], others(r, AU15))
	}
	brows := edit(func(p *[68][2]float64) {
		for i := 17; i <= 26; i++ {
			p[i][1] -= 0.12
		}
	})
	if r := estimate(t, neutral(), brows); r.AU[AU1] < 2.5 || r.AU[AU2] < 2.5 || others(r, AU1, AU2) > 0.1 {
		t.Errorf("brows raised: AU1 %.2f AU2 %.2f others ≤ %.2f", r.AU[AU1], r.AU[AU2], others(r, AU1, AU2))
	}
}

// In-plane rotation, scale and position change no AU (to 0.1).
func TestInvariance(t *testing.T) {
	faces := map[string]Shape{"neutral": neutral(), "open": openMouth(0.2)}
	for name, face := range faces {
		ref := estimate(t, neutral(), face)
		for _, deg := range []float64{-40, -15, 15, 40} {
			for _, iod := range []float64{30, 100, 250} {
				t.Run(fmt.Sprintf("%s_%g°_%gpx", name, deg, iod), func(t *testing.T) {
					n, f := units(neutral()), units(face)
					r := estimate(t, place(n, deg, iod, 400, 260), place(f, deg, iod, 400, 260))
					for i := range r.AU {
						if d := math.Abs(float64(r.AU[i] - ref.AU[i])); d > 0.1 {
							t.Errorf("%s: %.3f, upright %.3f", AUs[i], r.AU[i], ref.AU[i])
						}
					}
				})
			}
		}
	}
}

func TestBaselineCalibrates(t *testing.T) {
	e := Face{Base: NewBaseline(NeutralFirst, nil)}
	n, open := neutral(), openMouth(0.2)
	e.Update(&n)
	r, _ := e.Update(&open)
	if r.AU[AU25] < 2.5 {
		t.Fatalf("AU25 %.2f against a neutral first frame", r.AU[AU25])
	}
	// Calibrate on the open mouth: it becomes the neutral, and stays.
	e.Calibrate()
	for i := 0; i < 100; i++ {
		r, _ = e.Update(&open)
	}
	if r.AU[AU25] != 0 || r.AU[AU26] != 0 {
		t.Fatalf("after calibrating: AU25 %.2f AU26 %.2f, want 0", r.AU[AU25], r.AU[AU26])
	}
	if r, _ = e.Update(&n); r.AU[AU25] != 0 || r.AU[AU15]+r.AU[AU12] > 0.5 {
		t.Errorf("the closed mouth against the open-mouth neutral: %v", r.AU)
	}
}

// priorFace is neutral() moved so that every measurement is Prior's (by
// the inverse of Measure on the points each uses).
func priorFace() Shape {
	f, _ := Measure(ptr(neutral()))
	return edit(func(p *[68][2]float64) {
		d := func(i int) float64 { return float64(Prior[i] - f[i]) }
		for _, i := range []int{17, 18} {
			p[i][1] -= d(fBrowOuterR)
		}
		for _, i := range []int{19, 20, 21} {
			p[i][1] -= d(fBrowInnerR)
		}
		for _, i := range []int{25, 26} {
			p[i][1] -= d(fBrowOuterL)
		}
		for _, i := range []int{22, 23, 24} {
			p[i][1] -= d(fBrowInnerL)
		}
		p[21][0] -= d(fBrowGap) / 2
		p[22][0] += d(fBrowGap) / 2
		for _, i := range []int{37, 38, 43, 44} {
			p[i][1] -= d(fEyeOpenR) / 2
		}
		for _, i := range []int{40, 41, 46, 47} {
			p[i][1] += d(fEyeOpenR) / 2
		}
		for _, i := range []int{48, 60} {
			p[i][1] -= d(fCornerUpR)
			p[i][0] -= d(fCornerOutR)
		}
		for _, i := range []int{54, 64} {
			p[i][1] -= d(fCornerUpL)
			p[i][0] += d(fCornerOutL)
		}
		for _, i := range []int{65, 66, 67} {
			p[i][1] += d(fLipGap)
		}
		p[8][1] += d(fJawDrop)
	})
}

func ptr(s Shape) *Shape { return &s }

// TestPriorFace checks the test's own prior-shaped face.
func TestPriorFace(t *testing.T) {
	f, _ := Measure(ptr(priorFace()))
	for i := range f {
		if math.Abs(float64(f[i]-Prior[i])) > 0.01 {
			t.Errorf("measurement %d: %.4f, prior %.4f", i, f[i], Prior[i])
		}
	}
	var e Face
	if r, _ := e.Update(ptr(priorFace())); others(r) > 0.2 {
		t.Errorf("the prior-shaped face on frame 1: %v", r.AU)
	}
}

// TestFromFrameOne: with the prior neutral (the default), a face that
// starts mid-expression reads it on its first frame, a still included
// (a neutral taken from the first frame read zeros here).
func TestFromFrameOne(t *testing.T) {
	smile := priorFace()
	for _, i := range []int{48, 60, 54, 64} {
		smile[i].Y -= 20 // 0.2 IOD higher
	}
	var e Face
	r, ok := e.Update(&smile)
	if !ok || r.AU[AU12] < 2 {
		t.Errorf("a smile on the first frame: AU12 %.2f (ok %v)", r.AU[AU12], ok)
	}
	var first Face
	first.Base = NewBaseline(NeutralFirst, nil)
	if r, _ := first.Update(&smile); r.AU[AU12] != 0 {
		t.Errorf("control: with the first frame as the neutral AU12 %.2f, want 0", r.AU[AU12])
	}
}

// TestCryingStart: a face that starts with its eyes narrowed and its inner
// brows raised (crying) for 4 s, then rests, does not read "eyes wide"
// once it rests (the first frame as neutral made the rest read AU5 for
// the rest of the clip).
func TestCryingStart(t *testing.T) {
	rest := priorFace()
	crying := rest
	for _, i := range []int{37, 38, 43, 44} {
		crying[i].Y += 4 // lids 0.04 IOD lower
	}
	for _, i := range []int{21, 22} {
		crying[i].Y -= 8
	}
	var e Face
	for i := 0; i < 100; i++ {
		if r, _ := e.Update(&crying); i == 0 && r.AU[AU1] < 1 {
			t.Errorf("crying, frame 1: AU1 %.2f", r.AU[AU1])
		}
	}
	var r Result
	for i := 0; i < 25; i++ {
		r, _ = e.Update(&rest)
	}
	if r.AU[AU5] > 0.5 || r.AU[AU1] > 0.5 {
		t.Errorf("resting after crying: AU5 %.2f AU1 %.2f, want ≈ 0", r.AU[AU5], r.AU[AU1])
	}
	control := Face{Base: NewBaseline(NeutralFirst, nil)}
	control.Update(&crying)
	if r, _ := control.Update(&rest); r.AU[AU5] < 1 {
		t.Errorf("control: the first frame as neutral gives AU5 %.2f, want the old error (≥ 1)", r.AU[AU5])
	}
}

// TestLearnsOwnNeutral: a face whose resting brows sit higher than the
// prior's reads AU1/AU2 at first, and learns its own neutral from its
// calm frames within 30 s (25 fps).
func TestLearnsOwnNeutral(t *testing.T) {
	high := priorFace()
	for i := 17; i <= 26; i++ {
		high[i].Y -= 6 // 0.06 IOD higher
	}
	var e Face
	first, _ := e.Update(&high)
	var r Result
	for i := 0; i < 750; i++ {
		r, _ = e.Update(&high)
	}
	t.Logf("brows 0.06 IOD above the prior: AU1 %.2f on frame 1, %.2f after 30 s", first.AU[AU1], r.AU[AU1])
	if first.AU[AU1] < 1 || r.AU[AU1] > 0.6 {
		t.Errorf("AU1 %.2f on frame 1 (want ≥ 1), %.2f after 30 s (want ≤ 0.6)", first.AU[AU1], r.AU[AU1])
	}
	fixed, _ := Measure(&high)
	f := Face{Base: NewBaseline(NeutralFixed, &fixed)}
	if r, _ := f.Update(&high); others(r) != 0 {
		t.Errorf("a fixed neutral of the face itself: %v", r.AU)
	}
}

func TestDegenerate(t *testing.T) {
	var s Shape
	var e Face
	if _, ok := e.Update(&s); ok {
		t.Error("a shape of one point: ok")
	}
}
