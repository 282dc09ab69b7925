package verify_test

import (
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/verify"
)

// detections runs BlazeFace (back 256, a low score threshold of 0.5: the
// detector's own false alarms are what the verifier is for) on a picture.
func detections(t *testing.T, det *track.Detector, path string) (gocv.Mat, []track.Detection) {
	t.Helper()
	img := gocv.IMRead(path, gocv.IMReadColor)
	if img.Empty() {
		t.Fatalf("%s: unreadable", path)
	}
	dets, err := det.Detect(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img, dets
}

// TestFacesAndNotFaces: on the faces of the test photos (frontal and the
// cameraman in profile) the verifier agrees with BlazeFace; on its false
// alarms (title cards in large letters, a cat, a coffee cup, a horse) it
// does not. Without the verifier every one of those would start a track
// (the control: BlazeFace did fire on at least four of them).
func TestFacesAndNotFaces(t *testing.T) {
	lib := testenv.RequireORT(t)
	cache, _ := testenv.Cache()
	det, err := track.NewDetector(track.DetectorOptions{LibraryPath: lib, ModelPath: filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx"), ScoreThreshold: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	v, err := verify.New(verify.DefaultThreshold)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	faces := []string{filepath.Join(cache, "photos", "astronaut.png"), filepath.Join(cache, "photos", "grace_hopper_512x512.jpg"), testmedia.MustSkimage(t, testmedia.Cameraman)}
	for _, p := range faces {
		img, dets := detections(t, det, p)
		if len(dets) == 0 {
			t.Fatalf("%s: BlazeFace finds no face", p)
		}
		s, err := v.Score(img, dets[0].Box)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("face %s: BlazeFace %.2f, verifier %.2f", filepath.Base(p), dets[0].Score, s)
		if !v.Verify(img, dets[0].Box) {
			t.Errorf("%s: the verifier rejects a face (score %.2f)", filepath.Base(p), s)
		}
		img.Close()
	}

	var negatives []string
	for _, n := range testmedia.Negatives {
		negatives = append(negatives, testmedia.MustSkimage(t, n))
	}
	for _, text := range []string{"CHAPTER ONE", "MOOD", "2026", "THE END", "O O O"} {
		size := 150
		if len(text) > 8 {
			size = 90
		}
		negatives = append(negatives, testmedia.MustTitleCard(t, text, size, 640, 360, 0))
	}
	fired := 0
	for _, p := range negatives {
		img, dets := detections(t, det, p)
		for _, d := range dets {
			fired++
			s, _ := v.Score(img, d.Box)
			t.Logf("not a face %s: BlazeFace %.2f at %v, verifier %.2f", filepath.Base(p), d.Score, d.Box, s)
			if v.Verify(img, d.Box) {
				t.Errorf("%s: the verifier accepts BlazeFace's false alarm at %v (score %.2f)", filepath.Base(p), d.Box, s)
			}
		}
		img.Close()
	}
	if fired < 4 {
		t.Errorf("control: BlazeFace fired on %d of the non-faces, want at least 4 (else this test checks nothing)", fired)
	}
}

// TestVerifyTestClips: every face BlazeFace finds in the test clips at
// their first frames passes (small faces included: the growing clip starts
// at 40 px wide).
func TestVerifyTestClips(t *testing.T) {
	lib := testenv.RequireORT(t)
	cache, _ := testenv.Cache()
	det, err := track.NewDetector(track.DetectorOptions{LibraryPath: lib, ModelPath: filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	v, err := verify.New(verify.DefaultThreshold)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	n := 0
	for _, name := range []string{"one_face", "two_faces", "growing", "cut", "reenter"} {
		clip := testmedia.MustEnsure(t, name, 640, 360)
		vc, err := gocv.OpenVideoCapture(clip.Path)
		if err != nil {
			t.Fatal(err)
		}
		m := gocv.NewMat()
		for i := 0; vc.Read(&m); i++ {
			if i%10 != 0 {
				continue
			}
			dets, err := det.Detect(m, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range dets {
				n++
				if s, _ := v.Score(m, d.Box); s < verify.DefaultThreshold {
					t.Errorf("%s frame %d: face at %v (%.0f px) rejected, score %.2f", name, i, d.Box, d.Box.W, s)
				}
			}
		}
		m.Close()
		vc.Close()
	}
	if n < 50 {
		t.Errorf("only %d faces checked", n)
	}
}
