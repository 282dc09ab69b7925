package daemon

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

// csvRows reads an analyze CSV into one map per row, column → value.
func csvRows(t *testing.T, path string) []map[string]float64 {
	t.Helper()
	header, rows := readCSV(t, path)
	out := make([]map[string]float64, len(rows))
	for i, r := range rows {
		out[i] = map[string]float64{}
		for j, h := range header {
			out[i][h] = r[j]
		}
	}
	return out
}

// TestAnalyzePhantoms: pictures without a face (a cat, a coffee cup, a
// horse, a page of text, title cards in large letters, as stills and as a
// video) give no face rows, each is named on stderr as having no face, and
// the exit status says so (3); the cameraman, a face in profile, is found.
// Before the verifier, BlazeFace's false alarms on the cat and the cup
// were written as faces with success=1.
func TestAnalyzePhantoms(t *testing.T) {
	p := paths(t)
	cfg := analyzeConfigFile(t, p)
	var inputs []string
	for _, n := range testmedia.Negatives {
		inputs = append(inputs, testmedia.MustSkimage(t, n))
	}
	inputs = append(inputs, testmedia.MustTitleCard(t, "CHAPTER ONE", 90, 640, 360, 0), testmedia.MustTitleCard(t, "MOOD", 150, 640, 360, 2))
	out := t.TempDir()
	r := runAnalyze(t, append([]string{"-config", cfg, "-out", out}, inputs...)...)
	if r.code != 3 {
		t.Errorf("exit status %d, want 3 (inputs without a face); stderr:\n%s", r.code, r.stderr)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), filepath.Ext(in))
		if rows := csvRows(t, filepath.Join(out, name+".csv")); len(rows) != 0 {
			t.Errorf("%s: %d face rows in a picture without a face (first: success %v)", filepath.Base(in), len(rows), rows[0]["success"])
		}
		if !strings.Contains(r.stderr, filepath.Base(in)+": no face found") {
			t.Errorf("stderr does not say %s has no face:\n%s", filepath.Base(in), r.stderr)
		}
	}
	cam := testmedia.MustSkimage(t, testmedia.Cameraman)
	r = runAnalyze(t, "-config", cfg, "-out", out, cam)
	if rows := csvRows(t, filepath.Join(out, "camera.csv")); r.code != 0 || len(rows) != 1 {
		t.Errorf("the cameraman: status %d, %d rows, want 0 and one row; stderr:\n%s", r.code, len(rows), r.stderr)
	}
}

// TestAnalyzeStillsAndFirstFrames: a still picture is a one-frame input
// whose face is reported (and, the neutral being the population's, its
// smile reads as one); a folder of frames (-frames) is one input; and in
// a video a face is reported from the frame it is first seen on (before,
// a face had to be detected twice: stills gave empty CSVs, and videos lost
// their first frames).
func TestAnalyzeStillsAndFirstFrames(t *testing.T) {
	p := paths(t)
	cfg := analyzeConfigFile(t, p)
	cache, _ := testenv.Cache()
	out := t.TempDir()
	still := filepath.Join(cache, "photos", "astronaut.png")
	if r := runAnalyze(t, "-config", cfg, "-out", out, still); r.code != 0 {
		t.Fatalf("still: status %d: %s", r.code, r.stderr)
	}
	rows := csvRows(t, filepath.Join(out, "astronaut.csv"))
	if len(rows) != 1 || rows[0]["frame"] != 1 || rows[0]["success"] != 1 {
		t.Fatalf("still: rows %v, want one successful row of frame 1", rows)
	}
	if au12 := rows[0]["AU12_r"]; au12 < 1 || au12 > 4.5 {
		t.Errorf("the smiling astronaut still: AU12_r %.2f, want a smile (1..4.5)", au12)
	}

	// A folder of frames: one_face's first 10 frames as PNGs.
	clip := testmedia.MustEnsure(t, "one_face", 640, 360)
	dir := filepath.Join(t.TempDir(), "one_face_frames")
	os.Mkdir(dir, 0o755)
	if b, err := exec.Command("ffmpeg", "-v", "error", "-i", clip.Path, "-frames:v", "10", filepath.Join(dir, "%05d.png")).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	if r := runAnalyze(t, "-config", cfg, "-out", out, "-frames", dir); r.code != 0 {
		t.Fatalf("frames: status %d: %s", r.code, r.stderr)
	}
	rows = csvRows(t, filepath.Join(out, "one_face_frames.csv"))
	if len(rows) != 10 || rows[0]["frame"] != 1 || rows[9]["frame"] != 10 {
		t.Errorf("a folder of 10 frames: %d rows", len(rows))
	}

	// Video: the face is in every frame of one_face; rows from frame 1.
	if r := runAnalyze(t, "-config", cfg, "-out", out, clip.Path); r.code != 0 {
		t.Fatalf("video: status %d: %s", r.code, r.stderr)
	}
	rows = csvRows(t, filepath.Join(out, strings.TrimSuffix(filepath.Base(clip.Path), ".mp4")+".csv"))
	if len(rows) == 0 || rows[0]["frame"] != 1 {
		t.Errorf("one_face: first row at frame %v, want 1", rows[0]["frame"])
	}
}

// TestAnalyzeCut: after a hard cut from one person to another at the same
// place, the face has a new id, and the new person is measured against a
// neutral of their own (before, the track, its id and the first person's
// neutral carried over the cut).
func TestAnalyzeCut(t *testing.T) {
	p := paths(t)
	cfg := analyzeConfigFile(t, p)
	clip := testmedia.MustEnsure(t, "cut", 640, 360)
	truth, err := clip.Truth()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if r := runAnalyze(t, "-config", cfg, "-out", out, clip.Path); r.code != 0 {
		t.Fatalf("status %d: %s", r.code, r.stderr)
	}
	before, after := map[float64]bool{}, map[float64]bool{}
	for _, r := range csvRows(t, filepath.Join(out, "cut_640x360.csv")) {
		if int(r["frame"])-1 < truth.Cuts[0] {
			before[r["face_id"]] = true
		} else {
			after[r["face_id"]] = true
		}
	}
	t.Logf("ids before the cut %v, after %v", before, after)
	if len(before) == 0 || len(after) == 0 {
		t.Fatalf("ids before the cut %v, after %v", before, after)
	}
	for id := range after {
		if before[id] {
			t.Errorf("face %v carried over the cut to another person", id)
		}
	}
}

// TestAnalyzePoorFit: the cameraman is in profile; dlib's frontal fit
// falls off his face (a frontal shape squashed over cheek and ear, its
// yaw on the wrong side). The row says success 0 with no AUs or pose, and
// JSON Lines says why (before: success 1, a pose and AUs from the wrong
// fit).
func TestAnalyzePoorFit(t *testing.T) {
	p := paths(t)
	cfg := analyzeConfigFile(t, p)
	cam := testmedia.MustSkimage(t, testmedia.Cameraman)
	out := t.TempDir()
	if r := runAnalyze(t, "-config", cfg, "-out", out, cam); r.code != 0 {
		t.Fatalf("status %d: %s", r.code, r.stderr)
	}
	rows := csvRows(t, filepath.Join(out, "camera.csv"))
	if len(rows) != 1 {
		t.Fatalf("%d rows", len(rows))
	}
	r := rows[0]
	t.Logf("cameraman: success %v confidence %v pose_Ry %v AU12_r %v", r["success"], r["confidence"], r["pose_Ry"], r["AU12_r"])
	if r["success"] != 0 || r["confidence"] >= 0.5 || r["pose_Ry"] != 0 || r["AU12_r"] != 0 || r["valence"] != 0 {
		t.Errorf("a fit that fell off the face: %v", r)
	}
	if res := runAnalyze(t, "-config", cfg, "-out", out, "-format", "jsonl", cam); res.code != 0 {
		t.Fatalf("jsonl: status %d: %s", res.code, res.stderr)
	}
	f, err := os.Open(filepath.Join(out, "camera.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sc.Scan()
	var m struct {
		Faces []map[string]any `json:"faces"`
	}
	if err := json.Unmarshal(sc.Bytes(), &m); err != nil || len(m.Faces) != 1 {
		t.Fatalf("jsonl %s: %v", sc.Bytes(), err)
	}
	if fc := m.Faces[0]; fc["fail"] != "poor_fit" || fc["fit"].(float64) <= 0.15 || fc["pose"] != nil || fc["au"] != nil {
		t.Errorf("jsonl face %v: want fail poor_fit, fit > 0.15, no pose or AUs", fc)
	}
}

// TestAnalyzeFindsItsFiles: from the checkout, `affectd analyze FILE`
// with no config and no -ort or -detector finds ONNX Runtime and the
// detector in .cache/ (before, it stopped at "onnx runtime unavailable").
func TestAnalyzeFindsItsFiles(t *testing.T) {
	root, err := testenv.Root()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(defaultConfig); err == nil {
		t.Skipf("%s exists on this machine: analyze would read it", defaultConfig)
	}
	cache, _ := testenv.Cache()
	if cache != filepath.Join(root, ".cache") {
		t.Skipf("the cache is not the checkout's .cache/ (%s)", cache)
	}
	out := t.TempDir()
	still := filepath.Join(cache, "photos", "astronaut.png")
	cmd := exec.Command(binary(t), "analyze", "-out", out, still)
	cmd.Dir = root
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AFFECTD_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("affectd analyze from the checkout: %v\n%s", err, b)
	}
	if rows := csvRows(t, filepath.Join(out, "astronaut.csv")); len(rows) != 1 {
		t.Errorf("%d rows:\n%s", len(rows), b)
	}
}
