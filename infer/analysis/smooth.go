package analysis

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

// Smoothing configures the temporal filter on a face's outputs; Enabled
// false passes raw values.
type Smoothing struct {
	Enabled                  bool
	MinCutoff, Beta, DCutoff float64
}

// filters is one 1€ filter per value of a group of series (a face's model
// heads, or its landmark AUs and blend shapes). It belongs to the face.
type filters []OneEuro

// apply filters the series in place (t: the time of the frame they come
// from). Softmax series are renormalised after filtering, so that
// probabilities still sum to one. A change in the number of values starts
// the filters afresh.
func (fs *filters) apply(o *Smoothing, t time.Duration, series [][]float32, softmax []bool) {
	if !o.Enabled {
		return
	}
	n := 0
	for _, s := range series {
		n += len(s)
	}
	if len(*fs) != n {
		*fs = make(filters, n)
		for i := range *fs {
			(*fs)[i] = OneEuro{MinCutoff: o.MinCutoff, Beta: o.Beta, DCutoff: o.DCutoff}
		}
	}
	i := 0
	for si, s := range series {
		var sum float32
		for j, v := range s {
			s[j] = float32((*fs)[i].Filter(float64(v), t))
			sum += s[j]
			i++
		}
		if si < len(softmax) && softmax[si] && sum > 0 {
			for j := range s {
				s[j] /= sum
			}
		}
	}
}
