package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/iris"
	"github.com/affectd/affectd/track/landmarks"
	"github.com/affectd/affectd/track/mesh"
)

// step analyses one frame up to the model: track, landmarks, pose and
// landmark AUs, then the admitted faces' crops into the engine. The frame
// then waits in pending for its results.
func (a *Analyzer) step(ctx context.Context, f *capture.Frame) {
	a.emit(time.Now()) // results in already free their faces for this frame
	if f.Restart {     // a new session of the source: its faces are new tracks
		a.endTracks(a.tracker.Flush())
	}
	cut := a.cuts != nil && a.cuts.Cut(f.Mat)
	if cut { // another shot: whoever is there is somebody new
		a.endTracks(a.tracker.Flush())
	}
	u, err := a.tracker.Step(f.Mat, f.PTS)
	if err != nil {
		a.sm.skip("track_error")
		a.fail(fmt.Errorf("frame %d: tracking: %w", f.Seq, err))
		f.Release()
		return
	}
	dur := f.PTS - a.lastPTS
	a.lastPTS = f.PTS
	if dur <= 0 || dur > time.Second {
		dur = 40 * time.Millisecond
	}
	pf := a.newPending()
	pf.seq, pf.capturedAt, pf.pts = f.Seq, f.CapturedAt, f.PTS
	pf.w, pf.h = f.Mat.Cols(), f.Mat.Rows()
	if a.lim.MaxLatency > 0 {
		pf.deadline = f.CapturedAt.Add(a.lim.MaxLatency)
	}
	a.endTracks(u.Ended)
	pf.ended = append(pf.ended, a.ended...)
	a.ended = a.ended[:0]
	pf.stats = FrameStats{Detected: u.Detected, Detections: u.Detections, Rejected: u.Rejected, Cut: cut}
	for _, tf := range u.Faces {
		tid := tf.ID
		tf.ID = a.publicID(tid)
		pf.faces = append(pf.faces, pendingFace{face: tf, trackID: tid, state: a.state(tf.ID, pf.seq, pf.pts), fit: -1})
	}
	if u.Detected {
		a.sm.detections(u.Detections)
	}
	a.sm.faces(len(u.Faces))
	a.nfaces.Store(int32(len(u.Faces)))
	a.width.Store(int32(pf.w))
	a.height.Store(int32(pf.h))
	if a.identityOn() {
		a.identify(f, pf)
	}
	if a.m.HasLandmarks() {
		a.fit(f, pf)
	}
	if a.m.FER != nil {
		a.classify(f, pf)
	}
	if a.m.Engine != nil || a.o.DryRun {
		a.submit(ctx, f, pf, dur)
	}
	for _, s := range a.images {
		if s.WantImage() {
			pf.image = f
			break
		}
	}
	if pf.image == nil {
		f.Release() // the crops are in the engine's batch already
	}
	a.pending = append(a.pending, pf)
}

// fit fits every face's 68 landmarks, checks the fit against the
// detector's keypoints, and for a fit it trusts estimates the head pose and
// measures the landmark AUs and blend shapes against the face's neutral
// (every frame: rigs want them all). Between faces it writes the earlier
// frames whose results have come, so that a long frame does not hold them
// back.
func (a *Analyzer) fit(f *capture.Frame, pf *pendingFrame) {
	cam := landmarks.CameraFOV(pf.w, pf.h, a.o.FOV)
	for i := range pf.faces {
		start := time.Now()
		p := &pf.faces[i]
		s, err := a.fitFace(f, p)
		if err != nil {
			a.sm.skip("landmarks_error")
			pf.stats.LandmarkErrors++
			p.fail = FailNoFit
			continue
		}
		p.fitted = true
		for k, q := range s {
			p.points[k] = [2]float32{q.X, q.Y}
		}
		p.fit = fitDistance(&s, &p.face)
		if p.fit > a.o.FitThreshold {
			// Slipped off the face: no pose, no AUs, the neutral untouched,
			// and the crop aligned on the detector's keypoints.
			a.sm.skip("landmarks_error")
			pf.stats.LandmarkErrors++
			p.fail = FailPoorFit
			continue
		}
		if a.o.LandmarkAlign {
			p.face.Keypoints = s.Keypoints()
		}
		fs := p.state
		if pose, err := cam.EstimatePose(s); err == nil {
			p.posed = true
			p.poseVals = [9]float32{pose.Yaw, pose.Pitch, pose.Roll, pose.T[0], pose.T[1], pose.T[2], pose.R[0], pose.R[1], pose.R[2]}
			a.series[0] = p.poseVals[:]
			fs.poseSm.apply(&a.o.Smoothing, pf.pts, a.series[:1], nil)
			v := &p.poseVals
			p.pose = Pose{Yaw: v[0], Pitch: v[1], Roll: v[2], T: [3]float32{v[3], v[4], v[5]}, R: [3]float32{v[6], v[7], v[8]}}
		}
		if r, ok := fs.lm.Update((*lmau.Shape)(&s)); ok {
			p.measured = true
			p.au = r.AU
			copy(p.blend[:], r.Blend[:])
			if p.gazed {
				for k, v := range a.eyes {
					p.blend[a.m.eyeBlend[k]] = v
				}
			}
			a.series[0], a.series[1] = p.au[:], p.blend[:len(a.m.layout.BlendShapes)]
			fs.lmSmooth.apply(&a.o.Smoothing, pf.pts, a.series[:2], nil)
		}
		if p.gazed {
			a.series[0] = p.gazeVals[:]
			fs.gazeSm.apply(&a.o.Smoothing, pf.pts, a.series[:1], nil)
			v := &p.gazeVals
			p.gaze = Gaze{Eye0: [3]float32{v[0], v[1], v[2]}, Eye1: [3]float32{v[3], v[4], v[5]}, AngleX: v[6], AngleY: v[7],
				At0: [2]float32{v[8], v[9]}, At1: [2]float32{v[10], v[11]}}
		}
		pf.stats.Landmarks += time.Since(start)
		a.emit(time.Now())
	}
}

// classify runs expression_fer on every face whose landmarks did not
// fail (a face that failed carries no values), and smooths its scores.
func (a *Analyzer) classify(f *capture.Frame, pf *pendingFrame) {
	for i := range pf.faces {
		p := &pf.faces[i]
		p.fer = false
		if p.fail != "" {
			continue
		}
		sc, err := a.m.FER.Classify(f.Mat, p.face.Box, mesh.Roll(&p.face.Keypoints))
		if err != nil {
			a.sm.skip("expression_fer_error")
			continue
		}
		p.fer, p.ferVals = true, sc
		a.series[0] = p.ferVals[:]
		p.state.ferSm.apply(&a.o.Smoothing, pf.pts, a.series[:1], ferSoftmax)
	}
}

var ferSoftmax = []bool{true}

// fitFace fits a face's 68 points with the landmark backend; the mesh468
// backend also keeps the mesh's points and, with the iris model, the gaze
// and the eyes' blend shapes (a.eyes).
func (a *Analyzer) fitFace(f *capture.Frame, p *pendingFace) (landmarks.Shape, error) {
	p.meshed, p.gazed = false, false
	if a.m.Mesh == nil {
		return a.m.Landmarks.Fit(f.Mat, p.face.Box)
	}
	ms := &a.mesh
	var err error
	if *ms, err = a.m.fitMesh(f.Mat, p.face.Box, mesh.Roll(&p.face.Keypoints)); err != nil {
		return landmarks.Shape{}, err
	}
	p.meshed = true
	for k, q := range ms.Points {
		p.mesh[k] = [3]float32{q.X, q.Y, q.Z}
	}
	if a.m.Iris != nil {
		if eyes, err := a.m.Iris.Fit(f.Mat, ms); err == nil {
			p.gazed = true
			r, l := eyes.Right.Gaze, eyes.Left.Gaze
			ri, li := eyes.Right.Iris[0], eyes.Left.Iris[0]
			p.gazeVals = [12]float32{r[0], r[1], r[2], l[0], l[1], l[2], eyes.AngleX, eyes.AngleY, ri.X, ri.Y, li.X, li.Y}
			a.eyes = iris.Blend(ms, &eyes)
		}
	}
	return ms.Shape68(), nil
}

// fitDistance is how far a landmark fit strays from the tracker's
// keypoints of the face (the detector's, moved with the box between
// detections): the mean distance of the eyes, nose tip and mouth over the
// box width. dlib's cascade always returns a face-shaped fit; on a face
// turned far from the camera, or from a box that has drifted, it lies
// somewhere else than BlazeFace's keypoints, which follow turned faces.
func fitDistance(s *landmarks.Shape, f *track.Face) float32 {
	k := s.Keypoints()
	var sum float64
	for _, i := range []int{track.KeyRightEye, track.KeyLeftEye, track.KeyNose, track.KeyMouth} {
		sum += math.Hypot(float64(k[i].X-f.Keypoints[i].X), float64(k[i].Y-f.Keypoints[i].Y))
	}
	return float32(sum / 4 / math.Max(float64(f.Box.W), 1))
}

// submit sends the faces the admission chooses to the engine, each crop
// aligned straight into its row of the batch tensor.
func (a *Analyzer) submit(ctx context.Context, f *capture.Frame, pf *pendingFrame, dur time.Duration) {
	a.cands = a.cands[:0]
	for i := range pf.faces {
		fs := pf.faces[i].state
		a.cands = append(a.cands, Candidate{Last: fs.last, Busy: fs.inflight > 0})
	}
	a.due = a.o.Admission.Admit(FrameInfo{Seq: pf.seq, At: pf.capturedAt, Dur: dur}, a.cands, a.due[:0], a.sm.skip)
	full := false
	for _, i := range a.due {
		p := &pf.faces[i]
		if p.fail == FailPoorFit { // its values would not be shown
			a.sm.skip("poor_fit")
			continue
		}
		if a.o.DryRun {
			if _, err := a.m.Aligner.Align(f.Mat, p.face.Keypoints, a.scratch); err == nil {
				pf.stats.Analysed++
			}
			continue
		}
		if full {
			a.sm.skip("queue_full")
			continue
		}
		r, err := a.m.Engine.Reserve(ctx)
		if err != nil {
			if errors.Is(err, infer.ErrOverloaded) {
				full = true
				a.sm.skip("queue_full")
				continue
			}
			return // stopping
		}
		if _, err := a.m.Aligner.Align(f.Mat, p.face.Keypoints, r.Input()); err != nil {
			r.Release()
			a.sm.skip("align_error")
			continue
		}
		r.Notify(a.notify)
		r.Submit()
		p.req = r
		p.state.inflight++
		p.state.last = pf.capturedAt
		pf.stats.Analysed++
		a.sm.submitted()
	}
	if a.m.Engine != nil && a.o.Admission.Flush(pf.seq) {
		a.m.Engine.Flush()
	}
}
