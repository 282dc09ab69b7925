package infer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/affectd/affectd/tools/testenv"
)

var (
	fixturesOnce sync.Once
	fixturesDir  string
	fixturesErr  error
)

// fixtures returns the folder of contract-breaking models (tools/export/fixtures.py).
func fixtures(t *testing.T) string {
	t.Helper()
	fixturesOnce.Do(func() {
		root, err := testenv.Root()
		if err != nil {
			fixturesErr = err
			return
		}
		fixturesDir = filepath.Join(os.TempDir(), fmt.Sprintf("affectd-infer-fixtures-%d", os.Getpid()))
		fixturesErr = testenv.RunPython(filepath.Join(root, "tools", "export", "fixtures.py"), fixturesDir)
	})
	if fixturesErr != nil {
		t.Fatal(fixturesErr)
	}
	return fixturesDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixturesDir != "" {
		os.RemoveAll(fixturesDir)
	}
	os.Exit(code)
}

func TestLoadErrors(t *testing.T) {
	lib := testenv.RequireORT(t)
	dir := fixtures(t)
	corrupt := filepath.Join(t.TempDir(), "corrupt.onnx")
	if err := os.WriteFile(corrupt, []byte("\x08\x07this is not a protobuf\xff\xfe"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		path  string
		want  error
		words string
	}{
		{"missing file", filepath.Join(dir, "nope.onnx"), ErrModelFile, "no such file"},
		{"directory", dir, ErrModelFile, "is a directory"},
		{"corrupt file", corrupt, ErrModelFile, "corrupt.onnx"},
		{"no metadata", filepath.Join(dir, "no_metadata.onnx"), ErrNoMetadata, "affectd.input"},
		{"wrong input rank", filepath.Join(dir, "bad_rank.onnx"), ErrInputShape, "rank 3"},
		{"heads past logits", filepath.Join(dir, "bad_heads.onnx"), ErrBadMetadata, `head "va"`},
		{"no contract outputs", filepath.Join(dir, "no_outputs.onnx"), ErrOutputs, "embedding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(tc.path, SessionOptions{LibraryPath: lib}, nil)
			if err == nil {
				m.Close()
				t.Fatal("Load: no error")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Load: %v, want %v", err, tc.want)
			}
			for _, other := range []error{ErrRuntime, ErrModelFile, ErrNoMetadata, ErrBadMetadata, ErrInputShape, ErrOutputs, ErrProvider} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v: want exactly one kind", err, other)
				}
			}
			if !strings.Contains(err.Error(), tc.words) {
				t.Errorf("error %q does not mention %q", err, tc.words)
			}
		})
	}
}

// The ONNX Runtime environment is per process: a missing library is
// checked in a fresh child process.
func TestLoadMissingRuntime(t *testing.T) {
	if os.Getenv("AFFECTD_TEST_CHILD") == "missing-runtime" {
		_, err := Load("whatever.onnx", SessionOptions{LibraryPath: "/nonexistent/libonnxruntime.so.1"}, nil)
		fmt.Printf("ERR=%v\nIS_RUNTIME=%v\n", err, errors.Is(err, ErrRuntime))
		_, err = Load("whatever.onnx", SessionOptions{LibraryPath: os.Getenv("AFFECTD_TEST_NOT_ORT")}, nil)
		fmt.Printf("ERR2=%v\nIS_RUNTIME2=%v\n", err, errors.Is(err, ErrRuntime))
		return
	}
	notORT := filepath.Join(t.TempDir(), "libnot.so")
	os.WriteFile(notORT, []byte("not an ELF"), 0o644)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadMissingRuntime$")
	cmd.Env = append(os.Environ(), "AFFECTD_TEST_CHILD=missing-runtime", "AFFECTD_TEST_NOT_ORT="+notORT)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "IS_RUNTIME=true") || !strings.Contains(s, "/nonexistent/libonnxruntime.so.1") {
		t.Errorf("missing library: %s", s)
	}
	if !strings.Contains(s, "IS_RUNTIME2=true") || !strings.Contains(s, "libnot.so") {
		t.Errorf("a file that is not a library: %s", s)
	}
}

func TestProviderFallback(t *testing.T) {
	lib := testenv.RequireORT(t)
	path := filepath.Join(fixtures(t), "ok.onnx")
	for _, p := range []Provider{ProviderCUDA, ProviderTensorRT} {
		t.Run(p.String(), func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			m, err := Load(path, SessionOptions{LibraryPath: lib, Provider: p}, log)
			if err != nil {
				t.Fatalf("Load with fallback: %v", err)
			}
			m.Close()
			if m.Provider() != ProviderCPU {
				t.Errorf("provider %v: the CPU build of ONNX Runtime has no %v", m.Provider(), p)
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "provider="+p.String()) {
				t.Errorf("no warning logged for the fallback: %q", logs.String())
			}
			_, err = Load(path, SessionOptions{LibraryPath: lib, Provider: p, NoFallback: true}, log)
			if !errors.Is(err, ErrProvider) {
				t.Errorf("Load with NoFallback: %v, want ErrProvider", err)
			}
		})
	}
}

func TestFixtureModelRuns(t *testing.T) {
	lib := testenv.RequireORT(t)
	m, err := Load(filepath.Join(fixtures(t), "ok.onnx"), SessionOptions{LibraryPath: lib, IntraOpThreads: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	md := m.Metadata()
	if md.FeatureDim != 4 || md.NumLogits != 5 || len(md.Heads) != 2 || !md.Model.Demo {
		t.Fatalf("metadata %+v", md)
	}
	e, err := New(m, Options{MaxBatch: 2, KeepFeatures: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go e.Run(ctx)
	defer func() { cancel(); e.Close() }()
	// ok.onnx: pooled = per-channel mean; features = pooled @ W, W[c][j] = (c*4+j)/10.
	res, err := e.Infer(ctx, func(dst []float32) {
		n := len(dst) / 3
		for c := 0; c < 3; c++ {
			for i := 0; i < n; i++ {
				dst[c*n+i] = float32(c + 1)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < 4; j++ {
		want := float32(0)
		for c := 0; c < 3; c++ {
			want += float32(c+1) * float32(c*4+j) / 10
		}
		if math.Abs(float64(res.Features[j]-want)) > 1e-4 {
			t.Fatalf("features %v, want [%d]=%v", res.Features, j, want)
		}
	}
}

// TestParity runs one random MAE-Face ViT-tiny checkpoint through PyTorch
// and through the engine (batches of 1, 3 and 8, then a concurrent mix) and
// compares features, logits and decoded heads.
func TestParity(t *testing.T) {
	lib := testenv.RequireORT(t)
	model := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 7, Heads: "abaw", GlobalPool: true})
	ref := pytorchReference(t, model, 12, 3)

	m, err := Load(model.ONNX, SessionOptions{LibraryPath: lib}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	md := m.Metadata()
	if md.FeatureDim != 192 || md.NumLogits != 22 || len(md.Heads) != 3 {
		t.Fatalf("metadata: D=%d K=%d heads=%d", md.FeatureDim, md.NumLogits, len(md.Heads))
	}
	reg := prometheus.NewRegistry()
	e, err := New(m, Options{MaxBatch: 8, MaxWait: 300 * time.Millisecond, KeepFeatures: true, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx)
	defer e.Close()

	check := func(i int, res *Result) {
		t.Helper()
		maxDiff(t, fmt.Sprintf("face %d features", i), res.Features, ref.features[i])
		maxDiff(t, fmt.Sprintf("face %d logits", i), res.Logits, ref.logits[i])
		for _, h := range res.Heads {
			hd, _ := md.Head(h.Name)
			maxDiff(t, fmt.Sprintf("face %d head %s", i, h.Name), h.Values, ref.decoded[i][hd.Offset:hd.Offset+len(hd.Labels)])
		}
	}
	// Groups reserved back to back: the batcher runs them as batches of
	// 1 (deadline), 3 (deadline) and 8 (full).
	next := 0
	for _, size := range []int{1, 3, 8} {
		var rs []*Request
		for k := 0; k < size; k++ {
			r, err := e.Reserve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			copy(r.Input(), ref.inputs[next+k])
			rs = append(rs, r)
		}
		for _, r := range rs {
			r.Submit()
		}
		for k, r := range rs {
			res, err := r.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			check(next+k, res)
			r.Release()
		}
		next += size
	}
	sizes := histogramBuckets(t, reg, "affectd_infer_batch_size")
	for _, s := range []float64{1, 3, 8} {
		if sizes[s] != 1 {
			t.Errorf("batch size histogram %v: want one batch of exactly %v", sizes, s)
		}
	}
	// A concurrent mix: 12 producers, shuffled order, whatever batches form.
	var wg sync.WaitGroup
	for _, i := range rand.Perm(12) {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := e.Infer(ctx, func(dst []float32) { copy(dst, ref.inputs[i]) })
			if err != nil {
				t.Error(err)
				return
			}
			check(i, &res)
		}(i)
	}
	wg.Wait()
}

// fp16 exports keep the fp32 contract and stay close to the fp32 model.
func TestFP16Export(t *testing.T) {
	lib := testenv.RequireORT(t)
	m32 := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 7, Heads: "abaw", GlobalPool: true})
	m16 := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 7, Heads: "abaw", GlobalPool: true, FP16: true})
	ref := pytorchReference(t, m32, 2, 5)
	m, err := Load(m16.ONNX, SessionOptions{LibraryPath: lib}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Metadata().Model.Precision != "fp16" {
		t.Errorf("precision %q", m.Metadata().Model.Precision)
	}
	e, err := New(m, Options{MaxBatch: 2, KeepFeatures: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx)
	defer e.Close()
	for i := 0; i < 2; i++ {
		res, err := e.Infer(ctx, func(dst []float32) { copy(dst, ref.inputs[i]) })
		if err != nil {
			t.Fatal(err)
		}
		d := maxAbs(res.Logits, ref.logits[i])
		t.Logf("fp16 face %d: max |Δlogits| = %.2e, max |Δfeatures| = %.2e", i, d, maxAbs(res.Features, ref.features[i]))
		if d > 5e-2 {
			t.Errorf("fp16 logits differ from fp32 PyTorch by %v", d)
		}
	}
}

type reference struct {
	inputs, features, logits, decoded [][]float32
}

// pytorchReference makes n seeded random inputs and runs them through the
// checkpoint in PyTorch (tools/export reference).
func pytorchReference(t *testing.T, m testenv.Model, n int, seed uint64) reference {
	t.Helper()
	root, _ := testenv.Root()
	dir := t.TempDir()
	const s = 224
	per := 3 * s * s
	rng := rand.New(rand.NewPCG(seed, 1))
	var ref reference
	flat := make([]float32, 0, n*per)
	for i := 0; i < n; i++ {
		row := make([]float32, per)
		// Smooth-ish images in the normalised range, not white noise.
		for c := 0; c < 3; c++ {
			a, b, ph := rng.Float64()*2-1, rng.Float64()*0.1, rng.Float64()*6
			for y := 0; y < s; y++ {
				for x := 0; x < s; x++ {
					row[c*s*s+y*s+x] = float32(a + math.Sin(b*float64(x+y)+ph) + 0.3*rng.NormFloat64())
				}
			}
		}
		ref.inputs = append(ref.inputs, row)
		flat = append(flat, row...)
	}
	in := filepath.Join(dir, "inputs.f32")
	writeF32(t, in, flat)
	args := []string{filepath.Join(root, "tools", "export", "maeface_export.py"), "reference", m.Checkpoint, "--inputs", in, "--out", dir}
	if m.Spec.Heads != "" {
		args = append(args, "--heads", m.Spec.Heads)
	}
	if err := testenv.RunPython(args...); err != nil {
		t.Fatal(err)
	}
	var info struct{ N, FeatureDim, NumLogits int }
	b, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &struct {
		N          *int `json:"n"`
		FeatureDim *int `json:"feature_dim"`
		NumLogits  *int `json:"num_logits"`
	}{&info.N, &info.FeatureDim, &info.NumLogits})
	ref.features = splitRows(readF32(t, filepath.Join(dir, "features.f32")), info.FeatureDim)
	if info.NumLogits > 0 {
		ref.logits = splitRows(readF32(t, filepath.Join(dir, "logits.f32")), info.NumLogits)
		ref.decoded = splitRows(readF32(t, filepath.Join(dir, "decoded.f32")), info.NumLogits)
	}
	if len(ref.features) != n {
		t.Fatalf("reference has %d rows, want %d", len(ref.features), n)
	}
	return ref
}

func writeF32(t *testing.T, path string, v []float32) {
	t.Helper()
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, v)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readF32(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	binary.Read(bytes.NewReader(b), binary.LittleEndian, v)
	return v
}

func splitRows(v []float32, w int) [][]float32 {
	var rows [][]float32
	for i := 0; i+w <= len(v); i += w {
		rows = append(rows, v[i:i+w])
	}
	return rows
}

func maxAbs(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func maxDiff(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if d := maxAbs(got, want); d > 1e-4 {
		t.Errorf("%s: max |Go − PyTorch| = %v > 1e-4 (len %d vs %d)", what, d, len(got), len(want))
	}
}

// histogramBuckets returns, for a histogram with integer buckets, how many
// observations fell on each bucket bound exactly (count(le=b) − count(le=prev)).
func histogramBuckets(t *testing.T, reg *prometheus.Registry, name string) map[float64]uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[float64]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var prev uint64
		var h *dto.Histogram = mf.GetMetric()[0].GetHistogram()
		for _, b := range h.GetBucket() {
			if c := b.GetCumulativeCount() - prev; c > 0 {
				out[b.GetUpperBound()] = c
			}
			prev = b.GetCumulativeCount()
		}
	}
	return out
}
