package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer/lmau"
)

// Offline analysis (`affectd analyze`): every frame of every file, as fast
// as the machine goes, through the same analyzer as live streams, with the
// Offline admission (every face of every frame, batches cut at fixed
// frames) and a lossless capture. Three goroutines overlap the work: the
// decoder (capture/file), the analyzer (detect, track, landmarks, align
// straight into the engine's batch tensor, then the results, in order,
// into the output's writer) and the engine's runner.
//
// Resuming: the output is a stream/record Writer, checkpointed every
// segment (max(4 × Batch, 128) frames) with a signature of the input and
// of every option that changes the output. A new run with the same
// signature replays tracking and landmarks over the frames done (no model,
// unless smoothing needs its history: tracks, ids and neutrals need the
// frames' history) and carries on.

// AnalyzeOptions configure offline analysis.
type AnalyzeOptions struct {
	// Inputs are video files, still pictures (each a one-frame input) and
	// folders (searched recursively for both).
	Inputs []string
	// Neutral is where each face's neutral for the landmark AUs comes
	// from: "prior" (default: the population prior, then the face's
	// calmest frames), "first" (its first frame, fixed), or the path of a
	// picture of the subject's neutral face (fixed).
	Neutral string
	// Frames takes every folder holding pictures for one video, its
	// pictures the frames in name order (ABAW's cropped_aligned/<video>/),
	// instead of each picture a still.
	Frames bool
	// OutDir receives <name>.csv or <name>.jsonl per input (default
	// "processed", as OpenFace's FeatureExtraction).
	OutDir string
	// Format is "csv" (OpenFace 2 FeatureExtraction columns) or "jsonl"
	// (the websocket protocol's frame objects, one per line).
	Format string
	// Points adds the 68 landmarks (x_0…x_67, y_0…y_67) to the output.
	Points bool
	// Mesh adds the face mesh's 468 points to JSON Lines (mesh468).
	Mesh bool
	// Features adds MAE-Face's feature vector (f_0…) to the output.
	Features bool
	// Force re-analyses inputs whose output exists, and ignores interrupted
	// runs.
	Force bool
	// Batch is the engine's batch size (default: the config's
	// batch.max_batch, 8 unless set: on a CPU small batches run faster per
	// face; raise it on a GPU). The resume checkpoints come every
	// max(4 × Batch, 128) frames, and each ends a batch.
	Batch int
	// Progress receives a live progress line (a terminal); nil: none.
	Progress io.Writer
	// TrackOnly runs the first half alone (decode, detect, track,
	// landmarks, align into a scratch buffer), with every CPU (the
	// detector's refinements in parallel, as the daemon runs them): no
	// model, no output. For the benchmarks.
	TrackOnly bool
	// Log receives warnings (nil: none).
	Log *slog.Logger
}

// FileReport is what happened to one input.
type FileReport struct {
	Input, Output string
	// Status is "done", "skipped" (its output exists already) or "failed".
	Status string
	Err    error
	// Frames were analysed by this run; Replayed were done by an
	// interrupted run and only replayed (tracking) here. Rows is the
	// number of face rows written by this run.
	Frames, Replayed, Rows int64
	// Landmarks is the time the analyzer spent on landmarks, pose and
	// landmark AUs (this run's frames).
	Landmarks time.Duration
	// Warning notes something odd about a file that still finished.
	Warning string
}

// AnalyzeReport sums a run up.
type AnalyzeReport struct {
	Files     []*FileReport
	Frames    int64 // frames analysed (not counting replayed ones)
	Rows      int64 // face rows written
	Landmarks time.Duration
	Elapsed   time.Duration
	// Work is Elapsed less loading the models: the frames' time.
	Work time.Duration
	// ModelTime is the time the engine spent running batches, and
	// Batches their count.
	ModelTime time.Duration
	Batches   int64
}

// Failed counts the inputs that could not be analysed.
func (r *AnalyzeReport) Failed() int {
	n := 0
	for _, f := range r.Files {
		if f.Status == "failed" {
			n++
		}
	}
	return n
}

// FPS is the run's frames analysed per second of work (model loading
// left out).
func (r *AnalyzeReport) FPS() float64 {
	if r.Work <= 0 {
		return 0
	}
	return float64(r.Frames) / r.Work.Seconds()
}

// analyzer is one run of Analyze.
type analyzer struct {
	cfg     *config.Config
	m       *Models
	o       AnalyzeOptions
	seg     uint64
	mode    lmau.Neutral
	neutral lmau.Features // NeutralFixed's
	// node is analyze -cluster's worker name: its outputs grow in partial
	// files of its own, and resume from any worker's ("": one machine).
	node string

	done     atomic.Int64 // frames through the analyzer (replayed or not)
	total    atomic.Int64 // frames expected over every file to do (probed)
	current  atomic.Value // string: the file being analysed
	filesDon atomic.Int32
	filesAll int32
}

// Analyze analyses the inputs with cfg's detector, landmarks, model and
// smoothing (model.path "" analyses with landmarks alone). Per-file
// failures are in the report; the error is for failures of the whole run
// (models that do not load, an output folder that cannot be made).
// Cancelling ctx stops at once; the outputs stay resumable.
func Analyze(ctx context.Context, cfg *config.Config, o AnalyzeOptions) (*AnalyzeReport, error) {
	start := time.Now()
	if o.OutDir == "" {
		o.OutDir = "processed"
	}
	if o.Format == "" {
		o.Format = "csv"
	}
	if o.Format != "csv" && o.Format != "jsonl" {
		return nil, fmt.Errorf("analyze: format %q: want csv or jsonl", o.Format)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if len(o.Inputs) == 0 {
		return nil, errors.New("analyze: no input files or folders")
	}
	a, err := newAnalyzer(cfg, o)
	if err != nil {
		return nil, err
	}
	m := a.m
	defer m.Close()
	rep := &AnalyzeReport{}
	jobs, err := a.plan(rep)
	if err != nil {
		return nil, err
	}

	workStart := time.Now()
	engCtx, engCancel := context.WithCancel(context.Background())
	engDone := make(chan struct{})
	go func() { defer close(engDone); m.Run(engCtx) }()
	stopProgress := a.startProgress()
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		a.runFile(ctx, j)
	}
	stopProgress()
	engCancel()
	<-engDone
	if eng := m.Core.Engine; eng != nil {
		st := eng.Stats()
		rep.ModelTime, rep.Batches = st.RunTime, st.Batches
	}
	for _, f := range rep.Files {
		rep.Frames += f.Frames
		rep.Rows += f.Rows
		rep.Landmarks += f.Landmarks
	}
	rep.Elapsed, rep.Work = time.Since(start), time.Since(workStart)
	return rep, ctx.Err()
}

// newAnalyzer loads the models for offline analysis (the caller closes
// a.m) and sets the neutral.
func newAnalyzer(cfg *config.Config, o AnalyzeOptions) (*analyzer, error) {
	c := analyzeConfig(cfg)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	o.Batch = AnalyzeBatch(&c, o.Batch)
	// The first half leaves the model its CPUs, unless it runs alone.
	m, err := LoadModels(&c, ModelOptions{Offline: true, Batch: o.Batch, KeepFeatures: o.Features, SerialRefine: !o.TrackOnly, Log: o.Log})
	if err != nil {
		return nil, err
	}
	if m.Core.Engine == nil && !m.Core.HasLandmarks() && !o.TrackOnly {
		m.Close()
		return nil, errors.New("analyze: nothing to measure: no MAE-Face model (model.path) and no landmark model (landmarks.model)")
	}
	a := &analyzer{cfg: &c, m: m, o: o, seg: uint64(max(segmentBatches*o.Batch, minSegment))}
	if err := a.setNeutral(); err != nil {
		m.Close()
		return nil, err
	}
	a.current.Store("")
	return a, nil
}

// AnalyzeBatch is analyze's batch size: batch when it is set, else the
// config's batch.max_batch (8 by default: on a CPU small batches run
// faster per face).
func AnalyzeBatch(cfg *config.Config, batch int) int {
	switch {
	case batch > 0:
		return batch
	case cfg.Batch.MaxBatch > 0:
		return cfg.Batch.MaxBatch
	}
	return 8
}

// A segment (the frames between two resume checkpoints) is segmentBatches
// batches' worth of frames, and at least minSegment frames: a longer
// segment leaves fewer partial batches (one per segment), a shorter one
// loses less work to an interruption.
const (
	segmentBatches = 4
	minSegment     = 128
)

// analyzeConfig is cfg as analyze uses it: no streams, and unless set,
// the model's ONNX Runtime threads leave one CPU to decoding, tracking and
// landmarks, so that the two halves overlap instead of taking turns (on
// small CPU-only machines, -threads with every CPU can be faster in total:
// README, "Offline analysis").
func analyzeConfig(cfg *config.Config) config.Config {
	c := *cfg
	c.Streams = nil
	if c.ORT.Threads <= 0 {
		c.ORT.Threads = max(1, runtime.NumCPU()-1)
	}
	return c
}

// setNeutral works out AnalyzeOptions.Neutral.
func (a *analyzer) setNeutral() error {
	switch a.o.Neutral {
	case "", "prior":
		a.mode = lmau.NeutralPrior
	case "first":
		a.mode = lmau.NeutralFirst
	default:
		img := gocv.IMRead(a.o.Neutral, gocv.IMReadColor)
		defer img.Close()
		if img.Empty() {
			return fmt.Errorf("analyze: -neutral %s: not prior, first or a readable picture", a.o.Neutral)
		}
		f, err := a.m.Core.MeasureNeutral(img)
		if err != nil {
			return fmt.Errorf("analyze: -neutral %s: %w", a.o.Neutral, err)
		}
		a.mode, a.neutral = lmau.NeutralFixed, f
	}
	return nil
}
