package train

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

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
