package train

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
)

// Data are feature vectors with their video and labels, row by row.
type Data struct {
	Dim   int
	X     []float32   // Len() × Dim, row-major
	Video []string    // per row
	Y     [][]float32 // per row: the labels (NaN: unannotated)
}

// Len is the number of rows.
func (d *Data) Len() int { return len(d.Video) }

// Row is row i's features.
func (d *Data) Row(i int) []float32 { return d.X[i*d.Dim : (i+1)*d.Dim] }

// Add appends a row.
func (d *Data) Add(video string, x, y []float32) {
	d.X = append(d.X, x...)
	d.Video = append(d.Video, video)
	d.Y = append(d.Y, y)
}

// SplitByVideo puts whole videos on one side: about valFraction of the
// videos (at least one, and one fewer than all) for validation, chosen by
// a hash of their names with seed, so that no video has frames on both
// sides and the split is the same every run.
func SplitByVideo(d *Data, valFraction float64, seed uint64) (train, val *Data, err error) {
	set := map[string]bool{}
	for _, v := range d.Video {
		set[v] = true
	}
	if len(set) < 2 {
		return nil, nil, fmt.Errorf("%d video(s): a split by video needs at least 2", len(set))
	}
	videos := make([]string, 0, len(set))
	for v := range set {
		videos = append(videos, v)
	}
	key := func(v string) uint64 {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d/%s", seed, v)
		return h.Sum64()
	}
	sort.Slice(videos, func(i, j int) bool { return key(videos[i]) < key(videos[j]) })
	nv := min(max(1, int(math.Round(valFraction*float64(len(videos))))), len(videos)-1)
	isVal := map[string]bool{}
	for _, v := range videos[:nv] {
		isVal[v] = true
	}
	train, val = &Data{Dim: d.Dim}, &Data{Dim: d.Dim}
	for i := range d.Video {
		to := train
		if isVal[d.Video[i]] {
			to = val
		}
		to.Add(d.Video[i], d.Row(i), d.Y[i])
	}
	return train, val, nil
}

// Head is a trained head on the raw feature vector: out = act(W·x + B),
// or with a hidden layer (W1 set) out = act(W·relu(W1·x + B1) + B).
type Head struct {
	Name       string      `json:"name"`
	Task       Task        `json:"task"`
	Activation string      `json:"activation"` // sigmoid, softmax or tanh
	Labels     []string    `json:"labels"`
	W1         [][]float32 `json:"w1,omitempty"`
	B1         []float32   `json:"b1,omitempty"`
	W          [][]float32 `json:"w"`
	B          []float32   `json:"b"`
	// Thresholds are the AU heads' per-label cuts, tuned for F1 on the
	// validation split.
	Thresholds []float32 `json:"thresholds,omitempty"`
}

// Predict writes the head's outputs for x into out (len(Labels)).
func (h *Head) Predict(x []float32, out []float32) {
	if h.W1 != nil {
		hid := make([]float32, len(h.W1))
		for m, w := range h.W1 {
			s := float64(h.B1[m])
			for j, v := range w {
				s += float64(v) * float64(x[j])
			}
			hid[m] = float32(max(s, 0))
		}
		x = hid
	}
	for k, w := range h.W {
		s := float64(h.B[k])
		for j, v := range w {
			s += float64(v) * float64(x[j])
		}
		out[k] = float32(s)
	}
	switch h.Activation {
	case "sigmoid":
		for k := range out {
			out[k] = float32(sigmoid(float64(out[k])))
		}
	case "tanh":
		for k := range out {
			out[k] = float32(math.Tanh(float64(out[k])))
		}
	case "softmax":
		softmax(out)
	}
}

func softmax(v []float32) {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	var s float64
	for i, x := range v {
		e := math.Exp(float64(x - m))
		v[i] = float32(e)
		s += e
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / s)
	}
}

// Options tune the fit.
type Options struct {
	Epochs   int     // passes over the training rows, at most (default 100)
	Patience int     // epochs without a better validation score (default 8)
	Rate     float64 // Adam's step (default 0.003)
	L2       float64 // weight decay (default 1e-4)
	// Hidden is the width of a hidden ReLU layer (0: a linear head).
	Hidden int
}

func (o *Options) defaults() {
	if o.Epochs <= 0 {
		o.Epochs = 100
	}
	if o.Patience <= 0 {
		o.Patience = 8
	}
	if o.Rate <= 0 {
		o.Rate = 0.003
	}
	if o.L2 < 0 {
		o.L2 = 0
	} else if o.L2 == 0 {
		o.L2 = 1e-4
	}
}

// Score is a head's validation result: per label (AU: F1 at its
// threshold; VA: CCC) and the mean over the labels annotated in the
// validation split (expression: macro F1).
type Score struct {
	PerLabel map[string]float64 `json:"per_label,omitempty"`
	Mean     float64            `json:"mean"`
	Metric   string             `json:"metric"` // f1, ccc or macro_f1
	Epochs   int                `json:"epochs"`
	Train    int                `json:"train_frames"`
	Val      int                `json:"val_frames"`
	// ValVideos are the videos held out.
	ValVideos []string `json:"val_videos"`
}

// Fit trains the head for labels' task on train, stopping early on val:
// class-balanced logistic regression per AU with its F1 threshold, tanh
// regression of valence and arousal against MSE + (1 − CCC), or softmax
// regression with class weights for expression.
func Fit(name string, task Task, labels []string, train, val *Data, o Options) (*Head, Score, error) {
	o.defaults()
	tr, va := annotatedRows(train), annotatedRows(val)
	if len(tr) == 0 || len(va) == 0 {
		return nil, Score{}, fmt.Errorf("%s: %d annotated training frames and %d validation frames: want some of each", name, len(tr), len(va))
	}
	k := len(labels)
	if task != TaskExpr && len(train.Y[tr[0]]) != k {
		return nil, Score{}, errors.New("labels and label columns differ")
	}
	f := newFitter(task, k, train, tr, o)
	best, bestScore, stale := f.snapshot(), math.Inf(-1), 0
	epochs := 0
	for epochs < o.Epochs && stale < o.Patience {
		epochs++
		f.epoch()
		s := evaluate(f.head(name, labels), task, val, va, nil).Mean
		if s > bestScore+minGain {
			best, bestScore, stale = f.snapshot(), s, 0
		} else {
			stale++
		}
	}
	f.restore(best)
	h := f.head(name, labels)
	if task == TaskAU {
		h.Thresholds = make([]float32, k)
		preds := predictAll(h, val, va)
		for j := range k {
			p, y := column(preds, val, va, j)
			h.Thresholds[j], _ = BestThreshold(p, y)
		}
	}
	sc := evaluate(h, task, val, va, h.Thresholds)
	sc.Epochs, sc.Train, sc.Val = epochs, len(tr), len(va)
	seen := map[string]bool{}
	for _, i := range va {
		if v := val.Video[i]; !seen[v] {
			seen[v] = true
			sc.ValVideos = append(sc.ValVideos, v)
		}
	}
	sort.Strings(sc.ValVideos)
	return h, sc, nil
}

// minGain is the least rise of the validation metric that counts as
// better for early stopping (less is noise).
const minGain = 1e-3

func annotatedRows(d *Data) []int {
	var rows []int
	for i, y := range d.Y {
		if annotated(y) {
			rows = append(rows, i)
		}
	}
	return rows
}

func predictAll(h *Head, d *Data, rows []int) [][]float32 {
	out := make([][]float32, len(rows))
	for n, i := range rows {
		out[n] = make([]float32, len(h.Labels))
		h.Predict(d.Row(i), out[n])
	}
	return out
}

// column is label j's predictions and truth over the rows annotated for it.
func column(preds [][]float32, d *Data, rows []int, j int) (p, y []float32) {
	for n, i := range rows {
		if v := d.Y[i][j]; !math.IsNaN(float64(v)) {
			p, y = append(p, preds[n][j]), append(y, v)
		}
	}
	return p, y
}

// evaluate scores h on rows of d (AU at thresholds, 0.5 when nil).
func evaluate(h *Head, task Task, d *Data, rows []int, thresholds []float32) Score {
	preds := predictAll(h, d, rows)
	s := Score{PerLabel: map[string]float64{}}
	switch task {
	case TaskExpr:
		var pc, tc []int
		for n, i := range rows {
			best := 0
			for c, v := range preds[n] {
				if v > preds[n][best] {
					best = c
				}
			}
			pc, tc = append(pc, best), append(tc, int(d.Y[i][0]))
		}
		s.Metric, s.Mean = "macro_f1", MacroF1(pc, tc, len(h.Labels))
		return s
	case TaskAU:
		s.Metric = "f1"
	default:
		s.Metric = "ccc"
	}
	scored := 0
	for j, name := range h.Labels {
		p, y := column(preds, d, rows, j)
		if len(y) == 0 {
			continue // not annotated in this split: not scored
		}
		scored++
		var v float64
		if task == TaskAU {
			th := float32(0.5)
			if thresholds != nil {
				th = thresholds[j]
			}
			v = F1(p, y, th)
		} else {
			v = CCC(p, y)
		}
		s.PerLabel[name] = v
		s.Mean += v
	}
	if scored > 0 {
		s.Mean /= float64(scored)
	}
	return s
}

// dot is Σ a[i]·b[i], four sums at a time.
func dot(a, b []float32) float32 {
	var s0, s1, s2, s3 float32
	b = b[:len(a)]
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// axpy is y += a·x.
func axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		y[i] += a * x[i]
		y[i+1] += a * x[i+1]
		y[i+2] += a * x[i+2]
		y[i+3] += a * x[i+3]
	}
	for ; i < len(x); i++ {
		y[i] += a * x[i]
	}
}
