package train

import (
	"math"
	"math/rand/v2"
	"testing"
)

// synthetic makes videos of feature vectors in which each label is a
// fixed function of a direction of the features, plus noise that is the
// same within a video (a person's look) and per frame; shuffle permutes the
// labels across all rows (the control: nothing to learn).
func synthetic(task Task, k, videos, frames, dim int, shuffle bool) *Data {
	r := rand.New(rand.NewPCG(7, uint64(k)))
	dirs := make([][]float64, k)
	for c := range dirs {
		dirs[c] = make([]float64, dim)
		for j := range dirs[c] {
			dirs[c][j] = r.NormFloat64() / math.Sqrt(float64(dim))
		}
	}
	d := &Data{Dim: dim}
	for v := range videos {
		look := make([]float64, dim)
		for j := range look {
			look[j] = 0.5 * r.NormFloat64()
		}
		for range frames {
			x := make([]float32, dim)
			for j := range x {
				x[j] = float32(look[j] + r.NormFloat64())
			}
			y := make([]float32, k)
			for c := range k {
				var s float64
				for j := range x {
					s += dirs[c][j] * float64(x[j])
				}
				switch task {
				case TaskAU:
					if s > 0.3 {
						y[c] = 1
					}
				default:
					y[c] = float32(math.Tanh(s))
				}
			}
			if task == TaskExpr {
				best := 0
				for c := range y {
					if y[c] > y[best] {
						best = c
					}
				}
				y = []float32{float32(best)}
			}
			if r.IntN(20) == 0 { // some frames unannotated
				for c := range y {
					y[c] = nan
				}
			}
			d.Add(string(rune('a'+v%26))+string(rune('0'+v/26)), x, y)
		}
	}
	if shuffle {
		r.Shuffle(len(d.Y), func(i, j int) { d.Y[i], d.Y[j] = d.Y[j], d.Y[i] })
	}
	return d
}

// TestFitLearnsAndControlStaysAtChance: each task's head learns labels
// that are a function of the features (AU mean F1 ≥ 0.8, VA mean CCC ≥
// 0.7, expression macro F1 ≥ 0.6 on held-out videos), and the same fit
// on shuffled labels stays at chance (F1 ≤ 0.6, CCC ≤ 0.2, macro F1 ≤
// 0.3).
func TestFitLearnsAndControlStaysAtChance(t *testing.T) {
	for _, c := range []struct {
		task       Task
		k          int
		want, ctrl float64
	}{
		{TaskAU, 4, 0.8, 0.6},
		{TaskVA, 2, 0.7, 0.2},
		{TaskExpr, 4, 0.6, 0.3},
	} {
		for _, shuffle := range []bool{false, true} {
			d := synthetic(c.task, c.k, 24, 120, 48, shuffle)
			tr, va, err := SplitByVideo(d, 0.25, 1)
			if err != nil {
				t.Fatal(err)
			}
			labels := []string{"l0", "l1", "l2", "l3"}[:c.k]
			h, s, err := Fit(string(c.task), c.task, labels, tr, va, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s shuffled=%v: %s %.3f after %d epochs (%d/%d frames) %v", c.task, shuffle, s.Metric, s.Mean, s.Epochs, s.Train, s.Val, s.PerLabel)
			switch {
			case !shuffle && s.Mean < c.want:
				t.Errorf("%s: %s %.3f, want ≥ %.2f", c.task, s.Metric, s.Mean, c.want)
			case shuffle && s.Mean > c.ctrl:
				t.Errorf("%s on shuffled labels: %s %.3f, want ≤ %.2f (chance)", c.task, s.Metric, s.Mean, c.ctrl)
			}
			if len(h.W) != c.k || len(h.W[0]) != 48 {
				t.Errorf("head %d×%d", len(h.W), len(h.W[0]))
			}
		}
	}
}

// TestSplitByVideo: no video on both sides, the same split every time.
func TestSplitByVideo(t *testing.T) {
	d := synthetic(TaskVA, 2, 10, 5, 4, false)
	a, b, err := SplitByVideo(d, 0.3, 9)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, v := range a.Video {
		seen[v] = true
	}
	for _, v := range b.Video {
		if seen[v] {
			t.Fatalf("video %s on both sides", v)
		}
	}
	if b.Len() != 15 || a.Len()+b.Len() != d.Len() {
		t.Errorf("split %d + %d of %d rows, want 3 videos (15 rows) for validation", a.Len(), b.Len(), d.Len())
	}
	a2, _, _ := SplitByVideo(d, 0.3, 9)
	if a2.Video[0] != a.Video[0] || a2.Len() != a.Len() {
		t.Error("split differs between runs")
	}
}

// TestHiddenLayer: a label no line separates (a face of the features'
// space: |x·d| > 0.8) defeats the linear head and not the one with a
// hidden ReLU layer (Options.Hidden).
func TestHiddenLayer(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	const dim = 16
	dir := make([]float64, dim)
	for j := range dir {
		dir[j] = r.NormFloat64() / math.Sqrt(dim)
	}
	d := &Data{Dim: dim}
	for v := range 20 {
		for range 150 {
			x := make([]float32, dim)
			var s float64
			for j := range x {
				x[j] = float32(r.NormFloat64())
				s += dir[j] * float64(x[j])
			}
			y := float32(0)
			if math.Abs(s) > 0.8 {
				y = 1
			}
			d.Add(string(rune('a'+v)), x, []float32{y})
		}
	}
	tr, va, err := SplitByVideo(d, 0.25, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, lin, err := Fit("au", TaskAU, []string{"AU1"}, tr, va, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, mlp, err := Fit("au", TaskAU, []string{"AU1"}, tr, va, Options{Hidden: 32})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a band label: F1 %.3f linear, %.3f with 32 hidden units", lin.Mean, mlp.Mean)
	if lin.Mean > 0.7 || mlp.Mean < 0.85 || len(h.W1) != 32 || len(h.W[0]) != 32 {
		t.Errorf("F1 %.3f linear (want ≤ 0.7), %.3f hidden (want ≥ 0.85); head %d×%d", lin.Mean, mlp.Mean, len(h.W1), len(h.W[0]))
	}
}
