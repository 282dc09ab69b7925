package daemon

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

func boxIoU(a, b [4]float64) float64 {
	x0, y0 := math.Max(a[0], b[0]), math.Max(a[1], b[1])
	x1, y1 := math.Min(a[0]+a[2], b[0]+b[2]), math.Min(a[1]+a[3], b[1]+b[3])
	if x1 <= x0 || y1 <= y0 {
		return 0
	}
	in := (x1 - x0) * (y1 - y0)
	return in / (a[2]*a[3] + b[2]*b[3] - in)
}

// TestEndToEnd: the real binary on two file streams with a random ViT-tiny:
// a websocket client gets the hello, then frames of both streams; every
// face carries all of the model's heads and keeps one id, the id the
// tracker gave it (each clip face maps to exactly one id).
func TestEndToEnd(t *testing.T) {
	p := paths(t)
	one, two := testmedia.MustEnsure(t, "one_face", 640, 360), testmedia.MustEnsure(t, "two_faces", 640, 360)
	proc := startBinary(t, configYAML(t, p, "", streamSpec{"one", one.Path, false}, streamSpec{"two", two.Path, false}))
	_, msgs := dialWS(t, proc.addr, "")
	hello := <-msgs
	if hello.Type != "hello" || !hello.Model.Demo || !strings.Contains(hello.Notice, "not affect estimates") {
		t.Fatalf("first message %+v: want a hello that says the model is a demo", hello)
	}
	heads := map[string]int{}
	for _, h := range hello.Model.Heads {
		heads[h.Name] = len(h.Labels)
	}
	if heads["au"] != 12 || heads["va"] != 2 || heads["expr"] != 8 {
		t.Fatalf("hello heads %v", heads)
	}
	truth := map[string]testmedia.Truth{}
	truth["one"], _ = one.Truth()
	truth["two"], _ = two.Truth()

	// Read until both clips have played once (6 s each, in real time).
	frames := map[string]int{}
	withEstimate := map[string]int{}
	idOf := map[string]map[string]map[string]bool{"one": {}, "two": {}} // stream → identity → ids
	ended := map[string]bool{}
	deadline := time.After(30 * time.Second)
read:
	for len(ended) < 2 {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("connection closed")
			}
			if m.Type == "status" && m.State == "ended" {
				ended[m.Stream] = true
			}
			if m.Type != "frame" {
				continue
			}
			frames[m.Stream]++
			tr := truth[m.Stream]
			idx := int(m.Seq - 1)
			if idx >= tr.FrameCount {
				t.Fatalf("stream %s: seq %d past the clip's %d frames", m.Stream, m.Seq, tr.FrameCount)
			}
			for _, f := range m.Faces {
				if f.EstimateSeq > 0 {
					withEstimate[m.Stream]++
					if len(f.AU) != 12 || len(f.VA) != 2 || len(f.Expr) != 8 {
						t.Fatalf("face %s: heads au=%d va=%d expr=%d", f.ID, len(f.AU), len(f.VA), len(f.Expr))
					}
					if f.EstimateSeq > m.Seq {
						t.Fatalf("estimate_seq %d after seq %d", f.EstimateSeq, m.Seq)
					}
				}
				if !strings.HasPrefix(f.ID, m.Stream+"/") {
					t.Fatalf("id %q not prefixed by its stream", f.ID)
				}
				best, who := 0.3, ""
				for _, g := range tr.Frames[idx].Faces {
					if iou := boxIoU(f.Box, g.Box); iou > best {
						best, who = iou, g.Identity
					}
				}
				if who == "" {
					t.Errorf("stream %s frame %d: face %s at %v matches no face of the clip", m.Stream, idx, f.ID, f.Box)
					continue
				}
				if idOf[m.Stream][who] == nil {
					idOf[m.Stream][who] = map[string]bool{}
				}
				idOf[m.Stream][who][f.ID] = true
			}
		case <-deadline:
			t.Errorf("streams ended: %v after 30 s", ended)
			break read
		}
	}
	t.Logf("frames %v, faces with estimates %v, ids %v", frames, withEstimate, idOf)
	for _, s := range []string{"one", "two"} {
		if frames[s] < 100 {
			t.Errorf("stream %s: %d frames of a 150-frame clip", s, frames[s])
		}
		if withEstimate[s] < frames[s]/2 {
			t.Errorf("stream %s: only %d faces with estimates in %d frames", s, withEstimate[s], frames[s])
		}
	}
	if len(idOf["one"]) != 1 || len(idOf["two"]) != 2 {
		t.Fatalf("identities per stream %v: want 1 and 2", idOf)
	}
	seen := map[string]string{}
	for s, byWho := range idOf {
		for who, ids := range byWho {
			if len(ids) != 1 {
				t.Errorf("%s/%s: ids %v: want one", s, who, ids)
			}
			for id := range ids {
				if other, dup := seen[id]; dup {
					t.Errorf("id %s given to %s and %s", id, other, who)
				}
				seen[id] = who
			}
		}
	}
}

// A client that stops reading does not change a normal client's message
// rate; its drops show in /metrics and it is disconnected past the limit.
func TestStalledClient(t *testing.T) {
	p := paths(t)
	two := testmedia.MustEnsure(t, "two_faces", 640, 360)
	proc := startBinary(t, configYAML(t, p, "websocket:\n  send_queue: 16\n  max_drops: 100", streamSpec{"cam", two.Path, true}))
	_, fast := dialWS(t, proc.addr, "")
	rate := func(d time.Duration) float64 {
		n := 0
		end := time.After(d)
		for {
			select {
			case m := <-fast:
				if m.Type == "frame" {
					n++
				}
			case <-end:
				return float64(n) / d.Seconds()
			}
		}
	}
	rate(time.Second) // settle
	before := rate(3 * time.Second)

	// The stalled client: a tiny receive buffer, and it never reads.
	dialer := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	stalled, _, err := dialer.Dial("ws://"+proc.addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	during := rate(4 * time.Second)
	t.Logf("normal client: %.1f msg/s before, %.1f with a stalled client", before, during)
	if during < 0.9*before {
		t.Errorf("the normal client slowed from %.1f to %.1f msg/s", before, during)
	}
	deadline := time.Now().Add(45 * time.Second)
	for metric(t, proc.addr, "affectd_ws_disconnects_total", `reason="slow"`) < 1 {
		rate(500 * time.Millisecond) // keep the normal client drained
		if time.Now().After(deadline) {
			t.Fatalf("the stalled client was not disconnected; dropped so far: %v", metric(t, proc.addr, "affectd_ws_dropped_total"))
		}
	}
	if d := metric(t, proc.addr, "affectd_ws_dropped_total"); d < 100 {
		t.Errorf("ws_dropped_total %v, want ≥ max_drops", d)
	}
	if after := rate(2 * time.Second); after < 0.9*before {
		t.Errorf("the normal client slowed to %.1f msg/s", after)
	}
}

// TestOverload: a model far slower than the demand (a random ViT-small,
// three faces at 25 fps): every face still gets estimates, fairly, at a
// lower rate; latency stays bounded and flat; the pacing shows in /metrics.
func TestOverload(t *testing.T) {
	p := paths(t)
	small := testenv.RequireModel(t, testenv.ModelSpec{Preset: "small", Seed: 2, Heads: "abaw", GlobalPool: true})
	p.model = small.ONNX
	one, two := testmedia.MustEnsure(t, "one_face", 640, 360), testmedia.MustEnsure(t, "two_faces", 640, 360)
	proc := startBinary(t, configYAML(t, p, "", streamSpec{"a", one.Path, true}, streamSpec{"b", two.Path, true}))
	_, msgs := dialWS(t, proc.addr, "")
	time.Sleep(3 * time.Second) // the pacer measures the engine
	for len(msgs) > 0 {
		<-msgs
	}
	type faceStat struct {
		first, last time.Time
		shown       time.Duration // time in the picture (a face re-identified after a loop of the clip is away meanwhile)
		seqs        map[uint64]bool
		lastChange  time.Time
		maxGap      time.Duration
	}
	faces := map[string]*faceStat{}
	var lat []float64
	start := time.Now()
	for time.Since(start) < 12*time.Second {
		m := <-msgs
		if m.Type != "frame" {
			continue
		}
		lat = append(lat, m.LatencyMs)
		for _, f := range m.Faces {
			fs := faces[f.ID]
			if fs == nil {
				fs = &faceStat{first: m.received, last: m.received, seqs: map[uint64]bool{}, lastChange: m.received}
				faces[f.ID] = fs
			}
			if away := m.received.Sub(fs.last); away > 500*time.Millisecond {
				fs.lastChange = m.received // it was away: waiting starts again
			} else {
				fs.shown += away
			}
			fs.last = m.received
			if f.EstimateSeq > 0 && !fs.seqs[f.EstimateSeq] {
				fs.seqs[f.EstimateSeq] = true
				if g := m.received.Sub(fs.lastChange); g > fs.maxGap {
					fs.maxGap = g
				}
				fs.lastChange = m.received
			}
		}
	}
	half := len(lat) / 2
	p99 := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[int(0.99*float64(len(s)-1))]
	}
	first, second := p99(lat[:half]), p99(lat[half:])
	t.Logf("latency p99: %.1f ms (first half), %.1f ms (second half), %d messages", first, second, len(lat))
	if second > 400 {
		t.Errorf("latency p99 %.1f ms: not bounded", second)
	}
	if second > first*1.5+30 {
		t.Errorf("latency grows: p99 %.1f ms then %.1f ms", first, second)
	}
	var rates []float64
	for id, fs := range faces {
		span := fs.shown
		if span < 4*time.Second {
			continue // a face seen briefly (the clip looping)
		}
		r := float64(len(fs.seqs)) / span.Seconds()
		rates = append(rates, r)
		t.Logf("face %s: %d estimates in %v (%.1f/s), longest wait %v", id, len(fs.seqs), span.Round(time.Millisecond), r, fs.maxGap.Round(time.Millisecond))
		if len(fs.seqs) < 4 || fs.maxGap > 2*time.Second {
			t.Errorf("face %s starves: %d estimates, longest wait %v", id, len(fs.seqs), fs.maxGap)
		}
	}
	if len(rates) < 3 {
		t.Fatalf("only %d faces tracked over the window, want 3", len(rates))
	}
	sort.Float64s(rates)
	if rates[0] < rates[len(rates)-1]/2.5 {
		t.Errorf("unfair: estimate rates per face %v", rates)
	}
	if metric(t, proc.addr, "affectd_analyses_skipped_total", `reason="paced"`) == 0 {
		t.Error("no analysis was paced: the model was not overloaded")
	}
}

// TestReloadAndSignals: SIGHUP removes a stream and adds another while a
// third keeps flowing; SIGTERM exits 0 within 5 s, closing clients cleanly.
func TestReloadAndSignals(t *testing.T) {
	p := paths(t)
	one, two := clipPath(t, "one_face"), clipPath(t, "two_faces")
	proc := startBinary(t, configYAML(t, p, "", streamSpec{"a", one, true}, streamSpec{"b", two, true}))
	conn, msgs := dialWS(t, proc.addr, "")
	var lastB time.Time
	var maxGapB time.Duration
	seen := map[string]time.Time{}
	var removedA time.Time
	note := func(m wsMsg) {
		if m.Type == "status" && m.Stream == "a" && m.State == "removed" {
			removedA = m.received
		}
		if m.Type != "frame" {
			return
		}
		if _, ok := seen[m.Stream]; !ok {
			seen[m.Stream] = m.received
		}
		if m.Stream == "a" && !removedA.IsZero() && m.received.After(removedA.Add(500*time.Millisecond)) {
			t.Errorf("a frame of removed stream a at %v", m.received)
		}
		if m.Stream == "b" {
			if !lastB.IsZero() && m.received.Sub(lastB) > maxGapB {
				maxGapB = m.received.Sub(lastB)
			}
			lastB = m.received
		}
	}
	pump := func(d time.Duration) {
		end := time.After(d)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					return
				}
				note(m)
			case <-end:
				return
			}
		}
	}
	pump(2 * time.Second)
	if seen["a"].IsZero() || seen["b"].IsZero() {
		t.Fatalf("frames from %v before the reload, want a and b", seen)
	}
	cfg := configYAML(t, p, "", streamSpec{"b", two, true}, streamSpec{"c", one, true})
	if err := os.WriteFile(proc.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	hup := time.Now()
	proc.cmd.Process.Signal(syscall.SIGHUP)
	pump(4 * time.Second)
	if removedA.IsZero() {
		t.Error("no removed status for stream a")
	}
	if seen["c"].IsZero() {
		t.Fatal("no frames from the added stream c")
	}
	t.Logf("c's first frame %v after SIGHUP; longest gap between b's frames %v", seen["c"].Sub(hup).Round(time.Millisecond), maxGapB.Round(time.Millisecond))
	if maxGapB > time.Second {
		t.Errorf("stream b paused %v during the reload", maxGapB)
	}
	var ids []string
	for _, s := range listStreams(t, proc.addr) {
		ids = append(ids, s.ID)
	}
	if fmt.Sprint(ids) != "[b c]" {
		t.Errorf("/v1/streams after reload: %v, want [b c]", ids)
	}

	// SIGTERM: exit 0 within 5 s; the client gets a close frame.
	term := time.Now()
	proc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-proc.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after SIGTERM")
	}
	took := time.Since(term)
	if proc.err != nil {
		t.Fatalf("exit after SIGTERM: %v", proc.err)
	}
	t.Logf("exited 0 %v after SIGTERM", took.Round(time.Millisecond))
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for range msgs {
	}
	if !strings.Contains(proc.logs(), "affectd stopped") {
		t.Error("no clean-stop log line")
	}
}

// A bad config names the key and the line, and the daemon exits non-zero.
func TestBadConfig(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte("listen: 127.0.0.1:0\ndetector:\n  detect_evrey: 3\nstreams:\n  - id: x\n    url: http://example.com/a.mp4\n"), 0o644)
	for _, args := range [][]string{{"run", "-config", path}, {"check-config", path}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() == 0 {
			t.Fatalf("affectd %s: %v, want a non-zero exit\n%s", args[0], err, out)
		}
		for _, want := range []string{"bad.yaml:3: detector.detect_evrey: unknown key", "bad.yaml:6: streams[0].url: unsupported scheme \"http\""} {
			if !strings.Contains(string(out), want) {
				t.Errorf("affectd %s output lacks %q:\n%s", args[0], want, out)
			}
		}
	}
}

func TestAuth(t *testing.T) {
	p := paths(t)
	t.Setenv("AFFECTD_AUTH_TOKEN", "")
	proc := startBinary(t, configYAML(t, p, "auth_token: s3cret", streamSpec{"a", clipPath(t, "one_face"), true}))
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", "http://"+proc.addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/v1/streams", "", 401}, {"/v1/streams", "wrong", 401}, {"/v1/streams", "s3cret", 200},
		{"/metrics", "", 401}, {"/metrics", "s3cret", 200},
		{"/healthz", "", 200}, {"/readyz", "", 200}, {"/v1/ws", "", 401},
	} {
		if got := get(tc.path, tc.token); got != tc.want {
			t.Errorf("GET %s with token %q: %d, want %d", tc.path, tc.token, got, tc.want)
		}
	}
	c, _, err := websocket.DefaultDialer.Dial("ws://"+proc.addr+"/v1/ws?token=s3cret", nil)
	if err != nil {
		t.Fatalf("websocket with ?token=: %v", err)
	}
	c.Close()

	// tools/wsclient: with the token it prints the hello and 5 frames as
	// JSON lines and exits 0; without, it exits 1.
	client := filepath.Join(t.TempDir(), "wsclient")
	root, _ := testenv.Root()
	build := exec.Command("go", "build", "-o", client, "./tools/wsclient")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build wsclient: %v\n%s", err, out)
	}
	url := "ws://" + proc.addr + "/v1/ws"
	out, err := exec.Command(client, "-url", url, "-stream", "a", "-n", "5", "-token", "s3cret", "-timeout", "10s").Output()
	if err != nil {
		t.Fatalf("wsclient -token: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	frames := 0
	for _, l := range lines {
		var m wsMsg
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("wsclient printed %q: %v", l, err)
		}
		if m.Type == "frame" {
			frames++
			if m.Stream != "a" {
				t.Errorf("frame of stream %q", m.Stream)
			}
		}
	}
	if frames != 5 || !strings.Contains(lines[0], `"hello"`) {
		t.Errorf("wsclient -n 5 printed %d frames: %q", frames, lines)
	}
	cmd := exec.Command(client, "-url", url, "-n", "1")
	cmd.Env = append(os.Environ(), "AFFECTD_AUTH_TOKEN=")
	if err := cmd.Run(); err == nil {
		t.Error("wsclient without the token exited 0")
	}
}
