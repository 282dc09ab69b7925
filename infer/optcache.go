package infer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	ort "github.com/yalue/onnxruntime_go"
)

// optimizedCache decides where the session's graph comes from when
// o.OptimizedCache is set. With a cache whose key matches, it is the
// cache, loaded with no optimisation pass (so is changed to match); else
// ONNX Runtime writes the optimised graph to a temporary file while the
// session is made from the model, and commit moves it into place with its
// key once the session exists.
func (m *Model) optimizedCache(so *ort.SessionOptions, o SessionOptions, log *slog.Logger) (string, func() error, error) {
	key, err := cacheKey(m.path, o.Optimization)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrModelFile, err)
	}
	cache, keyFile := o.OptimizedCache, o.OptimizedCache+".key"
	if have, err := os.ReadFile(keyFile); err == nil && string(have) == key {
		if _, err := os.Stat(cache); err == nil {
			if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
				return "", nil, fmt.Errorf("%w: session options: %v", ErrRuntime, err)
			}
			log.Info("optimised model from cache", "file", cache)
			return cache, nil, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
		return "", nil, fmt.Errorf("optimised-model cache: %w", err)
	}
	tmp := cache + ".tmp"
	if err := so.SetOptimizedModelFilePath(tmp); err != nil {
		return "", nil, fmt.Errorf("%w: session options: %v", ErrRuntime, err)
	}
	commit := func() error {
		os.Remove(keyFile) // a crash before the new key is written leaves no key: rewritten next start
		if err := os.Rename(tmp, cache); err != nil {
			return err
		}
		log.Info("optimised model cached", "file", cache)
		return os.WriteFile(keyFile, []byte(key), 0o644)
	}
	return m.path, commit, nil
}

// cacheKey names what an optimised graph depends on: the model's bytes,
// the runtime's version and the optimisation level.
func cacheKey(path string, level Optimization) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("model-sha256=%s onnxruntime=%s optimization=%v\n", hex.EncodeToString(h.Sum(nil)), RuntimeVersion(), level), nil
}
