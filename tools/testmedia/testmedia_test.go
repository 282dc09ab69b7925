package testmedia

import (
	"math"
	"slices"
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

// TestSwapClip checks the swap clip's truth: astronaut and grace_hopper
// leave by opposite edges, are both away for SwapGapFrames and come back
// swapped, never overlapping.
func TestSwapClip(t *testing.T) {
	c := MustEnsure(t, "swap", 640, 360)
	truth, err := c.Truth()
	if err != nil {
		t.Fatal(err)
	}
	const W = 640.0
	if truth.FrameCount != swapFrames || len(truth.Identities) != 2 ||
		truth.Identities[0] != "astronaut" || truth.Identities[1] != "grace_hopper" {
		t.Fatalf("truth header: frames %d identities %v", truth.FrameCount, truth.Identities)
	}
	if n, w, h := decode(t, c.Path); w != 640 || h != 360 || n < truth.FrameCount-1 || n > truth.FrameCount+1 {
		t.Errorf("decoded %d frames of %dx%d, truth has %d of 640x360", n, w, h, truth.FrameCount)
	}
	if len(truth.Gaps) != 2 {
		t.Fatalf("gaps %+v, want one per identity", truth.Gaps)
	}
	for _, g := range truth.Gaps {
		if g.Start != SwapOut || g.Frames != SwapGapFrames {
			t.Errorf("gap %+v, want start %d, %d frames", g, SwapOut, SwapGapFrames)
		}
	}
	centre := func(f Face) float64 { return f.Box[0] + f.Box[2]/2 }
	for i, fr := range truth.Frames {
		if i >= SwapOut && i < SwapBack {
			if len(fr.Faces) != 0 {
				t.Fatalf("frame %d (in the gap): faces %+v", i, fr.Faces)
			}
			continue
		}
		a, okA := truth.Face(i, "astronaut")
		g, okG := truth.Face(i, "grace_hopper")
		if !okA || !okG || len(fr.Faces) != 2 {
			t.Fatalf("frame %d: faces %+v, want astronaut and grace_hopper", i, fr.Faces)
		}
		// Before the gap astronaut is on the left, after it on the right.
		before := i < SwapOut
		if before && !(centre(a) < W/2 && centre(g) > W/2) || !before && !(centre(a) > W/2 && centre(g) < W/2) {
			t.Fatalf("frame %d: astronaut at x %.1f, grace_hopper at %.1f: wrong sides", i, centre(a), centre(g))
		}
		// Never overlapping: neither the boxes nor a cut-out over the other box.
		if a.Box[0] < g.Box[0]+g.Box[2] && g.Box[0] < a.Box[0]+a.Box[2] {
			t.Fatalf("frame %d: boxes overlap: astronaut %v, grace_hopper %v", i, a.Box, g.Box)
		}
		if a.Occluded != 0 || g.Occluded != 0 {
			t.Fatalf("frame %d: occluded: astronaut %v, grace_hopper %v", i, a.Occluded, g.Occluded)
		}
		// Fully in except while crossing the edges; at the edges each is
		// at its own side: out by the nearer one, back by the other.
		crossing := i >= SwapExit && i < SwapOut || i >= SwapBack && i < SwapInside
		for _, f := range []Face{a, g} {
			if full := f.Visible == 1 && f.FullBox == f.Box; full == crossing {
				t.Fatalf("frame %d: %s visible %.4f (box %v, full %v), crossing an edge %v",
					i, f.Identity, f.Visible, f.Box, f.FullBox, crossing)
			}
			if crossing {
				atLeft, atRight := f.Box[0] == 0, f.Box[0]+f.Box[2] == W
				wantLeft := (f.Identity == "astronaut") == before
				if atLeft != wantLeft || atRight == wantLeft {
					t.Fatalf("frame %d: %s box %v at the wrong edge", i, f.Identity, f.Box)
				}
			}
		}
	}
	// The places, from the start and from SwapSettled on.
	for _, p := range []struct {
		frame            int
		astronaut, grace float64
	}{{0, 0.3, 0.7}, {swapMove - 1, 0.3, 0.7}, {SwapSettled, 0.7, 0.3}, {swapFrames - 1, 0.7, 0.3}} {
		a, _ := truth.Face(p.frame, "astronaut")
		g, _ := truth.Face(p.frame, "grace_hopper")
		if math.Abs(centre(a)-p.astronaut*W) > 0.5 || math.Abs(centre(g)-p.grace*W) > 0.5 {
			t.Errorf("frame %d: astronaut at x %.1f, grace_hopper at %.1f, want %.0f and %.0f",
				p.frame, centre(a), centre(g), p.astronaut*W, p.grace*W)
		}
	}
	if !slices.Contains(Names(), "swap") {
		t.Errorf("Names() %v lacks swap", Names())
	}
}
