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

// estimate runs a fresh estimator: the first shape is the neutral.
func estimate(t *testing.T, neutral, face Shape) Result {
	t.Helper()
	var e Face
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
			p[i][0] -= 0.04
			p[i][1] -= 0.08
		}
		for _, i := range []int{54, 64} {
			p[i][0] += 0.04
			p[i][1] -= 0.08
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
			p[i][1] += 0.06
		}
	})
	if r := estimate(t, neutral(), frown); r.AU[AU15] < 2.5 || others(r, AU15) > 0.1 {
		t.Errorf("corners down: AU15 %.2f, others ≤ %.2f", r.AU[AU15], others(r, AU15))
	}
	brows := edit(func(p *[68][2]float64) {
		for i := 17; i <= 26; i++ {
			p[i][1] -= 0.08
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

func TestBaselineLearnsAndCalibrates(t *testing.T) {
	var e Face
	n, open := neutral(), openMouth(0.2)
	e.Update(&n)
	r, _ := e.Update(&open)
	if r.AU[AU25] < 2.5 {
		t.Fatalf("AU25 %.2f against a neutral first frame", r.AU[AU25])
	}
	// Calibrate on the open mouth: it becomes the neutral.
	e.Calibrate()
	r, _ = e.Update(&open)
	if r.AU[AU25] != 0 || r.AU[AU26] != 0 {
		t.Fatalf("after calibrating: AU25 %.2f AU26 %.2f, want 0", r.AU[AU25], r.AU[AU26])
	}
	// A sustained new resting face is learnt slowly: 30 s at 25 fps.
	var e2 Face
	e2.Update(&n)
	for i := 0; i < 750; i++ {
		r, _ = e2.Update(&open)
	}
	if r.AU[AU25] > 1 {
		t.Errorf("after 30 s of a new resting face, AU25 still %.2f", r.AU[AU25])
	}
}

func TestDegenerate(t *testing.T) {
	var s Shape
	var e Face
	if _, ok := e.Update(&s); ok {
		t.Error("a shape of one point: ok")
	}
}
