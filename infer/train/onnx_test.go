package train

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/tools/testenv"
)

// run runs model path on one random crop and returns its result (with
// the features).
func runModel(t *testing.T, path string, seed uint64) (*infer.Result, infer.Metadata) {
	t.Helper()
	m, err := infer.Load(path, infer.SessionOptions{LibraryPath: testenv.RequireORT(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	e, err := infer.New(m, infer.Options{MaxBatch: 1, KeepFeatures: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; e.Close() })
	r, err := e.Reserve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for i, in := 0, r.Input(); i < len(in); i++ {
		in[i] = float32(rng.NormFloat64())
	}
	r.Submit()
	res, err := r.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp := &infer.Result{Features: append([]float32(nil), res.Features...)}
	for _, h := range res.Heads {
		cp.Heads = append(cp.Heads, infer.HeadResult{Name: h.Name, Labels: h.Labels, Values: append([]float32(nil), h.Values...), Active: append([]bool(nil), h.Active...)})
	}
	r.Release()
	return cp, m.Metadata()
}

func randomHead(name string, task Task, act string, labels []string, dim int, r *rand.Rand) *Head {
	h := &Head{Name: name, Task: task, Activation: act, Labels: labels, B: make([]float32, len(labels))}
	for k := range labels {
		row := make([]float32, dim)
		for j := range row {
			row[j] = float32(r.NormFloat64() / math.Sqrt(float64(dim)))
		}
		h.W = append(h.W, row)
		h.B[k] = float32(r.NormFloat64() * 0.1)
	}
	return h
}

// TestAttachHeads: heads attached to a real encoder export (a seeded
// random ViT-tiny, features only), one of them with a hidden layer, load
// in ONNX Runtime through affectd's model contract, and each head's values
// are the Go head's Predict on the same run's features; AU thresholds become one 0.5 cut at each label's
// tuned threshold. The encoder's features do not change.
func TestAttachHeads(t *testing.T) {
	spec := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 3, GlobalPool: true})
	base, err := os.ReadFile(spec.ONNX)
	if err != nil {
		t.Fatal(err)
	}
	before, md0 := runModel(t, spec.ONNX, 5)
	dim := md0.FeatureDim
	if dim == 0 || len(md0.Heads) != 0 {
		t.Fatalf("base: feature dim %d, %d heads; want an encoder", dim, len(md0.Heads))
	}
	r := rand.New(rand.NewPCG(11, 2))
	au := randomHead("au", TaskAU, "sigmoid", []string{"AU1", "AU2", "AU12"}, dim, r)
	au.Thresholds = []float32{0.3, 0.5, 0.8}
	va := randomHead("va", TaskVA, "tanh", VANames, dim, r)
	// The expression head with a hidden layer of 16 (Options.Hidden).
	hid := randomHead("expr", TaskExpr, "softmax", make([]string, 16), dim, r)
	ex := randomHead("expr", TaskExpr, "softmax", []string{"neutral", "happy", "sad"}, 16, r)
	ex.W1, ex.B1 = hid.W, hid.B
	out, err := AttachHeads(base, []*Head{au, va, ex}, &infer.ModelInfo{Name: "trained", Backbone: md0.Model.Backbone, Precision: "fp32"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trained.onnx")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	res, md := runModel(t, path, 5)
	if md.NumLogits != 8 || len(md.Heads) != 3 || md.Model.Name != "trained" || md.Input != md0.Input {
		t.Fatalf("metadata %+v", md)
	}
	var maxFeat float64
	for i := range res.Features {
		maxFeat = max(maxFeat, math.Abs(float64(res.Features[i]-before.Features[i])))
	}
	if maxFeat != 0 {
		t.Errorf("features moved by %g", maxFeat)
	}
	var worst float64
	for i, h := range []*Head{au, va, ex} {
		want := make([]float32, len(h.Labels))
		h.Predict(res.Features, want)
		got := res.Heads[i]
		if got.Name != h.Name || strings.Join(got.Labels, ",") != strings.Join(h.Labels, ",") {
			t.Fatalf("head %d: %s %v, want %s %v", i, got.Name, got.Labels, h.Name, h.Labels)
		}
		for k := range want {
			if h.Thresholds != nil {
				// The probability at the shifted cut: active ⇔ Predict ≥ t.
				if got.Active[k] != (want[k] >= h.Thresholds[k]) {
					t.Errorf("%s %s: active %v, Predict %.3f, threshold %.2f", h.Name, h.Labels[k], got.Active[k], want[k], h.Thresholds[k])
				}
				continue
			}
			worst = max(worst, math.Abs(float64(got.Values[k]-want[k])))
		}
	}
	t.Logf("largest |ORT − Go| over the va and expr heads: %.2e", worst)
	if worst > 1e-4 {
		t.Errorf("heads differ from Predict by up to %g", worst)
	}
	if _, err := AttachHeads(out, []*Head{au}, nil); err == nil || !strings.Contains(err.Error(), "heads already") {
		t.Errorf("attaching to a model with heads: %v", err)
	}
	if _, err := AttachHeads([]byte("not a model at all"), []*Head{au}, nil); err == nil {
		t.Error("garbage accepted as a base model")
	}
}
