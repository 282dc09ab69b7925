package analysis

import (
	"slices"
	"time"

	"github.com/affectd/affectd/infer"
)

// Admission decides, frame by frame, which faces the model analyses, and
// how long a frame waits for its results. Live and offline analysis differ
// only by their Admission: Live shares the model fairly and keeps latency
// flat; Offline analyses every face of every frame, in a reproducible
// order. An Admission belongs to one analyzer.
type Admission interface {
	// Admit appends to due the indices of the faces to analyse in this
	// frame, in the order they are to be submitted, and calls skip with
	// the reason for each face it leaves out.
	Admit(f FrameInfo, faces []Candidate, due []int, skip func(reason string)) []int
	// Flush reports whether the engine should run what it holds once the
	// frame's faces are submitted (without waiting for a full batch).
	Flush(seq uint64) bool
	// Limits bound the frames waiting for results.
	Limits() Limits
}

// FrameInfo is the frame being admitted.
type FrameInfo struct {
	Seq uint64
	At  time.Time     // capture time
	Dur time.Duration // the frame's duration (from the presentation times)
}

// Candidate is a tracked face as admission sees it.
type Candidate struct {
	// Last is when the face was last sent to the model (zero: never).
	Last time.Time
	// Busy is true while a request of the face is still in the engine.
	Busy bool
}

// Limits bound an analyzer's frames in flight.
type Limits struct {
	// MaxLatency is how long after capture a frame waits for its results;
	// results that come later reach a later frame (0: a frame waits for
	// all of its results).
	MaxLatency time.Duration
	// MaxPending is how many frames may wait for results; beyond it the
	// analyzer takes no new frame (a live source's queue then drops the
	// oldest, counted).
	MaxPending int
}

// Live is the admission of live streams: every stream reports its load to
// the fair-share Pacer, and a face is analysed when its share is due and
// its previous analysis is back, least recently analysed first. A frame
// waits at most MaxLatency for its results.
type Live struct {
	Pacer      *infer.Pacer
	Stream     string
	MaxLatency time.Duration

	order []int
}

// livePending bounds a live stream's frames in flight: with results due
// within MaxLatency, more would only mean frames queued behind the model.
const livePending = 8

// Admit implements Admission.
func (l *Live) Admit(f FrameInfo, faces []Candidate, due []int, skip func(string)) []int {
	l.Pacer.Report(l.Stream, len(faces), 1/f.Dur.Seconds())
	l.order = l.order[:0]
	for i := range faces {
		l.order = append(l.order, i)
	}
	slices.SortStableFunc(l.order, func(a, b int) int { return faces[a].Last.Compare(faces[b].Last) })
	for _, i := range l.order {
		switch {
		case !l.Pacer.Due(faces[i].Last, f.At, f.Dur):
			skip("paced")
		case faces[i].Busy:
			skip("in_flight")
		default:
			due = append(due, i)
		}
	}
	return due
}

// Flush implements Admission: live batches close on their own deadline.
func (l *Live) Flush(uint64) bool { return false }

// Limits implements Admission.
func (l *Live) Limits() Limits { return Limits{MaxLatency: l.MaxLatency, MaxPending: livePending} }

// Offline is the admission of offline analysis: every face of every frame,
// in the tracker's order, each frame waiting for all of its results. The
// engine's batches close every FlushEvery frames (0: every frame), so that with one
// analyzer on a waiting engine the batches, and every number of the
// output, are the same however the work is split (resuming).
//
// Frames up to Replay were analysed by an earlier, interrupted run: they
// are tracked again (tracks, ids and neutrals need their history) but not
// sent to the model, unless ReplayModel (smoothing needs the model's
// history too).
type Offline struct {
	FlushEvery  uint64
	Replay      uint64
	ReplayModel bool
}

// Admit implements Admission.
func (o *Offline) Admit(f FrameInfo, faces []Candidate, due []int, skip func(string)) []int {
	if f.Seq <= o.Replay && !o.ReplayModel {
		return due
	}
	for i := range faces {
		due = append(due, i)
	}
	return due
}

// Flush implements Admission.
func (o *Offline) Flush(seq uint64) bool { return o.FlushEvery <= 1 || seq%o.FlushEvery == 0 }

// Limits implements Admission: no deadline, and room for the frames
// between two flushes, which the engine may hold back until the flush.
func (o *Offline) Limits() Limits {
	return Limits{MaxPending: int(max(o.FlushEvery, livePending)) + 1}
}
