package stream

import (
	"math"
	"time"
)

// OneEuro is the 1€ filter (Casiez, Roussel, Vogel, CHI 2012): a low-pass
// filter whose cutoff rises with the signal's speed, so that still signals
// are steady and fast changes are followed with little lag.
type OneEuro struct {
	MinCutoff float64 // Hz: the cutoff at rest (lower: smoother)
	Beta      float64 // cutoff increase per unit of speed (higher: less lag)
	DCutoff   float64 // Hz: the cutoff of the speed estimate

	x, dx float64
	t     time.Duration
	init  bool
}

func smoothingFactor(cutoff, dt float64) float64 {
	r := 2 * math.Pi * cutoff * dt
	return r / (r + 1)
}

// Filter adds a sample taken at time t and returns the filtered value.
// Samples at the same or an earlier time return the last output.
func (f *OneEuro) Filter(x float64, t time.Duration) float64 {
	if !f.init {
		f.x, f.dx, f.t, f.init = x, 0, t, true
		return x
	}
	dt := (t - f.t).Seconds()
	if dt <= 0 {
		return f.x
	}
	f.t = t
	dx := (x - f.x) / dt
	f.dx += smoothingFactor(f.DCutoff, dt) * (dx - f.dx)
	cutoff := f.MinCutoff + f.Beta*math.Abs(f.dx)
	f.x += smoothingFactor(cutoff, dt) * (x - f.x)
	return f.x
}

// SmoothOptions configure per-face smoothing; Enabled false passes raw values.
type SmoothOptions struct {
	Enabled                  bool
	MinCutoff, Beta, DCutoff float64
}

// Smoother keeps one 1€ filter per face and channel. It belongs to one
// goroutine (a stream's collector).
type Smoother struct {
	o     SmoothOptions
	faces map[string][]OneEuro
}

// NewSmoother makes a smoother.
func NewSmoother(o SmoothOptions) *Smoother {
	return &Smoother{o: o, faces: map[string][]OneEuro{}}
}

// Apply filters a face's values in place (t: the time of the frame the
// values come from). Softmax heads are renormalised after filtering, so
// probabilities still sum to one.
func (s *Smoother) Apply(face string, t time.Duration, heads [][]float32, softmax []bool) {
	if !s.o.Enabled {
		return
	}
	n := 0
	for _, h := range heads {
		n += len(h)
	}
	fs := s.faces[face]
	if len(fs) != n {
		fs = make([]OneEuro, n)
		for i := range fs {
			fs[i] = OneEuro{MinCutoff: s.o.MinCutoff, Beta: s.o.Beta, DCutoff: s.o.DCutoff}
		}
		s.faces[face] = fs
	}
	i := 0
	for hi, h := range heads {
		var sum float32
		for j, v := range h {
			h[j] = float32(fs[i].Filter(float64(v), t))
			sum += h[j]
			i++
		}
		if hi < len(softmax) && softmax[hi] && sum > 0 {
			for j := range h {
				h[j] /= sum
			}
		}
	}
}

// Forget drops a face's filter state (its track ended).
func (s *Smoother) Forget(face string) { delete(s.faces, face) }

// Faces is the number of faces with filter state.
func (s *Smoother) Faces() int { return len(s.faces) }
