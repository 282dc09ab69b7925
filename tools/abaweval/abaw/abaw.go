package abaw

import (
	"fmt"
	"math"
)

// Task is one of the ABAW tasks.
type Task int

// The ABAW tasks.
const (
	AU Task = iota
	EXPR
	VA
)

// String returns "AU", "EXPR" or "VA".
func (t Task) String() string {
	switch t {
	case AU:
		return "AU"
	case EXPR:
		return "EXPR"
	case VA:
		return "VA"
	}
	return fmt.Sprintf("Task(%d)", int(t))
}

var (
	auLabels   = []string{"AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"}
	exprLabels = []string{"Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other"}
	vaLabels   = []string{"valence", "arousal"}

	// Prediction CSV columns of each task, in label order.
	auColumns   = []string{"AU01_c", "AU02_c", "AU04_c", "AU06_c", "AU07_c", "AU10_c", "AU12_c", "AU15_c", "AU23_c", "AU24_c", "AU25_c", "AU26_c"}
	exprColumns = []string{"expr_neutral", "expr_anger", "expr_disgust", "expr_fear", "expr_happiness", "expr_sadness", "expr_surprise", "expr_other"}
	vaColumns   = []string{"valence", "arousal"}
)

// Labels returns the label names of a task, in the order of the annotation
// columns (AU, VA) or class indices (EXPR).
func Labels(t Task) []string {
	switch t {
	case AU:
		return append([]string(nil), auLabels...)
	case EXPR:
		return append([]string(nil), exprLabels...)
	case VA:
		return append([]string(nil), vaLabels...)
	}
	return nil
}

// Columns returns the prediction CSV columns a task needs, in label order.
func Columns(t Task) []string {
	switch t {
	case AU:
		return append([]string(nil), auColumns...)
	case EXPR:
		return append([]string(nil), exprColumns...)
	case VA:
		return append([]string(nil), vaColumns...)
	}
	return nil
}

// F1 returns the F1 score 2·tp / (2·tp + fp + fn) of the positive class, and
// 0 when there is no true positive (as scikit-learn with zero_division=0).
func F1(tp, fp, fn int) float64 {
	if tp == 0 {
		return 0
	}
	return 2 * float64(tp) / float64(2*tp+fp+fn)
}

// CCC returns the Concordance Correlation Coefficient of x and y,
//
//	2·cov(x,y) / (var(x) + var(y) + (mean(x) − mean(y))²),
//
// with population (1/N) moments. It is symmetric in x and y. When the
// denominator is zero (x and y constant and equal) the agreement is perfect
// and CCC is 1; empty or unequal-length inputs give NaN.
func CCC(x, y []float64) float64 {
	n := len(x)
	if n == 0 || n != len(y) {
		return math.NaN()
	}
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(n)
	my /= float64(n)
	var vx, vy, cov float64
	for i := range x {
		dx, dy := x[i]-mx, y[i]-my
		vx += dx * dx
		vy += dy * dy
		cov += dx * dy
	}
	vx /= float64(n)
	vy /= float64(n)
	cov /= float64(n)
	den := vx + vy + (mx-my)*(mx-my)
	if den == 0 {
		return 1
	}
	return 2 * cov / den
}
