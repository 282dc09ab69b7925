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
