package ortenv

import (
	"errors"
	"sync"
)

// Pool is n runners of one model (each typically an ONNX Runtime session
// on one intra-op thread with its tensors and buffers), shared by calls
// from any number of goroutines: Do takes a free runner, waiting while all
// n are busy, so that up to n calls run at once, each on a runner of its
// own, and no more than n. Close waits for the calls in flight and then
// closes every runner. Do and Close are safe for concurrent use.
type Pool[R interface{ Close() error }] struct {
	mu        sync.RWMutex // Do holds it shared; Close exclusively
	free      chan R
	runners   []R
	closed    bool
	errClosed error
}

// NewPool makes n runners (n < 1 means 1) with newRunner. errClosed is what
// Do returns after Close. On error newRunner returns the part of the runner
// it made, with the error: NewPool closes it (R's Close must accept it) and
// every runner made before, and returns the error as it came.
func NewPool[R interface{ Close() error }](n int, errClosed error, newRunner func() (R, error)) (*Pool[R], error) {
	n = max(n, 1)
	p := &Pool[R]{free: make(chan R, n), errClosed: errClosed}
	for range n {
		r, err := newRunner()
		p.runners = append(p.runners, r)
		p.free <- r
		if err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// Do runs fn on a free runner, waiting while all are busy, and gives the
// runner back when fn returns; fn has the runner to itself and must not
// keep it. Do returns fn's error, or the pool's errClosed (without running
// fn) after Close.
func (p *Pool[R]) Do(fn func(R) error) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return p.errClosed
	}
	r := <-p.free
	defer func() { p.free <- r }()
	return fn(r)
}

// Close closes every runner once, after the calls in flight, and joins
// their errors; it is safe to call twice (the second call returns nil).
func (p *Pool[R]) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, r := range p.runners {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}
