package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "infer":
		err = benchInfer(os.Args[2:])
	case "track":
		err = benchTrack(os.Args[2:])
	case "e2e":
		err = benchE2E(os.Args[2:])
	case "latency":
		err = benchLatency(os.Args[2:])
	case "analyze":
		err = benchAnalyze(os.Args[2:])
	case "fidelity":
		err = benchFidelity(os.Args[2:])
	case "soak":
		err = benchSoak(os.Args[2:])
	case "load":
		err = benchLoad(os.Args[2:])
	case "rig":
		err = benchRig(os.Args[2:])
	case "quant":
		err = benchQuant(os.Args[2:])
	case "faces":
		err = benchFaces(os.Args[2:])
	case "train":
		err = benchTrain(os.Args[2:])
	case "cluster":
		err = benchCluster(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: go run ./tools/bench <command> [flags]

commands:
  infer   bare ONNX Runtime session vs the micro-batching engine (faces/s, latency)
  track   decoding vs ffmpeg, and capture+detect+track+align frames/s
  faces   face mesh, iris, expression and embedding per face (one thread), and the pipeline with mesh+iris
  e2e     the real daemon on N paced 720p streams: fps per stream, latency, drops
  latency glass-to-socket latency of WHIP and RTSP ingest, same clip, one run
  analyze offline analysis vs its two halves alone (fps, bound, ratio)
  fidelity analyze on media whose truth is known: recall, precision, id switches, lags
  soak    the daemon for -minutes under churn: RSS, goroutine and Mat growth, crashes, frames lost
  load    one websocket client's latency alone and beside 500 others
  rig     glass-to-packet latency of 4 rig outputs (VMC, OSC, Live Link) on one 720p25 stream
  train   affectd train's fit on 100000 ViT-B-wide vectors, and affectd features' crops/s
  quant   int8 vs fp32 export of a ViT-B in one run: faces/s, speedup, feature cosine on real faces
  cluster N nodes on a real nats-server, kill -9 one at a time: failover ms, duplicate frames, publish latency`)
	os.Exit(2)
}

// defaultModel fills an empty -model with the benchmarks' model, a seeded
// random ViT-tiny with ABAW heads (made if missing).
func defaultModel(path *string) error {
	if *path != "" {
		return nil
	}
	m, err := testenv.BuildModel(testenv.ModelSpec{Preset: "tiny", Seed: 1, Heads: "abaw", GlobalPool: true, Demo: true})
	if err != nil {
		return err
	}
	*path = m.ONNX
	return nil
}

// benchConfig is the default config with the benchmarks' ONNX Runtime,
// BlazeFace back-256 detector and model (modelPath; "" the default model,
// "none": no model).
func benchConfig(modelPath string) (*config.Config, error) {
	lib, err := testenv.ORTLibrary()
	if err != nil {
		return nil, err
	}
	switch modelPath {
	case "none":
		modelPath = ""
	case "":
		if err := defaultModel(&modelPath); err != nil {
			return nil, err
		}
	}
	cache, _ := testenv.Cache()
	cfg := config.Default()
	cfg.ORT.Library = lib
	cfg.Model.Path = modelPath
	cfg.Detector.Model = filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")
	hm := filepath.Join(cache, "human-models", testenv.HumanModelsVersion, "onnx")
	cfg.Landmarks.MeshModel = filepath.Join(hm, "facemesh.onnx")
	cfg.Landmarks.IrisModel = filepath.Join(hm, "iris.onnx")
	cfg.ExpressionFER.Model = filepath.Join(hm, "emotion.onnx")
	cfg.Identity.Model = filepath.Join(hm, "mobilefacenet.onnx")
	return &cfg, nil
}

// loopClip writes the clip loops times over as one file in dir (research
// videos are long; one file keeps opening out of the figures).
func loopClip(clip string, loops int, dir string) (string, error) {
	out := filepath.Join(dir, "input.mp4")
	loop := exec.Command("ffmpeg", "-y", "-v", "error", "-stream_loop", fmt.Sprint(loops-1), "-i", clip, "-c", "copy", out)
	if b, err := loop.CombinedOutput(); err != nil {
		return "", fmt.Errorf("ffmpeg (looping the clip): %v: %s", err, b)
	}
	return out, nil
}

// buildDaemon builds the affectd binary (without the race detector: the
// benches measure speed) into dir, with the build tags given.
func buildDaemon(dir string, tags ...string) (string, error) {
	root, err := testenv.Root()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "affectd")
	build := exec.Command("go", "build", "-tags", strings.Join(tags, ","), "-o", bin, "./daemon/cmd/affectd")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// ensureClip returns the test clip name at -size WxH, made if missing.
func ensureClip(name, size string) (testmedia.Clip, error) {
	w, h, err := testmedia.ParseSize(size)
	if err != nil {
		return testmedia.Clip{}, fmt.Errorf("-%v", err)
	}
	return testmedia.Ensure(name, w, h)
}

// latencies collects durations and reports percentiles.
type latencies []time.Duration

func (l latencies) pct(p float64) float64 {
	if len(l) == 0 {
		return 0
	}
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p/100*float64(len(s)-1) + 0.5)
	return float64(s[i]) / float64(time.Millisecond)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
