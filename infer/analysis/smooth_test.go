package analysis

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestOneEuro(t *testing.T) {
	// Constant input: constant output.
	f := OneEuro{MinCutoff: 1, Beta: 0.05, DCutoff: 1}
	for i := 0; i < 50; i++ {
		if v := f.Filter(0.3, time.Duration(i)*40*time.Millisecond); math.Abs(v-0.3) > 1e-12 {
			t.Fatalf("constant input drifted to %v", v)
		}
	}
	// Noise: the filtered signal varies less than the raw one.
	rng := rand.New(rand.NewPCG(1, 1))
	g := OneEuro{MinCutoff: 1, Beta: 0.05, DCutoff: 1}
	var rawVar, outVar float64
	for i := 0; i < 500; i++ {
		x := 0.5 + 0.1*rng.NormFloat64()
		y := g.Filter(x, time.Duration(i)*40*time.Millisecond)
		if i > 50 {
			rawVar += (x - 0.5) * (x - 0.5)
			outVar += (y - 0.5) * (y - 0.5)
		}
	}
	if outVar > rawVar/4 {
		t.Errorf("variance %v after filtering, %v before: want at least 4× less", outVar, rawVar)
	}
	// A step is followed: within half a second most of the way there.
	h := OneEuro{MinCutoff: 1, Beta: 0.5, DCutoff: 1}
	var y float64
	for i := 0; i < 40; i++ {
		x := 0.0
		if i >= 20 {
			x = 1
		}
		y = h.Filter(x, time.Duration(i)*40*time.Millisecond)
		if i == 32 && y < 0.8 {
			t.Errorf("0.5 s after a step: %v, want > 0.8", y)
		}
	}
}

func TestFiltersSoftmaxAndOff(t *testing.T) {
	on := &Smoothing{Enabled: true, MinCutoff: 1, Beta: 0, DCutoff: 1}
	var fs filters
	var first float32
	for i := 0; i < 10; i++ {
		p := float32(i%2) * 0.8
		heads := [][]float32{{0.5}, {0.1 + p, 0.9 - p}}
		fs.apply(on, time.Duration(i)*40*time.Millisecond, heads, []bool{false, true})
		if sum := heads[1][0] + heads[1][1]; math.Abs(float64(sum-1)) > 1e-5 {
			t.Fatalf("softmax head sums to %v after smoothing", sum)
		}
		if i == 0 {
			first = heads[1][0]
		} else if i == 1 && heads[1][0] > first+0.5 {
			t.Fatalf("a jump of 0.8 passed unsmoothed: %v after %v", heads[1][0], first)
		}
	}
	if len(fs) != 3 {
		t.Fatalf("%d filters for 3 values", len(fs))
	}
	var raw filters
	heads := [][]float32{{0.25}}
	raw.apply(&Smoothing{}, 0, heads, nil)
	next := [][]float32{{0.75}}
	raw.apply(&Smoothing{}, time.Second, next, nil)
	if len(raw) != 0 || heads[0][0] != 0.25 || next[0][0] != 0.75 {
		t.Fatal("disabled smoothing changed values or kept state")
	}
}
