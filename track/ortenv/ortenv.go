package ortenv

import (
	"errors"
	"fmt"
	"os"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ErrRuntime: the ONNX Runtime shared library is missing or unusable.
var ErrRuntime = errors.New("onnx runtime unavailable")

var (
	mu   sync.Mutex
	path string
)

// Init loads the ONNX Runtime library at lib, once per process. Loading a
// second, different library is an error; the library stays loaded for the
// life of the process.
func Init(lib string) error {
	mu.Lock()
	defer mu.Unlock()
	if ort.IsInitialized() {
		if lib != path {
			return fmt.Errorf("%w: already loaded from %s, cannot switch to %s in the same process", ErrRuntime, path, lib)
		}
		return nil
	}
	if lib == "" {
		return fmt.Errorf("%w: no library path set", ErrRuntime)
	}
	if _, err := os.Stat(lib); err != nil {
		return fmt.Errorf("%w: %v (run `make setup`, or point the setting at libonnxruntime.so)", ErrRuntime, err)
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrRuntime, lib, err)
	}
	path = lib
	return nil
}

// Version is the loaded ONNX Runtime's version ("" before Init).
func Version() string {
	mu.Lock()
	defer mu.Unlock()
	if !ort.IsInitialized() {
		return ""
	}
	return ort.GetVersion()
}

// Library is the path Init loaded ("" before Init).
func Library() string {
	mu.Lock()
	defer mu.Unlock()
	return path
}

// NewSession makes a one-thread session bound to its tensors, at
// ORT_ENABLE_ALL, and runs it once on them (zeros), so that ONNX Runtime's slow first run (lazy
// kernel set-up, arena growth) is paid when the model loads, not by the
// first face of a live stream.
func NewSession(model string, inNames, outNames []string, in, out []ort.Value) (*ort.AdvancedSession, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(1); err != nil {
		return nil, err
	}
	// ONNX Runtime's default, set because the speed depends on it: its
	// NCHWc layout transformer runs whole networks, the converter's PReLUs
	// included (tools/tfjs2onnx's prelu), in the blocked layout. Measured
	// on iris (Fit, both eyes, one thread): 1.7 ms, twice that at
	// ORT_ENABLE_EXTENDED.
	if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll); err != nil {
		return nil, err
	}
	s, err := ort.NewAdvancedSession(model, inNames, outNames, in, out, so)
	if err != nil {
		return nil, err
	}
	if err := s.Run(); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("first run: %w", err)
	}
	return s, nil
}
