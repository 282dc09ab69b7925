package infer

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affectd/affectd/tools/testenv"
)

// TestOptimizedCache: the first start writes the optimised graph and its
// key; the next loads it without optimising, with the same results; a
// changed key (another model or runtime) makes it write the graph again.
func TestOptimizedCache(t *testing.T) {
	lib := testenv.RequireORT(t)
	model := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 7, Heads: "abaw", GlobalPool: true})
	cache := filepath.Join(t.TempDir(), "sub", "model.opt.onnx")
	input := pytorchReference(t, model, 1, 9).inputs[0]
	load := func(o SessionOptions) (Result, string) {
		t.Helper()
		var logs bytes.Buffer
		m, err := Load(model.ONNX, o, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		e, err := New(m, Options{MaxBatch: 1, KeepFeatures: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go e.Run(ctx)
		defer e.Close()
		res, err := e.Infer(ctx, func(dst []float32) { copy(dst, input) })
		if err != nil {
			t.Fatal(err)
		}
		return res, logs.String()
	}
	plain, _ := load(SessionOptions{LibraryPath: lib})
	o := SessionOptions{LibraryPath: lib, OptimizedCache: cache, Optimization: OptimizeExtended}
	first, logs := load(o)
	if !strings.Contains(logs, "optimised model cached") {
		t.Fatalf("first start: no cache written; log:\n%s", logs)
	}
	key, err := os.ReadFile(cache + ".key")
	if err != nil || !strings.Contains(string(key), "optimization=extended") {
		t.Fatalf("key file: %q, %v", key, err)
	}
	second, logs := load(o)
	if !strings.Contains(logs, "optimised model from cache") {
		t.Fatalf("second start did not use the cache; log:\n%s", logs)
	}
	for _, r := range []Result{first, second} {
		if d := maxAbs(r.Features, plain.Features); d > 1e-4 {
			t.Errorf("features differ from the uncached session by %v", d)
		}
	}
	if err := os.WriteFile(cache+".key", []byte("model-sha256=another\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, logs := load(o); !strings.Contains(logs, "optimised model cached") {
		t.Errorf("a stale key did not rewrite the cache; log:\n%s", logs)
	}
}

func TestParseOptimization(t *testing.T) {
	for _, s := range []string{"", "all", "extended", "basic", "disabled"} {
		l, err := ParseOptimization(s)
		if err != nil || (s != "" && l.String() != s) {
			t.Errorf("%q: %v %v", s, l, err)
		}
	}
	if _, err := ParseOptimization("fast"); err == nil {
		t.Error("fast accepted")
	}
}
