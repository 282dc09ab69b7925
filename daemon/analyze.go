package daemon

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/file"
	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/stream"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/landmarks"
)

// Offline analysis (`affectd analyze`): every frame of every file, as fast
// as the machine goes. Three goroutines overlap the work: the decoder
// (file.Source into a lossless sink), the tracker (detect, track, fit
// landmarks, align straight into the engine's batch tensor) and the writer
// (waits for each frame's results in order, writes its rows). The engine
// runs beside them with batches cut only when full or at a segment's end,
// so that the batches, and with them every number in the output, are the
// same whether a file is analysed in one go or resumed.
//
// Resuming: the output grows as <out>.partial; at the end of every
// segment (4 × Batch frames) the writer syncs it and records the frames and
// bytes done in <out>.partial.state, with a signature of the input and of
// every option that changes the output. A new run with the same signature
// truncates the partial file to the recorded bytes, replays tracking and
// landmarks over the frames done (no model: tracks, ids and the landmark
// AUs' neutral baselines need the history) and carries on. A finished
// file is renamed to <out> and skipped by later runs (unless Force).

// AnalyzeOptions configure offline analysis.
type AnalyzeOptions struct {
	// Inputs are video files and folders (searched recursively for video
	// file extensions).
	Inputs []string
	// OutDir receives <name>.csv or <name>.jsonl per input (default
	// "processed", as OpenFace's FeatureExtraction).
	OutDir string
	// Format is "csv" (OpenFace 2 FeatureExtraction columns) or "jsonl"
	// (the websocket protocol's frame objects, one per line).
	Format string
	// Points adds the 68 landmarks (x_0…x_67, y_0…y_67) to the output.
	Points bool
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
	// landmarks, align into a scratch buffer): no model, no output. For
	// the benchmark.
	TrackOnly bool
	// Log receives warnings (nil: none).
	Log *slog.Logger
}

// VideoExtensions are the file name endings a folder is searched for.
var VideoExtensions = []string{".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".y4m", ".ogv"}

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
	// Warning notes something odd about a file that still finished.
	Warning string
}

// AnalyzeReport sums a run up.
type AnalyzeReport struct {
	Files   []*FileReport
	Frames  int64 // frames analysed (not counting replayed ones)
	Rows    int64 // face rows written
	Elapsed time.Duration
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
	d   *Daemon
	o   AnalyzeOptions
	seg int64
	csv *csvLayout

	done     atomic.Int64 // frames through the writer (replayed or not)
	total    atomic.Int64 // frames expected over every file to do (probed)
	current  atomic.Value // string: the file being written
	filesDon atomic.Int32
	filesAll int32
}

// job is one input file.
type job struct {
	rep    *FileReport
	sig    string
	resume int64 // frames done by an interrupted run
	bytes  int64 // their bytes in the partial output
	probed int   // frames the container claims (0: unknown)
}

// item is one tracked frame on its way from the tracker to the writer, or
// (end) a file's end.
type item struct {
	job    *job
	frame  int64 // from 1
	pts    time.Duration
	faces  []track.Face
	shapes []*landmarks.Shape // with landmarks (nil entries: the fit failed)
	poses  []*landmarks.Pose
	reqs   []*infer.Request // per face; nil: not analysed
	replay bool             // done by an interrupted run: no output
	end    bool
	err    error // with end: why the file stopped early (nil: its end)
}

// Analyze analyses the inputs with cfg's detector, landmarks and model
// (model.path "" analyses with landmarks alone). Per-file failures are in
// the report; the error is for failures of the whole run (models that do
// not load, an output folder that cannot be made). Cancelling ctx stops
// at once; the outputs stay resumable.
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
	c := analyzeConfig(cfg)
	o.Batch = AnalyzeBatch(&c, o.Batch)
	d, err := New(&c, "", o.Log)
	if err != nil {
		return nil, err
	}
	d.offline = &offlineEngine{maxBatch: o.Batch, keepFeatures: o.Features}
	if err := d.loadModels(); err != nil {
		d.closeModels()
		return nil, err
	}
	defer d.closeModels()
	if d.model == nil && d.landmarks == nil && !o.TrackOnly {
		return nil, errors.New("analyze: nothing to measure: no MAE-Face model (model.path) and no landmark model (landmarks.model)")
	}
	a := &analyzer{d: d, o: o, seg: int64(max(segmentBatches*o.Batch, minSegment))}
	a.current.Store("")
	a.csv = newCSVLayout(d, o)
	rep := &AnalyzeReport{}
	jobs, err := a.plan(rep)
	if err != nil {
		return nil, err
	}

	workStart := time.Now()
	engCtx, engCancel := context.WithCancel(context.Background())
	var engWG sync.WaitGroup
	if d.engine != nil {
		engWG.Add(1)
		go func() { defer engWG.Done(); d.engine.Run(engCtx) }()
	}
	items := make(chan *item, 4*a.seg+2) // ≥ a segment (the tracker always reaches the next flush), and room for the engine's queue
	stopProgress := a.startProgress()
	go a.track(ctx, jobs, items)
	a.write(ctx, items)
	stopProgress()
	if d.engine != nil {
		d.engine.Close()
		st := d.engine.Stats()
		rep.ModelTime, rep.Batches = st.RunTime, st.Batches
	}
	engCancel()
	engWG.Wait()

	for _, f := range rep.Files {
		rep.Frames += f.Frames
		rep.Rows += f.Rows
	}
	rep.Elapsed, rep.Work = time.Since(start), time.Since(workStart)
	return rep, ctx.Err()
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

// plan expands the inputs into jobs: folders are searched, outputs named,
// finished outputs skipped and interrupted ones prepared for resuming.
func (a *analyzer) plan(rep *AnalyzeReport) ([]*job, error) {
	if err := os.MkdirAll(a.o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("analyze: output folder: %w", err)
	}
	var files []string
	for _, in := range a.o.Inputs {
		st, err := os.Stat(in)
		if err != nil {
			rep.Files = append(rep.Files, &FileReport{Input: in, Status: "failed", Err: err})
			continue
		}
		if !st.IsDir() {
			files = append(files, in)
			continue
		}
		var found []string
		err = filepath.WalkDir(in, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				rep.Files = append(rep.Files, &FileReport{Input: p, Status: "failed", Err: err})
				return nil
			}
			if !de.IsDir() && isVideoName(p) {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		if len(found) == 0 {
			a.o.Log.Warn("no video files in folder", "folder", in, "extensions", strings.Join(VideoExtensions, " "))
		}
		files = append(files, found...)
	}
	ext := "." + a.o.Format
	used := map[string]bool{}
	var jobs []*job
	for _, in := range files {
		base := strings.TrimSuffix(filepath.Base(in), filepath.Ext(in))
		name := base
		for n := 2; used[name]; n++ { // two inputs with one name: number the later ones
			name = fmt.Sprintf("%s_%d", base, n)
		}
		used[name] = true
		j := &job{rep: &FileReport{Input: in, Output: filepath.Join(a.o.OutDir, name+ext)}}
		rep.Files = append(rep.Files, j.rep)
		if _, err := os.Stat(j.rep.Output); err == nil && !a.o.Force && !a.o.TrackOnly {
			j.rep.Status = "skipped"
			continue
		}
		sig, err := a.signature(in)
		if err != nil {
			j.rep.Status, j.rep.Err = "failed", err
			continue
		}
		j.sig = sig
		if info, err := file.Probe(in); err == nil && info.Frames > 0 {
			j.probed = info.Frames
		}
		if !a.o.Force && !a.o.TrackOnly {
			a.loadResume(j)
		}
		a.total.Add(int64(j.probed))
		jobs = append(jobs, j)
	}
	a.filesAll = int32(len(jobs))
	return jobs, nil
}

func isVideoName(p string) bool {
	e := strings.ToLower(filepath.Ext(p))
	for _, v := range VideoExtensions {
		if e == v {
			return true
		}
	}
	return false
}

// partialState is <out>.partial.state: how far an interrupted run got.
type partialState struct {
	Version   int    `json:"version"`
	Signature string `json:"signature"`
	Frames    int64  `json:"frames"` // frames whose rows are in the partial output
	Bytes     int64  `json:"bytes"`  // the partial output's length after them
}

func partialPath(out string) string { return out + ".partial" }
func statePath(out string) string   { return out + ".partial.state" }

// loadResume reads an interrupted run's state; one made with other inputs
// or options is started over.
func (a *analyzer) loadResume(j *job) {
	b, err := os.ReadFile(statePath(j.rep.Output))
	if err != nil {
		return
	}
	var st partialState
	if json.Unmarshal(b, &st) != nil || st.Version != 1 {
		a.o.Log.Warn("unreadable resume state: starting over", "file", statePath(j.rep.Output))
		return
	}
	if st.Signature != j.sig {
		a.o.Log.Warn("the input or options changed since the interrupted run: starting over", "input", j.rep.Input)
		return
	}
	fi, err := os.Stat(partialPath(j.rep.Output))
	if err != nil || fi.Size() < st.Bytes {
		a.o.Log.Warn("the partial output is shorter than its state says: starting over", "file", partialPath(j.rep.Output))
		return
	}
	j.resume, j.bytes = st.Frames, st.Bytes
}

// signature identifies an input and everything that changes its output:
// a resumed run must produce the bytes an uninterrupted one would.
func (a *analyzer) signature(in string) (string, error) {
	fi, err := os.Stat(in)
	if err != nil {
		return "", err
	}
	c := a.d.cfg
	stamp := func(p string) string {
		if p == "" {
			return ""
		}
		if fi, err := os.Stat(p); err == nil {
			return fmt.Sprintf("%s|%d|%d", p, fi.Size(), fi.ModTime().UnixNano())
		}
		return p
	}
	abs, _ := filepath.Abs(in)
	parts := []any{
		"affectd analyze v1", Version, abs, fi.Size(), fi.ModTime().UnixNano(),
		a.o.Format, a.o.Points, a.o.Features, a.o.Batch,
		stamp(c.Model.Path), stamp(c.ORT.Library), c.ORT.Provider, c.ORT.Threads,
		stamp(c.Detector.Model), c.Detector.ScoreThreshold, c.Detector.DetectEvery, c.Detector.RefineRuns, c.Detector.Threads,
		c.Tracker.LostAfter.D(), c.Tracker.ConfirmHits, c.Align.Margin,
		stamp(c.Landmarks.Model), c.Landmarks.Align, c.Landmarks.FOV,
	}
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%v\x00", p)
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// losslessSink hands every decoded frame to the tracker, waiting for it
// (no frame is ever dropped offline).
type losslessSink struct {
	ctx    context.Context
	pool   *capture.Pool
	out    chan *capture.Frame
	frames int64
}

func (s *losslessSink) Frame() *capture.Frame { return s.pool.Get() }
func (s *losslessSink) Deliver(f *capture.Frame) {
	s.frames++
	f.Seq = uint64(s.frames)
	select {
	case s.out <- f:
	case <-s.ctx.Done():
		f.Release()
	}
}
func (s *losslessSink) Discard(f *capture.Frame, reason string) { f.Release() }
func (s *losslessSink) Up()                                     {}
func (s *losslessSink) Ended(error)                             {}

// track is the tracker goroutine: the files in order, each frame tracked,
// its faces' landmarks fitted and crops submitted to the engine.
func (a *analyzer) track(ctx context.Context, jobs []*job, items chan<- *item) {
	defer close(items)
	send := func(it *item) bool {
		select {
		case items <- it:
			return true
		case <-ctx.Done():
			for _, r := range it.reqs {
				if r != nil {
					r.Release()
				}
			}
			return false
		}
	}
	for _, j := range jobs {
		err := a.trackFile(ctx, j, send)
		if ctx.Err() != nil {
			return
		}
		if a.d.engine != nil {
			a.d.engine.Flush()
		}
		if !send(&item{job: j, end: true, err: err}) {
			return
		}
	}
}

func (a *analyzer) trackFile(ctx context.Context, j *job, send func(*item) bool) error {
	d := a.d
	c := d.cfg
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sink := &losslessSink{ctx: fctx, pool: capture.NewPool(8), out: make(chan *capture.Frame, 4)}
	defer sink.pool.Close()
	srcErr := make(chan error, 1)
	go func() {
		defer close(sink.out)
		srcErr <- file.New(file.Options{Path: j.rep.Input}).Run(fctx, sink)
	}()
	drain := func() {
		cancel()
		for f := range sink.out {
			f.Release()
		}
	}
	tracker, err := track.NewTracker(d.det, track.TrackerOptions{
		Stream: "f", DetectEvery: c.Detector.DetectEvery, LostAfter: c.Tracker.LostAfter.D(),
		ConfirmHits: c.Tracker.ConfirmHits, NoRefine: c.Detector.RefineRuns == 0 || d.landmarkAlign(),
	})
	if err != nil {
		drain()
		return err
	}
	var scratch []float32
	if a.o.TrackOnly && d.aligner != nil {
		s := d.aligner.Size()
		scratch = make([]float32, 3*s*s)
	}
	var n int64
	for f := range sink.out {
		n++
		u, err := tracker.Step(f.Mat, f.PTS)
		if err != nil {
			f.Release()
			drain()
			return fmt.Errorf("frame %d: tracking: %w", n, err)
		}
		it := &item{job: j, frame: n, pts: f.PTS, faces: append([]track.Face(nil), u.Faces...), replay: n <= j.resume}
		if d.landmarks != nil {
			it.shapes = make([]*landmarks.Shape, len(it.faces))
			it.poses = make([]*landmarks.Pose, len(it.faces))
			cam := cameraFor(f.Mat.Cols(), f.Mat.Rows(), c.Landmarks.FOV)
			for i := range it.faces {
				s, err := d.landmarks.Fit(f.Mat, it.faces[i].Box)
				if err != nil {
					continue
				}
				it.shapes[i] = &s
				if p, err := cam.EstimatePose(s); err == nil {
					it.poses[i] = &p
				}
				if c.Landmarks.Align {
					it.faces[i].Keypoints = s.Keypoints()
				}
			}
		}
		switch {
		case it.replay:
		case scratch != nil:
			for i := range it.faces {
				d.aligner.Align(f.Mat, it.faces[i].Keypoints, scratch)
			}
		case d.engine != nil:
			it.reqs = make([]*infer.Request, len(it.faces))
			for i := range it.faces {
				r, err := d.engine.Reserve(ctx)
				if err != nil { // stopping
					f.Release()
					drain()
					for _, r := range it.reqs {
						if r != nil {
							r.Release()
						}
					}
					return err
				}
				if _, err := d.aligner.Align(f.Mat, it.faces[i].Keypoints, r.Input()); err != nil {
					r.Release()
					continue
				}
				r.Submit()
				it.reqs[i] = r
			}
		}
		f.Release()
		if n%a.seg == 0 && d.engine != nil {
			d.engine.Flush() // segment boundaries are batch boundaries
		}
		if !send(it) {
			drain()
			return ctx.Err()
		}
	}
	err = <-srcErr
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if n == 0 {
		if err == nil {
			return errors.New("no frames")
		}
		// "source ended: x.mp4: cannot open as video" → the reason alone
		return errors.New(strings.TrimPrefix(err.Error(), capture.ErrEnded.Error()+": "))
	}
	if n < j.resume {
		return fmt.Errorf("the file has %d frames, the interrupted run recorded %d: it changed; delete %s to start over", n, j.resume, statePath(j.rep.Output))
	}
	return nil
}

// output is the writer's state for one file.
type output struct {
	j       *job
	f       *os.File
	w       *bufio.Writer
	bytes   int64 // written so far (through w)
	est     *lmau.Estimator
	buf     []byte
	failed  error
	discard bool // TrackOnly: count, write nothing
	lmVals  []float32
}

// write is the writer goroutine: items in order, each frame's results
// awaited, rows written, segments checkpointed.
func (a *analyzer) write(ctx context.Context, items <-chan *item) {
	var cur *output
	release := func(it *item) {
		for _, r := range it.reqs {
			if r != nil {
				r.Release()
			}
		}
	}
	for it := range items {
		if cur == nil || cur.j != it.job {
			cur = a.open(it.job)
		}
		if it.end {
			a.finish(cur, it.err)
			cur = nil
			continue
		}
		if cur.failed != nil || ctx.Err() != nil {
			release(it)
			continue
		}
		a.frame(ctx, cur, it)
		release(it)
		a.done.Add(1)
		if !it.replay && it.frame%a.seg == 0 && cur.failed == nil {
			if err := a.checkpoint(cur, it.frame); err != nil {
				cur.failed = err
			}
		}
	}
	if cur != nil && cur.f != nil { // stopped mid-file: the partial stays for resuming
		cur.f.Close()
	}
}

// open starts (or resumes) a file's output.
func (a *analyzer) open(j *job) *output {
	o := &output{j: j, est: lmau.NewEstimator(), discard: a.o.TrackOnly}
	a.current.Store(filepath.Base(j.rep.Input))
	if o.discard {
		return o
	}
	var err error
	if j.resume > 0 {
		o.f, err = os.OpenFile(partialPath(j.rep.Output), os.O_RDWR, 0)
		if err == nil {
			err = o.f.Truncate(j.bytes)
		}
		if err == nil {
			_, err = o.f.Seek(j.bytes, io.SeekStart)
		}
		o.bytes = j.bytes
		j.rep.Replayed = j.resume
	} else {
		os.Remove(statePath(j.rep.Output))
		o.f, err = os.Create(partialPath(j.rep.Output))
	}
	if err != nil {
		o.failed = err
		return o
	}
	o.w = bufio.NewWriterSize(o.f, 256<<10)
	if j.resume == 0 && a.o.Format == "csv" {
		o.buf = a.csv.header(o.buf[:0])
		o.emit()
	}
	return o
}

// emit writes o.buf.
func (o *output) emit() {
	if o.discard || o.failed != nil {
		return
	}
	n, err := o.w.Write(o.buf)
	o.bytes += int64(n)
	if err != nil {
		o.failed = err
	}
}

// checkpoint makes the rows so far durable and records them as done.
func (a *analyzer) checkpoint(o *output, frames int64) error {
	if o.discard {
		return nil
	}
	if err := o.w.Flush(); err != nil {
		return err
	}
	if err := o.f.Sync(); err != nil {
		return err
	}
	b, _ := json.Marshal(partialState{Version: 1, Signature: o.j.sig, Frames: frames, Bytes: o.bytes})
	tmp := statePath(o.j.rep.Output) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(o.j.rep.Output))
}

// finish closes a file's output: renamed into place when complete.
func (a *analyzer) finish(o *output, err error) {
	rep := o.j.rep
	a.filesDon.Add(1)
	if err == nil {
		err = o.failed
	}
	if o.discard {
		rep.Status, rep.Err = "done", err
		if err != nil {
			rep.Status = "failed"
		}
		return
	}
	if o.f != nil {
		if err == nil {
			err = o.w.Flush()
		}
		if err == nil {
			err = o.f.Sync()
		}
		o.f.Close()
	}
	if err != nil {
		rep.Status, rep.Err = "failed", err
		if o.j.resume == 0 && rep.Frames == 0 { // nothing worth resuming
			os.Remove(partialPath(rep.Output))
			os.Remove(statePath(rep.Output))
		}
		return
	}
	if err := os.Rename(partialPath(rep.Output), rep.Output); err != nil {
		rep.Status, rep.Err = "failed", err
		return
	}
	os.Remove(statePath(rep.Output))
	rep.Status = "done"
	if p := o.j.probed; p > 0 && rep.Frames+rep.Replayed < int64(p)*9/10 {
		rep.Warning = fmt.Sprintf("decoded %d of the %d frames the container announces: truncated or damaged?", rep.Frames+rep.Replayed, p)
	}
}

// frame waits for one frame's results and writes its rows.
func (a *analyzer) frame(ctx context.Context, o *output, it *item) {
	n := len(it.faces)
	results := make([]*infer.Result, n)
	for i, r := range it.reqs {
		if r == nil {
			continue
		}
		res, err := r.Wait(ctx)
		if err != nil {
			if ctx.Err() == nil {
				o.failed = fmt.Errorf("frame %d: model: %w", it.frame, err)
			}
			return
		}
		results[i] = res
	}
	lmRes := make([]*lmau.Result, n)
	for i := range it.faces {
		if it.shapes != nil && it.shapes[i] != nil {
			if r, ok := o.est.Update(it.faces[i].ID, (*lmau.Shape)(it.shapes[i])); ok {
				lmRes[i] = &r
			}
		}
	}
	if it.replay {
		return
	}
	o.j.rep.Frames++
	o.j.rep.Rows += int64(n)
	if o.discard {
		return
	}
	o.buf = o.buf[:0]
	if a.o.Format == "csv" {
		for i := range it.faces {
			o.buf = a.csv.row(o.buf, it, i, results[i], lmRes[i])
		}
	} else {
		o.buf = a.jsonFrame(o.buf, o, it, results, lmRes)
	}
	o.emit()
}

// jsonFrame writes a frame as the websocket protocol's frame object
// (without captured_at and latency_ms: pts_ms is its time).
func (a *analyzer) jsonFrame(buf []byte, o *output, it *item, results []*infer.Result, lmRes []*lmau.Result) []byte {
	d := a.d
	name := strings.TrimSuffix(filepath.Base(o.j.rep.Input), filepath.Ext(o.j.rep.Input))
	fr := stream.Frame{Stream: name, Seq: uint64(it.frame), PTS: it.pts, Faces: make([]stream.Face, len(it.faces))}
	nheads := len(d.layout.Heads)
	for i, f := range it.faces {
		sf := &fr.Faces[i]
		sf.ID, sf.Score = name+"/"+faceNumber(f.ID), f.Score
		sf.Box = [4]float32{f.Box.X, f.Box.Y, f.Box.W, f.Box.H}
		if nheads > 0 {
			sf.Values = make([][]float32, nheads)
		}
		if res := results[i]; res != nil {
			sf.EstimateSeq = uint64(it.frame)
			for h := range res.Heads {
				sf.Values[h] = res.Heads[h].Values
			}
		}
		if r := lmRes[i]; r != nil && d.lmHead >= 0 {
			sf.Values[d.lmHead] = r.AU[:]
		}
		if it.poses != nil && it.poses[i] != nil {
			p := it.poses[i]
			sf.Pose = &stream.Pose{Yaw: p.Yaw, Pitch: p.Pitch, Roll: p.Roll, T: p.T}
		}
		if a.o.Points && it.shapes != nil && it.shapes[i] != nil {
			var lm [68][2]float32
			for k, q := range it.shapes[i] {
				lm[k] = [2]float32{q.X, q.Y}
			}
			sf.Landmarks = &lm
		}
	}
	buf = stream.AppendFrame(buf, &fr, &d.layout, time.Time{})
	return append(buf, '\n')
}

// faceNumber is the number of a track id ("f/7" → "7").
func faceNumber(id string) string {
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// startProgress draws a live progress line until the returned func is
// called.
func (a *analyzer) startProgress() func() {
	if a.o.Progress == nil {
		return func() {}
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		start := time.Now()
		var lastDone int64
		lastT := start
		rate := 0.0
		for {
			select {
			case <-stop:
				a.drawProgress(rate, start, true)
				return
			case now := <-t.C:
				done := a.done.Load()
				if dt := now.Sub(lastT).Seconds(); dt >= 1 {
					inst := float64(done-lastDone) / dt
					if rate == 0 {
						rate = inst
					} else {
						rate = 0.7*rate + 0.3*inst
					}
					lastDone, lastT = done, now
				}
				a.drawProgress(rate, start, false)
			}
		}
	}()
	return func() { close(stop); <-finished }
}

func (a *analyzer) drawProgress(rate float64, start time.Time, final bool) {
	done, total := a.done.Load(), a.total.Load()
	frac := 0.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	const width = 24
	bar := strings.Repeat("█", int(frac*width)) + strings.Repeat("·", width-int(frac*width))
	eta := "--:--"
	if rate > 0 && total > done {
		eta = clock(time.Duration(float64(total-done) / rate * float64(time.Second)))
	}
	if final {
		eta = clock(time.Since(start))
	}
	line := fmt.Sprintf("\r%d/%d %-24.24s %s %3.0f%% %d/%d frames %6.1f fps ETA %s ",
		min(a.filesDon.Load()+1, a.filesAll), a.filesAll, a.current.Load().(string), bar, frac*100, done, total, rate, eta)
	if final {
		line = fmt.Sprintf("\r%d/%d files %s %3.0f%% %d frames in %s%s\n", a.filesDon.Load(), a.filesAll, bar, frac*100, done, eta, strings.Repeat(" ", 20))
	}
	io.WriteString(a.o.Progress, line)
}

func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// AnalyzeEngineRate measures the second half alone: the engine of analyze
// (its batch size, threads and policy) fed full batches of crops by one
// goroutine, in faces per second.
func AnalyzeEngineRate(ctx context.Context, cfg *config.Config, batch, faces int) (float64, error) {
	c := analyzeConfig(cfg)
	c.Landmarks.Model = ""
	d, err := New(&c, "", nil)
	if err != nil {
		return 0, err
	}
	batch = AnalyzeBatch(&c, batch)
	d.offline = &offlineEngine{maxBatch: batch}
	if err := d.loadModels(); err != nil {
		d.closeModels()
		return 0, err
	}
	defer d.closeModels()
	if d.engine == nil {
		return 0, errors.New("no model (model.path)")
	}
	engCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.engine.Run(engCtx) }()
	defer func() { d.engine.Close(); cancel(); <-done }()
	run := func(n int) (time.Duration, error) {
		start := time.Now()
		reqs := make(chan *infer.Request, 4*batch)
		errc := make(chan error, 1)
		go func() {
			var first error
			for r := range reqs {
				if _, err := r.Wait(ctx); err != nil && first == nil {
					first = err
				}
				r.Release()
			}
			errc <- first
		}()
		v := float32(0)
		for i := 0; i < n; i++ {
			r, err := d.engine.Reserve(ctx)
			if err != nil {
				close(reqs)
				<-errc
				return 0, err
			}
			in := r.Input()
			for k := range in { // a crop's worth of varied values
				v += 0.618034
				if v > 1 {
					v -= 2
				}
				in[k] = v
			}
			r.Submit()
			reqs <- r
		}
		d.engine.Flush()
		close(reqs)
		err := <-errc
		return time.Since(start), err
	}
	if _, err := run(batch); err != nil { // warm-up
		return 0, err
	}
	el, err := run(faces)
	if err != nil {
		return 0, err
	}
	return float64(faces) / el.Seconds(), nil
}

// csvLayout is the CSV's columns: OpenFace 2 FeatureExtraction's names
// where the value is the same kind, affectd's own after them.
type csvLayout struct {
	cols      []string
	pose      bool  // pose_T*, pose_R* (landmarks on)
	points    bool  // x_*, y_*
	lmR       bool  // AUxx_r from the landmark backend
	lmC       bool  // AUxx_c from the landmark backend (no model AU head)
	auHead    int   // the model's AU head (-1: none): AUxx_c and AUxx_prob
	heads     []int // the other model heads, in order
	lens      []int // labels per model head
	featDim   int
	threshold float32
}

func newCSVLayout(d *Daemon, o AnalyzeOptions) *csvLayout {
	l := &csvLayout{auHead: -1, threshold: 0.5}
	l.cols = []string{"frame", "face_id", "timestamp", "confidence", "success"}
	lm := d.landmarks != nil
	if lm {
		l.pose = true
		l.cols = append(l.cols, "pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz")
	}
	if lm && o.Points {
		l.points = true
		for _, axis := range []string{"x", "y"} {
			for i := 0; i < 68; i++ {
				l.cols = append(l.cols, axis+"_"+strconv.Itoa(i))
			}
		}
	}
	var md infer.Metadata
	if d.model != nil {
		md = d.model.Metadata()
	}
	for i, h := range md.Heads {
		l.lens = append(l.lens, len(h.Labels))
		if h.Name == "au" {
			l.auHead = i
			if h.Threshold != nil {
				l.threshold = *h.Threshold
			}
		}
	}
	if lm {
		l.lmR = true
		for _, au := range lmau.AUs {
			l.cols = append(l.cols, openFaceAU(au)+"_r")
		}
	}
	if l.auHead >= 0 {
		labels := md.Heads[l.auHead].Labels
		for _, au := range labels {
			l.cols = append(l.cols, openFaceAU(au)+"_c")
		}
		for _, au := range labels {
			l.cols = append(l.cols, openFaceAU(au)+"_prob")
		}
	} else if lm {
		l.lmC = true
		for _, au := range lmau.AUs {
			l.cols = append(l.cols, openFaceAU(au)+"_c")
		}
	}
	for i, h := range md.Heads {
		if i == l.auHead {
			continue
		}
		l.heads = append(l.heads, i)
		for _, lb := range h.Labels {
			if h.Name == "va" {
				l.cols = append(l.cols, lb)
			} else {
				l.cols = append(l.cols, h.Name+"_"+lb)
			}
		}
	}
	if o.Features && d.model != nil {
		l.featDim = md.FeatureDim
		for i := 0; i < md.FeatureDim; i++ {
			l.cols = append(l.cols, "f_"+strconv.Itoa(i))
		}
	}
	return l
}

// openFaceAU spells an AU label as OpenFace does: AU1 → AU01.
func openFaceAU(label string) string {
	if n, err := strconv.Atoi(strings.TrimPrefix(label, "AU")); err == nil && strings.HasPrefix(label, "AU") && n >= 0 && n < 10 {
		return "AU0" + strconv.Itoa(n)
	}
	return label
}

// sep is OpenFace's separator: a comma and a space (pandas:
// skipinitialspace=True).
const sep = ", "

func (l *csvLayout) header(buf []byte) []byte {
	for i, c := range l.cols {
		if i > 0 {
			buf = append(buf, sep...)
		}
		buf = append(buf, c...)
	}
	return append(buf, '\n')
}

// row writes one face's row. A face whose landmarks or model result are
// missing has success 0 and zeros in their columns.
func (l *csvLayout) row(buf []byte, it *item, i int, res *infer.Result, lm *lmau.Result) []byte {
	f := &it.faces[i]
	var shape *landmarks.Shape
	var pose *landmarks.Pose
	if it.shapes != nil {
		shape, pose = it.shapes[i], it.poses[i]
	}
	success := (res != nil || l.auHead < 0 && len(l.heads) == 0) && (shape != nil || !l.pose)
	num := func(v float32, prec int) {
		buf = append(buf, sep...)
		buf = strconv.AppendFloat(buf, float64(v), 'f', prec, 64)
	}
	buf = strconv.AppendInt(buf, it.frame, 10)
	buf = append(buf, sep...)
	buf = append(buf, faceNumber(f.ID)...)
	num(float32(it.pts.Seconds()), 3)
	num(f.Score, 3)
	buf = append(buf, sep...)
	if success {
		buf = append(buf, '1')
	} else {
		buf = append(buf, '0')
	}
	if l.pose {
		var p landmarks.Pose
		if pose != nil {
			p = *pose
		}
		const rad = 0.017453292519943295
		num(p.T[0], 1)
		num(p.T[1], 1)
		num(p.T[2], 1)
		num(p.Pitch*rad, 3)
		num(p.Yaw*rad, 3)
		num(p.Roll*rad, 3)
	}
	if l.points {
		for axis := 0; axis < 2; axis++ {
			for k := 0; k < 68; k++ {
				var v float32
				if shape != nil {
					if axis == 0 {
						v = shape[k].X
					} else {
						v = shape[k].Y
					}
				}
				num(v, 1)
			}
		}
	}
	if l.lmR {
		for k := range lmau.AUs {
			var v float32
			if lm != nil {
				v = lm.AU[k]
			}
			num(v, 2)
		}
	}
	if l.lmC {
		for k := range lmau.AUs {
			buf = append(buf, sep...)
			if lm != nil && lm.Active[k] {
				buf = append(buf, '1')
			} else {
				buf = append(buf, '0')
			}
		}
	}
	if l.auHead >= 0 {
		var vals []float32
		if res != nil {
			vals = res.Heads[l.auHead].Values
		}
		n := l.lens[l.auHead]
		for k := 0; k < n; k++ {
			buf = append(buf, sep...)
			if vals != nil && vals[k] >= l.threshold {
				buf = append(buf, '1')
			} else {
				buf = append(buf, '0')
			}
		}
		for k := 0; k < n; k++ {
			var v float32
			if vals != nil {
				v = vals[k]
			}
			num(v, 4)
		}
	}
	for _, h := range l.heads {
		nl := l.lens[h]
		for k := 0; k < nl; k++ {
			var v float32
			if res != nil {
				v = res.Heads[h].Values[k]
			}
			num(v, 4)
		}
	}
	if l.featDim > 0 {
		for k := 0; k < l.featDim; k++ {
			var v float32
			if res != nil && k < len(res.Features) {
				v = res.Features[k]
			}
			buf = append(buf, sep...)
			buf = strconv.AppendFloat(buf, float64(v), 'g', 6, 32)
		}
	}
	return append(buf, '\n')
}
