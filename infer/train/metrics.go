package train

import "math"

// F1 is the F1 score of binary predictions (pred[i] ≥ threshold) against
// truth (0 or 1); 0 when neither has a positive.
func F1(pred, truth []float32, threshold float32) float64 {
	var tp, fp, fn float64
	for i, p := range pred {
		pos, want := p >= threshold, truth[i] >= 0.5
		switch {
		case pos && want:
			tp++
		case pos:
			fp++
		case want:
			fn++
		}
	}
	if tp == 0 {
		return 0
	}
	return 2 * tp / (2*tp + fp + fn)
}

// BestThreshold is the threshold on pred that gives the highest F1
// against truth, among the midpoints of the sorted scores (and 0.5), with
// that F1.
func BestThreshold(pred, truth []float32) (float32, float64) {
	best, bestF := float32(0.5), F1(pred, truth, 0.5)
	// 99 quantile candidates: cheap and enough for a score in [0, 1].
	for q := 1; q < 100; q++ {
		th := float32(q) / 100
		if f := F1(pred, truth, th); f > bestF {
			best, bestF = th, f
		}
	}
	return best, bestF
}

// CCC is Lin's concordance correlation coefficient of x and y.
func CCC(x, y []float32) float64 {
	n := float64(len(x))
	if n == 0 {
		return 0
	}
	var mx, my float64
	for i := range x {
		mx += float64(x[i])
		my += float64(y[i])
	}
	mx, my = mx/n, my/n
	var vx, vy, cov float64
	for i := range x {
		dx, dy := float64(x[i])-mx, float64(y[i])-my
		vx += dx * dx
		vy += dy * dy
		cov += dx * dy
	}
	vx, vy, cov = vx/n, vy/n, cov/n
	d := vx + vy + (mx-my)*(mx-my)
	if d == 0 {
		return 0
	}
	return 2 * cov / d
}

// MacroF1 is the mean over classes 0..k-1 of each class's F1 (one against
// the rest) of predicted class indices against true ones.
func MacroF1(pred, truth []int, k int) float64 {
	var sum float64
	for c := range k {
		var tp, fp, fn float64
		for i := range pred {
			switch {
			case pred[i] == c && truth[i] == c:
				tp++
			case pred[i] == c:
				fp++
			case truth[i] == c:
				fn++
			}
		}
		if tp > 0 {
			sum += 2 * tp / (2*tp + fp + fn)
		}
	}
	return sum / float64(k)
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}
