package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/emotion"
	"github.com/affectd/affectd/track/iris"
	"github.com/affectd/affectd/track/mesh"
	"github.com/affectd/affectd/track/reid"
)

// benchFaces measures the face-detail models per face on one thread (the
// face mesh; the iris model on both eyes; track/emotion's FER-2013
// expression classifier on the detector's box, rolled by mesh.Roll of its
// keypoints as the analyzer does; track/reid's mobilefacenet embedding),
// each the median of rounds over the test photos' faces, and then the
// analyzer's first half on the 720p one-face clip as `bench track` runs
// it, with everything on: the mesh468 backend and the iris model (pose,
// landmark AUs, gaze and blend shapes), expression_fer on every face of
// every frame, and re-identification (an embedding when a track starts,
// then one every identity.every). Its last line:
//
//	faces: mesh_ms=<n> iris_ms=<n> emotion_ms=<n> embed_ms=<n> pipeline_fps=<n>
func benchFaces(args []string) error {
	fs := flag.NewFlagSet("faces", flag.ExitOnError)
	rounds := fs.Int("rounds", 5, "rounds per model (the median is printed)")
	fits := fs.Int("fits", 100, "fits per round")
	every := fs.Int("detect-every", 3, "pipeline: run the detector every k frames")
	loops := fs.Int("loops", 3, "pipeline: times through the clip")
	fs.Parse(args)
	runtime.GOMAXPROCS(runtime.NumCPU())

	cfg, err := benchConfig("") // the demo model: its aligner crops, as bench track
	if err != nil {
		return err
	}
	emotionModel, embedModel := cfg.ExpressionFER.Model, cfg.Identity.Model
	for _, p := range []string{cfg.Landmarks.MeshModel, cfg.Landmarks.IrisModel, emotionModel, embedModel} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%v (run `make setup`: it converts the TF.js models)", err)
		}
	}
	det, err := track.NewDetector(track.DetectorOptions{LibraryPath: cfg.ORT.Library, ModelPath: cfg.Detector.Model})
	if err != nil {
		return err
	}
	defer det.Close()
	me, err := mesh.New(cfg.ORT.Library, cfg.Landmarks.MeshModel)
	if err != nil {
		return err
	}
	defer me.Close()
	ir, err := iris.New(cfg.ORT.Library, cfg.Landmarks.IrisModel)
	if err != nil {
		return err
	}
	defer ir.Close()
	fer, err := emotion.New(cfg.ORT.Library, emotionModel)
	if err != nil {
		return err
	}
	defer fer.Close()
	emb, err := reid.New(cfg.ORT.Library, embedModel)
	if err != nil {
		return err
	}
	defer emb.Close()

	// The test photos' faces: each one's detector keypoints (for the
	// expression crop's roll and the embedding) and mesh (for the iris
	// model).
	type face struct {
		img  gocv.Mat
		box  track.Rect
		kp   [track.NumKeypoints]track.Point
		mesh mesh.Mesh
	}
	var faces []face
	cache, _ := testenv.Cache()
	for _, name := range []string{"grace_hopper_512x512.jpg", "astronaut.png"} {
		img := gocv.IMRead(filepath.Join(cache, "photos", name), gocv.IMReadColor)
		if img.Empty() {
			return fmt.Errorf("%s: cannot read (run `make setup`)", name)
		}
		defer img.Close()
		dets, err := det.Detect(img, nil)
		if err != nil {
			return err
		}
		for _, d := range dets {
			m, err := me.Fit(img, d.Box)
			if err != nil {
				return err
			}
			faces = append(faces, face{img, d.Box, d.Keypoints, m})
		}
	}
	if len(faces) == 0 {
		return fmt.Errorf("no faces in the test photos")
	}
	fmt.Printf("machine: %d CPUs; %d faces of the test photos; %d rounds of %d fits, one thread each\n", runtime.NumCPU(), len(faces), *rounds, *fits)
	median := func(run func(f *face) error) (float64, error) {
		var ms []float64
		for r := 0; r < *rounds; r++ {
			start := time.Now()
			for i := 0; i < *fits; i++ {
				if err := run(&faces[i%len(faces)]); err != nil {
					return 0, err
				}
			}
			ms = append(ms, time.Since(start).Seconds()*1000/float64(*fits))
		}
		sort.Float64s(ms)
		fmt.Printf("  rounds (ms): %.2f\n", ms)
		return ms[len(ms)/2], nil
	}
	var meshMS, irisMS, emotionMS, embedMS float64
	for _, m := range []struct {
		name string
		ms   *float64
		run  func(f *face) error
	}{
		{"face mesh", &meshMS, func(f *face) error { _, err := me.Fit(f.img, f.box); return err }},
		{"iris (both eyes)", &irisMS, func(f *face) error { _, err := ir.Fit(f.img, &f.mesh); return err }},
		{"expression (FER-2013)", &emotionMS, func(f *face) error { _, err := fer.Classify(f.img, f.box, mesh.Roll(&f.kp)); return err }},
		{"embedding (mobilefacenet)", &embedMS, func(f *face) error { _, err := emb.Embed(f.img, f.box, &f.kp); return err }},
	} {
		if *m.ms, err = median(m.run); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		fmt.Printf("%s: %.2f ms per face\n", m.name, *m.ms)
	}

	clip, err := testmedia.Ensure("one_face", 1280, 720)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "affectd-faces-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	input, err := loopClip(clip.Path, *loops, dir)
	if err != nil {
		return err
	}
	cfg.Detector.DetectEvery = *every
	cfg.Landmarks.Backend = config.BackendMesh468
	rep, err := firstHalf(cfg, input, dir)
	if err != nil {
		return err
	}
	perFace := rep.Landmarks.Seconds() * 1000 / float64(max(rep.Rows, 1))
	fmt.Printf("pipeline (capture+detect+track+mesh+iris+pose+AUs+expression_fer+identity+align, %s every %d frames): %.1f fps; %.2f ms per face in the landmark step\n",
		filepath.Base(cfg.Detector.Model), *every, rep.FPS(), perFace)
	fmt.Printf("faces: mesh_ms=%.2f iris_ms=%.2f emotion_ms=%.2f embed_ms=%.2f pipeline_fps=%.1f\n", meshMS, irisMS, emotionMS, embedMS, rep.FPS())
	return nil
}
