package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/file"
	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/daemon"
	"github.com/affectd/affectd/tools/testmedia"
)

// benchTrack measures, on one clip in one run: decoding alone through our
// capture path, ffmpeg decoding the same file to nothing, and the first
// half of the per-frame path (capture → detect → track → align, the
// analyzer that live and offline analysis run, with no model), then with
// landmarks, head pose and landmark AUs as well.
func benchTrack(args []string) error {
	fs := flag.NewFlagSet("track", flag.ExitOnError)
	clipPath := fs.String("clip", "", "video file (default: the 720p one-face test clip, made if missing)")
	every := fs.Int("detect-every", 3, "run the detector every k frames")
	front := fs.Bool("front", false, "use the front 128×128 detector instead of the back 256×256")
	refine := fs.Int("refine", 0, "refinement runs per detected face (0: the default, -1: none)")
	loops := fs.Int("loops", 3, "times through the clip per measurement")
	threads := fs.Int("threads", 0, "detector ONNX Runtime threads (0: the default)")
	withLandmarks := fs.Bool("landmarks", false, "add 68 landmarks, head pose and landmark AUs per face (dlib)")
	lmModel := fs.String("landmarks-model", "/usr/share/dlib/shape_predictor_68_face_landmarks.dat", "dlib landmark model")
	fs.Parse(args)

	if *clipPath == "" {
		c, err := testmedia.Ensure("one_face", 1280, 720)
		if err != nil {
			return err
		}
		*clipPath = c.Path
	}
	info, err := file.Probe(*clipPath)
	if err != nil {
		return err
	}
	cfg, err := benchConfig("")
	if err != nil {
		return err
	}
	if *front {
		cfg.Detector.Model = filepath.Join(filepath.Dir(cfg.Detector.Model), "face_detection_front_128x128.onnx")
	}
	cfg.Detector.DetectEvery = *every
	if *threads > 0 {
		cfg.Detector.Threads = *threads
	}
	switch {
	case *refine < 0:
		cfg.Detector.RefineRuns = 0
	case *refine > 0:
		cfg.Detector.RefineRuns = *refine
	}
	fmt.Printf("clip: %s (%dx%d, %d frames at %.0f fps)\n", *clipPath, info.Width, info.Height, info.Frames, info.FPS)
	fmt.Printf("machine: %d CPUs; detector %s every %d frames\n", runtime.NumCPU(), filepath.Base(cfg.Detector.Model), *every)

	// 1. Our decode path: the capture package's file source, as fast as it goes.
	decodeFPS, n, err := decodeRate(*clipPath, *loops)
	if err != nil {
		return err
	}
	fmt.Printf("decode (capture/file, BGR frames): %d frames, %.1f fps\n", n, decodeFPS)

	// 2. ffmpeg decoding the same file, frames thrown away.
	ffFPS, err := ffmpegRate(*clipPath, *loops)
	if err != nil {
		return err
	}
	fmt.Printf("decode (ffmpeg -f null): %.1f fps\n", ffFPS)

	// 3. The analyzer's first half on the clip, looped: decode, detect,
	// track, align (into a scratch buffer: no model).
	dir, err := os.MkdirTemp("", "affectd-track-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	input, err := loopClip(*clipPath, *loops, dir)
	if err != nil {
		return err
	}
	cfg.Landmarks.Model = ""
	pipe, err := firstHalf(cfg, input, dir)
	if err != nil {
		return err
	}
	pipeFPS := pipe.FPS()
	fmt.Printf("pipeline (capture+detect+track+align): %.1f fps, %.2f faces aligned per frame\n", pipeFPS, float64(pipe.Rows)/float64(pipe.Frames))
	fmt.Printf("track: decode_ratio=%.3f pipeline_fps=%.1f decode_fps=%.1f detect_every=%d\n", decodeFPS/ffFPS, pipeFPS, decodeFPS, *every)
	if !*withLandmarks {
		return nil
	}
	cfg.Landmarks.Model = *lmModel
	lm, err := firstHalf(cfg, input, dir)
	if err != nil {
		return err
	}
	msPerFace := lm.Landmarks.Seconds() * 1000 / float64(max(lm.Rows, 1))
	fmt.Printf("pipeline with landmarks+pose+AUs: %.1f fps; landmarks+pose+AUs %.2f ms per face\n", lm.FPS(), msPerFace)
	fmt.Printf("landmarks: ms_per_face=%.2f pipeline_fps=%.1f\n", msPerFace, lm.FPS())
	return nil
}

// firstHalf runs affectd analyze's first half (-track-only: no model, no
// output) on a file.
func firstHalf(cfg *config.Config, input, out string) (*daemon.AnalyzeReport, error) {
	rep, err := daemon.Analyze(context.Background(), cfg, daemon.AnalyzeOptions{Inputs: []string{input}, OutDir: out, TrackOnly: true, Force: true})
	if err != nil {
		return nil, err
	}
	if rep.Failed() > 0 || rep.Frames == 0 {
		return nil, fmt.Errorf("first half: %d files failed (%v), %d frames", rep.Failed(), rep.Files[0].Err, rep.Frames)
	}
	return rep, nil
}

// decodeRate streams a file through capture (not paced, lossless,
// looping loops times) and counts the frames per second, from the first
// frame (opening is not decoding).
func decodeRate(path string, loops int) (float64, int, error) {
	info, err := file.Probe(path)
	if err != nil {
		return 0, 0, err
	}
	want := info.Frames * loops
	s, err := capture.NewStream(capture.StreamOptions{ID: "bench", Source: file.New(file.Options{Path: path, Loop: true}), Lossless: true, Queue: 4})
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	n := 0
	var start time.Time
	for f := range s.Frames() {
		if n == 0 {
			start = time.Now()
		}
		f.Release()
		n++
		if n == want+1 {
			break
		}
	}
	el := time.Since(start)
	cancel()
	for f := range s.Frames() {
		f.Release()
	}
	<-done
	return float64(n-1) / el.Seconds(), n - 1, nil
}

func ffmpegRate(path string, loops int) (float64, error) {
	args := []string{"-hide_banner", "-nostats", "-loglevel", "error", "-stream_loop", fmt.Sprint(loops - 1), "-i", path, "-an", "-f", "null", "-"}
	info, err := file.Probe(path)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	out, err := exec.Command("ffmpeg", args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ffmpeg: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return float64(info.Frames*loops) / time.Since(start).Seconds(), nil
}
