package track

import (
	"math"
	"math/rand/v2"
	"testing"
)

// bruteAssign tries every assignment of rows to distinct columns (or none).
func bruteAssign(cost [][]float64, forbid float64) float64 {
	rows, cols := len(cost), len(cost[0])
	best := math.Inf(1)
	used := make([]bool, cols)
	var rec func(i int, sum float64, matched int)
	// Maximise the number of allowed matches first, then minimise cost,
	// as assign does with its large padding cost.
	bestMatched := -1
	rec = func(i int, sum float64, matched int) {
		if i == rows {
			if matched > bestMatched || (matched == bestMatched && sum < best) {
				bestMatched, best = matched, sum
			}
			return
		}
		rec(i+1, sum, matched)
		for j := 0; j < cols; j++ {
			if !used[j] && cost[i][j] < forbid {
				used[j] = true
				rec(i+1, sum+cost[i][j], matched+1)
				used[j] = false
			}
		}
	}
	rec(0, 0, 0)
	return best
}

func TestAssignMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 300; trial++ {
		rows, cols := 1+rng.IntN(5), 1+rng.IntN(5)
		cost := make([][]float64, rows)
		for i := range cost {
			cost[i] = make([]float64, cols)
			for j := range cost[i] {
				cost[i][j] = rng.Float64()
				if rng.IntN(4) == 0 {
					cost[i][j] = 2 // forbidden
				}
			}
		}
		got := assign(cost, 1.5)
		sum, seen := 0.0, map[int]bool{}
		for i, j := range got {
			if j < 0 {
				continue
			}
			if seen[j] || cost[i][j] >= 1.5 {
				t.Fatalf("trial %d: invalid assignment %v for %v", trial, got, cost)
			}
			seen[j] = true
			sum += cost[i][j]
		}
		if want := bruteAssign(cost, 1.5); math.Abs(sum-want) > 1e-9 {
			t.Fatalf("trial %d: cost %v, brute force %v (%v)", trial, sum, want, cost)
		}
	}
}

func TestAssignPrefersGlobalOptimum(t *testing.T) {
	// Greedy would give row 0 column 0 (0.1) and leave row 1 with 0.9.
	cost := [][]float64{{0.1, 0.2}, {0.15, 0.9}}
	got := assign(cost, 1)
	if got[0] != 1 || got[1] != 0 {
		t.Fatalf("assign = %v, want [1 0]", got)
	}
}

func TestKalmanFollowsConstantVelocity(t *testing.T) {
	k := newKalman1(100, 50)
	x := float32(100)
	for i := 0; i < 50; i++ {
		x += 4 // 100 px/s at 25 fps
		k.predict(0.04)
		k.correct(x, 50)
	}
	if math.Abs(float64(k.v-100)) > 5 {
		t.Errorf("velocity %v, want ≈100", k.v)
	}
	// Prediction over 3 frames without measurements stays on the line.
	for i := 0; i < 3; i++ {
		k.predict(0.04)
	}
	if math.Abs(float64(k.x-(x+12))) > 1 {
		t.Errorf("predicted %v, want ≈%v", k.x, x+12)
	}
}
