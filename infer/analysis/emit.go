package analysis

import (
	"context"
	"fmt"
	"time"

	"github.com/affectd/affectd/infer"
)

// nextDeadline is when the oldest pending frame stops waiting for its
// results (zero: it waits for all of them).
func (a *Analyzer) nextDeadline() time.Time {
	if len(a.pending) == 0 {
		return time.Time{}
	}
	return a.pending[0].deadline
}

// emit applies the results that have come and writes, oldest first, the
// frames whose results are all in or whose deadline has passed.
func (a *Analyzer) emit(now time.Time) {
	a.collectLate()
	for len(a.pending) > 0 {
		pf := a.pending[0]
		if !pf.ready() && (pf.deadline.IsZero() || now.Before(pf.deadline)) {
			return
		}
		a.writeFrame(pf)
		copy(a.pending, a.pending[1:])
		a.pending[len(a.pending)-1] = nil
		a.pending = a.pending[:len(a.pending)-1]
		a.forget(pf.ended, pf.pts)
		a.recycle(pf)
	}
}

func (pf *pendingFrame) ready() bool {
	for i := range pf.faces {
		if r := pf.faces[i].req; r != nil && !r.Ready() {
			return false
		}
	}
	return true
}

// collectLate applies the late results that have come.
func (a *Analyzer) collectLate() {
	keep := a.late[:0]
	for _, l := range a.late {
		if !l.req.Ready() {
			keep = append(keep, l)
			continue
		}
		if res, err := l.req.Wait(context.Background()); err == nil {
			a.apply(l.state, l.seq, l.pts, res)
		} else {
			a.fail(fmt.Errorf("frame %d: model: %w", l.seq, err))
		}
		l.req.Release()
		l.state.inflight--
	}
	clear(a.late[len(keep):])
	a.late = keep
}

// apply makes a result a face's estimate, unless a newer one is there.
func (a *Analyzer) apply(fs *faceState, seq uint64, pts time.Duration, res *infer.Result) {
	if seq < fs.est.seq {
		return
	}
	if fs.est.values == nil {
		fs.est.values = make([][]float32, len(res.Heads))
		for i, h := range res.Heads {
			fs.est.values[i] = make([]float32, len(h.Values))
		}
	}
	for i, h := range res.Heads {
		copy(fs.est.values[i], h.Values)
	}
	fs.est.seq = seq
	fs.estSm.apply(&a.o.Smoothing, pts, fs.est.values, a.m.softmax)
}

// writeFrame takes a pending frame's results (those not in yet become
// late) and writes its FrameResult.
func (a *Analyzer) writeFrame(pf *pendingFrame) {
	for i := range pf.faces {
		p := &pf.faces[i]
		if p.req == nil {
			continue
		}
		if !p.req.Ready() { // past the deadline: for a later frame
			a.late = append(a.late, lateRequest{state: p.state, seq: pf.seq, pts: pf.pts, req: p.req})
			p.req = nil
			a.sm.lateResult()
			continue
		}
		res, err := p.req.Wait(context.Background())
		if err != nil {
			a.fail(fmt.Errorf("frame %d: model: %w", pf.seq, err))
			continue
		}
		a.apply(p.state, pf.seq, pf.pts, res)
		p.res = res
	}
	r := &a.res
	nh := len(a.m.layout.Heads)
	faces := r.Faces
	if cap(faces) < len(pf.faces) {
		faces = make([]Face, len(pf.faces))
	}
	faces = faces[:len(pf.faces)]
	for i := range pf.faces {
		p, fc := &pf.faces[i], &faces[i]
		vals := fc.Values
		if cap(vals) < nh {
			vals = make([][]float32, nh)
		}
		vals = vals[:nh]
		clear(vals)
		b := p.face.Box
		*fc = Face{ID: p.face.ID, Identity: p.state.id.name, Box: [4]float32{b.X, b.Y, b.W, b.H}, Score: p.face.Score, Fit: p.fit, Fail: p.fail}
		if p.fitted {
			fc.Landmarks = &p.points
		}
		if p.meshed {
			fc.Mesh = &p.mesh
		}
		if p.fail != "" {
			continue // no values in this frame
		}
		if nh > 0 {
			fc.Values = vals
		}
		if est := &p.state.est; est.seq > 0 {
			fc.EstimateSeq = est.seq
			copy(vals, est.values)
		}
		if p.res != nil {
			fc.Features = p.res.Features
		}
		if p.posed {
			fc.Pose = &p.pose
		}
		if p.gazed {
			fc.Gaze = &p.gaze
		}
		if p.fer && a.m.ferHead >= 0 {
			vals[a.m.ferHead] = p.ferVals[:]
		}
		if p.measured {
			fc.LandmarkAU, fc.Blend = p.au[:], p.blend[:len(a.m.layout.BlendShapes)]
			if a.m.lmHead >= 0 {
				vals[a.m.lmHead] = fc.LandmarkAU
			}
		}
	}
	*r = FrameResult{
		Stream: a.o.Stream, Seq: pf.seq, CapturedAt: pf.capturedAt, PTS: pf.pts, Width: pf.w, Height: pf.h,
		Faces: faces, Ended: pf.ended, Stats: pf.stats,
	}
	if pf.image != nil {
		r.Image = &pf.image.Mat
	}
	a.write(r)
}

// forget drops the state of faces whose tracks ended (at pts), into the
// re-identification gallery if there is one.
func (a *Analyzer) forget(ended []string, pts time.Duration) {
	if len(ended) == 0 {
		return
	}
	for _, id := range ended {
		fs := a.faces[id]
		if fs == nil {
			continue
		}
		keep := a.late[:0]
		for _, l := range a.late {
			if l.state == fs {
				l.req.Release() // the face is gone: nobody needs the result
			} else {
				keep = append(keep, l)
			}
		}
		clear(a.late[len(keep):])
		a.late = keep
		delete(a.faces, id)
		a.keep(id, fs, pts)
	}
}
