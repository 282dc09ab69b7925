package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testenv"
)

// benchRig measures glass-to-packet time for animation rigs: the real
// daemon plays one paced 720p25 clip with four outputs (VMC in bundles,
// VMC as single messages, plain OSC, Live Link Face), each to a UDP socket
// of the bench on 127.0.0.1. A Live Link packet carries its frame's seq;
// the websocket's frame message for that seq carries its capture time;
// latency is the packet's arrival minus that capture time (one clock, one
// machine). packets_lost is what the daemon says it sent (GET
// /v1/outputs) minus what the four sockets received.
func benchRig(args []string) error {
	fs := flag.NewFlagSet("rig", flag.ExitOnError)
	modelPath := fs.String("model", "none", `ONNX model ("none": the landmark backend only; "": a seeded random ViT-tiny)`)
	size := fs.String("size", "1280x720", "clip size")
	seconds := fs.Float64("seconds", 20, "measurement window")
	warmup := fs.Float64("warmup", 5, "seconds before measuring")
	keep := fs.Bool("keep", false, "keep the work folder and print the daemon's log path")
	fs.Parse(args)

	clip, err := ensureClip("one_face", *size)
	if err != nil {
		return err
	}
	lib, err := testenv.ORTLibrary()
	if err != nil {
		return err
	}
	shown := "none (the landmark backend)"
	if *modelPath == "none" {
		*modelPath = `""`
	} else if err := defaultModel(modelPath); err != nil {
		return err
	} else {
		shown = *modelPath
	}
	cache, _ := testenv.Cache()
	dir, err := os.MkdirTemp("", "affectd-rig-")
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

	// Four receivers; each counts datagrams, the Live Link one keeps
	// arrival times by frame number.
	type receiver struct {
		name  string
		conn  *net.UDPConn
		mu    sync.Mutex
		count int
	}
	kinds := []struct{ name, yaml string }{
		{"vmc", "kind: vmc"},
		{"vmc_single", "kind: vmc, bundle: false"},
		{"osc", "kind: osc"},
		{"livelink", "kind: livelink, subject: bench"},
	}
	var rx []*receiver
	for _, k := range kinds {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		c.SetReadBuffer(4 << 20)
		defer c.Close()
		rx = append(rx, &receiver{name: k.name, conn: c})
	}
	var (
		arrMu    sync.Mutex
		arrivals = map[uint32]time.Time{}
		measure  = make(chan struct{}) // closed when the window opens
		wg       sync.WaitGroup
	)
	for _, r := range rx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			counting := false
			for {
				n, err := r.conn.Read(buf)
				if err != nil {
					return
				}
				now := time.Now()
				if !counting {
					select {
					case <-measure:
						counting = true
					default:
						continue
					}
				}
				r.mu.Lock()
				r.count++
				r.mu.Unlock()
				if r.name == "livelink" {
					if frame, ok := llfFrame(buf[:n]); ok {
						arrMu.Lock()
						arrivals[frame] = now
						arrMu.Unlock()
					}
				}
			}
		}()
	}
	defer wg.Wait()
	defer func() {
		for _, r := range rx {
			r.conn.Close()
		}
	}()

	var cfg strings.Builder
	fmt.Fprintf(&cfg, "listen: 127.0.0.1:0\nonnxruntime:\n  library: %s\nmodel:\n  path: %s\ndetector:\n  model: %s\n",
		lib, *modelPath, filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx"))
	fmt.Fprintf(&cfg, "streams:\n  - id: cam\n    url: %s\n    realtime: true\n    loop: true\noutputs:\n", clip.Path)
	for i, k := range kinds {
		fmt.Fprintf(&cfg, "  - {name: %s, %s, target: %q, stream: cam}\n", k.name, k.yaml, rx[i].conn.LocalAddr().String())
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
	fmt.Printf("daemon: %s, one paced stream of one_face (%s, 25 fps), 4 outputs, model %s\n", addr, *size, shown)

	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws", nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	time.Sleep(time.Duration(*warmup * float64(time.Second)))
	sentBefore, err := outputsSent(addr)
	if err != nil {
		return err
	}
	close(measure)
	captured := map[uint32]time.Time{}
	end := time.Now().Add(time.Duration(*seconds * float64(time.Second)))
	for time.Now().Before(end) {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("websocket: %v (log: %s)", err, logPath)
		}
		var m struct {
			Type       string    `json:"type"`
			Seq        uint64    `json:"seq"`
			CapturedAt time.Time `json:"captured_at"`
		}
		if json.Unmarshal(b, &m) == nil && m.Type == "frame" {
			captured[uint32(m.Seq)] = m.CapturedAt
		}
	}
	time.Sleep(500 * time.Millisecond) // the last packets of the window arrive
	sentAfter, err := outputsSent(addr)
	if err != nil {
		return err
	}
	var lat []float64
	arrMu.Lock()
	for frame, at := range arrivals {
		if c, ok := captured[frame]; ok {
			lat = append(lat, float64(at.Sub(c))/float64(time.Millisecond))
		}
	}
	frames := len(arrivals)
	arrMu.Unlock()
	received := 0
	for _, r := range rx {
		r.mu.Lock()
		fmt.Printf("output %s: %d datagrams received\n", r.name, r.count)
		received += r.count
		r.mu.Unlock()
	}
	sent := int(sentAfter - sentBefore)
	sort.Float64s(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(p/100*float64(len(lat)-1)+0.5)]
	}
	fmt.Printf("live link frames: %d, matched to a capture time: %d; datagrams sent %d, received %d\n", frames, len(lat), sent, received)
	if *keep {
		fmt.Printf("log: %s\n", logPath)
	}
	fmt.Printf("rig: fps=%.1f p50_ms=%.1f p99_ms=%.1f packets_lost=%d\n", float64(frames) / *seconds, pct(50), pct(99), max(0, sent-received))
	return nil
}

// llfFrame is the frame number of a Live Link Face packet (version 6:
// u8 version, i32-length device id, i32-length subject, i32 frame).
func llfFrame(p []byte) (uint32, bool) {
	if len(p) < 5 || p[0] != 6 {
		return 0, false
	}
	p = p[1:]
	for range 2 {
		if len(p) < 4 {
			return 0, false
		}
		n := int(binary.BigEndian.Uint32(p))
		if n < 0 || 4+n > len(p) {
			return 0, false
		}
		p = p[4+n:]
	}
	if len(p) < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(p), true
}

// outputsSent is the datagrams every output has sent (GET /v1/outputs).
func outputsSent(addr string) (uint64, error) {
	resp, err := http.Get("http://" + addr + "/v1/outputs")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Outputs []struct {
			Packets uint64 `json:"packets"`
		} `json:"outputs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	var n uint64
	for _, o := range body.Outputs {
		n += o.Packets
	}
	return n, nil
}
