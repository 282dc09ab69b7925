package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/tools/whippub/whip"
)

// The soak's timeline repeats every soakCycle: the RTSP server is killed
// at 0 s and restarted at rtspDown; the WHIP publisher publishes for 50 s
// of each minute; the config is reloaded at 20, 50, 80 and 110 s (an even
// number per cycle, so every cycle is in the same state at the same
// moment); the figures are sampled from samplePhase for five seconds,
// when every churn is in the same state in every cycle.
const (
	soakCycle   = 2 * time.Minute
	rtspDown    = 15 * time.Second
	samplePhase = 40 * time.Second
)

// benchSoak runs the daemon (built with -tags matprofile, so that it
// counts its OpenCV Mats) for -minutes with four streams (a looping file,
// an RTSP camera whose server dies every two minutes, a WHIP publisher
// that reconnects every minute, a looping still), websocket clients of
// which some never read, preview watchers, and a reload every 30 s that
// adds or removes a fifth stream. It compares the second cycle with the
// last one: RSS, goroutines and Mats must not grow; it counts crashes
// (the process dying, a stream failing) and frames lost (sequence gaps
// that a healthy client sees on the file and still streams).
func benchSoak(args []string) error {
	fs := flag.NewFlagSet("soak", flag.ExitOnError)
	minutes := fs.Float64("minutes", 30, "how long (at least 4: two cycles of 2 minutes)")
	modelPath := fs.String("model", "", `ONNX model (default: a seeded random ViT-tiny, made if missing; "none": the landmark backend only)`)
	clients := fs.Int("clients", 50, "websocket clients")
	stalled := fs.Int("stalled", 5, "of those, clients that never read")
	keep := fs.Bool("keep", false, "keep the work folder and print the daemon's log path")
	fs.Parse(args)
	cycles := int(*minutes * 60 / soakCycle.Seconds())
	if cycles < 2 || *stalled >= *clients {
		return fmt.Errorf("-minutes %v: at least 4; -stalled below -clients", *minutes)
	}
	raiseFileLimit()
	if *modelPath == "none" {
		*modelPath = ""
	} else if err := defaultModel(modelPath); err != nil {
		return err
	}
	clip, err := ensureClip("one_face", "640x360")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "affectd-soak-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	bin, err := buildDaemon(dir, "matprofile")
	if err != nil {
		return err
	}
	annexB, err := testmedia.AnnexB(clip)
	if err != nil {
		return err
	}
	still := filepath.Join(dir, "still.jpg")
	if b, err := exec.Command("ffmpeg", "-v", "error", "-ss", "1", "-i", clip.Path, "-frames:v", "1", still).CombinedOutput(); err != nil {
		return fmt.Errorf("ffmpeg (the still): %v: %s", err, b)
	}
	rtsp, err := testmedia.StartRTSP(nil, clip.Path)
	if err != nil {
		return err
	}
	defer rtsp.Stop()

	head, err := baseYAML(*modelPath)
	if err != nil {
		return err
	}
	head += "webrtc:\n  loopback: true\nstreams:\n"
	streams := fmt.Sprintf("  - id: file\n    url: %s\n    loop: true\n  - id: camera\n    url: %s\n  - id: whip\n    url: whip://\n  - id: still\n    url: %s\n    loop: true\n",
		clip.Path, rtsp.URL(), still)
	configs := [2]string{head + streams, head + streams + fmt.Sprintf("  - id: extra\n    url: %s\n    loop: true\n", clip.Path)}
	cfgPath, logPath := filepath.Join(dir, "affectd.yaml"), filepath.Join(dir, "affectd.log")
	if *keep { // the daemon writes its Mats by maker on SIGUSR1 (daemon/mats_matprofile.go)
		os.Setenv("AFFECTD_MATS_DUMP", dir)
	}
	if err := os.WriteFile(cfgPath, []byte(configs[0]), 0o644); err != nil {
		return err
	}
	d, err := startDaemon(bin, cfgPath, logPath)
	if err != nil {
		return err
	}
	var cur atomic.Pointer[daemonProc]
	cur.Store(d)
	defer func() { cur.Load().stop() }()
	addr := func() string { return cur.Load().addr }
	fmt.Printf("soak: %d cycles of %v; daemon %s; 4 streams (file, RTSP, WHIP, still) + 1 on alternate reloads; %d websocket clients (%d stalled)\n",
		cycles, soakCycle, addr(), *clients, *stalled)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	spawn := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	obs := &seqObserver{streams: map[string]bool{"file": true, "still": true}, last: map[string]uint64{}}
	for i := 0; i < *clients; i++ {
		switch {
		case i < *stalled:
			spawn(func() { stalledClient(ctx, addr) })
		case i == *stalled:
			spawn(func() { readClient(ctx, addr, obs) })
		default:
			spawn(func() { readClient(ctx, addr, nil) })
		}
	}
	spawn(func() { watchPreview(ctx, addr, "file", true) })
	spawn(func() { watchPreview(ctx, addr, "whip", true) })
	spawn(func() { watchPreview(ctx, addr, "still", false) })
	start := time.Now()
	spawn(func() { // the WHIP publisher: 50 s of each minute
		for k := 0; ctx.Err() == nil; k++ {
			next := start.Add(time.Duration(k) * time.Minute)
			if !sleepUntil(ctx, next) {
				return
			}
			pctx, stop := context.WithDeadline(ctx, next.Add(50*time.Second))
			whip.Publish(pctx, whip.Options{URL: "http://" + addr() + "/v1/whip/whip", File: annexB, Loop: true, Loopback: true})
			stop()
		}
	})

	type sample struct {
		rss               int64
		goroutines, mats  float64
		lost, faces, fail float64
	}
	measure := func(at time.Time) sample {
		s := sample{rss: -1, goroutines: -1, mats: -1}
		for i := 0; i < 5; i++ {
			sleepUntil(ctx, at.Add(time.Duration(i)*time.Second))
			p := cur.Load()
			m, err := p.metrics()
			if err != nil {
				continue
			}
			lowest := func(v *float64, x float64) {
				if *v < 0 || x < *v {
					*v = x
				}
			}
			lowest(&s.goroutines, m["go_goroutines"])
			lowest(&s.mats, m["affectd_opencv_mats"])
			if r := p.rss(); s.rss < 0 || r < s.rss {
				s.rss = r
			}
			s.faces, s.fail = m["affectd_faces_tracked"], m["affectd_stream_failures_total"]
		}
		s.lost = float64(obs.gaps.Load())
		return s
	}
	var base, end sample
	crashes, reloads := 0, 0
	for c := 0; c < cycles && ctx.Err() == nil; c++ {
		c0 := start.Add(time.Duration(c) * soakCycle)
		events := []struct {
			at time.Duration
			do func()
		}{
			{0, func() { rtsp.Stop() }},
			{rtspDown, func() {
				if err := rtsp.Restart(); err != nil {
					fmt.Printf("soak: RTSP server restart: %v\n", err)
				}
			}},
			{20 * time.Second, nil}, {samplePhase, nil}, {50 * time.Second, nil}, {80 * time.Second, nil}, {110 * time.Second, nil},
		}
		for _, ev := range events {
			if !sleepUntil(ctx, c0.Add(ev.at)) {
				break
			}
			if p := cur.Load(); !p.alive() {
				crashes++
				fmt.Printf("soak: the daemon died (%v): restarting it (log: %s)\n", p.err, logPath)
				obs.reset()
				if np, err := startDaemon(bin, cfgPath, logPath); err == nil {
					cur.Store(np)
				} else {
					return err
				}
			}
			switch {
			case ev.do != nil:
				ev.do()
			case ev.at == samplePhase:
				s := measure(c0.Add(samplePhase))
				fmt.Printf("cycle %d: rss=%dMB goroutines=%.0f mats=%.0f faces=%.0f stream_failures=%.0f frames_lost=%.0f\n",
					c+1, s.rss>>20, s.goroutines, s.mats, s.faces, s.fail, s.lost)
				if c == 1 {
					base = s
				}
				end = s
				if *keep && (c == 1 || c == cycles-1) {
					cur.Load().cmd.Process.Signal(syscall.SIGUSR1)
				}
			default: // a reload
				reloads++
				if err := os.WriteFile(cfgPath, []byte(configs[reloads%2]), 0o644); err != nil {
					return err
				}
				cur.Load().cmd.Process.Signal(syscall.SIGHUP)
			}
		}
	}
	sleepUntil(ctx, start.Add(time.Duration(*minutes*float64(time.Minute))))
	if !cur.Load().alive() {
		crashes++
	}
	if *keep {
		fmt.Printf("log: %s (Mats by maker at cycles 2 and %d: %s/mats-*.txt)\n", logPath, cycles, dir)
	}
	growth := 0.0
	if base.rss > 0 {
		growth = float64(end.rss-base.rss) / float64(base.rss) * 100
	}
	fmt.Printf("soak: minutes=%g rss_growth_pct=%.1f goroutine_growth=%.0f mats_growth=%.0f crashes=%d frames_lost=%.0f\n",
		*minutes, growth, end.goroutines-base.goroutines, end.mats-base.mats, crashes+int(end.fail), end.lost-base.lost)
	return nil
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Until(t)):
		return true
	}
}

// seqObserver counts the frames a healthy client never got: gaps in the
// sequence numbers of the streams it watches.
type seqObserver struct {
	streams map[string]bool
	mu      sync.Mutex
	last    map[string]uint64
	gaps    atomic.Int64
}

func (o *seqObserver) frame(stream string, seq uint64) {
	if !o.streams[stream] {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if last := o.last[stream]; last > 0 && seq > last+1 {
		o.gaps.Add(int64(seq - last - 1))
	}
	o.last[stream] = seq
}

// reset forgets where the streams were (a new connection, a new daemon).
func (o *seqObserver) reset() {
	o.mu.Lock()
	clear(o.last)
	o.mu.Unlock()
}

// readClient reads the websocket until ctx ends, reconnecting when cut;
// obs, when set, sees every frame.
func readClient(ctx context.Context, addr func() string, obs *seqObserver) {
	for ctx.Err() == nil {
		conn, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+addr()+"/v1/ws", nil)
		if err != nil {
			sleepUntil(ctx, time.Now().Add(time.Second))
			continue
		}
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		if obs != nil {
			obs.reset()
		}
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				break
			}
			if obs != nil {
				var m struct {
					Type   string `json:"type"`
					Stream string `json:"stream"`
					Seq    uint64 `json:"seq"`
				}
				if json.Unmarshal(b, &m) == nil && m.Type == "frame" {
					obs.frame(m.Stream, m.Seq)
				}
			}
		}
		stop()
		conn.Close()
	}
}

// stalledClient connects and never reads, a minute at a time.
func stalledClient(ctx context.Context, addr func() string) {
	for ctx.Err() == nil {
		conn, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+addr()+"/v1/ws", nil)
		if err == nil {
			sleepUntil(ctx, time.Now().Add(time.Minute))
			conn.Close()
		} else {
			sleepUntil(ctx, time.Now().Add(time.Second))
		}
	}
}

// watchPreview watches a stream's MJPEG preview (mjpeg) or fetches one
// JPEG every two seconds, until ctx ends.
func watchPreview(ctx context.Context, addr func() string, stream string, mjpeg bool) {
	for ctx.Err() == nil {
		url := "http://" + addr() + "/v1/streams/" + stream + "/preview"
		if mjpeg {
			url += "?mjpeg=1"
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		sleepUntil(ctx, time.Now().Add(2*time.Second))
	}
}
