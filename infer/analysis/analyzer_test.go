package analysis_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/file"
	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/landmarks"
)

const dlibModel = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat"

// models loads the real parts: BlazeFace, dlib's landmarks and a seeded
// random ViT-tiny with ABAW heads in ONNX Runtime, with the engine set up
// as offline (waiting, batches cut when full or flushed) or live.
func models(t *testing.T, offline bool) *analysis.Models {
	t.Helper()
	lib := testenv.RequireORT(t)
	spec := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 1, Heads: "abaw", GlobalPool: true, Demo: true})
	cache, _ := testenv.Cache()
	det, err := track.NewDetector(track.DetectorOptions{LibraryPath: lib, ModelPath: filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx"), SerialRefine: offline})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { det.Close() })
	lm, err := landmarks.Load(dlibModel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lm.Close() })
	m, err := infer.Load(spec.ONNX, infer.SessionOptions{LibraryPath: lib}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	o := infer.Options{MaxBatch: 8}
	if offline {
		o = infer.Options{MaxBatch: 8, QueueLimit: 24, MaxWait: time.Hour, Overload: infer.OverloadWait}
	}
	eng, err := infer.New(m, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; eng.Close() })
	md := m.Metadata()
	al, err := track.NewAligner(md.Input.Size, track.DefaultMargin, md.Input.Mean, md.Input.Std)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := analysis.NewModels(det, lm, eng, al)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// collect is a sink that keeps what the tests look at.
type collect struct {
	seqs      []uint64
	faces     []int
	stale     int // faces whose estimate is of an earlier frame
	ahead     int // faces whose estimate is of a later frame (never right)
	noEst     int
	noFit     int // faces without landmarks, pose, blend shapes or landmark AUs
	images    []uint64
	ended     []string
	final     int
	wantEvery uint64
	n         uint64
	seen      map[string]bool
}

func (c *collect) WriteFrame(r *analysis.FrameResult) error {
	if r.Seq == 0 {
		c.final++
		c.ended = append(c.ended, r.Ended...)
		return nil
	}
	c.ended = append(c.ended, r.Ended...)
	c.seqs = append(c.seqs, r.Seq)
	c.faces = append(c.faces, len(r.Faces))
	if r.Image != nil {
		c.images = append(c.images, r.Seq)
	}
	for _, f := range r.Faces {
		c.seen[f.ID] = true
		switch {
		case f.EstimateSeq == 0:
			c.noEst++
		case f.EstimateSeq < r.Seq:
			c.stale++
		case f.EstimateSeq > r.Seq:
			c.ahead++
		}
		if f.Landmarks == nil || f.Pose == nil || len(f.Blend) != 16 || f.LandmarkAU == nil {
			c.noFit++
		}
	}
	return nil
}

// WantImage asks for every wantEvery-th frame's picture.
func (c *collect) WantImage() bool {
	c.n++
	return c.wantEvery > 0 && c.n%c.wantEvery == 0
}

// run feeds a clip losslessly through an analyzer.
func run(t *testing.T, m *analysis.Models, o analysis.Options, path string) error {
	t.Helper()
	a, err := analysis.New(m, o)
	if err != nil {
		t.Fatal(err)
	}
	return runAnalyzer(t, a, o.Stream, path)
}

// runAnalyzer feeds a clip losslessly through a made analyzer.
func runAnalyzer(t *testing.T, a *analysis.Analyzer, stream, path string) error {
	t.Helper()
	cs, err := capture.NewStream(capture.StreamOptions{ID: stream, Source: file.New(file.Options{Path: path}), Lossless: true, Queue: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); cs.Run(ctx) }()
	err = a.Run(ctx, cs.Frames())
	cancel()
	for f := range cs.Frames() {
		f.Release()
	}
	<-done
	return err
}

// TestOfflineEveryFrameInOrder: with the Offline admission every frame
// comes out, in order, every face with this very frame's estimate and its
// landmarks, then a final result that ends every face; the pictures asked
// for come with their frames; nothing is left running.
func TestOfflineEveryFrameInOrder(t *testing.T) {
	testenv.NoLeaks(t)
	clip := testmedia.MustEnsure(t, "two_faces", 640, 360)
	truth, err := clip.Truth()
	if err != nil {
		t.Fatal(err)
	}
	m := models(t, true)
	c := &collect{seen: map[string]bool{}, wantEvery: 10}
	o := analysis.Options{Stream: "clip", Admission: &analysis.Offline{FlushEvery: 32}, Strict: true, LandmarkAlign: true, Sinks: []analysis.Sink{c}}
	if err := run(t, m, o, clip.Path); err != nil {
		t.Fatal(err)
	}
	if len(c.seqs) != truth.FrameCount {
		t.Fatalf("%d results for %d frames", len(c.seqs), truth.FrameCount)
	}
	faces := 0
	for i, s := range c.seqs {
		if s != uint64(i+1) {
			t.Fatalf("result %d is frame %d: out of order or missing", i+1, s)
		}
		if c.faces[i] > len(truth.Frames[i].Faces) {
			t.Errorf("frame %d: %d faces, the clip has %d", s, c.faces[i], len(truth.Frames[i].Faces))
		}
		faces += c.faces[i]
	}
	if faces < truth.FrameCount*2*8/10 {
		t.Errorf("%d faces over %d frames of two faces", faces, truth.FrameCount)
	}
	if c.stale != 0 || c.ahead != 0 || c.noEst != 0 || c.noFit != 0 {
		t.Errorf("offline: %d stale estimates, %d ahead, %d missing; %d faces without landmarks", c.stale, c.ahead, c.noEst, c.noFit)
	}
	if c.final != 1 || len(c.ended) != len(c.seen) {
		t.Errorf("%d final results; %d faces ended of %d seen", c.final, len(c.ended), len(c.seen))
	}
	if len(c.images) != truth.FrameCount/10 || c.images[0] != 10 {
		t.Errorf("pictures with frames %v, want every 10th", c.images)
	}
}

// TestLiveLateResults: a live deadline far shorter than the model takes
// sends every frame out before its results; each result then reaches a
// later frame of its face (estimate_seq behind seq, never ahead), and
// nothing is lost or left running.
func TestLiveLateResults(t *testing.T) {
	testenv.NoLeaks(t)
	clip := testmedia.MustEnsure(t, "one_face", 640, 360)
	m := models(t, false)
	pacer := infer.NewPacer(m.Engine, infer.PacerOptions{})
	c := &collect{seen: map[string]bool{}}
	o := analysis.Options{Stream: "cam", Admission: &analysis.Live{Pacer: pacer, Stream: "cam", MaxLatency: time.Nanosecond}, Sinks: []analysis.Sink{c}}
	if err := run(t, m, o, clip.Path); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d frames: %d faces with an earlier frame's estimate, %d without one", len(c.seqs), c.stale, c.noEst)
	if c.ahead != 0 || c.noFit != 0 {
		t.Fatalf("%d estimates from a later frame; %d faces without landmarks", c.ahead, c.noFit)
	}
	if c.stale == 0 {
		t.Error("no late result reached a later frame")
	}
	for i, s := range c.seqs {
		if s != uint64(i+1) {
			t.Fatalf("result %d is frame %d", i+1, s)
		}
	}
}
