package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/tools/whippub/whip"
)

// benchLatency measures glass-to-socket latency of WHIP and RTSP ingest on
// the same clip in one run: from the moment a sender hands a frame to its
// transport (tools/whippub for WHIP, the GStreamer RTSP server's feeder for
// RTSP, both logging per frame) to the moment a websocket client on the
// same machine receives the daemon's message for that frame.
func benchLatency(args []string) error {
	fs := flag.NewFlagSet("latency", flag.ExitOnError)
	clipName := fs.String("clip", "one_face", "test clip")
	size := fs.String("size", "1280x720", "clip size")
	seconds := fs.Float64("seconds", 20, "how long both streams run")
	modelPath := fs.String("model", "", "ONNX model (default: a seeded random ViT-tiny)")
	fs.Parse(args)

	clip, err := ensureClip(*clipName, *size)
	if err != nil {
		return err
	}
	annexB, err := testmedia.AnnexB(clip)
	if err != nil {
		return err
	}
	lib, err := testenv.ORTLibrary()
	if err != nil {
		return err
	}
	if err := defaultModel(modelPath); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "affectd-latency-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The RTSP server logs the wall time it sends each frame at.
	rtspLog := filepath.Join(dir, "rtsp.log")
	srv, err := testmedia.StartRTSPWith(nil, clip.Path, testmedia.RTSPOptions{Log: rtspLog})
	if err != nil {
		return err
	}
	defer srv.Stop()

	cache, _ := testenv.Cache()
	bin, err := buildDaemon(dir)
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nonnxruntime:\n  library: %s\nmodel:\n  path: %s\ndetector:\n  model: %s\nwebrtc:\n  loopback: true\nstreams:\n  - id: whip\n    url: whip://\n",
		lib, *modelPath, filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx"))
	cfgPath := filepath.Join(dir, "affectd.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	addr, err := waitListening(stderr, 60*time.Second)
	if err != nil {
		return err
	}
	go io.Copy(io.Discard, stderr)
	if err := waitReady(addr, 60*time.Second); err != nil {
		return err
	}

	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws", nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	type arrival struct {
		seq uint64
		at  time.Time
	}
	var mu sync.Mutex
	got := map[string][]arrival{}
	go func() {
		var m struct {
			Type   string `json:"type"`
			Stream string `json:"stream"`
			Seq    uint64 `json:"seq"`
		}
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				return
			}
			now := time.Now()
			if json.Unmarshal(b, &m) == nil && m.Type == "frame" {
				mu.Lock()
				got[m.Stream] = append(got[m.Stream], arrival{m.Seq, now})
				mu.Unlock()
			}
		}
	}()

	// RTSP joins by reload (so it starts as a lone client of the server,
	// from frame 0), WHIP by publishing; both run together.
	cfg += fmt.Sprintf("  - id: rtsp\n    url: %s\n", srv.URL())
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)

	var sentMu sync.Mutex
	var whipSent []time.Time
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*seconds*float64(time.Second)))
	defer cancel()
	st, err := whip.Publish(ctx, whip.Options{
		URL: "http://" + addr + "/v1/whip/whip", File: annexB, Loop: true, Loopback: true,
		OnSent: func(i int, at time.Time) {
			sentMu.Lock()
			whipSent = append(whipSent, at)
			sentMu.Unlock()
		},
	})
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond) // the last messages
	rtspSent, err := readFrameLog(rtspLog)
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("clip %s (%dx%d, 25 fps); WHIP: %d frames sent (H.264, %d PLIs), %d messages; RTSP: %d frames sent, %d messages\n",
		*clipName, clip.Width, clip.Height, st.Sent, st.PLIs, len(got["whip"]), len(rtspSent), len(got["rtsp"]))
	res := map[string][2]float64{}
	for _, s := range []struct {
		name string
		sent []time.Time
	}{{"whip", whipSent}, {"rtsp", rtspSent}} {
		// Steady state: from the 50th frame on (2 s), past connection
		// set-up (RTSP's stream probing holds the first frames back).
		var lat, all []float64
		for _, a := range got[s.name] {
			i := int(a.seq) - 1 // the sender's i-th frame is the daemon's seq i+1
			if i >= 0 && i < len(s.sent) {
				ms := float64(a.at.Sub(s.sent[i])) / float64(time.Millisecond)
				all = append(all, ms)
				if i >= 50 {
					lat = append(lat, ms)
				}
			}
		}
		if len(lat) == 0 {
			return fmt.Errorf("no %s frame matched", s.name)
		}
		sort.Float64s(lat)
		sort.Float64s(all)
		p50, p99 := lat[len(lat)/2], lat[int(0.99*float64(len(lat)-1))]
		res[s.name] = [2]float64{p50, p99}
		fmt.Printf("%-4s glass-to-socket: p50 %.1f ms, p99 %.1f ms, min %.1f ms (%d frames after the first 50); with start-up: p50 %.1f ms, p99 %.1f ms\n",
			s.name, p50, p99, lat[0], len(lat), all[len(all)/2], all[int(0.99*float64(len(all)-1))])
	}
	fmt.Printf("latency: whip_p50_ms=%.1f whip_p99_ms=%.1f rtsp_p50_ms=%.1f rtsp_p99_ms=%.1f\n",
		res["whip"][0], res["whip"][1], res["rtsp"][0], res["rtsp"][1])
	return nil
}

// readFrameLog reads "frame_index wall_clock_ns" lines.
func readFrameLog(path string) ([]time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []time.Time
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		if len(parts) != 2 {
			continue
		}
		i, err1 := strconv.Atoi(parts[0])
		ns, err2 := strconv.ParseInt(parts[1], 10, 64)
		if err1 != nil || err2 != nil || i != len(out) {
			return nil, fmt.Errorf("%s: bad line %q", path, sc.Text())
		}
		out = append(out, time.Unix(0, ns))
	}
	return out, sc.Err()
}
