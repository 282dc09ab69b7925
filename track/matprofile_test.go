//go:build matprofile

package track

import (
	"path/filepath"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

// TestNoMatLeak: a detector and a tracker over a clip close every Mat they
// made (gocv's Mat profile, build tag matprofile).
func TestNoMatLeak(t *testing.T) {
	lib := testenv.RequireORT(t)
	c, _ := testenv.Cache()
	clip := testmedia.MustEnsure(t, "two_faces", 640, 360)
	before := gocv.MatProfile.Count()
	d, err := NewDetector(DetectorOptions{LibraryPath: lib, ModelPath: filepath.Join(c, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")})
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := NewTracker(d, TrackerOptions{Stream: "m"})
	al, _ := NewAligner(224, DefaultMargin, [3]float32{0.5, 0.5, 0.5}, [3]float32{0.25, 0.25, 0.25})
	crop := make([]float32, 3*224*224)
	eachFrame(t, clip.Path, func(i int, m gocv.Mat) {
		if i >= 30 {
			return
		}
		u, err := tr.Step(m, time.Duration(i)*40*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range u.Faces {
			al.Align(m, f.Keypoints, crop)
		}
	})
	d.Close()
	if after := gocv.MatProfile.Count(); after != before {
		t.Errorf("%d Mats open after closing the detector, %d before", after, before)
	}
}
