package track

import (
	"errors"
	"fmt"
	"math"

	"gocv.io/x/gocv"
)

// The canonical face template ("align5/v1").
//
// Positions are in units of the inter-eye distance D, relative to the
// midpoint of the eyes, x to the image right and y down:
//
//	right eye  (-0.50, 0)      the subject's right, on the image left
//	left eye   (+0.50, 0)
//	nose tip   ( 0,    0.55)
//	mouth      ( 0,    1.02)   centre of the mouth
//
// These are the mean proportions of BlazeFace keypoints on frontal faces,
// so a similarity fit leaves small residuals. On an S×S crop with margin m,
// the face (BlazeFace's box, about 2.26 D wide) spans S/(1+2m): D =
// S/((1+2m)·2.26), the eye midpoint sits at (S/2, S/2 − 0.54·D), and the
// face box is centred. With S=224 and the default m=0.2: D≈70.8 px, eyes at
// (76.6, 73.8) and (147.4, 73.8), nose at (112, 112.7), mouth at (112, 146.0).
var templateUnits = [4]Point{{-0.5, 0}, {0.5, 0}, {0, 0.55}, {0, 1.02}}

const (
	faceWidthInEyes  = 2.26 // BlazeFace box width / inter-eye distance
	eyesAboveCentreD = 0.54 // face box centre is this many D below the eyes
)

// Template fit weights: the eyes carry the alignment (roll and scale come
// from them); nose and mouth steady it against eye-keypoint noise.
var templateWeights = [4]float32{1, 1, 0.25, 0.25}

// DefaultMargin is the crop margin of align5/v1.
const DefaultMargin = 0.2

// Template returns the canonical positions, in crop pixels, of the right
// eye, left eye, nose tip and mouth for an S×S crop with the given margin.
func Template(size int, margin float32) [4]Point {
	s := float32(size)
	d := s / ((1 + 2*margin) * faceWidthInEyes)
	mx, my := s/2, s/2-eyesAboveCentreD*d
	var t [4]Point
	for i, u := range templateUnits {
		t[i] = Point{mx + u.X*d, my + u.Y*d}
	}
	return t
}

// Similarity is x' = A·x − B·y + Tx, y' = B·x + A·y + Ty: rotation, uniform
// scale and translation.
type Similarity struct{ A, B, Tx, Ty float32 }

// Apply maps a point.
func (m Similarity) Apply(p Point) Point {
	return Point{m.A*p.X - m.B*p.Y + m.Tx, m.B*p.X + m.A*p.Y + m.Ty}
}

// Scale is the uniform scale factor.
func (m Similarity) Scale() float32 { return float32(math.Hypot(float64(m.A), float64(m.B))) }

// Angle is the rotation in radians.
func (m Similarity) Angle() float32 { return float32(math.Atan2(float64(m.B), float64(m.A))) }

// Invert returns the inverse transform.
func (m Similarity) Invert() Similarity {
	n := m.A*m.A + m.B*m.B
	a, b := m.A/n, -m.B/n
	return Similarity{a, b, -(a*m.Tx - b*m.Ty), -(b*m.Tx + a*m.Ty)}
}

// FitSimilarity is the weighted least-squares similarity taking src onto
// dst (Umeyama's closed form in 2-D).
func FitSimilarity(src, dst []Point, w []float32) (Similarity, error) {
	if len(src) != len(dst) || len(src) != len(w) || len(src) < 2 {
		return Similarity{}, errors.New("fit similarity: want ≥ 2 matching points and weights")
	}
	var sw, psx, psy, pdx, pdy float64
	for i := range src {
		wi := float64(w[i])
		sw += wi
		psx += wi * float64(src[i].X)
		psy += wi * float64(src[i].Y)
		pdx += wi * float64(dst[i].X)
		pdy += wi * float64(dst[i].Y)
	}
	psx, psy, pdx, pdy = psx/sw, psy/sw, pdx/sw, pdy/sw
	var a, b, n float64
	for i := range src {
		wi := float64(w[i])
		sx, sy := float64(src[i].X)-psx, float64(src[i].Y)-psy
		dx, dy := float64(dst[i].X)-pdx, float64(dst[i].Y)-pdy
		a += wi * (sx*dx + sy*dy)
		b += wi * (sx*dy - sy*dx)
		n += wi * (sx*sx + sy*sy)
	}
	if n < 1e-9 {
		return Similarity{}, errors.New("fit similarity: source points coincide")
	}
	A, B := a/n, b/n
	return Similarity{
		A: float32(A), B: float32(B),
		Tx: float32(pdx - (A*psx - B*psy)),
		Ty: float32(pdy - (B*psx + A*psy)),
	}, nil
}

// Aligner warps faces onto the canonical template, straight into a model
// input row (NCHW float32, RGB, (pixel/255 − mean)/std). It holds no
// mutable state: one Aligner serves every goroutine.
type Aligner struct {
	size     int
	margin   float32
	template [4]Point
	scale    [3]float32 // per RGB channel: 1/(255·std)
	bias     [3]float32 // per RGB channel: −mean/std
}

// NewAligner makes an aligner for an S×S model input normalised with mean
// and std (RGB, values in [0,1]).
func NewAligner(size int, margin float32, mean, std [3]float32) (*Aligner, error) {
	if size < 16 || size > 4096 {
		return nil, fmt.Errorf("aligner: crop size %d out of range", size)
	}
	if margin < 0 || margin > 1 {
		return nil, fmt.Errorf("aligner: margin %v outside [0, 1]", margin)
	}
	al := &Aligner{size: size, margin: margin, template: Template(size, margin)}
	for c := 0; c < 3; c++ {
		if !(std[c] > 0) {
			return nil, fmt.Errorf("aligner: std[%d] = %v", c, std[c])
		}
		al.scale[c] = 1 / (255 * std[c])
		al.bias[c] = -mean[c] / std[c]
	}
	return al, nil
}

// Size is the crop side in pixels.
func (al *Aligner) Size() int { return al.size }

// Template returns the canonical eye, nose and mouth positions in the crop.
func (al *Aligner) Template() [4]Point { return al.template }

// Transform is the similarity from frame pixels to crop pixels for a face
// with the given BlazeFace keypoints.
func (al *Aligner) Transform(kp [NumKeypoints]Point) (Similarity, error) {
	src := []Point{kp[KeyRightEye], kp[KeyLeftEye], kp[KeyNose], kp[KeyMouth]}
	return FitSimilarity(src, al.template[:], templateWeights[:])
}

// Align writes the face with keypoints kp from a BGR frame into dst
// (3×S×S, NCHW, RGB, normalised): one warp, no intermediate image. Pixels
// outside the frame get the normalised value of black. It returns the
// frame → crop transform.
func (al *Aligner) Align(frame gocv.Mat, kp [NumKeypoints]Point, dst []float32) (Similarity, error) {
	m, err := al.Transform(kp)
	if err != nil {
		return m, err
	}
	return m, al.Warp(frame, m, dst)
}

// Warp samples the frame through the inverse of m (bilinear) into dst.
func (al *Aligner) Warp(frame gocv.Mat, m Similarity, dst []float32) error {
	s := al.size
	if len(dst) < 3*s*s {
		return fmt.Errorf("align: destination holds %d values, want %d", len(dst), 3*s*s)
	}
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return fmt.Errorf("align: want a non-empty 8-bit BGR frame, got type %v", frame.Type())
	}
	pix, err := frame.DataPtrUint8()
	if err != nil {
		return fmt.Errorf("align: %w", err)
	}
	fw, fh, step := frame.Cols(), frame.Rows(), frame.Step()
	inv := m.Invert()
	plane := s * s
	rOut, gOut, bOut := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	sr, sg, sb := al.scale[0], al.scale[1], al.scale[2]
	br, bg, bb := al.bias[0], al.bias[1], al.bias[2]
	maxX, maxY := float32(fw-1), float32(fh-1)
	for v := 0; v < s; v++ {
		// Source position of (u=0, v) and its step per u, at pixel centres.
		fv := float32(v)
		x := -inv.B*fv + inv.Tx
		y := inv.A*fv + inv.Ty
		dx, dy := inv.A, inv.B
		o := v * s
		for u := 0; u < s; u, x, y, o = u+1, x+dx, y+dy, o+1 {
			if x < 0 || y < 0 || x > maxX || y > maxY {
				// Outside the frame: black, or the nearest edge pixel within
				// half a pixel of it.
				if x < -0.5 || y < -0.5 || x > maxX+0.5 || y > maxY+0.5 {
					rOut[o], gOut[o], bOut[o] = br, bg, bb
					continue
				}
				cx := min(max(x, 0), maxX)
				cy := min(max(y, 0), maxY)
				i := int(cy)*step + int(cx)*3
				rOut[o] = float32(pix[i+2])*sr + br
				gOut[o] = float32(pix[i+1])*sg + bg
				bOut[o] = float32(pix[i])*sb + bb
				continue
			}
			x0, y0 := int(x), int(y)
			fx, fy := x-float32(x0), y-float32(y0)
			x1 := x0 + 1
			if x1 > fw-1 {
				x1 = fw - 1
			}
			y1 := y0 + 1
			if y1 > fh-1 {
				y1 = fh - 1
			}
			i00 := y0*step + x0*3
			i01 := y0*step + x1*3
			i10 := y1*step + x0*3
			i11 := y1*step + x1*3
			w00 := (1 - fx) * (1 - fy)
			w01 := fx * (1 - fy)
			w10 := (1 - fx) * fy
			w11 := fx * fy
			b := float32(pix[i00])*w00 + float32(pix[i01])*w01 + float32(pix[i10])*w10 + float32(pix[i11])*w11
			g := float32(pix[i00+1])*w00 + float32(pix[i01+1])*w01 + float32(pix[i10+1])*w10 + float32(pix[i11+1])*w11
			r := float32(pix[i00+2])*w00 + float32(pix[i01+2])*w01 + float32(pix[i10+2])*w10 + float32(pix[i11+2])*w11
			rOut[o] = r*sr + br
			gOut[o] = g*sg + bg
			bOut[o] = b*sb + bb
		}
	}
	return nil
}

// SetRollCrop writes into M (2×3 float64) the frame → crop map of a size ×
// size crop of the square of side side (frame pixels) centred on (cx, cy)
// and turned by roll (radians): u = (size/side)·R(−roll)·(x − c) + size/2.
// The face mesh, the expression model and the face embedder crop with it.
func SetRollCrop(M gocv.Mat, cx, cy, side, roll float64, size int) {
	scale := float64(size) / side
	half := float64(size) / 2
	cos, sin := math.Cos(roll), math.Sin(roll)
	M.SetDoubleAt(0, 0, scale*cos)
	M.SetDoubleAt(0, 1, scale*sin)
	M.SetDoubleAt(0, 2, half-scale*(cos*cx+sin*cy))
	M.SetDoubleAt(1, 0, -scale*sin)
	M.SetDoubleAt(1, 1, scale*cos)
	M.SetDoubleAt(1, 2, half-scale*(-sin*cx+cos*cy))
}
