package analysis

import (
	"time"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/emotion"
	"github.com/affectd/affectd/track/mesh"
)

// faceState is everything kept about one tracked face between frames. It
// belongs to the analyzer's goroutine and goes when the face's track ends
// (once every frame that shows the face is written).
type faceState struct {
	lm       lmau.Face // the landmark AUs' neutral
	lmSmooth filters   // landmark AUs and blend shapes
	poseSm   filters
	gazeSm   filters
	ferSm    filters
	est      estimate // the model's latest result, smoothed
	estSm    filters
	last     time.Time // when last sent to the model
	inflight int       // requests in the engine
	id       identity  // re-identification
}

// estimate is a face's latest model result.
type estimate struct {
	seq    uint64 // the frame it was computed on (0: none yet)
	values [][]float32
}

// state returns a face's state, made on first sight (frame seq at pts).
func (a *Analyzer) state(id string, seq uint64, pts time.Duration) *faceState {
	fs := a.faces[id]
	if fs == nil {
		fs = &faceState{lm: lmau.Face{Base: lmau.NewBaseline(a.o.Neutral, a.o.NeutralFeatures)}}
		fs.id.first, fs.id.start = seq, pts
		a.faces[id] = fs
	}
	return fs
}

// pendingFrame is a tracked frame waiting for its faces' results.
type pendingFrame struct {
	seq        uint64
	capturedAt time.Time
	pts        time.Duration
	w, h       int
	deadline   time.Time // zero: wait for every result
	faces      []pendingFace
	ended      []string
	image      *capture.Frame // kept for an ImageSink
	stats      FrameStats
}

// pendingFace is one face of a pending frame: what this frame measured.
type pendingFace struct {
	face    track.Face // its ID the public one
	trackID string     // the tracker's id of the face
	state   *faceState
	req     *infer.Request // nil: not sent to the model in this frame
	res     *infer.Result  // the request's result, while the frame is written

	fitted, posed, measured bool
	meshed, gazed, fer      bool
	fit                     float32 // Face.Fit
	fail                    string  // Face.Fail
	points                  [68][2]float32
	mesh                    [mesh.N][3]float32
	pose                    Pose
	gaze                    Gaze
	au                      [lmau.NumAUs]float32 // smoothed
	blend                   [maxBlend]float32    // smoothed; Layout.BlendShapes' length used
	poseVals                [9]float32           // yaw, pitch, roll, T, R
	gazeVals                [12]float32          // Eye0, Eye1, AngleX, AngleY, At0, At1
	ferVals                 emotion.Scores       // expression_fer, smoothed
}

// maxBlend bounds Layout.BlendShapes (lmau's and the eyes').
const maxBlend = 32

// lateRequest is a result that missed its frame's deadline: it updates
// the face's estimate when it comes, for a later frame.
type lateRequest struct {
	state *faceState
	seq   uint64
	pts   time.Duration
	req   *infer.Request
}

func (a *Analyzer) newPending() *pendingFrame {
	if n := len(a.free); n > 0 {
		pf := a.free[n-1]
		a.free = a.free[:n-1]
		return pf
	}
	return &pendingFrame{}
}

// recycle releases what a pending frame holds and keeps it for reuse.
func (a *Analyzer) recycle(pf *pendingFrame) {
	for i := range pf.faces {
		if r := pf.faces[i].req; r != nil {
			r.Release()
			pf.faces[i].state.inflight--
		}
		pf.faces[i] = pendingFace{}
	}
	if pf.image != nil {
		pf.image.Release()
	}
	*pf = pendingFrame{faces: pf.faces[:0], ended: pf.ended[:0]}
	a.free = append(a.free, pf)
}
