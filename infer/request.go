package infer

import (
	"context"
	"math"
	"sync/atomic"
	"time"
)

// Request is one face's trip through the engine. Use it from one goroutine:
// Input → Submit → Wait → Release. Every Reserve must end in Release.
type Request struct {
	e         *Engine
	b         *batch
	row       int
	in        []float32
	submitted bool
	cancelled bool
	reserved  time.Time
	done      chan struct{}
	notify    chan<- struct{}
	refs      atomic.Int32
	err       error

	logits, values, feats []float32
	active                []bool
	res                   Result
}

// Input is this face's row of the batch tensor: 3×S×S float32, NCHW, RGB,
// normalised with the model's mean and std. Valid until Submit.
func (r *Request) Input() []float32 { return r.in }

// Notify asks for a wake-up on c (without blocking: c should have room
// for one) once the result is ready, so that one goroutine can wait for
// many requests and other events in one select, then check Ready. Call it
// before Submit.
func (r *Request) Notify(c chan<- struct{}) { r.notify = c }

// Submit hands the filled row to the batcher. Call it once.
func (r *Request) Submit() {
	if r.submitted {
		return
	}
	r.submitted = true
	r.e.submit(r)
}

// Wait blocks until the result is ready or ctx ends. The Result stays
// valid until Release.
func (r *Request) Wait(ctx context.Context) (*Result, error) {
	select {
	case <-r.done:
		// Leave the token for a second Wait.
		r.done <- struct{}{}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, r.err
	}
	return &r.res, nil
}

// Ready reports, without blocking, whether the result is in.
func (r *Request) Ready() bool {
	select {
	case <-r.done:
		r.done <- struct{}{}
		return true
	default:
		return false
	}
}

// Release ends the request. An unsubmitted row is given up (the batch runs
// without reading it). The request must not be used afterwards.
func (r *Request) Release() {
	if !r.submitted {
		r.cancelled = true
		r.Submit()
	}
	r.unref()
}

func (r *Request) unref() {
	if r.refs.Add(-1) != 0 {
		return
	}
	select { // drop the completion token
	case <-r.done:
	default:
	}
	r.b, r.in = nil, nil
	e := r.e
	e.mu.Lock()
	e.reqFree = append(e.reqFree, r)
	e.mu.Unlock()
}

// Result is one face's decoded model output. Its slices are owned by the
// request: copy what you keep past Release.
type Result struct {
	// Heads in the order of the model's affectd.heads.
	Heads []HeadResult
	// Logits are the raw outputs (nil without a logits output).
	Logits []float32
	// Features is the MAE-Face representation (nil unless KeepFeatures).
	Features []float32
}

// HeadResult is one head's decoded values.
type HeadResult struct {
	Name   string
	Labels []string // shared with the metadata: read only
	// Values after the head's activation, one per label.
	Values []float32
	// Active holds value >= threshold per label (nil without a threshold).
	Active []bool
	// Top is the most likely label's index for softmax heads, else -1.
	Top int
}

// Head returns the named head's result.
func (res *Result) Head(name string) (*HeadResult, bool) {
	for i := range res.Heads {
		if res.Heads[i].Name == name {
			return &res.Heads[i], true
		}
	}
	return nil, false
}

// Clone deep-copies the result, for callers that keep it past Release.
func (res *Result) Clone() Result {
	out := Result{Heads: make([]HeadResult, len(res.Heads))}
	out.Logits = append([]float32(nil), res.Logits...)
	out.Features = append([]float32(nil), res.Features...)
	for i, h := range res.Heads {
		c := h
		c.Values = append([]float32(nil), h.Values...)
		if h.Active != nil {
			c.Active = append([]bool(nil), h.Active...)
		}
		out.Heads[i] = c
	}
	return out
}

// decode copies row i's outputs into the request and applies each head's
// activation and threshold.
func (e *Engine) decode(r *Request, b *batch, i int) {
	k := e.md.NumLogits
	copy(r.logits, b.logits[i*k:(i+1)*k])
	if r.feats != nil {
		d := e.md.FeatureDim
		copy(r.feats, b.feats[i*d:(i+1)*d])
	}
	for hi, h := range e.md.Heads {
		hr := &r.res.Heads[hi]
		decodeHead(h, r.logits[h.Offset:h.Offset+len(h.Labels)], hr)
	}
}

func decodeHead(h Head, raw []float32, hr *HeadResult) {
	out := hr.Values
	hr.Top = -1
	switch h.Activation {
	case ActivationSigmoid:
		for j, x := range raw {
			out[j] = float32(1 / (1 + math.Exp(-float64(x))))
		}
	case ActivationTanh:
		for j, x := range raw {
			out[j] = float32(math.Tanh(float64(x)))
		}
	case ActivationSoftmax:
		top := 0
		for j, x := range raw {
			if x > raw[top] {
				top = j
			}
		}
		max := float64(raw[top])
		var sum float64
		for j, x := range raw {
			v := math.Exp(float64(x) - max)
			out[j] = float32(v)
			sum += v
		}
		for j := range out {
			out[j] = float32(float64(out[j]) / sum)
		}
		hr.Top = top
	default:
		copy(out, raw)
	}
	if h.Threshold != nil {
		t := *h.Threshold
		for j, v := range out {
			hr.Active[j] = v >= t
		}
	}
}

// Infer is the one-call form: reserve, fill, submit, wait, copy out. It
// allocates the returned Result; hot paths use Reserve directly.
func (e *Engine) Infer(ctx context.Context, fill func(dst []float32)) (Result, error) {
	r, err := e.Reserve(ctx)
	if err != nil {
		return Result{}, err
	}
	defer r.Release()
	fill(r.Input())
	r.Submit()
	res, err := r.Wait(ctx)
	if err != nil {
		return Result{}, err
	}
	return res.Clone(), nil
}
