package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/file"
	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/stream/record"
)

// runFile analyses one input into its output and fills its report.
func (a *analyzer) runFile(ctx context.Context, j *job) {
	rep := j.rep
	a.current.Store(filepath.Base(rep.Input))
	defer a.filesDon.Add(1)
	t := &tally{resume: j.resume.Frames, done: &a.done}
	sinks := []analysis.Sink{t}
	var w *record.Writer
	if !a.o.TrackOnly {
		var err error
		w, err = record.Create(record.Options{Path: rep.Output, Format: a.format(), Signature: j.sig, Every: a.seg, Resume: j.resume,
			Partial: j.partial, Commit: j.commit})
		if err != nil {
			rep.Status, rep.Err = "failed", err
			return
		}
		rep.Replayed = int64(j.resume.Frames)
		sinks = append(sinks, w)
	}
	err := a.analyse(ctx, j, sinks, t)
	rep.Frames, rep.Rows, rep.Landmarks = t.frames, t.rows, t.landmarks
	switch {
	case ctx.Err() != nil: // interrupted: the partial output stays for resuming
		if w != nil {
			w.Abort(true)
		}
		return
	case err == nil && w != nil:
		err = w.Finish()
	case err != nil && w != nil:
		w.Abort(j.resume.Frames > 0 || t.frames > 0) // keep what is worth resuming
	}
	if err != nil {
		rep.Status, rep.Err = "failed", err
		return
	}
	rep.Status = "done"
	if p := j.probed; p > 0 && t.last < uint64(p)*9/10 {
		rep.Warning = fmt.Sprintf("decoded %d of the %d frames the container announces: truncated or damaged?", t.last, p)
	}
}

// format is the output's layout.
func (a *analyzer) format() record.Format {
	l := a.m.Core.Layout()
	if a.o.Format == "jsonl" {
		return &record.JSONL{Layout: l, Points: a.o.Points, Mesh: a.o.Mesh}
	}
	o := record.CSVOptions{Landmarks: a.m.Core.HasLandmarks(), Points: a.o.Points, Gaze: a.m.Core.Iris != nil}
	if a.o.Features && a.m.Core.Engine != nil {
		o.FeatureDim = a.m.Core.Engine.Metadata().FeatureDim
	}
	return record.NewCSV(l, o)
}

// analyse runs the file's frames, losslessly, through an analyzer with
// the offline admission into the sinks.
func (a *analyzer) analyse(ctx context.Context, j *job, sinks []analysis.Sink, t *tally) error {
	var endErr error // why the source ended: set on the capture goroutine, read after it stopped
	cs, err := capture.NewStream(capture.StreamOptions{
		ID: j.name, Source: file.New(file.Options{Path: j.rep.Input}), Lossless: true, Queue: 4,
		OnStatus: func(s capture.Status) {
			if s.Err != nil {
				endErr = s.Err
			}
		},
	})
	if err != nil {
		return err
	}
	o := coreOptions(a.cfg, j.name)
	o.Admission = &analysis.Offline{FlushEvery: a.seg, Replay: j.resume.Frames, ReplayModel: a.cfg.Smoothing.Enabled}
	o.Strict, o.DryRun, o.Sinks = true, a.o.TrackOnly, sinks
	o.Neutral = a.mode
	o.Identity = a.m.ids.file(a.cfg) // a gallery of its own per file
	if a.mode == lmau.NeutralFixed {
		o.NeutralFeatures = &a.neutral
	}
	an, err := analysis.New(a.m.Core, o)
	if err != nil {
		return err
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	capDone := make(chan struct{})
	go func() {
		defer close(capDone)
		cs.Run(fctx)
	}()
	err = an.Run(fctx, cs.Frames())
	cancel()
	for f := range cs.Frames() {
		f.Release()
	}
	<-capDone
	cs.Close()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return err
	case t.last == 0:
		if endErr == nil {
			return errors.New("no frames")
		}
		// "source ended: x.mp4: cannot open as video" → the reason alone
		return errors.New(strings.TrimPrefix(endErr.Error(), capture.ErrEnded.Error()+": "))
	case t.last < j.resume.Frames:
		return fmt.Errorf("the file has %d frames, the interrupted run recorded %d: it changed; delete %s to start over", t.last, j.resume.Frames, record.StatePath(j.rep.Output))
	}
	return nil
}

// tally counts a file's results (an analysis.Sink).
type tally struct {
	resume    uint64 // frames done by an interrupted run: counted as replayed
	last      uint64 // the last frame's number
	frames    int64
	rows      int64
	landmarks time.Duration
	done      *atomic.Int64 // the run's progress
}

func (t *tally) WriteFrame(r *analysis.FrameResult) error {
	if r.Seq == 0 {
		return nil
	}
	t.last = r.Seq
	t.done.Add(1)
	if r.Seq > t.resume {
		t.frames++
		t.rows += int64(len(r.Faces))
		t.landmarks += r.Stats.Landmarks
	}
	return nil
}
