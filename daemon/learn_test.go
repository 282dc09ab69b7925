package daemon

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/infer/train"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

// learnFrame is one aligned crop's visible changes (the labels).
type learnFrame struct {
	au1, au2         bool    // mirrored; mouth covered
	valence, arousal float64 // red/blue tint; brightness
}

// writeLearnClips writes ABAW-style cropped_aligned folders (one per
// video, 112×112 crops of the two test photos' faces, jittered) whose
// labels are what is visible: AU1 the crop mirrored, AU2 a grey bar over
// the mouth (each on 30% of the frames, as real AUs are mostly absent), valence a red (+) or blue (−) tint, arousal the brightness;
// and the ABAW AU_Set and VA_Set files (the other ten AUs -1). shuffle
// writes the same pictures with the labels permuted across all frames.
func writeLearnClips(t *testing.T, dir string, videos, frames int, shuffle bool) {
	t.Helper()
	cache, _ := testenv.Cache()
	r := rand.New(rand.NewPCG(21, 5))
	var all []learnFrame
	for range videos * frames {
		all = append(all, learnFrame{au1: r.Float64() < 0.3, au2: r.Float64() < 0.3, valence: 2*r.Float64() - 1, arousal: 2*r.Float64() - 1})
	}
	labels := append([]learnFrame(nil), all...)
	if shuffle {
		r2 := rand.New(rand.NewPCG(99, 1))
		r2.Shuffle(len(labels), func(i, j int) { labels[i], labels[j] = labels[j], labels[i] })
	}
	for _, d := range []string{"AU_Set/Train_Set", "VA_Set/Train_Set"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	for v := range videos {
		pf := testmedia.FaceTable[v%2]
		photo := gocv.IMRead(filepath.Join(cache, "photos", pf.File), gocv.IMReadColor)
		if photo.Empty() {
			t.Fatalf("%s: cannot read", pf.File)
		}
		name := fmt.Sprintf("vid%02d", v)
		os.MkdirAll(filepath.Join(dir, "cropped_aligned", name), 0o755)
		au := strings.Join(train.AUNames, ",") + "\n"
		va := "valence,arousal\n"
		for f := range frames {
			lf := all[v*frames+f]
			// A 112×112 crop of the face box, 1.3× wide, jittered by a few
			// pixels and percent.
			side := pf.Box[2] * 1.3 * (1 + 0.04*(r.Float64()-0.5))
			cx := pf.Box[0] + pf.Box[2]/2 + 3*(r.Float64()-0.5)
			cy := pf.Box[1] + pf.Box[3]/2 + 3*(r.Float64()-0.5)
			k := 112 / side
			M := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
			M.SetDoubleAt(0, 0, k)
			M.SetDoubleAt(0, 2, 56-k*cx)
			M.SetDoubleAt(1, 1, k)
			M.SetDoubleAt(1, 2, 56-k*cy)
			crop := gocv.NewMat()
			gocv.WarpAffine(photo, &crop, M, image.Pt(112, 112))
			M.Close()
			if lf.au1 {
				gocv.Flip(crop, &crop, 1)
			}
			if lf.au2 {
				gocv.Rectangle(&crop, image.Rect(30, 74, 82, 96), color.RGBA{128, 128, 128, 0}, -1)
			}
			// Tint and brightness, per pixel (BGR).
			pix, _ := crop.DataPtrUint8()
			for i := 0; i < len(pix); i += 3 {
				for c := range 3 {
					x := float64(pix[i+c]) * (1 + 0.35*lf.arousal)
					switch c {
					case 2:
						x += 45 * lf.valence
					case 0:
						x -= 45 * lf.valence
					}
					pix[i+c] = uint8(min(max(x, 0), 255))
				}
			}
			gocv.IMWrite(filepath.Join(dir, "cropped_aligned", name, fmt.Sprintf("%05d.jpg", f+1)), crop)
			crop.Close()
			l := labels[v*frames+f]
			b := map[bool]string{true: "1", false: "0"}
			au += b[l.au1] + "," + b[l.au2] + strings.Repeat(",-1", 10) + "\n"
			va += fmt.Sprintf("%.4f,%.4f\n", l.valence, l.arousal)
		}
		photo.Close()
		os.WriteFile(filepath.Join(dir, "AU_Set/Train_Set", name+".txt"), []byte(au), 0o644)
		os.WriteFile(filepath.Join(dir, "VA_Set/Train_Set", name+".txt"), []byte(va), 0o644)
	}
}

// TestLearnability is issue 17's honest learnability test, end to end
// through the commands: aligned crops whose labels are what is visible
// (AU1 mirrored, AU2 mouth covered, valence tint, arousal brightness),
// features from a seeded random-weight ViT-tiny (affectd features), heads
// from affectd train. On held-out videos the heads reach mean AU F1 ≥ 0.8
// and mean VA CCC ≥ 0.7; the same run on shuffled labels stays at chance
// (F1 ≤ 0.6, CCC ≤ 0.2). A second features run skips the videos done.
func TestLearnability(t *testing.T) {
	enc := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 5, GlobalPool: true})
	for _, shuffle := range []bool{false, true} {
		dir := t.TempDir()
		writeLearnClips(t, dir, 12, 40, shuffle)
		feats := filepath.Join(dir, "features")
		run := func(args ...string) string {
			t.Helper()
			b, err := exec.Command(binary(t), args...).CombinedOutput()
			if err != nil {
				t.Fatalf("affectd %s: %v\n%s", args[0], err, b)
			}
			return string(b)
		}
		run("features", "-model", enc.ONNX, "-out", feats, filepath.Join(dir, "cropped_aligned"))
		if again := run("features", "-model", enc.ONNX, "-out", feats, filepath.Join(dir, "cropped_aligned")); strings.Contains(again, "frames (") {
			t.Errorf("a second run redid videos:\n%s", again)
		}
		out := filepath.Join(dir, "trained")
		table := run("train", "-labels", filepath.Join(dir, "AU_Set"), "-labels", filepath.Join(dir, "VA_Set"),
			"-features", feats, "-base", enc.ONNX, "-out", out)
		t.Logf("shuffled=%v:\n%s", shuffle, table)
		var rep Report
		rb, _ := os.ReadFile(filepath.Join(out, "report.json"))
		if err := json.Unmarshal(rb, &rep); err != nil {
			t.Fatal(err)
		}
		f1, ccc := rep.Heads["au"].Mean, rep.Heads["va"].Mean
		switch {
		case !shuffle && (f1 < 0.8 || ccc < 0.7):
			t.Errorf("held-out videos: AU F1 %.3f (want ≥ 0.8), VA CCC %.3f (want ≥ 0.7)", f1, ccc)
		case shuffle && (f1 > 0.6 || ccc > 0.2):
			t.Errorf("shuffled labels: AU F1 %.3f (want ≤ 0.6), VA CCC %.3f (want ≤ 0.2)", f1, ccc)
		}
	}
}
