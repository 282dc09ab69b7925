package infer

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// PacerOptions configure fair scheduling.
type PacerOptions struct {
	// Headroom is the share of the engine's measured capacity the pacer
	// plans to use (default 0.85): the rest absorbs bursts, so queues stay
	// short and latency flat.
	Headroom float64
	// MaxRate caps each face's analyses per second (0: every frame).
	MaxRate float64
	// Every is how often the interval is recomputed (default 250ms).
	Every time.Duration
}

// Pacer shares the engine fairly among every tracked face of every stream.
// Streams report their load (faces, frame rate); the pacer measures the
// engine's capacity (faces per second of model time) and sets one interval
// that every face waits between two analyses. When the model keeps up the
// interval is zero (every face, every frame); when it cannot, every face is
// still analysed, at the same lower rate, whatever its stream. Safe for
// concurrent use; Run owns the recomputation.
type Pacer struct {
	e *Engine
	o PacerOptions

	mu       sync.Mutex
	load     map[string]streamLoad
	last     Stats
	capacity float64 // faces per second, EWMA; 0 until measured

	interval atomic.Int64 // ns
}

type streamLoad struct {
	faces int
	fps   float64
}

// NewPacer makes a pacer for an engine.
func NewPacer(e *Engine, o PacerOptions) *Pacer {
	if o.Headroom <= 0 || o.Headroom > 1 {
		o.Headroom = 0.85
	}
	if o.Every <= 0 {
		o.Every = 250 * time.Millisecond
	}
	p := &Pacer{e: e, o: o, load: map[string]streamLoad{}}
	if o.MaxRate > 0 {
		p.interval.Store(int64(float64(time.Second) / o.MaxRate))
	}
	return p
}

// Report sets a stream's current load: how many faces it tracks and its
// frame rate. Streams call it as their load changes (cheap).
func (p *Pacer) Report(stream string, faces int, fps float64) {
	p.mu.Lock()
	p.load[stream] = streamLoad{faces, fps}
	p.mu.Unlock()
}

// Forget removes a stream's load.
func (p *Pacer) Forget(stream string) {
	p.mu.Lock()
	delete(p.load, stream)
	p.mu.Unlock()
}

// Interval is the least time between two analyses of one face.
func (p *Pacer) Interval() time.Duration { return time.Duration(p.interval.Load()) }

// Due says whether a face analysed last at `last` (zero: never) should be
// analysed at `now`. The check allows half a frame of slack, so a face due
// every k frames is not pushed to k+1 by jitter.
func (p *Pacer) Due(last, now time.Time, frame time.Duration) bool {
	if last.IsZero() {
		return true
	}
	return now.Sub(last)+frame/2 >= p.Interval()
}

// Capacity is the measured engine capacity in faces per second (0 before
// the first batches).
func (p *Pacer) Capacity() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.capacity
}

// Run recomputes the interval until ctx ends. The capacity counts only
// the batches run after Run starts (not a warm-up).
func (p *Pacer) Run(ctx context.Context) error {
	p.mu.Lock()
	p.last = p.e.Stats() // capacity is measured from now on
	p.mu.Unlock()
	t := time.NewTicker(p.o.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.update()
		}
	}
}

func (p *Pacer) update() {
	st := p.e.Stats()
	p.mu.Lock()
	defer p.mu.Unlock()
	// Capacity: faces per second of model time, times the runners.
	dFaces := st.Faces - p.last.Faces
	dRun := st.RunTime - p.last.RunTime
	if dFaces > 0 && dRun > 0 {
		c := float64(dFaces) / dRun.Seconds() * float64(p.e.o.Runners)
		if p.capacity == 0 {
			p.capacity = c
		} else {
			p.capacity += 0.3 * (c - p.capacity)
		}
	}
	p.last = st
	var faces int
	var demand float64
	for _, l := range p.load {
		rate := l.fps
		if p.o.MaxRate > 0 && (rate == 0 || rate > p.o.MaxRate) {
			rate = p.o.MaxRate
		}
		faces += l.faces
		demand += float64(l.faces) * rate
	}
	var iv time.Duration
	if p.o.MaxRate > 0 {
		iv = time.Duration(float64(time.Second) / p.o.MaxRate)
	}
	if budget := p.o.Headroom * p.capacity; p.capacity > 0 && faces > 0 && demand > budget {
		iv = max(iv, time.Duration(float64(faces)/budget*float64(time.Second)))
	}
	p.interval.Store(int64(iv))
}
