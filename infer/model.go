package infer

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/affectd/affectd/track/ortenv"
)

// Output names of the model contract.
const (
	OutputFeatures = "features"
	OutputLogits   = "logits"
)

// Model is a loaded ONNX model, its ONNX Runtime session and its metadata.
// Run may be called from several goroutines (ONNX Runtime sessions are
// safe for concurrent runs); the Engine is the usual caller.
type Model struct {
	meta     Metadata
	path     string
	provider Provider
	input    string
	outputs  []string // the contract outputs the model has, in session order
	session  *ort.DynamicAdvancedSession
}

// Load opens an ONNX model, checks it against the model contract and
// creates its session. Each failure has its own sentinel: ErrRuntime (no
// usable ONNX Runtime library), ErrModelFile (missing or not ONNX),
// ErrNoMetadata, ErrBadMetadata, ErrInputShape, ErrOutputs, ErrProvider.
func Load(path string, o SessionOptions, log *slog.Logger) (*Model, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := ortenv.Init(o.LibraryPath); err != nil {
		return nil, err
	}
	if st, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s: no such file", ErrModelFile, path)
		}
		return nil, fmt.Errorf("%w: %v", ErrModelFile, err)
	} else if st.IsDir() {
		return nil, fmt.Errorf("%w: %s is a directory", ErrModelFile, path)
	}
	ins, outs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrModelFile, path, err)
	}
	md, err := readMetadata(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m := &Model{meta: md, path: path}
	if err := m.checkIO(ins, outs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := m.meta.checkHeads(m.meta.NumLogits); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := m.openSession(o, log); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func readMetadata(path string) (Metadata, error) {
	mm, err := ort.GetModelMetadata(path)
	if err != nil {
		return Metadata{}, fmt.Errorf("%w: reading metadata: %v", ErrModelFile, err)
	}
	defer mm.Destroy()
	var lookupErr error
	md, err := parseMetadata(func(key string) (string, bool) {
		v, ok, err := mm.LookupCustomMetadataMap(key)
		if err != nil && lookupErr == nil {
			lookupErr = err
		}
		return v, ok && err == nil
	})
	if lookupErr != nil {
		return md, fmt.Errorf("%w: reading metadata: %v", ErrModelFile, lookupErr)
	}
	return md, err
}

// checkIO verifies one float32 [N,3,S,S] input and float32 [N,D] outputs.
func (m *Model) checkIO(ins, outs []ort.InputOutputInfo) error {
	if len(ins) != 1 {
		return fmt.Errorf("%w: the model has %d inputs, want 1", ErrInputShape, len(ins))
	}
	in := ins[0]
	s := int64(m.meta.Input.Size)
	d := in.Dimensions
	if in.OrtValueType != ort.ONNXTypeTensor || in.DataType != ort.TensorElementDataTypeFloat {
		return fmt.Errorf("%w: input %q is %v of %v", ErrInputShape, in.Name, in.OrtValueType, in.DataType)
	}
	if len(d) != 4 {
		return fmt.Errorf("%w: input %q has rank %d (shape %v), want 4", ErrInputShape, in.Name, len(d), d)
	}
	if d[1] != 3 || (d[2] != s && d[2] > 0) || (d[3] != s && d[3] > 0) {
		return fmt.Errorf("%w: input %q has shape %v, want [N,3,%d,%d] (affectd.input size %d)", ErrInputShape, in.Name, d, s, s, s)
	}
	m.input = in.Name
	for _, o := range outs {
		if o.Name != OutputFeatures && o.Name != OutputLogits {
			continue
		}
		if o.OrtValueType != ort.ONNXTypeTensor || o.DataType != ort.TensorElementDataTypeFloat || len(o.Dimensions) != 2 || o.Dimensions[1] <= 0 {
			return fmt.Errorf("%w: output %q is %v %v %v, want float32 [N,D] with a fixed D", ErrOutputs, o.Name, o.OrtValueType, o.DataType, o.Dimensions)
		}
		if o.Name == OutputFeatures {
			m.meta.FeatureDim = int(o.Dimensions[1])
		} else {
			m.meta.NumLogits = int(o.Dimensions[1])
		}
		m.outputs = append(m.outputs, o.Name)
	}
	if len(m.outputs) == 0 {
		names := make([]string, len(outs))
		for i, o := range outs {
			names[i] = o.Name
		}
		return fmt.Errorf("%w: outputs %v include neither %q nor %q", ErrOutputs, names, OutputFeatures, OutputLogits)
	}
	return nil
}

// openSession creates the session on the requested provider, or on CPU
// with a warning when the provider is missing and fallback is allowed.
func (m *Model) openSession(o SessionOptions, log *slog.Logger) error {
	try := func(p Provider) error {
		so, err := newSessionOptions(o)
		if err != nil {
			return err
		}
		defer so.Destroy()
		po := o
		po.Provider = p
		if err := appendProvider(so, po); err != nil {
			return fmt.Errorf("%w: %v: %v", ErrProvider, p, err)
		}
		path := m.path
		var commit func() error
		if p == ProviderCPU && o.OptimizedCache != "" {
			var cerr error
			if path, commit, cerr = m.optimizedCache(so, o, log); cerr != nil {
				return cerr
			}
		}
		s, err := ort.NewDynamicAdvancedSession(path, []string{m.input}, m.outputs, so)
		if err == nil && commit != nil {
			if cerr := commit(); cerr != nil {
				log.Warn("optimised-model cache not written", "file", o.OptimizedCache, "err", cerr)
			}
		}
		if err != nil {
			if p != ProviderCPU {
				return fmt.Errorf("%w: %v: creating session: %v", ErrProvider, p, err)
			}
			return fmt.Errorf("%w: creating session: %v", ErrModelFile, err)
		}
		m.session, m.provider = s, p
		return nil
	}
	err := try(o.Provider)
	if err == nil || o.Provider == ProviderCPU || !errors.Is(err, ErrProvider) {
		return err
	}
	if o.NoFallback {
		return err
	}
	log.Warn("execution provider unavailable, falling back to CPU", "provider", o.Provider.String(), "library", o.LibraryPath, "err", err)
	return try(ProviderCPU)
}

// Metadata returns the model's description.
func (m *Model) Metadata() Metadata { return m.meta }

// Provider returns the execution provider the session actually uses.
func (m *Model) Provider() Provider { return m.provider }

// Path returns the model file's path.
func (m *Model) Path() string { return m.path }

// Close frees the session. It is safe to call twice.
func (m *Model) Close() error {
	if m.session == nil {
		return nil
	}
	err := m.session.Destroy()
	m.session = nil
	return err
}

// ortViews are a batch's ORT tensors: one set per batch size n, each a view
// over the first n rows of the batch's Go buffers (no copies).
type ortViews struct {
	in, feats, logits []*ort.Tensor[float32] // index n-1
}

func (m *Model) run(b *batch, n int) error {
	v, _ := b.ext.(*ortViews)
	if v == nil {
		cap := len(b.reqs)
		v = &ortViews{make([]*ort.Tensor[float32], cap), make([]*ort.Tensor[float32], cap), make([]*ort.Tensor[float32], cap)}
		b.ext = v
	}
	s := int64(m.meta.Input.Size)
	if v.in[n-1] == nil {
		t, err := ort.NewTensor(ort.NewShape(int64(n), 3, s, s), b.in)
		if err != nil {
			return fmt.Errorf("input tensor: %w", err)
		}
		v.in[n-1] = t
		for _, name := range m.outputs {
			if name == OutputFeatures {
				if v.feats[n-1], err = ort.NewTensor(ort.NewShape(int64(n), int64(m.meta.FeatureDim)), b.feats); err != nil {
					return fmt.Errorf("features tensor: %w", err)
				}
			} else {
				if v.logits[n-1], err = ort.NewTensor(ort.NewShape(int64(n), int64(m.meta.NumLogits)), b.logits); err != nil {
					return fmt.Errorf("logits tensor: %w", err)
				}
			}
		}
	}
	var outs [2]ort.Value
	for i, name := range m.outputs {
		if name == OutputFeatures {
			outs[i] = v.feats[n-1]
		} else {
			outs[i] = v.logits[n-1]
		}
	}
	ins := [1]ort.Value{v.in[n-1]}
	return m.session.Run(ins[:], outs[:len(m.outputs)])
}

func (m *Model) release(b *batch) {
	v, _ := b.ext.(*ortViews)
	if v == nil {
		return
	}
	for _, ts := range [][]*ort.Tensor[float32]{v.in, v.feats, v.logits} {
		for _, t := range ts {
			if t != nil {
				t.Destroy()
			}
		}
	}
	b.ext = nil
}

// BareBatch runs the session directly at one fixed batch size, with no
// batcher in between: the baseline that tools/bench compares the engine to.
type BareBatch struct {
	m *Model
	b *batch
	n int
}

// NewBareBatch allocates a batch of n faces and its runtime views.
func (m *Model) NewBareBatch(n int) *BareBatch {
	in := 3 * m.meta.Input.Size * m.meta.Input.Size
	return &BareBatch{m: m, n: n, b: &batch{
		in:     make([]float32, n*in),
		feats:  make([]float32, n*m.meta.FeatureDim),
		logits: make([]float32, n*m.meta.NumLogits),
		reqs:   make([]*Request, n),
	}}
}

// Input is the whole batch tensor, n×3×S×S.
func (bb *BareBatch) Input() []float32 { return bb.b.in }

// Run runs the model once on the batch.
func (bb *BareBatch) Run() error { return bb.m.run(bb.b, bb.n) }

// Close frees the runtime views.
func (bb *BareBatch) Close() { bb.m.release(bb.b) }
