package infer

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/affectd/affectd/track/ortenv"
)

// Sentinel errors callers can branch on with errors.Is.
var (
	// ErrRuntime: the ONNX Runtime shared library is missing or unusable.
	ErrRuntime = ortenv.ErrRuntime
	// ErrModelFile: the model file is missing or not a valid ONNX model.
	ErrModelFile = errors.New("cannot load model file")
	// ErrNoMetadata: a valid ONNX model without affectd.* metadata.
	ErrNoMetadata = errors.New("model has no affectd metadata")
	// ErrBadMetadata: affectd.* metadata that is malformed or contradicts the graph.
	ErrBadMetadata = errors.New("invalid affectd metadata")
	// ErrInputShape: the model's input is not float32 [N,3,S,S].
	ErrInputShape = errors.New("model input is not float32 [N,3,S,S]")
	// ErrOutputs: the model has neither a features nor a logits output of the right form.
	ErrOutputs = errors.New("model outputs do not follow the contract")
	// ErrProvider: the requested execution provider is not available and
	// fallback to CPU is off.
	ErrProvider = errors.New("execution provider unavailable")
)

// Provider is an ONNX Runtime execution provider.
type Provider int

// Execution providers affectd can ask for.
const (
	ProviderCPU Provider = iota
	ProviderCUDA
	ProviderTensorRT
)

var providerNames = [...]string{"cpu", "cuda", "tensorrt"}

func (p Provider) String() string {
	if int(p) < len(providerNames) {
		return providerNames[p]
	}
	return fmt.Sprintf("Provider(%d)", int(p))
}

// ParseProvider parses "cpu", "cuda" or "tensorrt".
func ParseProvider(s string) (Provider, error) {
	for i, n := range providerNames {
		if strings.EqualFold(s, n) {
			return Provider(i), nil
		}
	}
	return 0, fmt.Errorf("unknown execution provider %q (want %s)", s, strings.Join(providerNames[:], ", "))
}

// RuntimeVersion is the loaded ONNX Runtime's version ("" before loading).
func RuntimeVersion() string { return ortenv.Version() }

// SessionOptions configure how a model runs.
type SessionOptions struct {
	// LibraryPath is libonnxruntime.so (a CPU, CUDA or TensorRT build).
	LibraryPath string
	// Provider is the execution provider to ask for.
	Provider Provider
	// NoFallback makes a missing provider an error (ErrProvider) instead of
	// a warning followed by CPU execution.
	NoFallback bool
	// DeviceID selects the GPU for CUDA and TensorRT.
	DeviceID int
	// IntraOpThreads is the CPU thread count inside one operator (0: one per CPU).
	IntraOpThreads int
	// InterOpThreads is the thread count across operators (0: 1).
	InterOpThreads int
	// Spin lets idle ONNX Runtime threads spin between runs: lower latency,
	// but it takes CPU from capture and tracking on small machines.
	Spin bool
	// Optimization is ONNX Runtime's graph optimisation level (default
	// all). The int8 kernels (DynamicQuantizeMatMul) come from the
	// extended level's fusions.
	Optimization Optimization
	// OptimizedCache, when set, is a file where the optimised graph is kept
	// (CPU only): the first start writes it, later starts load it with no
	// optimisation pass. A key file beside it (<file>.key: the model's
	// sha256, the runtime version and the level) makes a changed model or
	// runtime rewrite it. The file is for the machine that wrote it.
	OptimizedCache string
}

// Optimization is ONNX Runtime's graph optimisation level.
type Optimization int

// Graph optimisation levels, as ONNX Runtime names them.
const (
	OptimizeAll Optimization = iota
	OptimizeExtended
	OptimizeBasic
	OptimizeDisabled
)

var optimizationNames = [...]string{"all", "extended", "basic", "disabled"}

func (l Optimization) String() string {
	if int(l) < len(optimizationNames) {
		return optimizationNames[l]
	}
	return fmt.Sprintf("Optimization(%d)", int(l))
}

// ParseOptimization parses all, extended, basic or disabled ("" is all).
func ParseOptimization(s string) (Optimization, error) {
	if s == "" {
		return OptimizeAll, nil
	}
	for i, n := range optimizationNames {
		if s == n {
			return Optimization(i), nil
		}
	}
	return 0, fmt.Errorf("unknown graph optimisation level %q (want %s)", s, strings.Join(optimizationNames[:], ", "))
}

func (l Optimization) ort() ort.GraphOptimizationLevel {
	switch l {
	case OptimizeExtended:
		return ort.GraphOptimizationLevelEnableExtended
	case OptimizeBasic:
		return ort.GraphOptimizationLevelEnableBasic
	case OptimizeDisabled:
		return ort.GraphOptimizationLevelDisableAll
	}
	return ort.GraphOptimizationLevelEnableAll
}

// Threads reports the intra-op and inter-op thread counts a session with
// these options uses.
func (o SessionOptions) Threads() (intra, inter int) { return o.threads() }

func (o SessionOptions) threads() (intra, inter int) {
	intra, inter = o.IntraOpThreads, o.InterOpThreads
	if intra <= 0 {
		intra = runtime.NumCPU()
	}
	if inter <= 0 {
		inter = 1
	}
	return intra, inter
}

// newSessionOptions builds ORT options for the CPU part; the provider is
// appended by appendProvider.
func newSessionOptions(o SessionOptions) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("%w: session options: %v", ErrRuntime, err)
	}
	intra, inter := o.threads()
	spin := "0"
	if o.Spin {
		spin = "1"
	}
	for _, step := range []func() error{
		func() error { return so.SetIntraOpNumThreads(intra) },
		func() error { return so.SetInterOpNumThreads(inter) },
		func() error { return so.SetGraphOptimizationLevel(o.Optimization.ort()) },
		func() error { return so.AddSessionConfigEntry("session.intra_op.allow_spinning", spin) },
		func() error { return so.AddSessionConfigEntry("session.inter_op.allow_spinning", spin) },
	} {
		if err := step(); err != nil {
			so.Destroy()
			return nil, fmt.Errorf("%w: session options: %v", ErrRuntime, err)
		}
	}
	return so, nil
}

// appendProvider asks for the GPU provider(s); TensorRT falls back to CUDA
// inside ONNX Runtime for the nodes it does not take.
func appendProvider(so *ort.SessionOptions, o SessionOptions) error {
	dev := fmt.Sprint(o.DeviceID)
	appendCUDA := func() error {
		co, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer co.Destroy()
		if err := co.Update(map[string]string{"device_id": dev}); err != nil {
			return err
		}
		return so.AppendExecutionProviderCUDA(co)
	}
	switch o.Provider {
	case ProviderCPU:
		return nil
	case ProviderCUDA:
		return appendCUDA()
	case ProviderTensorRT:
		to, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return err
		}
		defer to.Destroy()
		if err := to.Update(map[string]string{"device_id": dev}); err != nil {
			return err
		}
		if err := so.AppendExecutionProviderTensorRT(to); err != nil {
			return err
		}
		return appendCUDA()
	}
	return fmt.Errorf("unknown provider %v", o.Provider)
}
