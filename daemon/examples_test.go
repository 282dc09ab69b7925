package daemon

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

// python runs one of examples/python with Debian's python3.
func python(t *testing.T, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", append([]string{filepath.Join("..", "examples", "python", script)}, args...)...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, b)
	}
	return string(b)
}

// TestPythonExamples runs examples/python against the real thing: the
// live websocket of a daemon, an analyze CSV, and affectd features output.
func TestPythonExamples(t *testing.T) {
	p := paths(t)
	clip := testmedia.MustEnsure(t, "one_face", 640, 360)
	proc := startBinary(t, configYAML(t, p, "", streamSpec{"cam", clip.Path, true}))
	out := python(t, "live.py", "ws://"+proc.addr+"/v1/ws", "20")
	t.Logf("live.py:\n%s", out)
	if !strings.Contains(out, "cam/") || !strings.Contains(out, "expression_fer.happy") || !strings.Contains(out, "va.valence") {
		t.Errorf("live.py printed no face with its heads")
	}

	dir := t.TempDir()
	b, err := exec.Command(binary(t), "analyze", "-model", p.model, "-out", dir, "-quiet", clip.Path).CombinedOutput()
	if err != nil {
		t.Fatalf("analyze: %v\n%s", err, b)
	}
	out = python(t, "analyze_csv.py", filepath.Join(dir, "one_face_640x360.csv"))
	t.Logf("analyze_csv.py:\n%s", out)
	if !strings.Contains(out, "frames") || !strings.Contains(out, "AU12_r") {
		t.Errorf("analyze_csv.py printed no AU table")
	}

	enc := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 5, GlobalPool: true})
	writeLearnClips(t, dir, 2, 5, false)
	feats := filepath.Join(dir, "features")
	if b, err := exec.Command(binary(t), "features", "-model", enc.ONNX, "-out", feats, filepath.Join(dir, "cropped_aligned")).CombinedOutput(); err != nil {
		t.Fatalf("features: %v\n%s", err, b)
	}
	out = python(t, "features.py", feats)
	t.Logf("features.py:\n%s", out)
	if !strings.Contains(out, "vid00: 5 rows x 192 features, frames 1..5") {
		t.Errorf("features.py: want vid00's 5 rows of 192 features")
	}
}
