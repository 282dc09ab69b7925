package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

// meshConfig is the landmarks section for the mesh468 backend.
func meshConfig(t *testing.T) string {
	return fmt.Sprintf("landmarks:\n  backend: mesh468\n  mesh_model: %s\n  iris_model: %s\n",
		testenv.HumanModel(t, "facemesh"), testenv.HumanModel(t, "iris"))
}

// meshFrame is a frame message with the mesh backend's fields.
type meshFrame struct {
	Type  string `json:"type"`
	Seq   uint64 `json:"seq"`
	Faces []struct {
		ID        string             `json:"id"`
		AU        map[string]float64 `json:"au"`
		Source    map[string]string  `json:"source"`
		Pose      *struct{ Yaw, Pitch, Roll float64 }
		Blend     map[string]float64 `json:"blendshapes"`
		Landmarks [][]float64        `json:"landmarks"`
		Mesh      [][]float64        `json:"mesh"`
		Gaze      *struct {
			Eye0, Eye1 []float64
			AngleX     float64 `json:"angle_x"`
			AngleY     float64 `json:"angle_y"`
			At0, At1   []float64
		} `json:"gaze"`
	} `json:"faces"`
}

// TestMeshBackend: the daemon with landmarks.backend mesh468 and no
// MAE-Face model, on the "expression" clip (a frontal photo whose mouth
// opens after 2 s): frames carry the 68 points, the mesh's 468 (asked
// for), the gaze with both irises on the face, the landmark AUs, the
// eyes' blend shapes after lmau's 16.
//
// Unlike dlib68 (TestLandmarkBackend), the mesh does not follow the clip's
// synthetic jaw drop (the photo's lower face stretched, teeth and all):
// measured AU26 0.00 → 0.10, AU25 1.33 → 1.47, jawOpen 0.02, so the open
// mouth is logged, not asserted (TestMap68AgainstDlib: the mapped jaw is
// 16% of the eye distance from dlib's there).
func TestMeshBackend(t *testing.T) {
	p := paths(t)
	clip := testmedia.MustEnsure(t, "expression", 640, 360)
	cfg := configYAML(t, p, meshConfig(t), streamSpec{"cam", clip.Path, true})
	cfg = strings.Replace(cfg, "model:\n  path: "+p.model, "model:\n  path: \"\"", 1)
	cfg = strings.Replace(cfg, "    loop: true\n", "    loop: true\n    blendshapes: true\n    landmarks: true\n    mesh: true\n", 1)
	proc := startBinary(t, cfg)
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+proc.addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var hello struct {
		Type        string `json:"type"`
		BlendShapes struct {
			Names, Estimated []string
		} `json:"blendshapes"`
	}
	conn.ReadJSON(&hello)
	if e := hello.BlendShapes.Estimated; len(e) != 26 || !slices.Contains(e, "eyeLookInLeft") || !slices.Contains(e, "eyeSquintRight") {
		t.Errorf("hello's estimated blend shapes %v: want lmau's 16 and the eyes' 10 more", e)
	}
	read := func() meshFrame {
		t.Helper()
		return nextMessage(t, conn, func(m *meshFrame) bool { return m.Type == "frame" && len(m.Faces) == 1 && m.Faces[0].AU != nil })
	}
	var neutral, open meshFrame
	for neutral.Seq == 0 || open.Seq == 0 {
		m := read()
		idx := int((m.Seq - 1) % 200)
		if idx >= 10 && idx < 45 && neutral.Seq == 0 {
			neutral = m
		}
		if idx >= 110 && idx < 180 && neutral.Seq != 0 && open.Seq == 0 {
			open = m
		}
	}
	nf, of := neutral.Faces[0], open.Faces[0]
	if len(nf.Landmarks) != 68 || len(nf.Mesh) != 468 || len(nf.Mesh[0]) != 3 || nf.Pose == nil || nf.Gaze == nil || len(nf.Blend) != 26 {
		t.Fatalf("face: %d landmarks, %d mesh points, pose %v, gaze %v, %d blend shapes; want 68, 468, a pose, a gaze, 26",
			len(nf.Landmarks), len(nf.Mesh), nf.Pose, nf.Gaze, len(nf.Blend))
	}
	g := nf.Gaze
	t.Logf("neutral: gaze angles %.3f %.3f rad, eye0 %.3f eye1 %.3f; blink %.2f/%.2f; AU25 %.2f AU26 %.2f jawOpen %.2f; pose %+v",
		g.AngleX, g.AngleY, g.Eye0, g.Eye1, nf.Blend["eyeBlinkLeft"], nf.Blend["eyeBlinkRight"], nf.AU["AU25"], nf.AU["AU26"], nf.Blend["jawOpen"], *nf.Pose)
	t.Logf("open:    AU25 %.2f AU26 %.2f jawOpen %.2f", of.AU["AU25"], of.AU["AU26"], of.Blend["jawOpen"])
	for _, v := range [][]float64{g.Eye0, g.Eye1} {
		if n := math.Sqrt(v[0]*v[0] + v[1]*v[1] + v[2]*v[2]); len(v) != 3 || math.Abs(n-1) > 0.01 || v[2] > -0.5 {
			t.Errorf("gaze vector %v (norm %.3f): want a unit vector towards the camera", v, n)
		}
	}
	// Each iris centre lies inside its eye: between that eye's corners.
	for i, at := range [][]float64{g.At0, g.At1} {
		a, b := nf.Landmarks[36+6*i], nf.Landmarks[39+6*i]
		if at[0] < min(a[0], b[0]) || at[0] > max(a[0], b[0]) || math.Abs(at[1]-(a[1]+b[1])/2) > 0.5*math.Abs(b[0]-a[0]) {
			t.Errorf("iris %d at %v, not between its eye's corners %v and %v", i, at, a, b)
		}
	}
	if nf.Blend["eyeBlinkLeft"] > 0.2 || nf.Blend["eyeBlinkRight"] > 0.2 {
		t.Errorf("open eyes: eyeBlink %.2f/%.2f", nf.Blend["eyeBlinkLeft"], nf.Blend["eyeBlinkRight"])
	}
	for _, fc := range [...]map[string]float64{nf.AU, of.AU} {
		for au, v := range fc {
			if !(v >= 0 && v <= 5) {
				t.Errorf("%s = %v: want 0..5", au, v)
			}
		}
	}
	if p := nf.Pose; p.Yaw < -15 || p.Yaw > 15 || p.Pitch < -20 || p.Pitch > 20 || p.Roll < -10 || p.Roll > 10 {
		t.Errorf("a frontal photo: pose %+v", p)
	}
}

// TestAnalyzeMesh: `affectd analyze -backend mesh468` writes OpenFace's
// gaze columns, in its order (after success, before the pose), unit gaze
// vectors on every successful row; with -format jsonl -mesh each face
// carries 468 points.
func TestAnalyzeMesh(t *testing.T) {
	p := paths(t)
	cfgPath := filepath.Join(t.TempDir(), "affectd.yaml")
	cfg := fmt.Sprintf("onnxruntime:\n  library: %s\nmodel:\n  path: \"\"\ndetector:\n  model: %s\n%sstreams: []\n", p.lib, p.detector, meshConfig(t))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	clip := clipPath(t, "one_face")
	out := t.TempDir()
	if r := runAnalyze(t, "-config", cfgPath, "-backend", "mesh468", "-out", out, "-quiet", clip); r.code != 0 {
		t.Fatalf("analyze: status %d\n%s", r.code, r.stderr)
	}
	header, rows := readCSV(t, filepath.Join(out, strings.TrimSuffix(filepath.Base(clip), filepath.Ext(clip))+".csv"))
	want := []string{"success", "gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y", "pose_Tx"}
	at := slices.Index(header, "success")
	if at < 0 || len(header) < at+len(want) || !slices.Equal(header[at:at+len(want)], want) {
		t.Fatalf("columns %v: want %v in a row", header, want)
	}
	succ := 0
	for _, r := range rows {
		if r[at] != 1 {
			continue
		}
		succ++
		for e := 0; e < 2; e++ {
			x, y, z := r[at+1+3*e], r[at+2+3*e], r[at+3+3*e]
			if n := math.Sqrt(x*x + y*y + z*z); math.Abs(n-1) > 0.01 {
				t.Fatalf("row %v: gaze_%d norm %.3f", r[:at+9], e, n)
			}
		}
	}
	if succ < len(rows)/2 || len(rows) == 0 {
		t.Fatalf("%d of %d rows successful", succ, len(rows))
	}

	jout := t.TempDir()
	if r := runAnalyze(t, "-config", cfgPath, "-backend", "mesh468", "-format", "jsonl", "-mesh", "-out", jout, "-quiet", clip); r.code != 0 {
		t.Fatalf("analyze -format jsonl -mesh: status %d\n%s", r.code, r.stderr)
	}
	f, err := os.Open(filepath.Join(jout, strings.TrimSuffix(filepath.Base(clip), filepath.Ext(clip))+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	faces := 0
	for sc.Scan() {
		var m meshFrame
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		for _, fc := range m.Faces {
			if fc.AU == nil {
				continue
			}
			if len(fc.Mesh) != 468 || fc.Gaze == nil {
				t.Fatalf("frame %d: %d mesh points, gaze %v", m.Seq, len(fc.Mesh), fc.Gaze)
			}
			faces++
		}
	}
	if faces == 0 {
		t.Fatal("no measured faces in the JSON lines")
	}
	if r := runAnalyze(t, "-config", cfgPath, "-backend", "mesh999", "-out", t.TempDir(), clip); r.code != 2 || !strings.Contains(r.stderr, "landmarks.backend") {
		t.Errorf("-backend mesh999: status %d, %s", r.code, r.stderr)
	}
}

// TestAnalyzeExpressionFER: with expression_fer.model set, `affectd
// analyze` writes the head's seven columns (expression_fer_angry …
// expression_fer_neutral) on every row, a softmax; on the public-domain
// photos the astronaut (smiling broadly) reads happy, Grace Hopper (mouth
// closed) does not (track/emotion measured happy 0.9999 and 0.014).
func TestAnalyzeExpressionFER(t *testing.T) {
	p := paths(t)
	cfgPath := filepath.Join(t.TempDir(), "affectd.yaml")
	cfg := fmt.Sprintf("onnxruntime:\n  library: %s\nmodel:\n  path: \"\"\ndetector:\n  model: %s\nexpression_fer:\n  model: %s\nstreams: []\n",
		p.lib, p.detector, testenv.HumanModel(t, "emotion"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cache, _ := testenv.Cache()
	out := t.TempDir()
	photos := map[string]string{"astronaut": "astronaut.png", "grace_hopper_512x512": "grace_hopper_512x512.jpg"}
	var args []string
	for _, f := range photos {
		args = append(args, filepath.Join(cache, "photos", f))
	}
	if r := runAnalyze(t, append([]string{"-config", cfgPath, "-out", out, "-quiet"}, args...)...); r.code != 0 {
		t.Fatalf("analyze: status %d\n%s", r.code, r.stderr)
	}
	labels := []string{"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
	for name := range photos {
		header, rows := readCSV(t, filepath.Join(out, name+".csv"))
		at := slices.Index(header, "expression_fer_angry")
		if at < 0 || len(rows) != 1 {
			t.Fatalf("%s: columns %v, %d rows", name, header, len(rows))
		}
		top, sum := 0, 0.0
		for k, lb := range labels {
			if header[at+k] != "expression_fer_"+lb {
				t.Fatalf("%s: column %d is %s, want expression_fer_%s", name, at+k, header[at+k], lb)
			}
			sum += rows[0][at+k]
			if rows[0][at+k] > rows[0][at+top] {
				top = k
			}
		}
		t.Logf("%s: expression_fer %v (top %s)", name, rows[0][at:at+7], labels[top])
		if math.Abs(sum-1) > 0.002 {
			t.Errorf("%s: the scores sum to %.4f", name, sum)
		}
		if (name == "astronaut") != (labels[top] == "happy") {
			t.Errorf("%s: top label %s", name, labels[top])
		}
	}
}
