package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testmedia"
)

// eqFrame is a frame message as the live/offline comparison reads it.
type eqFrame struct {
	Type   string   `json:"type"`
	Stream string   `json:"stream"`
	State  string   `json:"state"`
	Seq    uint64   `json:"seq"`
	Faces  []eqFace `json:"faces"`
}

type eqFace struct {
	ID          string                        `json:"id"`
	Box         []float64                     `json:"box"`
	EstimateSeq uint64                        `json:"estimate_seq"`
	Pose        map[string]any                `json:"pose"`
	Landmarks   [][]float64                   `json:"landmarks"`
	Heads       map[string]map[string]float64 `json:"-"`
}

// decodeFrame reads a frame message; every object-valued field of a face
// that is not pose or source is a head (label → value).
func decodeFrame(b []byte) (eqFrame, error) {
	var f eqFrame
	if err := json.Unmarshal(b, &f); err != nil {
		return f, err
	}
	var raw struct {
		Faces []map[string]json.RawMessage `json:"faces"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return f, err
	}
	for i, rf := range raw.Faces {
		f.Faces[i].Heads = map[string]map[string]float64{}
		for k, v := range rf {
			var head map[string]float64
			if k == "pose" || k == "source" || k == "blendshapes" || json.Unmarshal(v, &head) != nil {
				continue
			}
			f.Faces[i].Heads[k] = head
		}
	}
	return f, nil
}

// TestLiveEqualsOffline runs one clip through the live path (the race-built
// daemon, the file paced in real time, a websocket client) and through
// `affectd analyze` (JSON Lines), with the same config and smoothing, and
// checks that offline analysed every frame and that, for every frame the
// live path delivered, each face's box, landmarks and pose are the same,
// and its model heads too where both analysed it (see below). The clip is slowed to 5 fps so that the live path, race
// detector and all, analyses every face of every frame (it then drops
// nothing, which the test checks too: a dropped frame changes what the
// tracker saw).
func TestLiveEqualsOffline(t *testing.T) {
	p := paths(t)
	clip := testmedia.MustEnsure(t, "two_faces", 640, 360)
	dir := t.TempDir()
	slow := filepath.Join(dir, "two_faces_5fps.mp4")
	if b, err := exec.Command("ffmpeg", "-v", "error", "-itsscale", "5", "-i", clip.Path, "-c", "copy", slow).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	truth, err := clip.Truth()
	if err != nil {
		t.Fatal(err)
	}
	const extra = "schedule:\n  max_latency: 1s\nsmoothing:\n  enabled: true\n"
	cfg := configYAML(t, p, extra, streamSpec{"live", slow, false})
	cfg = strings.Replace(cfg, "    loop: false\n", "    loop: false\n    landmarks: true\n", 1)

	// Live.
	proc := startBinary(t, cfg)
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+proc.addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	live := map[uint64]eqFrame{}
	for end := time.Now().Add(90 * time.Second); ; {
		conn.SetReadDeadline(end)
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("websocket: %v (the live stream did not end within 90 s?)", err)
		}
		f, err := decodeFrame(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if f.Type == "status" && f.State == "ended" {
			break
		}
		if f.Type == "frame" {
			live[f.Seq] = f
		}
	}
	for _, reason := range []string{"paced", "in_flight", "queue_full", "align_error", "landmarks_error"} {
		if n := metric(t, proc.addr, "affectd_analyses_skipped_total", `reason="`+reason+`"`); n > 0 {
			t.Logf("live: %v faces not analysed in their frame: %s", n, reason)
		}
	}
	if d := metric(t, proc.addr, "affectd_frames_dropped_total"); d != 0 {
		t.Fatalf("the live path dropped %v frames: too slow a machine for this check", d)
	}

	// Offline, same config, smoothing as run's.
	cfgPath := filepath.Join(dir, "affectd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if r := runAnalyze(t, "-config", cfgPath, "-out", out, "-format", "jsonl", "-points", "-smooth", "-detect-every", "3", slow); r.code != 0 {
		t.Fatalf("analyze: status %d: %s", r.code, r.stderr)
	}
	fh, err := os.Open(filepath.Join(out, "two_faces_5fps.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	offline := map[uint64]eqFrame{}
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f, err := decodeFrame(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		offline[f.Seq] = f
	}
	if len(offline) != truth.FrameCount {
		t.Fatalf("offline analysed %d frames of the clip's %d", len(offline), truth.FrameCount)
	}
	for seq := uint64(1); seq <= uint64(truth.FrameCount); seq++ {
		if _, ok := offline[seq]; !ok {
			t.Fatalf("offline skipped frame %d", seq)
		}
	}

	// Every frame both analysed: the same faces, the same numbers.
	if len(live) < truth.FrameCount*9/10 {
		t.Fatalf("live delivered %d of %d frames", len(live), truth.FrameCount)
	}
	// A face's smoothed heads depend on every result it had: they are
	// compared while the live path has analysed the face in every frame
	// since it appeared (a skip, in_flight behind a slow batch, gives the
	// filters another history from then on). Boxes, landmarks and pose
	// depend on no result and are compared on every frame.
	seqs := make([]uint64, 0, len(live))
	for seq := range live {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	diverged := map[string]uint64{} // face → the first frame the live path did not analyse it
	compared, faces, heads, facesHeads := 0, 0, 0, 0
	for _, seq := range seqs {
		lf := live[seq]
		of, ok := offline[seq]
		if !ok {
			t.Fatalf("live frame %d is not in the offline output", seq)
		}
		if len(lf.Faces) != len(of.Faces) {
			t.Fatalf("frame %d: %d faces live, %d offline", seq, len(lf.Faces), len(of.Faces))
		}
		for i := range lf.Faces {
			a, b := lf.Faces[i], of.Faces[i]
			where := fmt.Sprintf("frame %d face %s", seq, a.ID)
			if faceNumber(a.ID) != faceNumber(b.ID) {
				t.Fatalf("%s: offline id %s", where, b.ID)
			}
			sameFloats(t, where+" box", a.Box, b.Box, 0)
			if len(a.Landmarks) != 68 || len(b.Landmarks) != 68 {
				t.Fatalf("%s: %d landmarks live, %d offline", where, len(a.Landmarks), len(b.Landmarks))
			}
			for k := range a.Landmarks {
				sameFloats(t, fmt.Sprintf("%s landmark %d", where, k), a.Landmarks[k], b.Landmarks[k], 0)
			}
			for _, k := range []string{"yaw", "pitch", "roll"} {
				sameFloats(t, where+" pose "+k, []float64{a.Pose[k].(float64)}, []float64{b.Pose[k].(float64)}, 0)
			}
			faces++
			if b.EstimateSeq != seq || len(b.Heads) != 4 { // the model's au, va, expr; expression_fer
				t.Fatalf("%s: offline estimate of frame %d, %d heads: offline analyses every face of every frame", where, b.EstimateSeq, len(b.Heads))
			}
			if a.EstimateSeq != seq && diverged[a.ID] == 0 {
				diverged[a.ID] = seq
			}
			if diverged[a.ID] != 0 {
				continue
			}
			for name, lb := range b.Heads {
				la := a.Heads[name]
				for label, w := range lb {
					// Printed with 4 decimals; batches of other sizes may
					// differ in the last bits of the model's arithmetic.
					if v, ok := la[label]; !ok || math.Abs(v-w) > 2e-4 {
						t.Fatalf("%s: %s.%s = %v live, %v offline", where, name, label, la[label], w)
					}
					heads++
				}
			}
			facesHeads++
		}
		compared++
	}
	if len(diverged) > 0 {
		t.Logf("faces the live path once did not analyse in a frame (their heads compared until then): %v", diverged)
	}
	if facesHeads < faces*8/10 {
		t.Errorf("heads compared on %d of %d faces: the live path skipped too many", facesHeads, faces)
	}
	t.Logf("compared %d frames (%d faces; heads on %d faces, %d values); offline %d frames", compared, faces, facesHeads, heads, len(offline))
}

// sameFloats checks two printed vectors for equality within tol.
func sameFloats(t *testing.T, what string, a, b []float64, tol float64) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %v live, %v offline", what, a, b)
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol {
			t.Fatalf("%s: %v live, %v offline", what, a, b)
		}
	}
}

func faceNumber(id string) string { return id[strings.LastIndexByte(id, '/')+1:] }
