package track

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"
)

// IDSource numbers tracks. One source shared by every stream's tracker
// keeps ids unique in the process, also when a stream is removed and added
// again; the stream prefix keeps them unique across streams.
type IDSource struct{ n atomic.Uint64 }

// Next returns the next track number.
func (s *IDSource) Next() uint64 { return s.n.Add(1) }

// TrackerOptions configure one stream's tracker.
type TrackerOptions struct {
	// Stream prefixes every track id ("cam1/7").
	Stream string
	// IDs numbers the tracks (nil: a source of the tracker's own).
	IDs *IDSource
	// DetectEvery runs the detector on every k-th frame; the motion model
	// predicts the frames between (default 3).
	DetectEvery int
	// LostAfter is how long a face may go undetected and keep its id; a
	// face that comes back later gets a new id (default 1s).
	LostAfter time.Duration
	// MatchIoU is the least overlap between a track's predicted box and a
	// detection for them to match (default 0.2).
	MatchIoU float32
	// ConfirmHits is how many detections in a row a new face needs before
	// it is reported (default 2): a one-off false detection never shows.
	ConfirmHits int
	// NoRefine skips the detector's refinement runs on each detected face
	// (they give precise keypoints for alignment).
	NoRefine bool
	// Verifier, when set, checks a detection before it starts a track: a
	// detection it rejects starts none, and one it accepts is a face from
	// that frame on (no ConfirmHits wait).
	Verifier Verifier
}

// Verifier says whether a detected box holds a face (package verify has
// one). It is called only for detections that start a track.
type Verifier interface {
	Verify(frame gocv.Mat, box Rect) bool
}

func (o *TrackerOptions) setDefaults() {
	if o.DetectEvery <= 0 {
		o.DetectEvery = 3
	}
	if o.LostAfter <= 0 {
		o.LostAfter = time.Second
	}
	if o.MatchIoU <= 0 {
		o.MatchIoU = 0.2
	}
	if o.ConfirmHits <= 0 {
		o.ConfirmHits = 2
	}
	if o.IDs == nil {
		o.IDs = &IDSource{}
	}
}

// Face is a tracked face in one frame.
type Face struct {
	// ID is stable while the face stays tracked: "<stream>/<n>".
	ID string
	// Box and Keypoints are in frame pixels: measured on detection frames,
	// predicted by the motion model between them.
	Box       Rect
	Keypoints [NumKeypoints]Point
	// Score is the last detection's confidence.
	Score float32
	// Detected is true when this frame's detector saw the face.
	Detected bool
	// Since is when the track began (frame time).
	Since time.Duration
}

// Update is what a frame did to the tracks.
type Update struct {
	// Faces are the tracks visible in this frame.
	Faces []Face
	// Ended lists the ids whose tracks ended at this frame (gone longer
	// than LostAfter): drop any per-face state kept for them.
	Ended []string
	// Detected is true when the detector ran on this frame.
	Detected bool
	// Detections is how many faces the detector found in this frame.
	Detections int
	// Rejected is how many of them the Verifier turned down (no track).
	Rejected int
}

// Tracker follows the faces of one stream. It is owned by the stream's
// goroutine: Step is not safe for concurrent use. Detection runs every
// DetectEvery frames; tracks are matched to detections by the Hungarian
// method on IoU with each track's predicted box, then lost tracks are
// matched by distance; a constant-velocity Kalman filter per box
// coordinate predicts the frames between.
type Tracker struct {
	o      TrackerOptions
	det    *Detector
	tracks []*track
	frames int
	dets   []Detection
	out    Update
	hasT   bool
	lastT  time.Duration
	// step is the frame interval the source keeps when it drops nothing:
	// the shortest gap seen, drifting slowly up to follow a slower source.
	step time.Duration
}

type track struct {
	id        string
	kf        [4]kalman1 // cx, cy, w, h
	rel       [NumKeypoints]Point
	score     float32
	since     time.Duration
	lastSeen  time.Duration
	missed    int // consecutive detection frames without a match
	hits      int // detections matched so far
	matchedAt bool
	det       Detection // the detection matched at the last detection frame
	refined   bool      // rel comes from a refinement
}

// NewTracker makes a tracker for one stream.
func NewTracker(det *Detector, o TrackerOptions) (*Tracker, error) {
	if det == nil {
		return nil, errors.New("tracker: nil detector")
	}
	if o.Stream == "" {
		return nil, errors.New("tracker: empty stream id")
	}
	o.setDefaults()
	return &Tracker{o: o, det: det}, nil
}

// Step advances the tracker by one frame taken at time t (the frame's
// presentation time; it must not go backwards). The returned Update is
// valid until the next Step.
func (tr *Tracker) Step(frame gocv.Mat, t time.Duration) (*Update, error) {
	dt := float32(0)
	gap := false
	if tr.hasT {
		if t < tr.lastT {
			t = tr.lastT // a source that restarted its clock: hold time still
		}
		gap = tr.gap(t - tr.lastT)
		dt = float32((t - tr.lastT).Seconds())
	}
	tr.hasT, tr.lastT = true, t
	for _, k := range tr.tracks {
		for i := range k.kf {
			k.kf[i].predict(dt)
		}
	}
	u := &tr.out
	u.Faces, u.Ended, u.Detected, u.Detections, u.Rejected = u.Faces[:0], u.Ended[:0], false, 0, 0
	if gap {
		// Frames were dropped before this one (a busy pipeline, a stalled
		// network): the motion model knows nothing of where the faces went
		// meanwhile, so look again now and count the next detection from
		// here.
		tr.frames = 0
	}
	detect := tr.frames%tr.o.DetectEvery == 0
	tr.frames++
	if detect {
		var err error
		tr.dets, err = tr.det.Detect(frame, tr.dets[:0])
		if err != nil {
			return u, fmt.Errorf("tracker %s: %w", tr.o.Stream, err)
		}
		tr.match(frame, t)
		if err := tr.updateKeypoints(frame); err != nil {
			return u, fmt.Errorf("tracker %s: %w", tr.o.Stream, err)
		}
		u.Detected, u.Detections = true, len(tr.dets)
	}
	// Retire tracks gone too long, and unconfirmed ones at their first
	// miss; report the rest.
	keep := tr.tracks[:0]
	for _, k := range tr.tracks {
		confirmed := k.hits >= tr.o.ConfirmHits
		if !confirmed && k.missed > 0 {
			continue // never shown: nothing to end
		}
		if t-k.lastSeen > tr.o.LostAfter {
			u.Ended = append(u.Ended, k.id)
			continue
		}
		keep = append(keep, k)
		if k.missed > 0 || !confirmed {
			continue // not seen at the last detection, or not confirmed yet: not shown
		}
		u.Faces = append(u.Faces, k.face(detect))
	}
	for i := len(keep); i < len(tr.tracks); i++ {
		tr.tracks[i] = nil
	}
	tr.tracks = keep
	return u, nil
}

// gap says whether d, the time since the last frame, is long enough that
// the source dropped frames between: more than twice its usual interval.
// It learns that interval as it goes.
func (tr *Tracker) gap(d time.Duration) bool {
	if d <= 0 {
		return false
	}
	switch {
	case tr.step == 0 || d < tr.step:
		tr.step = d
	case d > 2*tr.step:
		return true
	default:
		tr.step += (d - tr.step) / 16
	}
	return false
}

// Flush ends every track (the stream stopped) and returns the ids of
// those that were shown.
func (tr *Tracker) Flush() []string {
	var ids []string
	for _, k := range tr.tracks {
		if k.hits >= tr.o.ConfirmHits {
			ids = append(ids, k.id)
		}
	}
	tr.tracks = nil
	return ids
}

func (k *track) box() Rect {
	cx, cy, w, h := k.kf[0].x, k.kf[1].x, max(k.kf[2].x, 1), max(k.kf[3].x, 1)
	return Rect{cx - w/2, cy - h/2, w, h}
}

func (k *track) face(detected bool) Face {
	b := k.box()
	c := b.Center()
	f := Face{ID: k.id, Box: b, Score: k.score, Detected: detected && k.matchedAt, Since: k.since}
	for i, r := range k.rel {
		f.Keypoints[i] = Point{c.X + r.X*b.W, c.Y + r.Y*b.H}
	}
	return f
}

func (tr *Tracker) match(frame gocv.Mat, t time.Duration) {
	dets := tr.dets
	used := make([]bool, len(dets))
	for _, k := range tr.tracks {
		k.matchedAt = false
	}
	// 1. Tracks seen at the last detection: Hungarian on 1 − IoU.
	var active []*track
	for _, k := range tr.tracks {
		if k.missed == 0 {
			active = append(active, k)
		}
	}
	if len(active) > 0 && len(dets) > 0 {
		cost := make([][]float64, len(active))
		for i, k := range active {
			cost[i] = make([]float64, len(dets))
			pb := k.box()
			for j, d := range dets {
				cost[i][j] = 1 - float64(pb.IoU(d.Box))
			}
		}
		for i, j := range assign(cost, 1-float64(tr.o.MatchIoU)) {
			if j >= 0 {
				active[i].correct(dets[j], t)
				used[j] = true
			}
		}
	}
	// 2. Every track still unmatched, including those missed before (they
	// may have left and come back, or turned sharply between detections):
	// the nearest unused detection of a similar size, within 1.5 box widths
	// of where the track is predicted or where it was last seen (a face
	// that left the frame comes back where it left, not where its motion
	// pointed).
	var rest []*track
	for _, k := range tr.tracks {
		if !k.matchedAt {
			rest = append(rest, k)
		}
	}
	if len(rest) > 0 && len(dets) > 0 {
		cost := make([][]float64, len(rest))
		for i, k := range rest {
			cost[i] = make([]float64, len(dets))
			pb := k.box()
			pc := pb.Center()
			for j, d := range dets {
				cost[i][j] = 1e9
				if used[j] {
					continue
				}
				ratio := d.Box.W / pb.W
				if ratio < 0.6 || ratio > 1/0.6 {
					continue
				}
				dc, lc := d.Box.Center(), k.det.Box.Center()
				dist := float64(min(hypot(dc.X-pc.X, dc.Y-pc.Y), hypot(dc.X-lc.X, dc.Y-lc.Y)) / max(pb.W, d.Box.W))
				if dist < 1.5 {
					cost[i][j] = dist
				}
			}
		}
		for i, j := range assign(cost, 1e8) {
			if j >= 0 {
				rest[i].correct(dets[j], t)
				used[j] = true
			}
		}
	}
	for _, k := range tr.tracks {
		if !k.matchedAt {
			k.missed++
			// A missed face is probably still: stop extrapolating its motion.
			for i := range k.kf {
				k.kf[i].v *= 0.5
			}
		}
	}
	// 3. New tracks for unmatched detections (verified ones are faces at
	// once).
	for j, d := range dets {
		if used[j] {
			continue
		}
		var hits int
		if tr.o.Verifier != nil {
			if !tr.o.Verifier.Verify(frame, d.Box) {
				tr.out.Rejected++
				continue
			}
			hits = tr.o.ConfirmHits - 1
		}
		k := &track{id: fmt.Sprintf("%s/%d", tr.o.Stream, tr.o.IDs.Next()), since: t, hits: hits}
		c := d.Box.Center()
		for i, x := range [4]float32{c.X, c.Y, d.Box.W, d.Box.H} {
			k.kf[i] = newKalman1(x, d.Box.W)
		}
		k.correct(d, t)
		tr.tracks = append(tr.tracks, k)
	}
}

func (k *track) correct(d Detection, t time.Duration) {
	c := d.Box.Center()
	for i, z := range [4]float32{c.X, c.Y, d.Box.W, d.Box.H} {
		k.kf[i].correct(z, d.Box.W)
	}
	k.det = d
	k.score = d.Score
	k.lastSeen = t
	k.missed = 0
	k.hits++
	k.matchedAt = true
}

// updateKeypoints sets the keypoints of every track matched at this
// detection frame, relative to its detected box: refined (from the track's
// last refined geometry when it has one), or the detector's own.
func (tr *Tracker) updateKeypoints(frame gocv.Mat) error {
	for _, k := range tr.tracks {
		if !k.matchedAt {
			continue
		}
		d := k.det
		kp := d.Keypoints
		if !tr.o.NoRefine {
			var r Detection
			var ok bool
			var err error
			if k.refined {
				start := d
				c := d.Box.Center()
				for i, rel := range k.rel {
					start.Keypoints[i] = Point{c.X + rel.X*d.Box.W, c.Y + rel.Y*d.Box.H}
				}
				r, ok, err = tr.det.RefineTracked(frame, start)
			} else {
				r, ok, err = tr.det.Refine(frame, d)
			}
			if err != nil {
				return err
			}
			if ok {
				kp = r.Keypoints
				k.refined = true
			}
		}
		c := d.Box.Center()
		for i, p := range kp {
			k.rel[i] = Point{(p.X - c.X) / d.Box.W, (p.Y - c.Y) / d.Box.H}
		}
	}
	return nil
}

// kalman1 is a constant-velocity Kalman filter for one coordinate: state
// (x, v), measurement x. Noise scales with the face size s, so the filter
// behaves the same for small and large faces.
type kalman1 struct {
	x, v                  float32
	pxx, pxv, pvv, scale2 float32
}

const (
	kalmanAccel = 2.0  // process noise: accelerations, in face sizes per s²
	kalmanMeas  = 0.03 // measurement noise: detector jitter, in face sizes
)

func newKalman1(x, size float32) kalman1 {
	s2 := size * size
	return kalman1{x: x, pxx: kalmanMeas * kalmanMeas * s2, pvv: s2, scale2: s2}
}

func (k *kalman1) predict(dt float32) {
	if dt <= 0 {
		return
	}
	k.x += k.v * dt
	q := kalmanAccel * kalmanAccel * k.scale2
	// P = F P Fᵀ + Q with F = [1 dt; 0 1] and white-acceleration Q.
	dt2 := dt * dt
	k.pxx += 2*dt*k.pxv + dt2*k.pvv + q*dt2*dt2/4
	k.pxv += dt*k.pvv + q*dt2*dt/2
	k.pvv += q * dt2
}

func (k *kalman1) correct(z, size float32) {
	k.scale2 = size * size
	r := kalmanMeas * kalmanMeas * k.scale2
	s := k.pxx + r
	gx, gv := k.pxx/s, k.pxv/s
	y := z - k.x
	k.x += gx * y
	k.v += gv * y
	pxx, pxv, pvv := k.pxx, k.pxv, k.pvv
	k.pxx = (1 - gx) * pxx
	k.pxv = (1 - gx) * pxv
	k.pvv = pvv - gv*pxv
}

func hypot(x, y float32) float32 {
	return float32(math.Sqrt(float64(x*x + y*y)))
}
