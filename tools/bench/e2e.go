package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testenv"
)

// benchE2E runs the real daemon binary on N paced 25 fps 720p file streams
// with one websocket client, and measures per-stream message rate,
// capture → sent latency and drops.
func benchE2E(args []string) error {
	fs := flag.NewFlagSet("e2e", flag.ExitOnError)
	n := fs.Int("streams", 4, "number of streams")
	modelPath := fs.String("model", "", `ONNX model (default: a seeded random ViT-tiny, made if missing; "none": the landmark backend only)`)
	clipName := fs.String("clip", "one_face", "test clip for every stream")
	size := fs.String("size", "1280x720", "clip size")
	seconds := fs.Float64("seconds", 20, "measurement window")
	warmup := fs.Float64("warmup", 5, "seconds before measuring")
	extra := fs.String("config", "", "extra YAML appended to the generated config (tuning)")
	keep := fs.Bool("keep", false, "keep the work folder and print the daemon's log path")
	fs.Parse(args)

	clip, err := ensureClip(*clipName, *size)
	if err != nil {
		return err
	}
	lib, err := testenv.ORTLibrary()
	if err != nil {
		return err
	}
	if *modelPath == "none" {
		*modelPath = `""`
	} else if err := defaultModel(modelPath); err != nil {
		return err
	}
	cache, _ := testenv.Cache()
	dir, err := os.MkdirTemp("", "affectd-e2e-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	bin, err := buildDaemon(dir)
	if err != nil {
		return err
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "listen: 127.0.0.1:0\nonnxruntime:\n  library: %s\nmodel:\n  path: %s\ndetector:\n  model: %s\n",
		lib, *modelPath, filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx"))
	if *extra != "" {
		cfg.WriteString(*extra + "\n")
	}
	cfg.WriteString("streams:\n")
	for i := 0; i < *n; i++ {
		fmt.Fprintf(&cfg, "  - id: s%d\n    url: %s\n    realtime: true\n    loop: true\n", i+1, clip.Path)
	}
	cfgPath := filepath.Join(dir, "affectd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "affectd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	addr, err := waitListening(io.TeeReader(stderr, logFile), 60*time.Second)
	if err != nil {
		return fmt.Errorf("%v (log: %s)", err, logPath)
	}
	go io.Copy(logFile, stderr)
	fmt.Printf("daemon: %s, %d streams of %s (%s, 25 fps, paced), model %s\n", addr, *n, *clipName, *size, filepath.Base(filepath.Dir(strings.Trim(*modelPath, `"`))))

	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws", nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	type msg struct {
		Type      string  `json:"type"`
		Stream    string  `json:"stream"`
		Seq       uint64  `json:"seq"`
		LatencyMs float64 `json:"latency_ms"`
		Faces     []struct {
			ID          string `json:"id"`
			EstimateSeq uint64 `json:"estimate_seq"`
		} `json:"faces"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration((*warmup+*seconds+30)*float64(time.Second)))
	defer cancel()
	warmEnd := time.Now().Add(time.Duration(*warmup * float64(time.Second)))
	var end time.Time
	counts := map[string]int{}
	ages := map[string][]float64{}
	var lat []float64
	var staleness []float64 // frames between a face's message and its estimate
	var dropsStart, dropsEnd float64
	measuring := false
	for ctx.Err() == nil {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("websocket: %v (log: %s)", err, logPath)
		}
		now := time.Now()
		if !measuring && now.After(warmEnd) {
			measuring = true
			end = now.Add(time.Duration(*seconds * float64(time.Second)))
			dropsStart, _ = scrapeDrops(addr)
		}
		if measuring && now.After(end) {
			dropsEnd, _ = scrapeDrops(addr)
			break
		}
		if !measuring {
			continue
		}
		var m msg
		if json.Unmarshal(b, &m) != nil || m.Type != "frame" {
			continue
		}
		counts[m.Stream]++
		lat = append(lat, m.LatencyMs)
		for _, f := range m.Faces {
			if f.EstimateSeq > 0 {
				staleness = append(staleness, float64(m.Seq-f.EstimateSeq))
				ages[m.Stream] = append(ages[m.Stream], float64(m.Seq-f.EstimateSeq))
			}
		}
	}
	minFPS := math.Inf(1)
	var ids []string
	for id := range counts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	pct := func(v []float64, p float64) float64 {
		if len(v) == 0 {
			return 0
		}
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[int(p/100*float64(len(s)-1)+0.5)]
	}
	for _, id := range ids {
		fps := float64(counts[id]) / *seconds
		minFPS = math.Min(minFPS, fps)
		fmt.Printf("stream %s: %.1f fps, estimate age p50 %.0f frames, max %.0f\n", id, fps, pct(ages[id], 50), pct(ages[id], 100))
	}
	if len(counts) < *n {
		minFPS = 0
	}
	fmt.Printf("estimate age: p50=%.0f p99=%.0f frames; messages: %d\n", pct(staleness, 50), pct(staleness, 99), len(lat))
	if resp, err := http.Get("http://" + addr + "/v1/streams"); err == nil {
		var body struct {
			Streams []struct {
				ID         string  `json:"id"`
				IntervalMs float64 `json:"interval_ms"`
				Dropped    uint64  `json:"dropped"`
			} `json:"streams"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if len(body.Streams) > 0 {
			fmt.Printf("fair-share interval per face: %.0f ms\n", body.Streams[0].IntervalMs)
		}
	}
	if *keep {
		fmt.Printf("log: %s\n", logPath)
	}
	fmt.Printf("e2e: streams=%d fps_per_stream=%.1f p50_ms=%.1f p99_ms=%.1f drops=%.0f\n", *n, minFPS, pct(lat, 50), pct(lat, 99), dropsEnd-dropsStart)
	return nil
}

var listenRE = regexp.MustCompile(`msg=listening addr=http://(\S+)`)

// waitListening reads the daemon's log until it says where it listens.
func waitListening(r io.Reader, within time.Duration) (string, error) {
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				return
			}
		}
		close(found)
	}()
	select {
	case a, ok := <-found:
		if !ok {
			return "", fmt.Errorf("the daemon exited before listening")
		}
		return a, nil
	case <-time.After(within):
		return "", fmt.Errorf("the daemon did not listen within %v", within)
	}
}

// waitReady polls /readyz until the daemon has loaded its models.
func waitReady(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the daemon was not ready within %v", within)
}

// scrapeDrops sums frames dropped before tracking and websocket messages
// dropped, from /metrics.
func scrapeDrops(addr string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "affectd_frames_dropped_total{") || strings.HasPrefix(line, "affectd_ws_dropped_total{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum, nil
}
