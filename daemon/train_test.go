package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/train"
	"github.com/affectd/affectd/tools/testenv"
)

// writeTrainFixtures writes, for videos v00…, features in the features
// format (dim wide) and ABAW AU_Set, VA_Set and EXPR_Set files whose
// labels are functions of the features (with -1 and -5 rows).
func writeTrainFixtures(t *testing.T, dir string, dim, videos, frames int) {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	dirs := make([][]float64, 12+2+8)
	for c := range dirs {
		dirs[c] = make([]float64, dim)
		for j := range dirs[c] {
			dirs[c][j] = r.NormFloat64() / math.Sqrt(float64(dim))
		}
	}
	for _, d := range []string{"features", "AU_Set/Train_Set", "VA_Set/Train_Set", "EXPR_Set/Train_Set"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	for v := range videos {
		name := fmt.Sprintf("v%02d", v)
		var x []float32
		var idx, au, va, ex bytes.Buffer
		idx.WriteString("row,frame,face\n")
		au.WriteString(strings.Join(train.AUNames, ",") + "\n")
		va.WriteString("valence,arousal\n")
		ex.WriteString(strings.Join(train.ExprNames, ",") + "\n")
		for f := range frames {
			row := make([]float32, dim)
			for j := range row {
				row[j] = float32(r.NormFloat64())
			}
			x = append(x, row...)
			fmt.Fprintf(&idx, "%d,%d,%s/1\n", f, f+1, name)
			proj := make([]float64, len(dirs))
			for c := range dirs {
				for j := range row {
					proj[c] += dirs[c][j] * float64(row[j])
				}
			}
			if f%25 == 7 {
				au.WriteString("-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\n")
				va.WriteString("-5,-5\n")
				ex.WriteString("-1\n")
				continue
			}
			for c := range 12 {
				if c > 0 {
					au.WriteByte(',')
				}
				fmt.Fprint(&au, map[bool]int{true: 1, false: 0}[proj[c] > 0.2])
			}
			au.WriteByte('\n')
			fmt.Fprintf(&va, "%.4f,%.4f\n", math.Tanh(proj[12]), math.Tanh(proj[13]))
			best := 14
			for c := 14; c < 22; c++ {
				if proj[c] > proj[best] {
					best = c
				}
			}
			fmt.Fprintf(&ex, "%d\n", best-14)
		}
		var npy bytes.Buffer
		if err := train.WriteNPY(&npy, frames, dim, x); err != nil {
			t.Fatal(err)
		}
		for p, b := range map[string][]byte{
			"features/" + name + ".npy": npy.Bytes(), "features/" + name + ".index.csv": idx.Bytes(),
			"AU_Set/Train_Set/" + name + ".txt": au.Bytes(), "VA_Set/Train_Set/" + name + ".txt": va.Bytes(),
			"EXPR_Set/Train_Set/" + name + ".txt": ex.Bytes(),
		} {
			if err := os.WriteFile(filepath.Join(dir, p), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestTrainCommand: `affectd train` on ABAW-layout labels and features
// files fits the three heads, reports them, and writes a model that ONNX
// Runtime loads through affectd's model contract with the ABAW labels; a
// malformed label file stops it with the file and line.
func TestTrainCommand(t *testing.T) {
	lib := testenv.RequireORT(t)
	enc := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 3, GlobalPool: true})
	m, err := infer.Load(enc.ONNX, infer.SessionOptions{LibraryPath: lib}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dim := m.Metadata().FeatureDim
	m.Close()
	dir := t.TempDir()
	writeTrainFixtures(t, dir, dim, 12, 150)
	out := filepath.Join(dir, "trained")
	cmd := exec.Command(binary(t), "train", "-labels", filepath.Join(dir, "AU_Set"), "-labels", filepath.Join(dir, "VA_Set"),
		"-labels", filepath.Join(dir, "EXPR_Set"), "-features", filepath.Join(dir, "features"), "-base", enc.ONNX, "-out", out)
	b, err := cmd.CombinedOutput()
	t.Logf("affectd train:\n%s", b)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	rb, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil || json.Unmarshal(rb, &rep) != nil {
		t.Fatalf("report.json: %v", err)
	}
	for name, want := range map[string]float64{"au": 0.8, "va": 0.7, "expr": 0.6} {
		if s := rep.Heads[name]; s.Mean < want {
			t.Errorf("%s: %s %.3f on the validation videos, want ≥ %.2f", name, s.Metric, s.Mean, want)
		}
	}
	tm, err := infer.Load(filepath.Join(out, "model.onnx"), infer.SessionOptions{LibraryPath: lib}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	md := tm.Metadata()
	if len(md.Heads) != 3 || md.Heads[0].Name != "au" || strings.Join(md.Heads[0].Labels, ",") != strings.Join(train.AUNames, ",") ||
		md.Heads[1].Name != "va" || md.Heads[2].Name != "expr" || len(md.Heads[2].Labels) != 8 || md.NumLogits != 22 {
		t.Errorf("trained model's heads: %+v (%d logits)", md.Heads, md.NumLogits)
	}

	// With a hidden layer (-hidden 32): the model loads with the same heads.
	out2 := filepath.Join(dir, "trained-mlp")
	if b, err := exec.Command(binary(t), "train", "-hidden", "32", "-labels", filepath.Join(dir, "VA_Set"), "-features", filepath.Join(dir, "features"),
		"-base", enc.ONNX, "-out", out2).CombinedOutput(); err != nil {
		t.Fatalf("train -hidden 32: %v\n%s", err, b)
	} else {
		t.Logf("affectd train -hidden 32:\n%s", b)
	}
	mm, err := infer.Load(filepath.Join(out2, "model.onnx"), infer.SessionOptions{LibraryPath: lib}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if md := mm.Metadata(); len(md.Heads) != 1 || md.Heads[0].Name != "va" || md.NumLogits != 2 {
		t.Errorf("the MLP model's heads: %+v", md.Heads)
	}
	mm.Close()

	// A broken label file: one error, with its file and line.
	bad := filepath.Join(dir, "VA_Set", "Train_Set", "v03.txt")
	os.WriteFile(bad, []byte("valence,arousal\n0.1,0.2\n0.3,7\n"), 0o644)
	b, err = exec.Command(binary(t), "train", "-labels", filepath.Join(dir, "VA_Set"), "-features", filepath.Join(dir, "features"),
		"-base", enc.ONNX, "-out", out).CombinedOutput()
	if err == nil || !strings.Contains(string(b), bad+":3: arousal = 7") {
		t.Errorf("a broken label file: %v, %s", err, b)
	}
}
