package track

import (
	"image"
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/tools/testmedia"
)

// TestCuts: no cut inside the test clips' single shots (panning
// backgrounds, moving and growing faces, a face leaving and coming back,
// moving shapes), and exactly the cut of the "cut" clip, where its truth
// says.
func TestCuts(t *testing.T) {
	for _, name := range []string{"one_face", "two_faces", "growing", "expression", "reenter", "empty", "cut"} {
		clip := testmedia.MustEnsure(t, name, 640, 360)
		truth, err := clip.Truth()
		if err != nil {
			t.Fatal(err)
		}
		vc, err := gocv.OpenVideoCapture(clip.Path)
		if err != nil {
			t.Fatal(err)
		}
		m := gocv.NewMat()
		var c Cuts
		var cuts []int
		for i := 0; vc.Read(&m); i++ {
			if c.Cut(m) {
				cuts = append(cuts, i)
			}
		}
		m.Close()
		vc.Close()
		c.Close()
		t.Logf("%s: cuts at %v, truth %v", name, cuts, truth.Cuts)
		if len(cuts) != len(truth.Cuts) {
			t.Errorf("%s: cuts at frames %v, the clip's are at %v", name, cuts, truth.Cuts)
			continue
		}
		for i := range cuts {
			if cuts[i] != truth.Cuts[i] {
				t.Errorf("%s: cut at frame %d, the clip's is at %d", name, cuts[i], truth.Cuts[i])
			}
		}
	}
}

// TestCutAgainstHistory: a fast pan over a coarse random texture (large
// differences, frame after frame) is no cut; a change of scene during it
// is one. (A pan so fast that the scene changes as much from frame to
// frame as at a cut hides the cut: frame differences cannot tell them.)
func TestCutAgainstHistory(t *testing.T) {
	scene := func(seed int) gocv.Mat {
		small := gocv.NewMatWithSize(40, 90, gocv.MatTypeCV8UC3)
		defer small.Close()
		gocv.RandU(&small, gocv.NewScalar(float64(seed), 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
		big := gocv.NewMat()
		gocv.Resize(small, &big, image.Pt(1800, 800), 0, 0, gocv.InterpolationLinear)
		return big
	}
	a, b := scene(0), scene(60)
	defer a.Close()
	defer b.Close()
	var c Cuts
	defer c.Close()
	var diffs []float64
	for i := 0; i < 40; i++ {
		src := a
		if i == 30 {
			src = b // another scene
		}
		x := 8 * i // 8 px a frame: a fast pan
		view := src.Region(image.Rect(x, 0, x+640, 360))
		cut := c.Cut(view)
		view.Close()
		if i > 0 {
			diffs = append(diffs, c.recent[(len(c.recent)+c.next-1)%len(c.recent)])
		}
		if cut != (i == 30 || i == 31) && i != 31 {
			t.Errorf("frame %d: cut %v (differences so far %.1f)", i, cut, diffs)
		}
	}
}
