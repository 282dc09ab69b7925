package main

import (
	"context"
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/file"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/landmarks"
)

// benchTrack measures, on one clip in one run: decoding alone through our
// capture path, ffmpeg decoding the same file to nothing, and the whole
// capture → detect → track → align pipeline.
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
	lib, err := testenv.ORTLibrary()
	if err != nil {
		return err
	}
	cache, _ := testenv.Cache()
	model := "face_detection_back_256x256.onnx"
	if *front {
		model = "face_detection_front_128x128.onnx"
	}
	det, err := track.NewDetector(track.DetectorOptions{LibraryPath: lib, ModelPath: filepath.Join(cache, "blazeface", "1.2.0", model), RefineRuns: *refine, Threads: *threads})
	if err != nil {
		return err
	}
	defer det.Close()
	fmt.Printf("clip: %s (%dx%d, %d frames at %.0f fps)\n", *clipPath, info.Width, info.Height, info.Frames, info.FPS)
	fmt.Printf("machine: %d CPUs; detector %s every %d frames\n", runtime.NumCPU(), model, *every)

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

	// 3. The pipeline: capture on its goroutine, detect+track+align on this one.
	al, err := track.NewAligner(224, track.DefaultMargin, [3]float32{0.5, 0.5, 0.5}, [3]float32{0.25, 0.25, 0.25})
	if err != nil {
		return err
	}
	pipeFPS, faces, _, err := pipelineRate(*clipPath, *loops, det, al, *every, nil)
	if err != nil {
		return err
	}
	fmt.Printf("pipeline (capture+detect+track+align): %.1f fps, %.2f faces aligned per frame\n", pipeFPS, faces)
	fmt.Printf("track: decode_ratio=%.3f pipeline_fps=%.1f decode_fps=%.1f detect_every=%d\n", decodeFPS/ffFPS, pipeFPS, decodeFPS, *every)
	if !*withLandmarks {
		return nil
	}
	pred, err := landmarks.Load(*lmModel)
	if err != nil {
		return err
	}
	defer pred.Close()
	lmFPS, _, msPerFace, err := pipelineRate(*clipPath, *loops, det, al, *every, pred)
	if err != nil {
		return err
	}
	fmt.Printf("pipeline with landmarks+pose+AUs: %.1f fps; landmarks+pose+AUs %.2f ms per face\n", lmFPS, msPerFace)
	fmt.Printf("landmarks: ms_per_face=%.2f pipeline_fps=%.1f\n", msPerFace, lmFPS)
	return nil
}

// runFile streams a file through capture (not paced, lossless, looping
// loops times) and calls fn with each frame.
func runFile(path string, loops int, fn func(f *capture.Frame)) (int, time.Duration, error) {
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
			start = time.Now() // from the first frame: opening is not decoding
		}
		fn(f)
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
	return n - 1, el, nil
}

func decodeRate(path string, loops int) (float64, int, error) {
	n, el, err := runFile(path, loops, func(*capture.Frame) {})
	if err != nil {
		return 0, 0, err
	}
	return float64(n) / el.Seconds(), n, nil
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

// pipelineRate runs capture+detect+track+align (and, with pred, landmarks,
// head pose and landmark AUs per face, timed) over the clip.
func pipelineRate(path string, loops int, det *track.Detector, al *track.Aligner, every int, pred *landmarks.Predictor) (fps, facesPerFrame, msPerFace float64, err error) {
	tr, err := track.NewTracker(det, track.TrackerOptions{Stream: "bench", DetectEvery: every})
	if err != nil {
		return 0, 0, 0, err
	}
	crop := make([]float32, 3*al.Size()*al.Size())
	est := lmau.NewEstimator()
	var faces int
	var lmTime time.Duration
	var stepErr error
	n, el, err := runFile(path, loops, func(f *capture.Frame) {
		u, err := tr.Step(f.Mat, f.PTS)
		if err != nil && stepErr == nil {
			stepErr = err
		}
		for _, face := range u.Faces {
			kp := face.Keypoints
			if pred != nil {
				start := time.Now()
				s, err := pred.Fit(f.Mat, face.Box)
				if err == nil {
					landmarks.EstimatePose(s, f.Mat.Cols(), f.Mat.Rows())
					est.Update(face.ID, (*lmau.Shape)(&s))
					kp = s.Keypoints()
				}
				lmTime += time.Since(start)
			}
			if _, err := al.Align(f.Mat, kp, crop); err == nil {
				faces++
			}
		}
	})
	if err == nil {
		err = stepErr
	}
	if err != nil {
		return 0, 0, 0, err
	}
	if faces > 0 {
		msPerFace = float64(lmTime) / float64(time.Millisecond) / float64(faces)
	}
	return float64(n) / el.Seconds(), float64(faces) / float64(n), msPerFace, nil
}
