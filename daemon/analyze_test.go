package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/affectd/affectd/stream/record"
	"github.com/affectd/affectd/tools/testmedia"
)

// openFace2Columns are OpenFace 2's FeatureExtraction columns that affectd
// can share (its gaze, eye landmarks, 3D landmarks and shape parameters it
// does not compute), in OpenFace's order.
func openFace2Columns() []string {
	cols := []string{"frame", "face_id", "timestamp", "confidence", "success",
		"pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"}
	for _, axis := range []string{"x", "y"} {
		for i := 0; i < 68; i++ {
			cols = append(cols, fmt.Sprintf("%s_%d", axis, i))
		}
	}
	for _, au := range []string{"01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17", "20", "23", "25", "26", "45"} {
		cols = append(cols, "AU"+au+"_r")
	}
	for _, au := range []string{"01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17", "20", "23", "25", "26", "28", "45"} {
		cols = append(cols, "AU"+au+"_c")
	}
	return cols
}

// analyzeConfig writes a config for analyze: the test ORT, detector,
// landmarks and the demo ViT-tiny model.
func analyzeConfigFile(t *testing.T, p testPaths) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "affectd.yaml")
	cfg := fmt.Sprintf("onnxruntime:\n  library: %s\nmodel:\n  path: %s\ndetector:\n  model: %s\nstreams: []\n", p.lib, p.model, p.detector)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type analyzeRun struct {
	code           int
	stdout, stderr string
}

func runAnalyze(t *testing.T, args ...string) analyzeRun {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"analyze"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(errb.String(), raceReport) || code == 66 {
		t.Errorf("the race detector reported a data race in affectd analyze (status %d):\n%s", code, errb.String())
	}
	return analyzeRun{code, out.String(), errb.String()}
}

// readCSV parses an analyze CSV: OpenFace's ", " separators, every row as
// long as the header, every value a number.
func readCSV(t *testing.T, path string) ([]string, [][]float64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		t.Fatalf("%s: empty", path)
	}
	header := strings.Split(sc.Text(), ", ")
	var rows [][]float64
	for line := 2; sc.Scan(); line++ {
		fields := strings.Split(sc.Text(), ", ")
		if len(fields) != len(header) {
			t.Fatalf("%s:%d: %d fields, header has %d", path, line, len(fields), len(header))
		}
		row := make([]float64, len(fields))
		for i, s := range fields {
			if row[i], err = strconv.ParseFloat(s, 64); err != nil {
				t.Fatalf("%s:%d: column %s: %q is not a number", path, line, header[i], s)
			}
		}
		rows = append(rows, row)
	}
	return header, rows
}

// TestAnalyze: `affectd analyze` on two test clips, a damaged file and a
// missing one. The clips' CSVs have OpenFace 2's column names in its order
// for every column they share, plus the model's; one row per tracked face
// per frame, matching the clips' ground truth; the damaged and missing
// inputs are reported and skipped without stopping the others; a second
// run skips finished files; JSON Lines carries the wire protocol's frames.
func TestAnalyze(t *testing.T) {
	p := paths(t)
	cfg := analyzeConfigFile(t, p)
	two := testmedia.MustEnsure(t, "two_faces", 640, 360)
	one := testmedia.MustEnsure(t, "one_face", 640, 360)
	dir := t.TempDir()
	damaged := filepath.Join(dir, "damaged.mp4")
	b, err := os.ReadFile(two.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(damaged, b[:len(b)/3], 0o644); err != nil { // the index (moov) is at the end: cut off
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	start := time.Now()
	r := runAnalyze(t, "-config", cfg, "-out", out, two.Path, damaged, filepath.Join(dir, "missing.mp4"), one.Path)
	t.Logf("analyze took %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stdout))
	if r.code != 1 {
		t.Errorf("exit status %d, want 1 (two inputs failed); stderr:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"damaged.mp4: skipped:", "missing.mp4: skipped:"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not report %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "\r") {
		t.Error("a progress bar on a pipe (want quiet output when not on a terminal)")
	}
	// Faces' data is personal: readable by owner and group only (before,
	// the outputs were world-readable).
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("the output folder's mode: %v %v, want no access for others", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(filepath.Join(out, "one_face_640x360.csv")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("an output's mode: %v %v, want 0640", fi.Mode().Perm(), err)
	}

	of := openFace2Columns()
	ofIndex := map[string]int{}
	for i, c := range of {
		ofIndex[c] = i
	}
	for _, clip := range []testmedia.Clip{two, one} {
		name := strings.TrimSuffix(filepath.Base(clip.Path), ".mp4")
		truth, err := clip.Truth()
		if err != nil {
			t.Fatal(err)
		}
		header, rows := readCSV(t, filepath.Join(out, name+".csv"))
		// Shared columns: OpenFace's names, in OpenFace's order.
		last, shared := -1, 0
		col := map[string]int{}
		for i, h := range header {
			col[h] = i
			if j, ok := ofIndex[h]; ok {
				shared++
				if j < last {
					t.Errorf("%s: column %s out of OpenFace's order", name, h)
				}
				last = j
			}
		}
		for _, c := range []string{"frame", "face_id", "timestamp", "confidence", "success", "pose_Rx", "x_0", "y_67", "AU12_r", "AU12_c", "valence", "arousal", "expr_happiness"} {
			if _, ok := col[c]; !ok {
				t.Errorf("%s: no column %s", name, c)
			}
		}
		t.Logf("%s: %d columns, %d shared with OpenFace 2; %d rows", name, len(header), shared, len(rows))

		// One row per tracked face per frame, against the clip's truth.
		type key struct{ frame, face int }
		seen := map[key]bool{}
		perFrame := map[int]int{}
		success := 0
		for _, row := range rows {
			k := key{int(row[col["frame"]]), int(row[col["face_id"]])}
			if seen[k] {
				t.Fatalf("%s: two rows for frame %d face %d", name, k.frame, k.face)
			}
			seen[k] = true
			perFrame[k.frame]++
			if ts := row[col["timestamp"]]; abs(ts-float64(k.frame-1)/25) > 0.021 {
				t.Errorf("%s: frame %d timestamp %.3f, want %.3f", name, k.frame, ts, float64(k.frame-1)/25)
			}
			if row[col["success"]] == 1 {
				success++
			}
			if v := row[col["valence"]]; v < -1 || v > 1 {
				t.Errorf("%s: valence %v", name, v)
			}
		}
		truthFaces, matched := 0, 0
		for i, f := range truth.Frames {
			truthFaces += len(f.Faces)
			matched += min(len(f.Faces), perFrame[i+1])
			if perFrame[i+1] > len(f.Faces) {
				t.Errorf("%s: frame %d has %d rows for %d faces", name, i+1, perFrame[i+1], len(f.Faces))
			}
		}
		if matched < truthFaces*9/10 {
			t.Errorf("%s: rows for %d of the clip's %d faces", name, matched, truthFaces)
		}
		if success < len(rows)*9/10 {
			t.Errorf("%s: success on %d of %d rows", name, success, len(rows))
		}
	}

	// A second run skips what is done; the failures are reported again.
	r = runAnalyze(t, "-config", cfg, "-out", out, two.Path, one.Path)
	if r.code != 0 || !strings.Contains(r.stdout, "2 already done") {
		t.Errorf("second run: status %d, stdout %q", r.code, r.stdout)
	}

	// JSON Lines: the wire protocol's frame objects, timed by pts_ms.
	r = runAnalyze(t, "-config", cfg, "-out", out, "-format", "jsonl", one.Path)
	if r.code != 0 {
		t.Fatalf("jsonl: status %d: %s", r.code, r.stderr)
	}
	f, err := os.Open(filepath.Join(out, "one_face_640x360.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	frames, faces := 0, 0
	for sc.Scan() {
		var m struct {
			Type       string   `json:"type"`
			Stream     string   `json:"stream"`
			Seq        int      `json:"seq"`
			PTS        *float64 `json:"pts_ms"`
			CapturedAt *string  `json:"captured_at"`
			Faces      []wsFace `json:"faces"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v", frames+1, err)
		}
		frames++
		if m.Type != "frame" || m.Stream != "one_face_640x360" || m.Seq != frames || m.PTS == nil || m.CapturedAt != nil {
			t.Fatalf("line %d: %+v", frames, m)
		}
		for _, fc := range m.Faces {
			faces++
			if len(fc.AU) == 0 || len(fc.VA) != 2 || len(fc.Expr) != 8 {
				t.Fatalf("line %d: face %+v", frames, fc)
			}
		}
	}
	if truth, _ := one.Truth(); frames != len(truth.Frames) || faces < frames*9/10 {
		t.Errorf("jsonl: %d frames (clip %d), %d faces", frames, len(truth.Frames), faces)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// TestAnalyzeResume: analyze killed (SIGKILL) in the middle of a file
// resumes on the next run and writes the same bytes as an uninterrupted
// run.
func TestAnalyzeResume(t *testing.T) {
	p := paths(t)
	cfg := analyzeConfigFile(t, p)
	clip := testmedia.MustEnsure(t, "two_faces", 640, 360)
	dir := t.TempDir()
	input := filepath.Join(dir, "long.mp4") // 600 frames: several checkpoints
	if b, err := exec.Command("ffmpeg", "-v", "error", "-stream_loop", "3", "-i", clip.Path, "-c", "copy", input).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	whole := filepath.Join(dir, "whole")
	if r := runAnalyze(t, "-config", cfg, "-out", whole, input); r.code != 0 {
		t.Fatalf("uninterrupted run: status %d: %s", r.code, r.stderr)
	}

	resumed := filepath.Join(dir, "resumed")
	state := filepath.Join(resumed, "long.csv.partial.state")
	cmd := exec.Command(binary(t), "analyze", "-config", cfg, "-out", resumed, input)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var st record.State
	for {
		if b, err := os.ReadFile(state); err == nil && json.Unmarshal(b, &st) == nil && st.Frames >= 128 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("no checkpoint within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(resumed, "long.csv")); err == nil {
		t.Fatal("the run finished before it was killed: nothing to resume")
	}
	b, _ := os.ReadFile(state)
	json.Unmarshal(b, &st)
	t.Logf("killed with %d frames checkpointed (%d bytes)", st.Frames, st.Bytes)

	r := runAnalyze(t, "-config", cfg, "-out", resumed, input)
	if r.code != 0 {
		t.Fatalf("resumed run: status %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "resumed 1") {
		t.Errorf("the second run did not resume: %s", r.stdout)
	}
	a, _ := os.ReadFile(filepath.Join(whole, "long.csv"))
	c, _ := os.ReadFile(filepath.Join(resumed, "long.csv"))
	if len(a) == 0 || !bytes.Equal(a, c) {
		t.Errorf("the resumed output (%d bytes) differs from the uninterrupted one (%d bytes)", len(c), len(a))
	}
	if _, err := os.Stat(state); err == nil {
		t.Error("the resume state is left behind")
	}
}
