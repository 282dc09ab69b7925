package train

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
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

// fitter is a linear model on standardised features trained by
// mini-batch Adam.
type fitter struct {
	task      Task
	k, dim    int
	d         *Data
	rows      []int     // the annotated training rows, in d
	xs        []float32 // their features standardised, len(rows) × dim
	mean, inv []float64 // standardisation: (x − mean)·inv
	hid       int       // hidden units (0: linear)
	w         []float64 // linear: k × (dim+1), weights then bias; hidden: hid × (dim+1), then k × (hid+1)
	w32       []float32 // w as float32, for the batch's products
	hbuf      []float32 // hidden: the batch's hidden activations, row × hid
	m, v      []float64 // Adam's moments
	t         int
	o         Options
	classW    [][2]float64 // AU: weights of negatives and positives per label
	exprW     []float64    // expression: weight per class
	order     []int        // this epoch's row order (indices into rows)
	rng       uint64
	z, g      []float64   // per batch row × k: logits and dL/dz
	grads     [][]float32 // per worker
	workers   int
}

// batchRows is the largest mini-batch; small sets get smaller ones (a
// sixteenth of the rows, at least 32), so that every epoch takes several
// steps and early stopping does not stop after a handful.
const batchRows = 512

func newFitter(task Task, k int, d *Data, rows []int, o Options) *fitter {
	f := &fitter{task: task, k: k, dim: d.Dim, d: d, rows: rows, o: o, workers: runtime.GOMAXPROCS(0), rng: 0x9e3779b97f4a7c15}
	f.mean, f.inv = make([]float64, d.Dim), make([]float64, d.Dim)
	for _, i := range rows {
		for j, x := range d.Row(i) {
			f.mean[j] += float64(x)
		}
	}
	n := float64(len(rows))
	for j := range f.mean {
		f.mean[j] /= n
	}
	for _, i := range rows {
		for j, x := range d.Row(i) {
			dx := float64(x) - f.mean[j]
			f.inv[j] += dx * dx
		}
	}
	for j := range f.inv {
		if sd := math.Sqrt(f.inv[j] / n); sd > 1e-8 {
			f.inv[j] = 1 / sd
		} else {
			f.inv[j] = 0
		}
	}
	f.xs = make([]float32, len(rows)*d.Dim)
	for r, i := range rows {
		dst := f.xs[r*d.Dim : (r+1)*d.Dim]
		for j, x := range d.Row(i) {
			dst[j] = float32((float64(x) - f.mean[j]) * f.inv[j])
		}
	}
	f.hid = max(o.Hidden, 0)
	if f.hid > 0 {
		f.w = make([]float64, f.hid*(d.Dim+1)+k*(f.hid+1))
		r := rand.New(rand.NewPCG(17, uint64(f.hid)))
		sd := math.Sqrt(2 / float64(d.Dim)) // He
		for m := range f.hid {
			for j := range d.Dim {
				f.w[m*(d.Dim+1)+j] = sd * r.NormFloat64()
			}
		}
		f.hbuf = make([]float32, batchRows*f.hid)
	} else {
		f.w = make([]float64, k*(d.Dim+1))
	}
	f.m, f.v = make([]float64, len(f.w)), make([]float64, len(f.w))
	f.z, f.g = make([]float64, batchRows*k), make([]float64, batchRows*k)
	f.w32 = make([]float32, len(f.w))
	f.grads = make([][]float32, f.workers)
	for w := range f.grads {
		f.grads[w] = make([]float32, len(f.w))
	}
	f.order = make([]int, len(rows))
	for i := range f.order {
		f.order[i] = i
	}
	switch task {
	case TaskAU:
		f.classW = make([][2]float64, k)
		for j := range k {
			var pos, all float64
			for _, i := range rows {
				if y := d.Y[i][j]; !math.IsNaN(float64(y)) {
					all++
					pos += float64(y)
				}
			}
			neg := all - pos
			f.classW[j] = [2]float64{all / (2 * max(neg, 1)), all / (2 * max(pos, 1))}
		}
	case TaskExpr:
		f.exprW = make([]float64, k)
		counts := make([]float64, k)
		for _, i := range rows {
			counts[int(d.Y[i][0])]++
		}
		for c := range k {
			f.exprW[c] = n / (float64(k) * max(counts[c], 1))
		}
	}
	return f
}

// parallel runs fn over chunks of [0, n) on every CPU and returns how
// many workers ran (0 to used-1).
func (f *fitter) parallel(n int, fn func(lo, hi, worker int)) (used int) {
	chunk := (n + f.workers - 1) / f.workers
	var wg sync.WaitGroup
	for w := range f.workers {
		lo, hi := w*chunk, min(n, (w+1)*chunk)
		if lo >= hi {
			break
		}
		used++
		wg.Add(1)
		go func() { defer wg.Done(); fn(lo, hi, w) }()
	}
	wg.Wait()
	return used
}

// next is a xorshift step: the epochs' shuffles, the same every run.
func (f *fitter) next() uint64 {
	f.rng ^= f.rng << 13
	f.rng ^= f.rng >> 7
	f.rng ^= f.rng << 17
	return f.rng
}

// epoch is one pass over the training rows in a new order, one Adam step
// per mini-batch.
func (f *fitter) epoch() {
	for i := len(f.order) - 1; i > 0; i-- {
		j := int(f.next() % uint64(i+1))
		f.order[i], f.order[j] = f.order[j], f.order[i]
	}
	b := min(batchRows, max(32, len(f.order)/16))
	for lo := 0; lo < len(f.order); lo += b {
		f.step(f.order[lo:min(lo+b, len(f.order))])
	}
}

// step: logits of the batch, the loss's gradient per logit, the weights'
// gradient, one Adam step.
func (f *fitter) step(batch []int) {
	k, dim, stride := f.k, f.dim, f.dim+1
	for i, w := range f.w {
		f.w32[i] = float32(w)
	}
	if f.hid > 0 {
		f.stepHidden(batch)
		return
	}
	f.parallel(len(batch), func(lo, hi, _ int) {
		for n := lo; n < hi; n++ {
			x := f.xs[batch[n]*dim : (batch[n]+1)*dim]
			for c := range k {
				w := f.w32[c*stride : (c+1)*stride]
				f.z[n*k+c] = float64(w[dim]) + float64(dot(w[:dim], x))
			}
		}
	})
	f.lossGrad(batch)
	f.adam(f.parallel(len(batch), func(lo, hi, worker int) {
		g := f.grads[worker]
		clear(g)
		for n := lo; n < hi; n++ {
			x := f.xs[batch[n]*dim : (batch[n]+1)*dim]
			for c := range k {
				gz := float32(f.g[n*k+c])
				if gz == 0 {
					continue
				}
				row := g[c*stride : (c+1)*stride]
				axpy(gz, x, row[:dim])
				row[dim] += gz
			}
		}
	}))
}

// adam sums the workers' gradients and takes one Adam step, with weight
// decay on the weights (not the biases).
func (f *fitter) adam(used int) {
	f.t++
	const b1, b2, eps = 0.9, 0.999, 1e-8
	c1, c2 := 1-math.Pow(b1, float64(f.t)), 1-math.Pow(b2, float64(f.t))
	for i := range f.w {
		var g float64
		for _, gw := range f.grads[:used] {
			g += float64(gw[i])
		}
		if !f.isBias(i) {
			g += f.o.L2 * f.w[i]
		}
		f.m[i] = b1*f.m[i] + (1-b1)*g
		f.v[i] = b2*f.v[i] + (1-b2)*g*g
		f.w[i] -= f.o.Rate * (f.m[i] / c1) / (math.Sqrt(f.v[i]/c2) + eps)
	}
}

// isBias says whether parameter i is a bias.
func (f *fitter) isBias(i int) bool {
	if f.hid == 0 {
		return i%(f.dim+1) == f.dim
	}
	if off := f.hid * (f.dim + 1); i >= off {
		return (i-off)%(f.hid+1) == f.hid
	}
	return i%(f.dim+1) == f.dim
}

// stepHidden is step with the hidden layer: h = relu(W1·x + b1), z = W2·h
// + b2, and back.
func (f *fitter) stepHidden(batch []int) {
	k, dim, hid := f.k, f.dim, f.hid
	s1, s2, off := dim+1, hid+1, hid*(dim+1)
	f.parallel(len(batch), func(lo, hi, _ int) {
		for n := lo; n < hi; n++ {
			x := f.xs[batch[n]*dim : (batch[n]+1)*dim]
			h := f.hbuf[n*hid : (n+1)*hid]
			for m := range hid {
				w := f.w32[m*s1 : (m+1)*s1]
				h[m] = max(w[dim]+dot(w[:dim], x), 0)
			}
			for c := range k {
				w := f.w32[off+c*s2 : off+(c+1)*s2]
				f.z[n*k+c] = float64(w[hid]) + float64(dot(w[:hid], h))
			}
		}
	})
	f.lossGrad(batch)
	f.adam(f.parallel(len(batch), func(lo, hi, worker int) {
		g := f.grads[worker]
		clear(g)
		dh := make([]float32, hid)
		for n := lo; n < hi; n++ {
			x := f.xs[batch[n]*dim : (batch[n]+1)*dim]
			h := f.hbuf[n*hid : (n+1)*hid]
			clear(dh)
			for c := range k {
				gz := float32(f.g[n*k+c])
				if gz == 0 {
					continue
				}
				row := g[off+c*s2 : off+(c+1)*s2]
				axpy(gz, h, row[:hid])
				row[hid] += gz
				axpy(gz, f.w32[off+c*s2:off+c*s2+hid], dh)
			}
			for m := range hid {
				if h[m] <= 0 || dh[m] == 0 {
					continue
				}
				row := g[m*s1 : (m+1)*s1]
				axpy(dh[m], x, row[:dim])
				row[dim] += dh[m]
			}
		}
	}))
}

// lossGrad writes dL/dz for every row of the batch and output (the loss
// is a mean over the batch's annotated rows).
func (f *fitter) lossGrad(batch []int) {
	k := f.k
	y := func(n, j int) float32 { return f.d.Y[f.rows[batch[n]]][j] }
	switch f.task {
	case TaskAU:
		for j := range k {
			var cnt float64
			for n := range batch {
				if !math.IsNaN(float64(y(n, j))) {
					cnt++
				}
			}
			for n := range batch {
				t := y(n, j)
				if math.IsNaN(float64(t)) {
					f.g[n*k+j] = 0
					continue
				}
				w := f.classW[j][int(t)]
				f.g[n*k+j] = w * (sigmoid(f.z[n*k+j]) - float64(t)) / cnt
			}
		}
	case TaskExpr:
		nr := float64(len(batch))
		p := make([]float32, k)
		for n := range batch {
			for c := range k {
				p[c] = float32(f.z[n*k+c])
			}
			softmax(p)
			t := int(y(n, 0))
			for c := range k {
				one := 0.0
				if c == t {
					one = 1
				}
				f.g[n*k+c] = f.exprW[t] * (float64(p[c]) - one) / nr
			}
		}
	default: // regression: tanh, MSE + (1 − CCC) per output, CCC over the batch
		for j := range k {
			var idx []int
			for n := range batch {
				f.g[n*k+j] = 0
				if !math.IsNaN(float64(y(n, j))) {
					idx = append(idx, n)
				}
			}
			cnt := float64(len(idx))
			if cnt == 0 {
				continue
			}
			var mp, mt float64
			for _, n := range idx {
				mp += math.Tanh(f.z[n*k+j])
				mt += float64(y(n, j))
			}
			mp, mt = mp/cnt, mt/cnt
			var vp, vt, cov float64
			for _, n := range idx {
				dp, dt := math.Tanh(f.z[n*k+j])-mp, float64(y(n, j))-mt
				vp += dp * dp
				vt += dt * dt
				cov += dp * dt
			}
			vp, vt, cov = vp/cnt, vt/cnt, cov/cnt
			den := vp + vt + (mp-mt)*(mp-mt) + 1e-12
			for _, n := range idx {
				p := math.Tanh(f.z[n*k+j])
				t := float64(y(n, j))
				// d CCC / d p_n, with CCC = 2·cov / den.
				dccc := (2*(t-mt)/cnt*den - 2*cov*(2*(p-mp)/cnt+2*(mp-mt)/cnt)) / (den * den)
				dl := 2*(p-t)/cnt - dccc
				f.g[n*k+j] = dl * (1 - p*p)
			}
		}
	}
}

func (f *fitter) snapshot() []float64 { return append([]float64(nil), f.w...) }

func (f *fitter) restore(w []float64) { copy(f.w, w) }

// head folds the standardisation into the weights.
func (f *fitter) head(name string, labels []string) *Head {
	act := map[Task]string{TaskAU: "sigmoid", TaskExpr: "softmax"}[f.task]
	if act == "" {
		act = "tanh"
	}
	h := &Head{Name: name, Task: f.task, Activation: act, Labels: labels}
	// The layer on the features takes the standardisation in.
	first, n := &h.W, f.k
	if f.hid > 0 {
		first, n = &h.W1, f.hid
	}
	stride := f.dim + 1
	bias := make([]float32, n)
	for c := range n {
		w := f.w[c*stride : (c+1)*stride]
		row := make([]float32, f.dim)
		b := w[f.dim]
		for j := range f.dim {
			s := w[j] * f.inv[j]
			row[j] = float32(s)
			b -= s * f.mean[j]
		}
		*first = append(*first, row)
		bias[c] = float32(b)
	}
	if f.hid == 0 {
		h.B = bias
		return h
	}
	h.B1, h.B = bias, make([]float32, f.k)
	off, s2 := f.hid*stride, f.hid+1
	for c := range f.k {
		w := f.w[off+c*s2 : off+(c+1)*s2]
		row := make([]float32, f.hid)
		for m := range f.hid {
			row[m] = float32(w[m])
		}
		h.W = append(h.W, row)
		h.B[c] = float32(w[f.hid])
	}
	return h
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
