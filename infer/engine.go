package infer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned to callers of the engine.
var (
	// ErrOverloaded: the queue is full and the overload policy is Reject.
	ErrOverloaded = errors.New("inference queue full")
	// ErrClosed: the engine is stopping or stopped.
	ErrClosed = errors.New("inference engine closed")
)

// runner runs the model on a batch. The ONNX Runtime session (*Model) is
// the real one; tests pass fakes.
type runner interface {
	// run computes rows [0,n) of b.in into b.feats and b.logits. It may be
	// called concurrently for different batches.
	run(b *batch, n int) error
	// release frees whatever run attached to b.ext.
	release(b *batch)
}

// batch is one pooled batch tensor and the requests whose rows it holds.
type batch struct {
	in     []float32 // MaxBatch × 3×S×S, NCHW
	feats  []float32 // MaxBatch × FeatureDim
	logits []float32 // MaxBatch × NumLogits
	reqs   []*Request
	ext    any // the runner's views of this batch (ORT tensors)

	n        int       // rows reserved
	unfilled int       // rows reserved but not yet submitted
	closed   bool      // no more rows will be reserved
	first    time.Time // first reservation: the deadline is first+MaxWait
}

// Engine is the micro-batcher: one queue for every face of every stream.
// Callers Reserve a row of a pooled batch tensor, write the aligned crop
// straight into it, Submit, and Wait for their own decoded Result. Batches
// run when full, or when their first face has waited MaxWait and a runner
// is free. Admission is bounded by QueueLimit with an explicit policy.
//
// All methods are safe for concurrent use.
type Engine struct {
	r      runner
	md     Metadata
	o      Options
	inSize int
	m      *metrics

	slots chan struct{} // admission tokens: one per waiting face
	wake  chan struct{} // cap 1: state changed, the dispatcher looks again
	idle  chan struct{} // cap Runners: a runner is free
	freed chan struct{} // cap 1: a batch buffer was freed
	runq  chan *batch   // dispatcher → runners
	stopc chan struct{} // closed when stopping begins
	done  chan struct{} // closed when Run has drained and returned

	mu       sync.Mutex
	cur      *batch   // the batch taking reservations
	ready    []*batch // closed and filled, FIFO
	free     []*batch
	all      []*batch
	filling  int // closed batches with unsubmitted rows
	reqFree  []*Request
	stopping bool
	started  bool

	closeOnce sync.Once

	stats struct{ batches, faces, rejected, failures, runNanos atomic.Int64 }
	// For the watchdog: faces admitted and not yet handed to a runner,
	// batches running, and when the last batch ended (unix nanoseconds).
	waiting, running, lastEnd atomic.Int64
}

// Stalled reports whether the engine has work and has finished no batch
// for longer than d (a run that hangs, a provider that died): the
// daemon's /readyz says so.
func (e *Engine) Stalled(d time.Duration) bool {
	if e.waiting.Load() == 0 && e.running.Load() == 0 {
		return false
	}
	last := e.lastEnd.Load()
	return last != 0 && time.Since(time.Unix(0, last)) > d
}

// Stats are the engine's running totals.
type Stats struct {
	Batches, Faces, Rejected, Failures int64
	// RunTime is the total time spent in model runs.
	RunTime time.Duration
}

// Stats returns the engine's running totals (also exported as metrics).
func (e *Engine) Stats() Stats {
	return Stats{
		Batches:  e.stats.batches.Load(),
		Faces:    e.stats.faces.Load(),
		Rejected: e.stats.rejected.Load(),
		Failures: e.stats.failures.Load(),
		RunTime:  time.Duration(e.stats.runNanos.Load()),
	}
}

// New makes an engine for a loaded model. It allocates every batch buffer
// now; Run starts the work.
func New(m *Model, o Options) (*Engine, error) {
	return newEngine(m, m.Metadata(), o)
}

func newEngine(r runner, md Metadata, o Options) (*Engine, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if md.Input.Size <= 0 {
		return nil, fmt.Errorf("infer: model input size %d", md.Input.Size)
	}
	met, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		r: r, md: md, o: o, m: met,
		inSize: 3 * md.Input.Size * md.Input.Size,
		slots:  make(chan struct{}, o.QueueLimit),
		wake:   make(chan struct{}, 1),
		idle:   make(chan struct{}, o.Runners),
		freed:  make(chan struct{}, 1),
		runq:   make(chan *batch),
		stopc:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	// Enough buffers that admission, not buffers, is the limit: the
	// runners' batches, the full batches the queue can hold, and the one
	// filling.
	nbuf := o.Runners + (o.QueueLimit-1)/o.MaxBatch + 1
	for i := 0; i < nbuf; i++ {
		b := &batch{
			in:     make([]float32, o.MaxBatch*e.inSize),
			feats:  make([]float32, o.MaxBatch*md.FeatureDim),
			logits: make([]float32, o.MaxBatch*md.NumLogits),
			reqs:   make([]*Request, o.MaxBatch),
		}
		e.free = append(e.free, b)
		e.all = append(e.all, b)
	}
	return e, nil
}

// Metadata returns the model's description.
func (e *Engine) Metadata() Metadata { return e.md }

// Options returns the engine's options, defaults filled in.
func (e *Engine) Options() Options { return e.o }

// InputSize is the number of float32 values in one face's input (3×S×S).
func (e *Engine) InputSize() int { return e.inSize }

// Run dispatches batches to the runners until ctx ends or Close is called,
// then drains: every submitted request still gets its result. It returns
// nil after a clean drain.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.started {
		stopping := e.stopping
		e.mu.Unlock()
		if stopping { // closed already: Close drained the queue
			<-e.done
			return nil
		}
		return errors.New("infer: Run called twice")
	}
	e.started = true
	e.lastEnd.Store(time.Now().UnixNano()) // the watchdog's clock starts
	e.mu.Unlock()
	stop := context.AfterFunc(ctx, e.beginStop)
	defer stop()

	var wg sync.WaitGroup
	for i := 0; i < e.o.Runners; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.runLoop()
		}()
	}
	for {
		<-e.idle // a runner is free: only now is a partial batch worth closing
		b := e.nextBatch()
		if b == nil {
			break
		}
		e.runq <- b
	}
	close(e.runq)
	wg.Wait()
	close(e.done)
	return nil
}

// Close stops taking requests, waits until Run has drained the submitted
// ones (draining itself when Run was never called), and frees the batch buffers' runtime views. Requests reserved but
// neither submitted nor released hold the drain: release them first. Close
// does not close the Model. It is safe to call twice.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.beginStop()
		e.mu.Lock()
		started := e.started
		e.mu.Unlock()
		if !started {
			// Nobody ran the engine: drain here, so that every submitted
			// request still gets its result.
			e.Run(context.Background())
		}
		<-e.done
		for _, b := range e.all {
			e.r.release(b)
		}
	})
	return nil
}

func (e *Engine) beginStop() {
	e.mu.Lock()
	if !e.stopping {
		e.stopping = true
		close(e.stopc)
	}
	e.mu.Unlock()
	e.poke()
}

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Reserve admits one face and returns its request, whose Input is a row of
// a pooled batch tensor. The caller writes the crop into Input, then calls
// Submit (or Release to give the row up). With OverloadReject a full queue
// returns ErrOverloaded at once; with OverloadWait Reserve waits for room
// until ctx ends.
func (e *Engine) Reserve(ctx context.Context) (*Request, error) {
	select {
	case e.slots <- struct{}{}:
	default:
		if e.o.Overload == OverloadReject {
			e.m.rejected.Inc()
			e.stats.rejected.Add(1)
			return nil, ErrOverloaded
		}
		select {
		case e.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.stopc:
			return nil, ErrClosed
		}
	}
	e.mu.Lock()
	if e.stopping {
		e.mu.Unlock()
		<-e.slots
		return nil, ErrClosed
	}
	b := e.cur
	if b == nil {
		if len(e.free) == 0 {
			// Every buffer holds a batch: flushed partial batches (Flush)
			// use buffers without filling the queue's slots.
			e.mu.Unlock()
			<-e.slots
			if e.o.Overload == OverloadReject {
				e.m.rejected.Inc()
				e.stats.rejected.Add(1)
				return nil, ErrOverloaded
			}
			select { // wait until a batch has run, then try again
			case <-e.freed:
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-e.stopc:
				return nil, ErrClosed
			}
			return e.Reserve(ctx)
		}
		b = e.free[len(e.free)-1]
		e.free = e.free[:len(e.free)-1]
		b.first = time.Now()
		e.cur = b
		defer e.poke() // the dispatcher arms the deadline
	}
	r := e.newRequestLocked()
	r.b, r.row = b, b.n
	r.in = b.in[b.n*e.inSize : (b.n+1)*e.inSize]
	b.reqs[b.n] = r
	b.n++
	b.unfilled++
	if b.n == e.o.MaxBatch {
		b.closed = true
		e.cur = nil
		e.filling++
	}
	e.m.pending.Inc()
	e.waiting.Add(1)
	e.mu.Unlock()
	return r, nil
}

func (e *Engine) newRequestLocked() *Request {
	var r *Request
	if n := len(e.reqFree); n > 0 {
		r = e.reqFree[n-1]
		e.reqFree = e.reqFree[:n-1]
	} else {
		r = e.allocRequest()
	}
	r.submitted, r.cancelled, r.err, r.notify = false, false, nil, nil
	r.refs.Store(2) // the caller's and the engine's
	r.reserved = time.Now()
	return r
}

func (e *Engine) allocRequest() *Request {
	k := e.md.NumLogits
	r := &Request{
		e:      e,
		done:   make(chan struct{}, 1),
		logits: make([]float32, k),
		values: make([]float32, k),
		active: make([]bool, k),
	}
	if e.o.KeepFeatures {
		r.feats = make([]float32, e.md.FeatureDim)
	}
	r.res.Heads = make([]HeadResult, len(e.md.Heads))
	for i, h := range e.md.Heads {
		hr := &r.res.Heads[i]
		hr.Name, hr.Labels = h.Name, h.Labels
		hr.Values = r.values[h.Offset : h.Offset+len(h.Labels)]
		if h.Threshold != nil {
			hr.Active = r.active[h.Offset : h.Offset+len(h.Labels)]
		}
	}
	if k > 0 {
		r.res.Logits = r.logits
	}
	r.res.Features = r.feats
	return r
}

// Flush closes the batch taking reservations: it runs as soon as its
// rows are submitted and a runner is free, without waiting for MaxWait or
// more faces. With one submitting goroutine and a long MaxWait, batches
// are then exactly the runs of submissions between flushes (cut every
// MaxBatch): offline analysis uses this to get the same batches, and so
// bit-identical results, when it resumes.
func (e *Engine) Flush() {
	e.mu.Lock()
	b := e.cur
	if b != nil {
		b.closed = true
		e.cur = nil
		if b.unfilled == 0 {
			e.ready = append(e.ready, b)
		} else {
			e.filling++
		}
	}
	e.mu.Unlock()
	if b != nil {
		e.poke()
	}
}

// submit marks a row filled; a full batch whose rows are all filled is ready.
func (e *Engine) submit(r *Request) {
	e.mu.Lock()
	b := r.b
	b.unfilled--
	wake := false
	if b.unfilled == 0 {
		if b.closed {
			e.filling--
			e.ready = append(e.ready, b)
		}
		wake = true
	}
	e.mu.Unlock()
	if wake {
		e.poke()
	}
}

// nextBatch blocks until a batch should run: a ready full batch, or the
// filling batch once its deadline passed (or when stopping). It returns nil
// when stopping and nothing is left.
func (e *Engine) nextBatch() *batch {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var wait time.Duration = -1
		e.mu.Lock()
		if len(e.ready) > 0 {
			b := e.ready[0]
			copy(e.ready, e.ready[1:])
			e.ready[len(e.ready)-1] = nil
			e.ready = e.ready[:len(e.ready)-1]
			e.handOffLocked(b)
			e.mu.Unlock()
			return b
		}
		if b := e.cur; b != nil && b.unfilled == 0 {
			left := time.Until(b.first.Add(e.o.MaxWait))
			if e.stopping || left <= 0 {
				b.closed = true
				e.cur = nil
				e.handOffLocked(b)
				e.mu.Unlock()
				return b
			}
			wait = left
		}
		if e.stopping && e.cur == nil && e.filling == 0 {
			e.mu.Unlock()
			return nil
		}
		e.mu.Unlock()
		if wait < 0 {
			<-e.wake
			continue
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-e.wake:
		case <-timer.C:
		}
	}
}

// handOffLocked moves a batch from the queue to a runner: its faces no
// longer count against QueueLimit.
func (e *Engine) handOffLocked(b *batch) {
	now := time.Now()
	for i := 0; i < b.n; i++ {
		<-e.slots
		e.m.queueWait.Observe(now.Sub(b.reqs[i].reserved).Seconds())
	}
	e.m.pending.Sub(float64(b.n))
	e.waiting.Add(-int64(b.n))
	e.running.Add(1)
}

func (e *Engine) runLoop() {
	for {
		e.idle <- struct{}{}
		b, ok := <-e.runq
		if !ok {
			return
		}
		e.execute(b)
	}
}

func (e *Engine) execute(b *batch) {
	n := b.n
	start := time.Now()
	err := e.runSafely(b, n)
	took := time.Since(start)
	e.running.Add(-1)
	e.lastEnd.Store(time.Now().UnixNano())
	e.m.runSeconds.Observe(took.Seconds())
	e.stats.runNanos.Add(int64(took))
	e.m.batchSize.Observe(float64(n))
	e.stats.batches.Add(1)
	if err != nil {
		e.m.failures.Inc()
		e.stats.failures.Add(1)
		err = fmt.Errorf("infer: batch of %d: %w", n, err)
	} else {
		e.m.faces.Add(float64(n))
		e.stats.faces.Add(int64(n))
	}
	for i := 0; i < n; i++ {
		r := b.reqs[i]
		b.reqs[i] = nil
		r.err = err
		if err == nil && !r.cancelled {
			r.err = e.decodeSafely(r, b, i)
		}
		notify := r.notify
		r.done <- struct{}{}
		if notify != nil {
			select { // a wake-up, not a count: one pending is enough
			case notify <- struct{}{}:
			default:
			}
		}
		r.unref()
	}
	e.mu.Lock()
	b.n, b.unfilled, b.closed = 0, 0, false
	e.free = append(e.free, b)
	e.mu.Unlock()
	select {
	case e.freed <- struct{}{}:
	default:
	}
}

// errPanic marks a batch whose run or decoding panicked.
var errPanic = errors.New("infer: panic")

// runSafely runs a batch, turning a panic (a runtime that misbehaves, a
// model whose outputs are not what its metadata says) into the batch's
// error: its faces fail and the engine goes on serving the others.
func (e *Engine) runSafely(b *batch, n int) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w in a run: %v", errPanic, p)
		}
	}()
	return e.r.run(b, n)
}

// decodeSafely is decode with a panic turned into the request's error.
func (e *Engine) decodeSafely(r *Request, b *batch, i int) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w decoding outputs: %v", errPanic, p)
		}
	}()
	e.decode(r, b, i)
	return nil
}
