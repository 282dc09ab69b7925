package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/tools/whippub/whip"
)

const whipConfig = "webrtc:\n  loopback: true\n  udp_port: 0"

// waitFrames reads messages until n frames of stream with at least one face
// arrived; it returns the face ids seen.
func waitFrames(t *testing.T, msgs <-chan wsMsg, stream string, n int, within time.Duration) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	got := 0
	deadline := time.After(within)
	for got < n {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("websocket closed")
			}
			if m.Type == "frame" && m.Stream == stream && len(m.Faces) > 0 {
				got++
				for _, f := range m.Faces {
					ids[f.ID] = true
				}
			}
		case <-deadline:
			t.Fatalf("%d of %d frames with faces from %s within %v", got, n, stream, within)
		}
	}
	return ids
}

// waitStatus reads messages until stream reports state.
func waitStatus(t *testing.T, msgs <-chan wsMsg, stream, state string, within time.Duration) time.Time {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("websocket closed")
			}
			if m.Type == "status" && m.Stream == stream && m.State == state {
				return m.received
			}
		case <-deadline:
			t.Fatalf("stream %s not %s within %v", stream, state, within)
		}
	}
}

// TestWHIPPublish: tools/whippub publishes the two-face clip as H.264 and
// then as VP8 to a whip:// stream of the real daemon; ≥ 95% of the frames
// sent are decoded (from /metrics), faces come out on the websocket, and
// the stream goes up, then ended with each session.
func TestWHIPPublish(t *testing.T) {
	p := paths(t)
	clip := testmedia.MustEnsure(t, "two_faces", 640, 360)
	h264, err := testmedia.AnnexB(clip)
	if err != nil {
		t.Fatal(err)
	}
	vp8, err := testmedia.IVF(clip)
	if err != nil {
		t.Fatal(err)
	}
	// identity off: a new session's faces are new tracks (with it on, the
	// same two people would take their ids back, as TestReidentify* check).
	proc := startBinary(t, configYAML(t, p, whipConfig+"\nauth_token: tok\nidentity: off", streamSpec{"cam", "whip://", false}))
	_, msgs := dialWS(t, proc.addr, "?streams=cam&token=tok")
	decodedBefore := 0.0
	seen := map[string]string{}
	for _, tc := range []struct{ codec, file string }{{"H264", h264}, {"VP8", vp8}} {
		t.Run(tc.codec, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan whip.Stats, 1)
			errc := make(chan error, 1)
			go func() {
				st, err := whip.Publish(ctx, whip.Options{URL: "http://" + proc.addr + "/v1/whip/cam", File: tc.file, Token: "tok", Frames: 125, Loopback: true})
				errc <- err
				done <- st
			}()
			waitStatus(t, msgs, "cam", "up", 10*time.Second)
			ids := waitFrames(t, msgs, "cam", 25, 10*time.Second)
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			st := <-done
			ended := waitStatus(t, msgs, "cam", "ended", 10*time.Second)
			decoded := metricWithToken(t, proc.addr, "tok", "affectd_whip_frames_decoded_total", `stream="cam"`) - decodedBefore
			decodedBefore += decoded
			t.Logf("%s: sent %d frames (%d key frames, %d PLIs), %v decoded, face ids %v; ended %v after the session",
				tc.codec, st.Sent, st.Keyframes, st.PLIs, decoded, ids, time.Since(ended).Round(time.Millisecond))
			if decoded < 0.95*float64(st.Sent) {
				t.Errorf("%s: %v of %d frames decoded, want ≥ 95%%", tc.codec, decoded, st.Sent)
			}
			for id := range ids { // a new session's faces are new tracks
				if prev, ok := seen[id]; ok {
					t.Errorf("face id %s of the %s session was already given in the %s session", id, tc.codec, prev)
				}
				seen[id] = tc.codec
			}
		})
	}
	if r := metricWithToken(t, proc.addr, "tok", "affectd_whip_refused_total"); r != 0 {
		t.Errorf("%v offers refused", r)
	}
}

// TestChromiumPublish: headless Chromium (Debian's chromium), with a fake
// camera playing the two-face clip, publishes through the daemon's
// /publish page; a websocket client gets frames with face ids for that
// stream; Chromium is killed and the stream goes to ended within 10 s
// while a file stream keeps flowing.
func TestChromiumPublish(t *testing.T) {
	chrome, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium missing: make setup installs Debian's chromium")
	}
	p := paths(t)
	y4m, err := testmedia.Y4M(testmedia.MustEnsure(t, "two_faces", 640, 360))
	if err != nil {
		t.Fatal(err)
	}
	proc := startBinary(t, configYAML(t, p, whipConfig, streamSpec{"file", clipPath(t, "one_face"), true}, streamSpec{"web", "whip://", false}))
	_, msgs := dialWS(t, proc.addr, "")

	profile := t.TempDir()
	url := fmt.Sprintf("http://%s/publish?stream=web&autostart=1", proc.addr)
	cmd := exec.Command(chrome, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+profile,
		"--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--use-file-for-fake-video-capture="+y4m,
		"--allow-loopback-in-peer-connection", "--remote-debugging-port=0", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the browser and its helpers
			cmd.Wait()
		}
	}
	t.Cleanup(kill)
	start := time.Now()
	ids := waitFrames(t, msgs, "web", 20, 30*time.Second)
	t.Logf("Chromium's first 20 frames with faces took %v; face ids %v", time.Since(start).Round(time.Millisecond), ids)
	for id := range ids {
		if !strings.HasPrefix(id, "web/") {
			t.Errorf("face id %q", id)
		}
	}
	kill()
	killedAt := time.Now()
	ended := waitStatus(t, msgs, "web", "ended", 10*time.Second)
	t.Logf("stream web ended %v after Chromium was killed", ended.Sub(killedAt).Round(time.Millisecond))
	waitFrames(t, msgs, "file", 25, 5*time.Second) // the other stream still flows
	if t.Failed() {
		t.Logf("chromium stderr:\n%s", lastLines(stderr.String(), 30))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestWHIPDynamic: with webrtc.allow_dynamic a publisher creates its own
// stream, which lives as long as the session; unconfigured ids are refused
// (404) without it.
func TestWHIPDynamic(t *testing.T) {
	p := paths(t)
	file, err := testmedia.AnnexB(testmedia.MustEnsure(t, "one_face", 640, 360))
	if err != nil {
		t.Fatal(err)
	}
	closed := startBinary(t, configYAML(t, p, whipConfig, streamSpec{"cam", "whip://", false}))
	_, err = whip.Publish(context.Background(), whip.Options{URL: "http://" + closed.addr + "/v1/whip/other", File: file, Frames: 5, Loopback: true})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("publishing to an unconfigured id without allow_dynamic: %v, want a 404", err)
	}

	proc := startBinary(t, configYAML(t, p, whipConfig+"\n  allow_dynamic: true"))
	_, msgs := dialWS(t, proc.addr, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := whip.Publish(ctx, whip.Options{URL: "http://" + proc.addr + "/v1/whip/pop-up", File: file, Frames: 75, Loopback: true})
		errc <- err
	}()
	waitFrames(t, msgs, "pop-up", 10, 15*time.Second)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	waitStatus(t, msgs, "pop-up", "ended", 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + proc.addr + "/v1/streams")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "pop-up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dynamic stream is still listed after its session: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
