package gate_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/tools/quantgate/gate"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/track"
)

var spec = testenv.ModelSpec{Preset: "tiny", Seed: 7, Heads: "abaw", GlobalPool: true}

// realFaces are faces of the test media's photographs, aligned as live.
func realFaces(t *testing.T, lib string, md infer.Metadata) [][]float32 {
	t.Helper()
	c, _ := testenv.Cache()
	det, err := track.NewDetector(track.DetectorOptions{LibraryPath: lib,
		ModelPath: filepath.Join(c, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	al, err := track.NewAligner(md.Input.Size, float32(config.Default().Align.Margin), md.Input.Mean, md.Input.Std)
	if err != nil {
		t.Fatal(err)
	}
	var sources []string
	for _, n := range []string{"one_face", "two_faces"} {
		sources = append(sources, testmedia.MustEnsure(t, n, 640, 360).Path)
	}
	faces, faceless, err := gate.Faces(sources, det, al, 10, 32)
	if err != nil || faceless > 0 || len(faces) < 16 {
		t.Fatalf("faces: %d (faceless sources %d), %v", len(faces), faceless, err)
	}
	return faces
}

// TestInt8ExportPassesGate: a ViT-tiny int8 export (made through the
// exporter's gate) is int8 throughout its linear layers, records the gate,
// and stays within the limits on real faces when checked again here.
func TestInt8ExportPassesGate(t *testing.T) {
	lib := testenv.RequireORT(t)
	s8 := spec
	s8.Int8 = true
	m32, m8 := testenv.RequireModel(t, spec), testenv.RequireModel(t, s8)
	so := infer.SessionOptions{LibraryPath: lib}
	ref, err := infer.Load(m32.ONNX, so, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	q, err := infer.Load(m8.ONNX, so, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	md := q.Metadata().Model
	if md.Precision != "int8" || md.Quantization == nil || md.Quantization.Layers != 48 || !strings.Contains(md.Quantization.Gate, "cosine_mean=") {
		t.Fatalf("metadata: precision %q, quantization %+v: want int8, 48 layers (12 blocks × qkv, proj, fc1, fc2), the gate's figures", md.Precision, md.Quantization)
	}
	f, err := gate.Compare(context.Background(), ref, q, realFaces(t, lib, ref.Metadata()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("int8 vs fp32: %s", f)
	if err := f.Check(gate.MinCosineMean, gate.MinCentered, gate.MaxHeadDiff); err != nil {
		t.Fatal(err)
	}
	// The control: the fp32 model against itself is exact, so the figures
	// above measure quantization, not noise of the comparison.
	same, err := gate.Compare(context.Background(), ref, ref, realFaces(t, lib, ref.Metadata())[:8])
	if err != nil {
		t.Fatal(err)
	}
	if same.HeadMaxDiff > 1e-6 || same.CosineMin < 0.999999 {
		t.Errorf("fp32 against itself: %s", same)
	}
}

// TestGateRefusesWrongScale: the exporter with weight scales 30 % off (a
// broken quantization) stops with the gate's refusal and writes no model.
func TestGateRefusesWrongScale(t *testing.T) {
	testenv.RequireORT(t)
	m32 := testenv.RequireModel(t, spec)
	root, _ := testenv.Root()
	out := filepath.Join(t.TempDir(), "broken.onnx")
	err := testenv.RunPython(filepath.Join(root, "tools", "export", "maeface_export.py"), "export", m32.Checkpoint,
		"-o", out, "--heads", "abaw", "--int8", "--int8-scale-error", "1.3")
	if err == nil {
		t.Fatal("the exporter accepted a quantization with wrong scales")
	}
	t.Logf("exporter: %v", err)
	if !strings.Contains(err.Error(), "REFUSED") || !strings.Contains(err.Error(), "too far from the float32 model") {
		t.Errorf("want the gate's refusal, got: %v", err)
	}
	for _, p := range []string{out, out + ".tmp", out + ".fp32.tmp"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
}

func TestCheck(t *testing.T) {
	good := gate.Figures{Faces: 10, CosineMean: 0.999, CosineMin: 0.99, Centered: 0.99, HeadMaxDiff: 0.01, HeadMaxName: "au"}
	if err := good.Check(gate.MinCosineMean, gate.MinCentered, gate.MaxHeadDiff); err != nil {
		t.Errorf("good figures refused: %v", err)
	}
	for name, f := range map[string]gate.Figures{
		"no faces": {},
		"cosine":   {Faces: 10, CosineMean: 0.98, Centered: 0.99},
		"centered": {Faces: 10, CosineMean: 0.999, Centered: 0.9},
		"head":     {Faces: 10, CosineMean: 0.999, Centered: 0.99, HeadMaxDiff: 0.2, HeadMaxName: "va"},
	} {
		if f.Check(gate.MinCosineMean, gate.MinCentered, gate.MaxHeadDiff) == nil {
			t.Errorf("%s: passed", name)
		}
	}
	if c := gate.Cosine([]float32{1, 0}, []float32{0, 1}); c != 0 {
		t.Errorf("orthogonal cosine %v", c)
	}
}
