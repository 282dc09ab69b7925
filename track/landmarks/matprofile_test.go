//go:build matprofile

package landmarks

import (
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/tools/testmedia"
)

// TestNoMatLeak: fitting and pose estimation over a clip leave no Mat open
// (gocv's Mat profile, build tag matprofile). The package makes no Mats of
// its own; this guards that.
func TestNoMatLeak(t *testing.T) {
	clip := testmedia.MustEnsure(t, "one_face", 640, 360)
	// The shared detector keeps a pooled buffer Mat until it is closed:
	// make it before counting.
	det := detector(t)
	warm := photo(t, "astronaut.png")
	detectOne(t, warm)
	warm.Close()
	before := gocv.MatProfile.Count()
	p, err := Load(DefaultModelPath)
	if err != nil {
		t.Fatal(err)
	}
	eachFrame(t, clip.Path, func(i int, m gocv.Mat) {
		if i >= 20 {
			return
		}
		dets, err := det.Detect(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dets {
			s, err := p.Fit(m, d.Box)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := EstimatePose(s, m.Cols(), m.Rows()); err != nil {
				t.Fatal(err)
			}
		}
	})
	p.Close()
	if after := gocv.MatProfile.Count(); after != before {
		t.Errorf("%d Mats open after closing the predictor, %d before", after, before)
	}
}
