package testmedia

import (
	"testing"

	"gocv.io/x/gocv"
)

// decode counts the frames of path with OpenCV and returns their size.
func decode(t *testing.T, path string) (n, w, h int) {
	t.Helper()
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	defer vc.Close()
	m := gocv.NewMat()
	defer m.Close()
	for vc.Read(&m) {
		if m.Empty() {
			break
		}
		if n == 0 {
			w, h = m.Cols(), m.Rows()
		} else if m.Cols() != w || m.Rows() != h {
			t.Fatalf("frame %d is %dx%d, frame 0 %dx%d", n, m.Cols(), m.Rows(), w, h)
		}
		n++
	}
	return n, w, h
}

func TestOneFace(t *testing.T) {
	c := MustEnsure(t, "one_face", 640, 360)
	truth, err := ReadTruth(c.TruthPath)
	if err != nil {
		t.Fatal(err)
	}
	if truth.Width != 640 || truth.Height != 360 || truth.FPS != FPS || truth.FrameCount != 6*FPS {
		t.Fatalf("truth header: %+v", truth)
	}
	n, w, h := decode(t, c.Path)
	if w != 640 || h != 360 {
		t.Errorf("decoded size %dx%d, want 640x360", w, h)
	}
	if n < truth.FrameCount-1 || n > truth.FrameCount+1 {
		t.Errorf("decoded %d frames, truth has %d", n, truth.FrameCount)
	}
	for i, f := range truth.Frames {
		if f.Index != i || len(f.Faces) != 1 {
			t.Fatalf("frame %d: index %d, %d faces, want 1", i, f.Index, len(f.Faces))
		}
		face := f.Faces[0]
		b := face.Box
		if face.Identity != "astronaut" || b[0] < 0 || b[1] < 0 || b[0]+b[2] > 640 || b[1]+b[3] > 360 || b[2] < 20 || b[3] < 20 {
			t.Fatalf("frame %d: face %+v not inside the frame", i, face)
		}
		if face.Visible != 1 || face.FullBox != face.Box {
			t.Fatalf("frame %d: face %+v not fully visible", i, face)
		}
		for _, e := range face.Eyes {
			if e[0] < b[0] || e[0] > b[0]+b[2] || e[1] < b[1] || e[1] > b[1]+b[3] {
				t.Fatalf("frame %d: eye %v outside box %v", i, e, b)
			}
		}
	}
}

func TestEmpty(t *testing.T) {
	c := MustEnsure(t, "empty", 640, 360)
	truth, err := c.Truth()
	if err != nil {
		t.Fatal(err)
	}
	if truth.FrameCount != 4*FPS || len(truth.Identities) != 0 || len(truth.Gaps) != 0 {
		t.Fatalf("truth header: %+v", truth)
	}
	for _, f := range truth.Frames {
		if len(f.Faces) != 0 {
			t.Fatalf("frame %d has faces: %+v", f.Index, f.Faces)
		}
	}
}

// TestTruthShapes checks the ground truth of the other clips (no decoding,
// and only the truth is read: cheap once the clips exist).
func TestTruthShapes(t *testing.T) {
	if testing.Short() {
		t.Skip("makes three more clips")
	}
	re, err := MustEnsure(t, "reenter", 640, 360).Truth()
	if err != nil {
		t.Fatal(err)
	}
	if len(re.Gaps) != 2 || re.Gaps[0].Frames != ShortGapFrames || re.Gaps[1].Frames != LongGapFrames {
		t.Fatalf("reenter gaps %+v, want %d then %d frames", re.Gaps, ShortGapFrames, LongGapFrames)
	}
	for _, g := range re.Gaps {
		before, _ := re.Face(g.Start-1, "astronaut")
		after, _ := re.Face(g.Start+g.Frames, "astronaut")
		if before.Box[0]+before.Box[2] != 640 || after.Box[0]+after.Box[2] != 640 || before.Visible >= 1 || after.Visible >= 1 {
			t.Errorf("gap %+v: not at the right edge: before %+v after %+v", g, before, after)
		}
	}

	two, err := MustEnsure(t, "two_faces", 640, 360).Truth()
	if err != nil {
		t.Fatal(err)
	}
	maxOcc := 0.0
	for _, f := range two.Frames {
		if len(f.Faces) != 2 {
			t.Fatalf("two_faces frame %d: %d faces", f.Index, len(f.Faces))
		}
		maxOcc = max(maxOcc, f.Faces[0].Occluded)
		if f.Faces[1].Occluded != 0 {
			t.Fatalf("two_faces frame %d: front face occluded: %+v", f.Index, f.Faces[1])
		}
	}
	if maxOcc < 0.2 || maxOcc > 0.8 {
		t.Errorf("two_faces: astronaut at most %.2f occluded, want partly", maxOcc)
	}

	gr, err := MustEnsure(t, "growing", 640, 360).Truth()
	if err != nil {
		t.Fatal(err)
	}
	first, _ := gr.Face(0, "astronaut")
	last, _ := gr.Face(gr.FrameCount-1, "astronaut")
	if first.Box[2] < 38 || first.Box[2] > 42 || last.Box[3] < 0.58*360 || last.Box[3] > 0.62*360 {
		t.Errorf("growing: first box %v, last %v", first.Box, last.Box)
	}
}

// TestScaled checks that a clip at 1280x720 is the 640x360 one scaled.
func TestScaled(t *testing.T) {
	if testing.Short() {
		t.Skip("makes a 1280x720 clip")
	}
	a, err := MustEnsure(t, "one_face", 640, 360).Truth()
	if err != nil {
		t.Fatal(err)
	}
	b, err := MustEnsure(t, "one_face", 1280, 720).Truth()
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Frames {
		fa, fb := a.Frames[i].Faces[0], b.Frames[i].Faces[0]
		for k := range 4 {
			if d := fb.Box[k] - 2*fa.Box[k]; d < -0.05 || d > 0.05 {
				t.Fatalf("frame %d: 1280x720 box %v is not twice %v", i, fb.Box, fa.Box)
			}
		}
	}
}
