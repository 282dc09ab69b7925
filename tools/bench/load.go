package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// benchLoad measures what a crowd of websocket clients costs one normal
// client: the daemon runs one paced stream; one client reads its frames
// alone for -seconds, then beside -clients−1 others (each reading every
// message), and each time the latency from a frame's capture to its
// message arriving is taken from the message's captured_at (one clock:
// one machine). The crowd's refusals (websocket.max_clients is raised
// to fit it) are counted.
func benchLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	clients := fs.Int("clients", 500, "websocket clients in all, the measured one included")
	seconds := fs.Float64("seconds", 20, "each measurement window")
	modelPath := fs.String("model", "", `ONNX model (default: a seeded random ViT-tiny, made if missing; "none": the landmark backend only)`)
	keep := fs.Bool("keep", false, "keep the work folder and print the daemon's log path")
	fs.Parse(args)
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
	dir, err := os.MkdirTemp("", "affectd-load-")
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
	head, err := baseYAML(*modelPath)
	if err != nil {
		return err
	}
	cfg := head + fmt.Sprintf("websocket:\n  max_clients: %d\nstreams:\n  - id: cam\n    url: %s\n    loop: true\n", *clients+100, clip.Path)
	cfgPath, logPath := filepath.Join(dir, "affectd.yaml"), filepath.Join(dir, "affectd.log")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	d, err := startDaemon(bin, cfgPath, logPath)
	if err != nil {
		return err
	}
	defer d.stop()
	window := time.Duration(*seconds * float64(time.Second))
	fmt.Printf("load: daemon %s, one paced 640x360 stream; windows of %v\n", d.addr, window)

	idle, err := clientLatency(d.addr, window)
	if err != nil {
		return err
	}
	fmt.Printf("alone: %d frames, latency p50 %.1f ms p99 %.1f ms\n", len(idle), idle.pct(50), idle.pct(99))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var connected, refused, cut atomic.Int64
	for i := 1; i < *clients; i++ {
		conn, resp, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+d.addr+"/v1/ws", nil)
		if err != nil {
			if resp != nil {
				refused.Add(1)
				continue
			}
			return fmt.Errorf("client %d: %v", i, err)
		}
		connected.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			for {
				_, r, err := conn.NextReader()
				if err != nil {
					if ctx.Err() == nil {
						cut.Add(1)
					}
					return
				}
				io.Copy(io.Discard, r)
			}
		}()
	}
	time.Sleep(3 * time.Second) // the crowd settles
	loaded, err := clientLatency(d.addr, window)
	if err != nil {
		return err
	}
	m, _ := d.metrics()
	fmt.Printf("beside %d clients: %d frames, latency p50 %.1f ms p99 %.1f ms; crowd clients cut off: %d; daemon: %.0f websocket clients, %.0f messages dropped\n",
		connected.Load(), len(loaded), loaded.pct(50), loaded.pct(99), cut.Load(), m["affectd_ws_clients"], m["affectd_ws_dropped_total"])
	if *keep {
		fmt.Printf("log: %s\n", logPath)
	}
	fmt.Printf("load: clients=%d p99_ms_idle=%.1f p99_ms_loaded=%.1f refused=%d\n",
		connected.Load()+1, idle.pct(99), loaded.pct(99), refused.Load())
	return nil
}

// clientLatency connects one client and, after a second, collects for
// window each frame message's capture-to-arrival latency.
func clientLatency(addr string, window time.Duration) (latencies, error) {
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws", nil)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	from := time.Now().Add(time.Second)
	end := from.Add(window)
	var lat latencies
	for time.Now().Before(end) {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := conn.ReadMessage()
		if err != nil {
			return nil, err
		}
		now := time.Now()
		var m struct {
			Type       string    `json:"type"`
			CapturedAt time.Time `json:"captured_at"`
		}
		if json.Unmarshal(b, &m) != nil || m.Type != "frame" || now.Before(from) {
			continue
		}
		lat = append(lat, now.Sub(m.CapturedAt))
	}
	if len(lat) == 0 {
		return nil, errors.New("no frame messages")
	}
	return lat, nil
}
