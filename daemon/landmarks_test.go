package daemon

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testmedia"
)

// lmFrame is a frame message with the landmark backend's fields.
type lmFrame struct {
	Type   string `json:"type"`
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Faces  []struct {
		ID          string             `json:"id"`
		AU          map[string]float64 `json:"au"`
		AUActive    []string           `json:"au_active"`
		Source      map[string]string  `json:"source"`
		EstimateSeq uint64             `json:"estimate_seq"`
		Pose        *struct {
			Yaw, Pitch, Roll float64
			T                []float64
		} `json:"pose"`
		Blend     map[string]float64 `json:"blendshapes"`
		Landmarks [][]float64        `json:"landmarks"`
	} `json:"faces"`
}

// TestLandmarkBackend: without a MAE-Face model the landmark backend gives
// the AUs (source "landmarks", 0–5), with head pose, blend shapes and the
// 68 points; on the "expression" clip (the mouth opens and the jaw drops
// after 2 s) AU25/AU26 and jawOpen rise; POST …/calibrate makes the open
// mouth the face's neutral, and a websocket client sees the AUs re-zeroed.
func TestLandmarkBackend(t *testing.T) {
	p := paths(t)
	clip := testmedia.MustEnsure(t, "expression", 640, 360)
	cfg := configYAML(t, p, "", streamSpec{"cam", clip.Path, true})
	cfg = strings.Replace(cfg, "model:\n  path: "+p.model, "model:\n  path: \"\"", 1)
	cfg = strings.Replace(cfg, "    loop: true\n", "    loop: true\n    blendshapes: true\n    landmarks: true\n", 1)
	proc := startBinary(t, cfg)
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+proc.addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var hello struct {
		Type  string `json:"type"`
		Model struct {
			Name  string `json:"name"`
			Heads []struct {
				Name, Source, Range string
				Labels              []string
			} `json:"heads"`
		} `json:"model"`
		BlendShapes struct {
			Names, Estimated []string
		} `json:"blendshapes"`
	}
	conn.ReadJSON(&hello)
	if b := hello.BlendShapes; len(b.Names) != 52 || b.Names[17] != "jawOpen" || len(b.Estimated) != 16 {
		t.Errorf("hello's blend shapes: %v, estimated %v; want ARKit's 52 (jawOpen 18th), 16 estimated", b.Names, b.Estimated)
	}
	if hs := hello.Model.Heads; hello.Type != "hello" || len(hs) != 2 || hs[0].Source != "landmarks" ||
		hs[0].Range != "0..5" || len(hs[0].Labels) != 10 || hs[1].Name != "expression_fer" || hs[1].Source != "fer2013" {
		t.Fatalf("hello %+v: want an au head from the landmarks, 0..5, 10 AUs, and expression_fer (on by default)", hello)
	}
	read := func() lmFrame {
		t.Helper()
		return nextMessage(t, conn, func(m *lmFrame) bool { return m.Type == "frame" && len(m.Faces) == 1 && m.Faces[0].AU != nil })
	}
	// The clip loops every 8 s: find a frame in its neutral part, then one
	// well into the open-mouth part.
	var neutral, open lmFrame
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
	t.Logf("neutral: AU25 %.2f AU26 %.2f jawOpen %.2f pose %+v", nf.AU["AU25"], nf.AU["AU26"], nf.Blend["jawOpen"], nf.Pose)
	t.Logf("open:    AU25 %.2f AU26 %.2f jawOpen %.2f active %v", of.AU["AU25"], of.AU["AU26"], of.Blend["jawOpen"], of.AUActive)
	if of.Source["au"] != "landmarks" || of.EstimateSeq != 0 || of.Pose == nil || len(of.Blend) != 16 || len(of.Landmarks) != 68 {
		t.Fatalf("face %+v: want landmark AUs, pose, 16 blend shapes and 68 landmarks", of)
	}
	if of.AU["AU26"] < nf.AU["AU26"]+1 || of.AU["AU25"] < nf.AU["AU25"]+0.5 || of.Blend["jawOpen"] < 0.15 {
		t.Errorf("the mouth opened, but AU25 %.2f→%.2f, AU26 %.2f→%.2f, jawOpen %.2f", nf.AU["AU25"], of.AU["AU25"], nf.AU["AU26"], of.AU["AU26"], of.Blend["jawOpen"])
	}
	if p := of.Pose; p.Yaw < -15 || p.Yaw > 15 || p.Pitch < -20 || p.Pitch > 20 || p.Roll < -10 || p.Roll > 10 {
		t.Errorf("a frontal photo: pose %+v", p)
	}

	// Calibrate while the mouth is open: the AUs go back to about zero.
	for {
		m := read()
		if idx := int((m.Seq - 1) % 200); idx >= 100 && idx < 120 {
			break
		}
	}
	id := strings.TrimPrefix(of.ID, "cam/")
	resp, err := http.Post("http://"+proc.addr+"/v1/streams/cam/faces/"+id+"/calibrate", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("calibrate: %d %s", resp.StatusCode, body)
	}
	var after lmFrame
	for i := 0; i < 15; i++ { // smoothing settles within a few frames
		after = read()
	}
	af := after.Faces[0]
	t.Logf("after calibrating on the open mouth: AU25 %.2f AU26 %.2f", af.AU["AU25"], af.AU["AU26"])
	if idx := int((after.Seq - 1) % 200); idx < 60 {
		t.Fatalf("the clip looped back to the neutral part (frame %d) during the check", idx)
	}
	if af.AU["AU26"] > 0.5 || af.AU["AU25"] > 0.5 {
		t.Errorf("after calibration: AU25 %.2f AU26 %.2f, want ≈ 0", af.AU["AU25"], af.AU["AU26"])
	}
	if r, _ := http.Post("http://"+proc.addr+"/v1/streams/cam/faces/999/calibrate", "", nil); r.StatusCode != 404 {
		t.Errorf("calibrating an unknown face: %d, want 404", r.StatusCode)
	}
}
