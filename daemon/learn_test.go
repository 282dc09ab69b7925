package daemon

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	_ "image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
		if pf, err := os.Open(filepath.Join(out, "report.png")); err != nil {
			t.Error(err)
		} else {
			cfg, format, err := image.DecodeConfig(pf)
			pf.Close()
			if err != nil || format != "png" || cfg.Width < 400 {
				t.Errorf("report.png: %v %s %dx%d", err, format, cfg.Width, cfg.Height)
			}
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

// TestTrainReproducedByAnalyze: the learnability crops made into videos
// (each crop scaled to 224 px in a 448 px grey frame, H.264), features
// through the per-frame core (affectd features on the videos: detection,
// tracking, landmark alignment), heads from affectd train; then affectd
// analyze with the trained model on the held-out videos gives, from its
// CSV columns (AUxx_c, valence, arousal), the report's F1 and CCC within
// 0.01: the model the daemon runs is the one the report measured.
func TestTrainReproducedByAnalyze(t *testing.T) {
	enc := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 5, GlobalPool: true})
	dir := t.TempDir()
	writeLearnClips(t, dir, 10, 40, false)
	var videos []string
	for v := range 10 {
		name := fmt.Sprintf("vid%02d", v)
		out := filepath.Join(dir, "videos", name+".mp4")
		os.MkdirAll(filepath.Dir(out), 0o755)
		cmd := exec.Command("ffmpeg", "-v", "error", "-y", "-framerate", "25", "-i", filepath.Join(dir, "cropped_aligned", name, "%05d.jpg"),
			"-vf", "scale=224:224,pad=448:448:112:112:color=gray", "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv420p", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg: %v\n%s", err, b)
		}
		videos = append(videos, out)
	}
	run := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(binary(t), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("affectd %s: %v\n%s", args[0], err, b)
		}
		return string(b)
	}
	feats := filepath.Join(dir, "features")
	run(append([]string{"features", "-model", enc.ONNX, "-out", feats}, videos...)...)
	trained := filepath.Join(dir, "trained")
	t.Logf("affectd train:\n%s", run("train", "-labels", filepath.Join(dir, "AU_Set"), "-labels", filepath.Join(dir, "VA_Set"),
		"-features", feats, "-base", enc.ONNX, "-out", trained))
	var rep Report
	rb, _ := os.ReadFile(filepath.Join(trained, "report.json"))
	if err := json.Unmarshal(rb, &rep); err != nil {
		t.Fatal(err)
	}
	au, va := rep.Heads["au"], rep.Heads["va"]
	if len(au.ValVideos) == 0 || strings.Join(au.ValVideos, ",") != strings.Join(va.ValVideos, ",") {
		t.Fatalf("validation videos: au %v, va %v", au.ValVideos, va.ValVideos)
	}
	var held []string
	for _, v := range au.ValVideos {
		held = append(held, filepath.Join(dir, "videos", v+".mp4"))
	}
	an := filepath.Join(dir, "analyzed")
	run(append([]string{"analyze", "-model", filepath.Join(trained, "model.onnx"), "-out", an, "-quiet"}, held...)...)

	auL, err := train.ReadABAW(filepath.Join(dir, "AU_Set"))
	if err != nil {
		t.Fatal(err)
	}
	vaL, err := train.ReadABAW(filepath.Join(dir, "VA_Set"))
	if err != nil {
		t.Fatal(err)
	}
	var pred, truth [2][]float32 // AU1, AU2 occurrence
	var vpred, vtruth [2][]float32
	for _, v := range au.ValVideos {
		rows, err := readCSVColumns(filepath.Join(an, v+".csv"), "frame", "AU01_c", "AU02_c", "valence", "arousal", "success")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r[5] != 1 {
				continue // no model values (the fit failed): no features in training either
			}
			f := int(r[0])
			a, b := auL.Videos[v][f-1], vaL.Videos[v][f-1]
			for k := range 2 {
				pred[k], truth[k] = append(pred[k], r[1+k]), append(truth[k], a[k])
				vpred[k], vtruth[k] = append(vpred[k], r[3+k]), append(vtruth[k], b[k])
			}
		}
	}
	for k, name := range []string{"AU1", "AU2"} {
		got := train.F1(pred[k], truth[k], 0.5)
		t.Logf("%s: F1 %.4f from analyze, %.4f in the report", name, got, au.PerLabel[name])
		if d := got - au.PerLabel[name]; d > 0.01 || d < -0.01 {
			t.Errorf("%s: analyze's F1 %.4f, the report's %.4f", name, got, au.PerLabel[name])
		}
	}
	for k, name := range []string{"valence", "arousal"} {
		got := train.CCC(vpred[k], vtruth[k])
		t.Logf("%s: CCC %.4f from analyze, %.4f in the report", name, got, va.PerLabel[name])
		if d := got - va.PerLabel[name]; d > 0.01 || d < -0.01 {
			t.Errorf("%s: analyze's CCC %.4f, the report's %.4f", name, got, va.PerLabel[name])
		}
	}

	// The daemon runs it as it is: its hello declares the heads with the
	// ABAW labels, and frames carry them.
	p := paths(t)
	p.model = filepath.Join(trained, "model.onnx")
	proc := startBinary(t, configYAML(t, p, "", streamSpec{"cam", held[0], true}))
	_, msgs := dialWS(t, proc.addr, "")
	var hello wsMsg
	for hello.Type != "hello" {
		hello = <-msgs
	}
	var names []string
	for _, h := range hello.Model.Heads {
		names = append(names, h.Name+":"+strings.Join(h.Labels, ","))
	}
	if hello.Model.Name != "affectd-train" || !strings.Contains(strings.Join(names, " "), "au:"+strings.Join(train.AUNames, ",")) ||
		!strings.Contains(strings.Join(names, " "), "va:valence,arousal") {
		t.Errorf("hello: model %q, heads %v", hello.Model.Name, names)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("no frame with the trained heads' values in 20 s")
		}
		m := <-msgs
		if m.Type == "frame" && len(m.Faces) == 1 && m.Faces[0].EstimateSeq > 0 {
			f := m.Faces[0]
			if _, ok := f.AU["AU12"]; !ok || len(f.VA) != 2 {
				t.Fatalf("frame face: au %v va %v: want the trained heads", f.AU, f.VA)
			}
			break
		}
	}
}

// readCSVColumns reads the named columns of an analyze CSV as numbers.
func readCSVColumns(path string, names ...string) ([][]float32, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	head := strings.Split(lines[0], ",")
	idx := make([]int, len(names))
	for i, n := range names {
		idx[i] = -1
		for j, h := range head {
			if strings.TrimSpace(h) == n {
				idx[i] = j
			}
		}
		if idx[i] < 0 {
			return nil, fmt.Errorf("%s: no column %s", path, n)
		}
	}
	var out [][]float32
	for _, l := range lines[1:] {
		p := strings.Split(l, ",")
		row := make([]float32, len(names))
		for i, j := range idx {
			v, err := strconv.ParseFloat(strings.TrimSpace(p[j]), 32)
			if err != nil {
				v = math.NaN() // an empty cell
			}
			row[i] = float32(v)
		}
		out = append(out, row)
	}
	return out, nil
}
