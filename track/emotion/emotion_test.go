package emotion_test

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/emotion"
	"github.com/affectd/affectd/track/mesh"
)

func classifier(t *testing.T, n int) *emotion.Classifier {
	t.Helper()
	c, err := emotion.NewPool(testenv.RequireORT(t), testenv.HumanModel(t, "emotion"), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func detector(t *testing.T) *track.Detector {
	t.Helper()
	cache, _ := testenv.Cache()
	det, err := track.NewDetector(track.DetectorOptions{LibraryPath: testenv.RequireORT(t),
		ModelPath: filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { det.Close() })
	return det
}

func photo(t testing.TB, name string) gocv.Mat {
	t.Helper()
	cache, _ := testenv.Cache()
	img := gocv.IMRead(filepath.Join(cache, "photos", name), gocv.IMReadColor)
	if img.Empty() {
		t.Fatalf("%s: cannot read", name)
	}
	return img
}

// face is the most confident detection in img.
func face(t *testing.T, det *track.Detector, img gocv.Mat, name string) track.Detection {
	t.Helper()
	dets, err := det.Detect(img, nil)
	if err != nil || len(dets) == 0 {
		t.Fatalf("%s: %d faces, %v", name, len(dets), err)
	}
	best := dets[0]
	for _, d := range dets[1:] {
		if d.Score > best.Score {
			best = d
		}
	}
	return best
}

func format(s emotion.Scores) string {
	var b strings.Builder
	for i, p := range s {
		fmt.Fprintf(&b, " %s %.4f", emotion.Labels[i], p)
	}
	return b.String()
}

// mirrored is box in the horizontally mirrored frame of width w (pixel
// column x goes to w − 1 − x); the roll changes sign.
func mirrored(box track.Rect, w int) track.Rect {
	return track.Rect{X: float32(w-1) - box.X - box.W, Y: box.Y, W: box.W, H: box.H}
}

func classify(t *testing.T, c *emotion.Classifier, img gocv.Mat, box track.Rect, roll float64, what string) emotion.Scores {
	t.Helper()
	s, err := c.Classify(img, box, roll)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("%s: %s;%s", what, s.Label(), format(s))
	return s
}

// TestObviousLabels: on the test photos' faces (BlazeFace's box, roll from
// its eye keypoints), the astronaut (Eileen Collins, smiling broadly with
// her teeth showing) comes out happy, and Grace Hopper (mouth closed, no
// smile) does not. Measured:
//
//	astronaut     happy 0.9999 (surprise 0.0001, the rest < 0.0001)
//	Grace Hopper  neutral 0.677, fear 0.151, surprise 0.102, angry 0.032,
//	              sad 0.024, happy 0.014, disgust < 0.0001
//
// Grace Hopper's label is not a stable one: over 75 boxes moved by up to
// 4 px and resized by ±6 px, 46 gave neutral, 16 fear, 13 angry (never
// happy); the astronaut's gave happy in all 75. So only the astronaut's
// label and Grace Hopper's "not happy" are asserted.
//
// Controls:
//   - the mirrored photos, cropped by the mirrored box with the roll
//     negated (the crop's geometry without the detector's jitter), give the
//     same top label: astronaut happy 0.997, Grace Hopper neutral 0.420. On
//     the mirrored photos' own detections the astronaut stays happy
//     (0.9996) but Grace Hopper turns fear 0.386 / angry 0.327 / neutral
//     0.233 (logged, not asserted: her box moves by 1–3 px);
//   - must fail: the astronaut's crop turned upside down (roll + π) drops
//     happy from 0.9999 to 0.179 (top label sad 0.505), and boxes of the
//     face's size on the background (the three corners other than the
//     bottom right, which is her helmet) give happy 0.063, 0.227 and 0.007
//     (top labels angry, sad, angry). Asserted: happy below half the
//     face's, and not the top label.
func TestObviousLabels(t *testing.T) {
	c, det := classifier(t, 1), detector(t)
	for _, tc := range []struct {
		name  string
		happy bool
	}{{"astronaut.png", true}, {"grace_hopper_512x512.jpg", false}} {
		img := photo(t, tc.name)
		defer img.Close()
		d := face(t, det, img, tc.name)
		roll := mesh.Roll(&d.Keypoints)
		s := classify(t, c, img, d.Box, roll, fmt.Sprintf("%s (box %.0f×%.0f, roll %.3f)", tc.name, d.Box.W, d.Box.H, roll))
		top, _ := s.Top()
		if tc.happy && top != emotion.Happy {
			t.Errorf("%s: top label %s, want happy", tc.name, s.Label())
		}
		if !tc.happy && top == emotion.Happy {
			t.Errorf("%s: top label happy (%.3f) on a face that does not smile", tc.name, s[emotion.Happy])
		}

		// Mirror control.
		flipped := gocv.NewMat()
		defer flipped.Close()
		gocv.Flip(img, &flipped, 1)
		m := classify(t, c, flipped, mirrored(d.Box, img.Cols()), -roll, tc.name+" mirrored, mirrored box")
		if m.Label() != s.Label() {
			t.Errorf("%s: mirrored crop's top label %s, the photo's %s", tc.name, m.Label(), s.Label())
		}
		fd := face(t, det, flipped, tc.name+" mirrored")
		fs := classify(t, c, flipped, fd.Box, mesh.Roll(&fd.Keypoints), tc.name+" mirrored, its own detection")
		if tc.happy && fs.Label() != s.Label() {
			t.Errorf("%s: mirrored photo's top label %s, the photo's %s", tc.name, fs.Label(), s.Label())
		}

		if !tc.happy {
			continue
		}
		// Controls that must fail: upside down, and the background.
		u := classify(t, c, img, d.Box, roll+math.Pi, tc.name+" upside down")
		if u[emotion.Happy] > s[emotion.Happy]/2 || u.Label() == "happy" {
			t.Errorf("%s upside down: happy %.3f (upright %.3f), top %s: the crop's orientation does not matter?",
				tc.name, u[emotion.Happy], s[emotion.Happy], u.Label())
		}
		w, h := float32(img.Cols()), float32(img.Rows())
		for _, b := range []track.Rect{{X: 0, Y: 0}, {X: w - d.Box.W, Y: 0}, {X: 0, Y: h - d.Box.H}} {
			b.W, b.H = d.Box.W, d.Box.H
			bg := classify(t, c, img, b, 0, fmt.Sprintf("%s background at (%.0f,%.0f)", tc.name, b.X, b.Y))
			if bg[emotion.Happy] > s[emotion.Happy]/2 || bg.Label() == "happy" {
				t.Errorf("%s background at (%.0f,%.0f): happy %.3f (the face %.3f), top %s",
					tc.name, b.X, b.Y, bg[emotion.Happy], s[emotion.Happy], bg.Label())
			}
		}
	}
}

// TestScoresSumToOne: the scores are probabilities summing to 1 (the
// model's softmax) on faces, rolled faces, boxes half out of the frame
// and the background.
func TestScoresSumToOne(t *testing.T) {
	c := classifier(t, 1)
	img := photo(t, "grace_hopper_512x512.jpg")
	defer img.Close()
	for _, tc := range []struct {
		box  track.Rect
		roll float64
	}{
		{track.Rect{X: 174, Y: 127, W: 188, H: 188}, 0}, {track.Rect{X: 174, Y: 127, W: 188, H: 188}, 0.7},
		{track.Rect{X: -100, Y: -50, W: 200, H: 160}, 0}, {track.Rect{X: 400, Y: 420, W: 300, H: 300}, -2},
		{track.Rect{X: 10, Y: 10, W: 3, H: 40}, 0}, {track.Rect{X: 0, Y: 300, W: 100, H: 100}, math.NaN()},
	} {
		s, err := c.Classify(img, tc.box, tc.roll)
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		for _, p := range s {
			if !(p >= 0 && p <= 1) {
				t.Errorf("%+v: score %v out of [0,1]", tc, p)
			}
			sum += float64(p)
		}
		if math.Abs(sum-1) > 1e-4 {
			t.Errorf("%+v: scores sum to %.6f", tc, sum)
		}
	}
}

// TestBadInput: an empty or non-BGR frame and a degenerate box are errors.
func TestBadInput(t *testing.T) {
	c := classifier(t, 1)
	img := photo(t, "grace_hopper_512x512.jpg")
	defer img.Close()
	grey := gocv.NewMat()
	defer grey.Close()
	gocv.CvtColor(img, &grey, gocv.ColorBGRToGray)
	empty := gocv.NewMat()
	defer empty.Close()
	box := track.Rect{X: 174, Y: 127, W: 188, H: 188}
	for what, f := range map[string]func() error{
		"empty frame": func() error { _, err := c.Classify(empty, box, 0); return err },
		"grey frame":  func() error { _, err := c.Classify(grey, box, 0); return err },
		"empty box":   func() error { _, err := c.Classify(img, track.Rect{X: 10, Y: 10}, 0); return err },
		"NaN box":     func() error { _, err := c.Classify(img, track.Rect{W: float32(math.NaN()), H: 5}, 0); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", what)
		}
	}
}

// TestPoolConcurrent: a pool of two runners classifying from four
// goroutines gives every call exactly the lone call's scores; Close waits
// for the calls in flight, Classify after Close says ErrClosed, and a
// second Close is a no-op.
func TestPoolConcurrent(t *testing.T) {
	p := classifier(t, 2)
	img := photo(t, "astronaut.png")
	defer img.Close()
	boxes := []track.Rect{{X: 173, Y: 74, W: 104, H: 104}, {X: 160, Y: 60, W: 130, H: 120}}
	var want [2]emotion.Scores
	var err error
	for i, b := range boxes {
		if want[i], err = p.Classify(img, b, 0.1*float64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if want[0] == want[1] {
		t.Fatal("the two boxes give the same scores: the test cannot tell them apart")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 20 {
				i := (g + k) % 2
				got, err := p.Classify(img, boxes[i], 0.1*float64(i))
				if err != nil {
					errs <- err
					return
				}
				if got != want[i] {
					errs <- fmt.Errorf("goroutine %d call %d: %v, the lone call %v", g, k, got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := p.Classify(img, boxes[0], 0); !errors.Is(err, emotion.ErrClosed) {
		t.Errorf("Classify after Close: %v", err)
	}
}

// BenchmarkClassify: one face (the crop, grey conversion and the model on
// one thread).
func BenchmarkClassify(b *testing.B) {
	lib, err := testenv.ORTLibrary()
	if err != nil {
		b.Fatal(err)
	}
	c, err := emotion.New(lib, testenv.HumanModel(b, "emotion"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	img := photo(b, "grace_hopper_512x512.jpg")
	defer img.Close()
	box := track.Rect{X: 174, Y: 127, W: 188, H: 188}
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Classify(img, box, 0.05); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "emotion_ms")
}
