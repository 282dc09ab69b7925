package analysis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/mesh"
	"github.com/affectd/affectd/track/reid"
)

// Options configure one analyzer: one source's frames.
type Options struct {
	// Stream names the source; face ids are "<Stream>/<n>".
	Stream string
	// IDs numbers the faces (nil: numbers of the analyzer's own, from 1).
	// One source shared by every analyzer keeps ids unique in a process.
	IDs *track.IDSource
	// DetectEvery, LostAfter and ConfirmHits configure the tracker
	// (track.TrackerOptions; zero: its defaults).
	DetectEvery int
	LostAfter   time.Duration
	ConfirmHits int
	// Refine runs the detector's refinement on detected faces, for
	// precise keypoints (skipped when the landmarks align the crop).
	Refine bool
	// LandmarkAlign aligns the model's crop on the fitted landmarks
	// instead of BlazeFace's keypoints.
	LandmarkAlign bool
	// FOV is the sources' horizontal field of view in degrees, for head
	// pose (default 53: a focal length of the frame width).
	FOV float64
	// Smoothing filters each face's values over time.
	Smoothing Smoothing
	// Cuts ends every track at a cut between shots (track.Cuts): whoever
	// appears after it is a new face, with a neutral of its own.
	Cuts bool
	// FitThreshold is the most a face's landmark fit may stray from the
	// detector's keypoints (Face.Fit) and be trusted (default
	// DefaultFitThreshold).
	FitThreshold float32
	// Neutral is where each face's neutral for the landmark AUs comes from
	// (lmau.NeutralPrior by default); NeutralFeatures is NeutralFixed's.
	Neutral         lmau.Neutral
	NeutralFeatures *lmau.Features
	// Admission chooses the faces the model analyses (required).
	Admission Admission
	// Strict ends Run with an error when a frame cannot be tracked or a
	// face's analysis fails (offline: every frame must be analysed);
	// otherwise the frame or face is skipped and counted.
	Strict bool
	// DryRun aligns the admitted faces into a scratch buffer and sends
	// nothing to the model: benchmarks measure the first half alone.
	DryRun bool
	// Identity configures re-identification and enrolled names (with
	// Models.Reid).
	Identity IdentityOptions
	// Sinks receive every FrameResult, in order.
	Sinks []Sink
	// Metrics count per stream (nil: not counted).
	Metrics *Metrics
}

// DefaultFitThreshold is the default Options.FitThreshold, in box widths:
// fits on the test media's faces stray up to 0.10 (faces 30 px wide) and
// mostly under 0.03; fits that slip off a face (boxes a quarter of their
// width off, a profile face under a frontal fit) from 0.22 up
// (TestFitQuality).
const DefaultFitThreshold = 0.15

// ErrStopped is returned by calls to an analyzer that has stopped.
var ErrStopped = errors.New("analysis: analyzer stopped")

// Analyzer is the one per-frame path of affectd, for live streams,
// offline files and benchmarks alike: it takes a source's decoded frames,
// detects and tracks the faces, fits landmarks and head pose, computes the
// landmark AUs and blend shapes, sends the faces its Admission chooses to
// the model, smooths, and writes one FrameResult per frame, in order, to
// its sinks.
//
// All per-face state (tracks, neutrals, filters, estimates, requests in
// flight) belongs to the goroutine that calls Run. Calibrate and Stats are
// safe from any goroutine.
type Analyzer struct {
	m       *Models
	o       Options
	lim     Limits
	tracker *track.Tracker
	cuts    *track.Cuts // nil: cuts do not end tracks
	sm      streamMetrics
	images  []ImageSink

	faces   map[string]*faceState // by public id
	alias   map[string]string     // tracker id → public id, for faces re-identified
	pending []*pendingFrame       // oldest first
	free    []*pendingFrame
	late    []lateRequest
	ended   []string // tracks ended by a frame that gave no result
	lastPTS time.Duration
	due     []int
	cands   []Candidate
	res     FrameResult // reused for every frame
	scratch []float32   // the dry run's crop
	series  [2][]float32
	mesh    mesh.Mesh   // the face being fitted (mesh468)
	eyes    [14]float32 // its eyes' blend shapes, iris.BlendShapes order
	err     error       // stops Run: a sink's error, or a strict failure

	notify chan struct{} // a request is done
	ctl    chan func()   // calls to run between frames (call)
	done   chan struct{} // closed when Run returns
	once   sync.Once

	nfaces        atomic.Int32
	width, height atomic.Int32
	lastErr       atomic.Pointer[string]
}

// New checks the options and makes an analyzer; Run does the work.
func New(m *Models, o Options) (*Analyzer, error) {
	if m == nil {
		return nil, errors.New("analysis: no models")
	}
	if o.Admission == nil {
		return nil, errors.New("analysis: no admission policy")
	}
	if o.DryRun && m.Aligner == nil {
		return nil, errors.New("analysis: a dry run needs an aligner")
	}
	if o.FOV <= 0 || o.FOV >= 180 {
		o.FOV = 53
	}
	if o.FitThreshold <= 0 {
		o.FitThreshold = DefaultFitThreshold
	}
	if o.Identity.Threshold <= 0 {
		o.Identity.Threshold = reid.DefaultThreshold
	}
	if o.Identity.Every <= 0 {
		o.Identity.Every = 2 * time.Second
	}
	if o.Neutral == lmau.NeutralFixed && o.NeutralFeatures == nil {
		return nil, errors.New("analysis: a fixed neutral without its measurements")
	}
	tr, err := track.NewTracker(m.Detector, track.TrackerOptions{
		Stream: o.Stream, IDs: o.IDs, DetectEvery: o.DetectEvery, LostAfter: o.LostAfter, ConfirmHits: o.ConfirmHits,
		NoRefine: !o.Refine || (m.HasLandmarks() && o.LandmarkAlign), Verifier: m.Verifier,
	})
	if err != nil {
		return nil, err
	}
	a := &Analyzer{
		m: m, o: o, lim: o.Admission.Limits(), tracker: tr, sm: o.Metrics.forStream(o.Stream),
		faces:  map[string]*faceState{},
		notify: make(chan struct{}, 1),
		ctl:    make(chan func()),
		alias:  map[string]string{},
		done:   make(chan struct{}),
	}
	if a.lim.MaxPending <= 0 {
		a.lim.MaxPending = livePending
	}
	for _, s := range o.Sinks {
		if is, ok := s.(ImageSink); ok {
			a.images = append(a.images, is)
		}
	}
	if o.DryRun {
		n := m.Aligner.Size()
		a.scratch = make([]float32, 3*n*n)
	}
	if o.Cuts {
		a.cuts = &track.Cuts{}
	}
	return a, nil
}

// Run analyses the frames until the channel closes (the input ended: Run
// waits for the frames in flight, writes a final result, Seq 0, with the
// faces that ended, and returns nil), ctx ends (returns nil at once; the
// results in flight are dropped) or a sink fails (returns its error). It
// releases every frame it takes.
func (a *Analyzer) Run(ctx context.Context, frames <-chan *capture.Frame) error {
	started := false
	a.once.Do(func() { started = true })
	if !started {
		return errors.New("analysis: Run called twice")
	}
	defer close(a.done)
	defer a.dropAll()
	if a.cuts != nil {
		defer a.cuts.Close()
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for frames != nil || len(a.pending) > 0 {
		in := frames
		if len(a.pending) >= a.lim.MaxPending {
			in = nil // wait for results first
		}
		var deadline <-chan time.Time
		if d := a.nextDeadline(); !d.IsZero() {
			timer.Reset(time.Until(d))
			deadline = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case f, ok := <-in:
			if !ok {
				frames = nil
				a.endOfInput()
				break
			}
			a.step(ctx, f)
		case <-a.notify:
		case <-deadline:
		case fn := <-a.ctl:
			fn()
		}
		timer.Stop()
		a.emit(time.Now())
		if a.err != nil {
			return a.err
		}
	}
	a.final()
	return a.err
}

// Calibrate makes a face's current expression its neutral for the
// landmark AUs. It reports whether the face is tracked.
func (a *Analyzer) Calibrate(ctx context.Context, face string) (bool, error) {
	found := false
	err := a.call(ctx, func() {
		if fs := a.faces[face]; fs != nil {
			fs.lm.Calibrate()
			found = true
		}
	})
	return found, err
}

// Stats are an analyzer's figures for readers on other goroutines.
type Stats struct {
	Faces         int // in the latest frame
	Width, Height int // of the latest frame
	Err           string
}

// Stats returns the analyzer's latest figures (safe from any goroutine).
func (a *Analyzer) Stats() Stats {
	s := Stats{Faces: int(a.nfaces.Load()), Width: int(a.width.Load()), Height: int(a.height.Load())}
	if e := a.lastErr.Load(); e != nil {
		s.Err = *e
	}
	return s
}

// Layout is what the analyzer's results carry.
func (a *Analyzer) Layout() *Layout { return &a.m.layout }

func (a *Analyzer) setErr(err error) {
	s := err.Error()
	a.lastErr.Store(&s)
}

// fail records a failure of a frame or face: Strict stops Run with it.
func (a *Analyzer) fail(err error) {
	a.setErr(err)
	if a.o.Strict && a.err == nil {
		a.err = err
	}
}

// call runs fn on the analyzer's goroutine, between frames, and waits
// for it.
func (a *Analyzer) call(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case a.ctl <- func() { fn(); close(done) }:
	case <-a.done:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done // Run runs it at once
	return nil
}

// endOfInput: the model runs what it holds, and every track ends.
func (a *Analyzer) endOfInput() {
	if a.m.Engine != nil {
		a.m.Engine.Flush()
	}
	a.endTracks(a.tracker.Flush())
}

// final writes the last result: no frame, the faces that ended.
func (a *Analyzer) final() {
	for _, l := range a.late {
		l.req.Release()
	}
	a.late = a.late[:0]
	r := &a.res
	*r = FrameResult{Stream: a.o.Stream, Faces: r.Faces[:0], Ended: a.ended}
	a.write(r)
	a.forget(a.ended, a.lastPTS)
	a.ended = nil
}

// write hands a result to every sink; the first error stops Run.
func (a *Analyzer) write(r *FrameResult) {
	for _, s := range a.o.Sinks {
		if err := s.WriteFrame(r); err != nil && a.err == nil {
			a.err = fmt.Errorf("analysis: stream %s: %w", a.o.Stream, err)
		}
	}
}

// dropAll releases what Run still holds when it returns early.
func (a *Analyzer) dropAll() {
	for _, pf := range a.pending {
		a.recycle(pf)
	}
	a.pending = nil
	for _, l := range a.late {
		l.req.Release()
	}
	a.late = nil
}
