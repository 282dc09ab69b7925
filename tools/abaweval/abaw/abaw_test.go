package abaw

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const eps = 1e-9

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// csvText writes rows in OpenFace style (", " separators) with the columns
// in header order; a column a row does not set is written as 0.
func csvText(header []string, rows []map[string]string) string {
	var b strings.Builder
	b.WriteString(strings.Join(header, ", ") + "\n")
	for _, r := range rows {
		vals := make([]string, len(header))
		for i, h := range header {
			vals[i] = "0"
			if v, ok := r[h]; ok {
				vals[i] = v
			}
		}
		b.WriteString(strings.Join(vals, ", ") + "\n")
	}
	return b.String()
}

func near(a, b float64) bool { return math.Abs(a-b) <= eps }

func checkFloats(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i := range want {
		if !near(got[i], want[i]) {
			t.Errorf("%s[%d] = %.12f, want %.12f", what, i, got[i], want[i])
		}
	}
}

func mean(x ...float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func loadOne(t *testing.T, pred, ann string) (Task, []Pair) {
	t.Helper()
	task, pairs, warns, err := LoadPairs(pred, ann)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) > 0 {
		t.Fatalf("warnings: %v", warns)
	}
	return task, pairs
}

func loadFiles(t *testing.T, files func(*testing.T) (string, string)) (Task, []Pair) {
	t.Helper()
	pred, ann := files(t)
	return loadOne(t, pred, ann)
}

func evaluate(t *testing.T, task Task, pairs []Pair, o Options) Result {
	t.Helper()
	r, err := Evaluate(task, pairs, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func checkCounts(t *testing.T, r Result, frames, invalid, missing int) {
	t.Helper()
	if r.Frames != frames || r.Invalid != invalid || r.Missing != missing {
		t.Errorf("frames/invalid/missing = %d/%d/%d, want %d/%d/%d", r.Frames, r.Invalid, r.Missing, frames, invalid, missing)
	}
}

// ---------------------------------------------------------------- AU

// AU data, 10 frames; columns AU1 AU2 AU4 AU6 AU7 AU10 AU12 AU15 AU23 AU24 AU25 AU26.
//
//	frame  annotation                predictions face 0          face 1
//	 1     1 0 0 1 0 0 1 0 0 0 1 0   1 0 0 1 0 0 0 0 0 0 1 0     -
//	 2     1 1 0 0 0 0 1 0 0 0 1 1   0 1 0 0 0 0 1 0 0 0 1 0     all 1
//	 3     invalid (-1)              all 1                       -
//	 4     0 0 1 0 0 0 0 0 0 0 0 0   0 0 1 0 0 1 0 0 0 0 1 0     -
//	 5     1 0 1 1 0 0 1 0 0 0 1 0   1 0 0 1 0 0 1 0 0 0 1 0     all 0
//	 6     0 0 0 0 0 0 0 0 0 0 0 0   1 0 0 0 0 0 0 0 0 0 0 0     -
//	 7     invalid (-1)              -                           -
//	 8     0 1 0 1 0 0 1 0 0 1 1 0   0 1 0 1 0 0 1 0 0 0 1 0     -
//	 9     1 0 0 0 0 0 0 0 0 0 1 0   -                           1 0 0 0 0 0 0 0 0 0 1 0
//	10     0 0 0 0 0 0 1 0 0 0 0 0   (success=0 row, all 1)      -
//
// Face 0 has 7 rows (the success=0 row does not count), face 1 has 3: the
// automatic choice is face 0. Valid frames: 1 2 4 5 6 8 9 10 (8); invalid: 3 7.
// Face 0 misses frames 9 and 10; face 1 misses 1 4 6 8 10.
var auAnn = []string{
	"1,0,0,1,0,0,1,0,0,0,1,0",
	"1,1,0,0,0,0,1,0,0,0,1,1",
	"-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1",
	"0,0,1,0,0,0,0,0,0,0,0,0",
	"1,0,1,1,0,0,1,0,0,0,1,0",
	"0,0,0,0,0,0,0,0,0,0,0,0",
	"-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1",
	"0,1,0,1,0,0,1,0,0,1,1,0",
	"1,0,0,0,0,0,0,0,0,0,1,0",
	"0,0,0,0,0,0,1,0,0,0,0,0",
}

type auPred struct {
	frame, face, success int
	bits                 string
}

var auPreds = []auPred{
	{1, 0, 1, "1 0 0 1 0 0 0 0 0 0 1 0"},
	{2, 1, 1, "1 1 1 1 1 1 1 1 1 1 1 1"},
	{2, 0, 1, "0 1 0 0 0 0 1 0 0 0 1 0"},
	{3, 0, 1, "1 1 1 1 1 1 1 1 1 1 1 1"},
	{4, 0, 1, "0 0 1 0 0 1 0 0 0 0 1 0"},
	{5, 0, 1, "1 0 0 1 0 0 1 0 0 0 1 0"},
	{5, 1, 1, "0 0 0 0 0 0 0 0 0 0 0 0"},
	{6, 0, 1, "1 0 0 0 0 0 0 0 0 0 0 0"},
	{8, 0, 1, "0 1 0 1 0 0 1 0 0 0 1 0"},
	{9, 1, 1, "1 0 0 0 0 0 0 0 0 0 1 0"},
	{10, 0, 0, "1 1 1 1 1 1 1 1 1 1 1 1"},
}

// auHeader: order is not the canonical one and has extra columns.
var auHeader = []string{
	"face_id", "frame", "timestamp", "confidence", "success", "AU01_r", "AU12_r",
	"AU26_c", "AU25_c", "AU24_c", "AU23_c", "AU15_c", "AU12_c", "AU10_c", "AU07_c", "AU06_c", "AU04_c", "AU02_c", "AU01_c",
	"valence", "arousal", "expr_neutral",
}

func auCSV() string {
	var rows []map[string]string
	for _, p := range auPreds {
		m := map[string]string{
			"frame":      fmt.Sprint(p.frame),
			"face_id":    fmt.Sprint(p.face),
			"success":    fmt.Sprint(p.success),
			"timestamp":  fmt.Sprintf("%.3f", float64(p.frame-1)/30),
			"confidence": "0.98",
			"AU01_r":     "1.5",
			"AU12_r":     "0.25",
		}
		for i, b := range strings.Fields(p.bits) {
			m[auColumns[i]] = b
		}
		rows = append(rows, m)
	}
	return csvText(auHeader, rows)
}

// auText is the AU annotation with CRLF line ends and trailing blank lines.
func auText() string {
	return "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\r\n" + strings.Join(auAnn, "\r\n") + "\r\n\r\n\r\n"
}

func auFiles(t *testing.T) (pred, ann string) {
	dir := t.TempDir()
	return writeFile(t, dir, "vid.csv", auCSV()), writeFile(t, dir, "vid.txt", auText())
}

func TestAUZeroMostFrequentFace(t *testing.T) {
	task, pairs := loadFiles(t, auFiles)
	if task != AU {
		t.Fatalf("task %v, want AU", task)
	}
	r := evaluate(t, task, pairs, Options{Face: -1, Missing: "zero"})
	// Face 0, frames 1 2 4 5 6 8 9 10; frames 9 and 10 are predicted all 0.
	//  AU1  gt 1 1 0 1 0 0 1 0, pred 1 0 0 1 1 0 0 0: tp 2 (1,5) fp 1 (6) fn 2 (2,9) -> 4/(4+1+2) = 4/7
	//  AU2  gt 0 1 0 0 0 1 0 0, pred same:            tp 2                          -> 1
	//  AU4  gt 0 0 1 1 0 0 0 0, pred 0 0 1 0 0 0 0 0: tp 1 fn 1 (5)                 -> 2/3
	//  AU6  gt 1 0 0 1 0 1 0 0, pred same:            tp 3                          -> 1
	//  AU7  no positive, none predicted                                             -> 0
	//  AU10 no positive, fp 1 (4)                                                   -> 0
	//  AU12 gt 1 1 0 1 0 1 0 1, pred 0 1 0 1 0 1 0 0: tp 3 fn 2 (1,10)              -> 6/8 = 3/4
	//  AU15, AU23: no positive                                                      -> 0
	//  AU24 gt 8 only, not predicted: tp 0                                          -> 0
	//  AU25 gt 1 1 0 1 0 1 1 0, pred 1 1 1 1 0 1 0 0: tp 4 fp 1 (4) fn 1 (9)        -> 8/10 = 4/5
	//  AU26 gt 2 only, not predicted                                                -> 0
	want := []float64{4.0 / 7, 1, 2.0 / 3, 1, 0, 0, 3.0 / 4, 0, 0, 0, 4.0 / 5, 0}
	checkFloats(t, "F1", r.PerLabel, want)
	// mean = (4/7 + 1 + 2/3 + 1 + 3/4 + 4/5) / 12 = 2011/5040
	if !near(r.Score, 2011.0/5040) || !near(r.Score, mean(want...)) {
		t.Errorf("score %.12f, want %.12f", r.Score, 2011.0/5040)
	}
	checkCounts(t, r, 8, 2, 2)
	if !slices.Equal(r.Support, []int{4, 2, 2, 3, 0, 0, 5, 0, 0, 1, 5, 1}) {
		t.Errorf("support %v", r.Support)
	}
	if len(r.Videos) != 1 || r.Videos[0].Face != 0 || r.Videos[0].Name != "vid" {
		t.Errorf("videos %+v, want vid with face 0", r.Videos)
	}
	if want := "no positive frame in the annotations (F1 is 0): AU7, AU10, AU15, AU23"; !slices.Contains(r.Notes, want) {
		t.Errorf("notes %q, want %q", r.Notes, want)
	}
	if !slices.Equal(r.Labels, auLabels) {
		t.Errorf("labels %v", r.Labels)
	}
	// The zero Missing policy is the default.
	r2 := evaluate(t, task, pairs, Options{Face: -1})
	checkFloats(t, "F1 (default policy)", r2.PerLabel, want)
}

func TestAUSkip(t *testing.T) {
	task, pairs := loadFiles(t, auFiles)
	r := evaluate(t, task, pairs, Options{Face: -1, Missing: "skip"})
	// Face 0, frames 9 and 10 left out: frames 1 2 4 5 6 8.
	//  AU1  gt 1 1 0 1 0 0, pred 1 0 0 1 1 0: tp 2 fp 1 fn 1 -> 4/6 = 2/3
	//  AU2  1; AU4 tp 1 fn 1 -> 2/3; AU6 1; AU7 AU10 AU15 AU23 0
	//  AU12 gt 1 1 0 1 0 1, pred 0 1 0 1 0 1: tp 3 fn 1 -> 6/7
	//  AU24 tp 0 -> 0
	//  AU25 gt 1 1 0 1 0 1, pred 1 1 1 1 0 1: tp 4 fp 1 -> 8/9
	//  AU26 positive only in frame 2, not predicted -> 0
	want := []float64{2.0 / 3, 1, 2.0 / 3, 1, 0, 0, 6.0 / 7, 0, 0, 0, 8.0 / 9, 0}
	checkFloats(t, "F1", r.PerLabel, want)
	// mean = (2/3 + 1 + 2/3 + 1 + 6/7 + 8/9) / 12 = 80/189
	if !near(r.Score, 80.0/189) {
		t.Errorf("score %.12f, want %.12f", r.Score, 80.0/189)
	}
	checkCounts(t, r, 6, 2, 2)
}

func TestAUFaceSelection(t *testing.T) {
	task, pairs := loadFiles(t, auFiles)
	r := evaluate(t, task, pairs, Options{Face: 1, Missing: "zero"})
	// Face 1: frame 2 all 1, frame 5 all 0, frame 9 AU1 AU25; the other valid
	// frames (1 4 6 8 10) are missing and predicted 0.
	//  AU1  gt at 1 2 5 9,  pred 2 9: tp 2 fn 2 -> 4/6 = 2/3
	//  AU2  gt at 2 8,      pred 2:   tp 1 fn 1 -> 2/3
	//  AU4  gt at 4 5,      pred 2:   tp 0      -> 0
	//  AU6  gt at 1 5 8,    pred 2:   tp 0      -> 0
	//  AU7 AU10 AU15 AU23: no positive -> 0
	//  AU12 gt at 1 2 5 8 10, pred 2: tp 1 fn 4 -> 2/6 = 1/3
	//  AU24 gt at 8,        pred 2:   tp 0      -> 0
	//  AU25 gt at 1 2 5 8 9, pred 2 9: tp 2 fn 3 -> 4/7
	//  AU26 gt at 2,        pred 2:   tp 1      -> 1
	want := []float64{2.0 / 3, 2.0 / 3, 0, 0, 0, 0, 1.0 / 3, 0, 0, 0, 4.0 / 7, 1}
	checkFloats(t, "F1", r.PerLabel, want)
	// mean = (2/3 + 2/3 + 1/3 + 4/7 + 1) / 12 = 17/63
	if !near(r.Score, 17.0/63) {
		t.Errorf("score %.12f, want %.12f", r.Score, 17.0/63)
	}
	checkCounts(t, r, 8, 2, 5)
	if r.Videos[0].Face != 1 {
		t.Errorf("face %d, want 1", r.Videos[0].Face)
	}

	// A face that never appears: every valid frame is missing, with a note.
	r = evaluate(t, task, pairs, Options{Face: 7, Missing: "zero"})
	checkCounts(t, r, 8, 2, 8)
	if r.Score != 0 || !strings.Contains(strings.Join(r.Notes, "\n"), "no row for face_id 7") {
		t.Errorf("score %v notes %q", r.Score, r.Notes)
	}
	if _, err := Evaluate(task, pairs, Options{Face: 7, Missing: "skip"}); err == nil {
		t.Error("no frame to score: want an error")
	}
}

func TestMostFrequentFaceTie(t *testing.T) {
	p, err := ParsePredictions(strings.NewReader("frame,face_id\n1,3\n1,2\n2,3\n2,2\n3,5\n"), "x.csv")
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := p.MostFrequentFace(); !ok || f != 2 {
		t.Errorf("face %d %v, want 2 (tie between 2 and 3: the smallest)", f, ok)
	}
	p, err = ParsePredictions(strings.NewReader("frame,face_id,success\n1,0,0\n"), "y.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.MostFrequentFace(); ok || p.Failed != 1 {
		t.Errorf("no successful row: ok %v failed %d", ok, p.Failed)
	}
}

// ---------------------------------------------------------------- EXPR

// EXPR data, 10 frames (classes: 0 Neutral 1 Anger 2 Disgust 3 Fear
// 4 Happiness 5 Sadness 6 Surprise 7 Other):
//
//	frame    1  2  3  4  5  6  7  8  9  10
//	truth    0  4 -1  4  5  6  0 -1  4  1
//	face 0   0  4  3  5  5  6  4  0  4  -   (arg-max of the probabilities)
//	face 1                      0            (fewer rows: not used)
var exprAnn = []string{"0", "4", "-1", "4", "5", "6", "0", "-1", "4", "1"}

// exprHeader: shuffled expression columns, no AU or VA column.
var exprHeader = []string{"frame", "face_id", "success", "expr_other", "expr_surprise", "expr_neutral", "expr_anger", "expr_disgust", "expr_fear", "expr_happiness", "expr_sadness"}

func exprRow(frame, face int, probs ...float64) map[string]string {
	m := map[string]string{"frame": fmt.Sprint(frame), "face_id": fmt.Sprint(face), "success": "1"}
	for i, p := range probs {
		m[exprColumns[i]] = fmt.Sprint(p)
	}
	return m
}

func exprFiles(t *testing.T) (pred, ann string) {
	dir := t.TempDir()
	rows := []map[string]string{
		exprRow(1, 0, .70, .05, .05, .05, .05, .05, .03, .02),
		exprRow(2, 0, .10, .05, .05, .05, .60, .05, .05, .05),
		exprRow(3, 0, .10, .10, .10, .40, .10, .10, .05, .05),
		exprRow(4, 0, .10, .10, .10, .10, .20, .30, .05, .05),
		exprRow(5, 0, .05, .05, .05, .05, .05, .65, .05, .05),
		exprRow(6, 0, .05, .05, .05, .05, .05, .05, .65, .05),
		exprRow(7, 1, .90, .01, .01, .01, .03, .01, .02, .01),
		exprRow(7, 0, .30, .05, .05, .05, .40, .05, .05, .05),
		exprRow(8, 0, .90, .02, .02, .02, .01, .01, .01, .01),
		exprRow(9, 0, .10, .10, .10, .10, .30, .10, .10, .10),
	}
	return writeFile(t, dir, "v.csv", csvText(exprHeader, rows)),
		writeFile(t, dir, "v.txt", "neutral, anger, disgust, fear, happiness, sadness, surprise, other\n"+strings.Join(exprAnn, "\n")+"\n")
}

func TestEXPR(t *testing.T) {
	task, pairs := loadFiles(t, exprFiles)
	if task != EXPR {
		t.Fatalf("task %v", task)
	}
	r := evaluate(t, task, pairs, Options{Face: -1, Missing: "zero"})
	// Valid frames 1 2 4 5 6 7 9 10; frame 10 has no row -> Neutral.
	// (truth, pred): (0,0) (4,4) (4,5) (5,5) (6,6) (0,4) (4,4) (1,0)
	//  Neutral   truth 1 7,   pred 1 10: tp 1 fp 1 fn 1 -> 2/4 = 1/2
	//  Anger     truth 10,    pred -:    tp 0           -> 0
	//  Disgust   never                                  -> 0
	//  Fear      never (predicted only on invalid frame 3) -> 0
	//  Happiness truth 2 4 9, pred 2 7 9: tp 2 fp 1 fn 1 -> 4/6 = 2/3
	//  Sadness   truth 5,     pred 4 5:  tp 1 fp 1      -> 2/3
	//  Surprise  truth 6,     pred 6:    tp 1           -> 1
	//  Other     never                                  -> 0
	// macro = (1/2 + 2/3 + 2/3 + 1) / 8 = (17/6) / 8 = 17/48
	// accuracy = 5 right (1 2 5 6 9) / 8
	checkFloats(t, "F1", r.PerLabel, []float64{0.5, 0, 0, 0, 2.0 / 3, 2.0 / 3, 1, 0})
	if !near(r.Score, 17.0/48) || !near(r.Accuracy, 5.0/8) {
		t.Errorf("score %.12f accuracy %.12f, want %.12f %.12f", r.Score, r.Accuracy, 17.0/48, 5.0/8)
	}
	checkCounts(t, r, 8, 2, 1)
	if !slices.Equal(r.Support, []int{2, 1, 0, 0, 3, 1, 1, 0}) {
		t.Errorf("support %v", r.Support)
	}

	r = evaluate(t, task, pairs, Options{Face: -1, Missing: "skip"})
	// Frame 10 left out: (0,0) (4,4) (4,5) (5,5) (6,6) (0,4) (4,4)
	//  Neutral truth 1 7, pred 1: tp 1 fn 1 -> 2/3; Anger now never -> 0
	//  Happiness 2/3, Sadness 2/3, Surprise 1, others 0
	// macro = (2/3 + 2/3 + 2/3 + 1) / 8 = 3/8; accuracy 5/7
	checkFloats(t, "F1 skip", r.PerLabel, []float64{2.0 / 3, 0, 0, 0, 2.0 / 3, 2.0 / 3, 1, 0})
	if !near(r.Score, 3.0/8) || !near(r.Accuracy, 5.0/7) {
		t.Errorf("skip: score %.12f accuracy %.12f, want %.12f %.12f", r.Score, r.Accuracy, 3.0/8, 5.0/7)
	}
	checkCounts(t, r, 7, 2, 1)
}

// ---------------------------------------------------------------- VA

// VA data, 8 frames:
//
//	frame   truth (v, a)   prediction (v, a)
//	 1      ( 0.5,  0.2)   (0.4,  0.0)
//	 2      (-5,    0.1)   (0.9,  0.9)    invalid
//	 3      ( 0.1, -0.4)   (0.0, -0.2)
//	 4      (-0.3, -5  )   (0.2,  0.2)    invalid
//	 5      ( 0.0,  0.6)   (0.2,  0.4)
//	 6      (-0.5,  0.0)   -              missing
//	 7      ( 0.7,  0.2)   (0.6,  0.2)
//	 8      (-5,   -5  )   (0.3,  0.3)    invalid
var vaAnn = []string{"0.5,0.2", "-5,0.1", "0.1,-0.4", "-0.3,-5", "0.0,0.6", "-0.5,0.0", "0.7,0.2", "-5,-5"}

func vaCSV(rows [][3]float64) string {
	var b strings.Builder
	b.WriteString("frame, face_id, timestamp, confidence, success, valence, arousal\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "%d, 0, %.3f, 0.9, 1, %g, %g\n", int(r[0]), (r[0]-1)/30, r[1], r[2])
	}
	return b.String()
}

func vaText() string { return "Valence,Arousal\n" + strings.Join(vaAnn, "\n") + "\n" }

func TestVA(t *testing.T) {
	dir := t.TempDir()
	pred := writeFile(t, dir, "v.csv", vaCSV([][3]float64{
		{1, 0.4, 0.0}, {2, 0.9, 0.9}, {3, 0.0, -0.2}, {4, 0.2, 0.2}, {5, 0.2, 0.4}, {7, 0.6, 0.2}, {8, 0.3, 0.3},
	}))
	ann := writeFile(t, dir, "v.txt", vaText())
	task, pairs := loadOne(t, pred, ann)
	if task != VA {
		t.Fatalf("task %v", task)
	}
	r := evaluate(t, task, pairs, Options{Face: -1})
	// Valid frames 1 3 5 6 7, frame 6 predicted (0,0).
	// Valence: y = 0.5 0.1 0.0 -0.5 0.7, x = 0.4 0.0 0.2 0.0 0.6
	//   mean y = 0.8/5 = 0.16, mean x = 1.2/5 = 0.24
	//   dy = 0.34 -0.06 -0.16 -0.66 0.54, dx = 0.16 -0.24 -0.04 -0.24 0.36
	//   var y = (.1156+.0036+.0256+.4356+.2916)/5 = .872/5 = .1744
	//   var x = (.0256+.0576+.0016+.0576+.1296)/5 = .272/5 = .0544
	//   cov   = (.0544+.0144+.0064+.1584+.1944)/5 = .428/5 = .0856
	//   (mean x - mean y)^2 = .08^2 = .0064
	//   CCC = .1712 / (.1744+.0544+.0064) = .1712/.2352 = 107/147
	// Arousal: y = 0.2 -0.4 0.6 0.0 0.2, x = 0.0 -0.2 0.4 0.0 0.2
	//   mean y = 0.6/5 = 0.12, mean x = 0.4/5 = 0.08
	//   dy = .08 -.52 .48 -.12 .08, dx = -.08 -.28 .32 -.08 .12
	//   var y = (.0064+.2704+.2304+.0144+.0064)/5 = .528/5 = .1056
	//   var x = (.0064+.0784+.1024+.0064+.0144)/5 = .208/5 = .0416
	//   cov   = (-.0064+.1456+.1536+.0096+.0096)/5 = .312/5 = .0624
	//   (mean diff)^2 = .04^2 = .0016
	//   CCC = .1248 / (.1056+.0416+.0016) = .1248/.1488 = 26/31
	checkFloats(t, "CCC", r.PerLabel, []float64{107.0 / 147, 26.0 / 31})
	if !near(r.Score, (107.0/147+26.0/31)/2) {
		t.Errorf("score %.12f", r.Score)
	}
	checkCounts(t, r, 5, 3, 1)
	if r.Support != nil || r.Accuracy != 0 {
		t.Errorf("support %v accuracy %v for VA", r.Support, r.Accuracy)
	}

	r = evaluate(t, task, pairs, Options{Face: -1, Missing: "skip"})
	// Frame 6 left out.
	// Valence: y = .5 .1 0 .7 (mean .325), x = .4 0 .2 .6 (mean .3)
	//   dy = .175 -.225 -.325 .375, dx = .1 -.3 -.1 .3
	//   var y = (.030625+.050625+.105625+.140625)/4 = .3275/4 = .081875
	//   var x = (.01+.09+.01+.09)/4 = .05
	//   cov   = (.0175+.0675+.0325+.1125)/4 = .23/4 = .0575
	//   CCC = .115 / (.081875+.05+.000625) = .115/.1325 = 46/53
	// Arousal: y = .2 -.4 .6 .2 (mean .15), x = 0 -.2 .4 .2 (mean .1)
	//   dy = .05 -.55 .45 .05, dx = -.1 -.3 .3 .1
	//   var y = (.0025+.3025+.2025+.0025)/4 = .1275, var x = .2/4 = .05
	//   cov   = (-.005+.165+.135+.005)/4 = .075
	//   CCC = .15 / (.1275+.05+.0025) = .15/.18 = 5/6
	checkFloats(t, "CCC skip", r.PerLabel, []float64{46.0 / 53, 5.0 / 6})
	checkCounts(t, r, 4, 3, 1)
}

func TestVAPerfectAndConstant(t *testing.T) {
	dir := t.TempDir()
	ann := writeFile(t, dir, "v.txt", vaText())
	perfect := writeFile(t, dir, "perfect.csv", vaCSV([][3]float64{
		{1, 0.5, 0.2}, {2, 0.1, 0.1}, {3, 0.1, -0.4}, {4, 0.0, 0.0}, {5, 0.0, 0.6}, {6, -0.5, 0.0}, {7, 0.7, 0.2},
	}))
	task, pairs := loadOne(t, perfect, ann)
	r := evaluate(t, task, pairs, Options{Face: -1})
	checkFloats(t, "CCC perfect", r.PerLabel, []float64{1, 1})
	if !near(r.Score, 1) {
		t.Errorf("score %v, want 1", r.Score)
	}

	constant := writeFile(t, dir, "const.csv", vaCSV([][3]float64{
		{1, 0.3, -0.1}, {3, 0.3, -0.1}, {5, 0.3, -0.1}, {6, 0.3, -0.1}, {7, 0.3, -0.1},
	}))
	task, pairs = loadOne(t, constant, ann)
	r = evaluate(t, task, pairs, Options{Face: -1})
	// cov(constant, y) = 0 -> CCC 0 (the denominator is var(y) + bias^2 > 0).
	checkFloats(t, "CCC constant", r.PerLabel, []float64{0, 0})
}

func TestCCCAndF1(t *testing.T) {
	if c := CCC([]float64{1, 2, 3}, []float64{1, 2, 3}); !near(c, 1) {
		t.Errorf("identical: %v", c)
	}
	// x = -y: cov = -var, CCC = -2var/(2var) = -1
	if c := CCC([]float64{-1, 0, 1}, []float64{1, 0, -1}); !near(c, -1) {
		t.Errorf("opposite: %v", c)
	}
	// x = 1 2 3 (mean 2, var 2/3), y = 2 3 4 (mean 3, var 2/3), cov 2/3:
	// CCC = (4/3) / (2/3 + 2/3 + 1) = 4/7
	if c := CCC([]float64{1, 2, 3}, []float64{2, 3, 4}); !near(c, 4.0/7) {
		t.Errorf("shifted: %v, want 4/7", c)
	}
	if c := CCC([]float64{0.2, 0.2}, []float64{0.2, 0.2}); c != 1 {
		t.Errorf("equal constants: %v, want 1", c)
	}
	if c := CCC(nil, nil); !math.IsNaN(c) {
		t.Errorf("empty: %v, want NaN", c)
	}
	if f := F1(0, 3, 4); f != 0 {
		t.Errorf("F1 without tp %v", f)
	}
	if f := F1(3, 1, 2); !near(f, 6.0/9) {
		t.Errorf("F1(3,1,2) = %v, want 2/3", f)
	}
}

// ---------------------------------------------------------------- errors

func TestMissingColumns(t *testing.T) {
	dir := t.TempDir()
	var header []string
	for _, h := range auHeader {
		if h != "AU04_c" && h != "AU26_c" {
			header = append(header, h)
		}
	}
	pred := writeFile(t, dir, "v.csv", csvText(header, []map[string]string{{"frame": "1", "success": "1"}}))
	ann := writeFile(t, dir, "v.txt", auText())
	_, _, _, err := LoadPairs(pred, ann)
	if err == nil || !strings.Contains(err.Error(), "AU04_c") || !strings.Contains(err.Error(), "AU26_c") || !strings.Contains(err.Error(), "v.csv") {
		t.Fatalf("error %v, want one naming v.csv, AU04_c and AU26_c", err)
	}

	// The same file can still be scored for VA, not for EXPR.
	p, err := ReadPredictions(pred)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(VA); err != nil {
		t.Errorf("VA: %v", err)
	}
	err = p.Check(EXPR)
	if err == nil || strings.Contains(err.Error(), "expr_neutral") || !strings.Contains(err.Error(), "expr_anger, expr_disgust") {
		t.Errorf("EXPR error %v: want expr_anger... but not expr_neutral (present)", err)
	}
	a, err := ReadAnnotation(ann)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Evaluate(AU, []Pair{{Name: "v", Pred: p, Ann: a}}, Options{Face: -1}); err == nil || !strings.Contains(err.Error(), "AU04_c, AU26_c") {
		t.Errorf("Evaluate: %v", err)
	}

	// No frame column at all.
	if _, err := ParsePredictions(strings.NewReader("face_id, valence\n0, 1\n"), "n.csv"); err == nil || !strings.Contains(err.Error(), `"frame"`) {
		t.Errorf("no frame column: %v", err)
	}
}

func TestMalformedAnnotation(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, text, want string }{
		{"short.txt", "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n" + auAnn[0] + "\n" + auAnn[1] + "\n1,0,0\n", "short.txt:4: AU row has 3 values, want 12"},
		{"value.txt", "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n1,0,0,1,0,0,2,0,0,0,1,0\n", "value.txt:2: AU12 value 2"},
		{"expr.txt", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n3\nx\n", "expr.txt:4: value 1 \"x\" is not a number"},
		{"exprrange.txt", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n8\n", "exprrange.txt:3: expression 8"},
		{"va.txt", "valence,arousal\n0.1,0.2\n0.3\n", "va.txt:3: VA row has 1 values, want 2"},
		{"varange.txt", "valence,arousal\n0.1,0.2\n1.5,0\n", "varange.txt:3: valence 1.5 out of [-1,1]"},
		{"blank.txt", "valence,arousal\n0.1,0.2\n\n0.3,0.4\n", "blank.txt:3: blank line inside the data"},
		{"header.txt", "frame,valence,arousal\n1,0.1,0.2\n", "header.txt:1: unknown annotation header"},
		{"empty.txt", "", "empty.txt: empty annotation file"},
	}
	for _, c := range cases {
		_, err := ReadAnnotation(writeFile(t, dir, c.name, c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestAnnotationTolerance(t *testing.T) {
	a, err := ParseAnnotation(strings.NewReader("\ufeffvalence , AROUSAL\r\n0.1, 0.2\r\n-5,-5\r\n  \r\n\r\n"), "x.txt")
	if err != nil {
		t.Fatal(err)
	}
	if a.Task != VA || len(a.Frames) != 2 || a.Frames[1] != nil || a.Valid() != 1 || !slices.Equal(a.Frames[0], []float64{0.1, 0.2}) {
		t.Errorf("annotation %+v", a)
	}
	a, err = ParseAnnotation(strings.NewReader("AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n"), "h.txt")
	if err != nil || len(a.Frames) != 0 || a.Task != AU {
		t.Errorf("header only: %+v %v", a, err)
	}
}

func TestMalformedPredictions(t *testing.T) {
	cases := []struct{ text, want string }{
		{"frame, face_id, valence, arousal\n1, 0, 0.1, 0.2\n1, 0, 0.3, 0.4\n", "p.csv:3: second row for frame 1 face_id 0 (first on line 2)"},
		{"frame, face_id, valence, arousal\n1, 0, abc, 0.2\n", "p.csv:2: valence value \"abc\" is not a number"},
		{"frame, face_id, valence, arousal\n0, 0, 0.1, 0.2\n", "p.csv:2: frame 0, want >= 1"},
		{"frame, face_id, valence, arousal\n1.5, 0, 0.1, 0.2\n", "p.csv:2: frame value \"1.5\" is not an integer"},
		{"frame, face_id, valence, arousal\n1, 0, 0.1\n", "p.csv"},
		{"", "p.csv: empty predictions file"},
	}
	for _, c := range cases {
		_, err := ParsePredictions(strings.NewReader(c.text), "p.csv")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.text, err, c.want)
		}
	}
}

func TestMixedTasksInFolders(t *testing.T) {
	dir := t.TempDir()
	preds, anns := filepath.Join(dir, "pred"), filepath.Join(dir, "ann")
	for _, d := range []string{preds, anns} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, preds, "a.csv", auCSV())
	writeFile(t, preds, "b.csv", auCSV())
	writeFile(t, anns, "a.txt", auText())
	writeFile(t, anns, "b.txt", vaText())
	_, _, _, err := LoadPairs(preds, anns)
	if err == nil || !strings.Contains(err.Error(), "several tasks") || !strings.Contains(err.Error(), "a.txt") || !strings.Contains(err.Error(), "b.txt") {
		t.Fatalf("error %v, want several tasks naming a.txt and b.txt", err)
	}

	// Evaluate refuses an annotation of another task too.
	p, _ := ReadPredictions(filepath.Join(preds, "a.csv"))
	a, _ := ReadAnnotation(filepath.Join(anns, "b.txt"))
	if _, err := Evaluate(AU, []Pair{{Name: "b", Pred: p, Ann: a}}, Options{Face: -1}); err == nil || !strings.Contains(err.Error(), "task VA, want AU") {
		t.Errorf("Evaluate: %v", err)
	}
	if _, err := Evaluate(AU, nil, Options{}); err == nil {
		t.Error("no pair: want an error")
	}
	if _, err := Evaluate(AU, []Pair{{Name: "b", Pred: p, Ann: a}}, Options{Missing: "drop"}); err == nil || !strings.Contains(err.Error(), "drop") {
		t.Errorf("bad policy: %v", err)
	}
}

func TestLoadPairsFolders(t *testing.T) {
	dir := t.TempDir()
	preds, anns := filepath.Join(dir, "pred"), filepath.Join(dir, "ann")
	for _, d := range []string{preds, anns, filepath.Join(preds, "sub.csv")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, preds, "b.csv", auCSV())
	writeFile(t, preds, "a.csv", auCSV())
	writeFile(t, preds, "only_pred.csv", auCSV())
	writeFile(t, preds, "notes.md", "x")
	writeFile(t, anns, "a.txt", auText())
	writeFile(t, anns, "b.txt", auText())
	writeFile(t, anns, "only_ann.txt", auText())
	task, pairs, warns, err := LoadPairs(preds, anns)
	if err != nil {
		t.Fatal(err)
	}
	if task != AU || len(pairs) != 2 || pairs[0].Name != "a" || pairs[1].Name != "b" {
		t.Fatalf("task %v pairs %d %+v", task, len(pairs), pairs)
	}
	w := strings.Join(warns, "\n")
	if len(warns) != 2 || !strings.Contains(w, "only_pred.csv") || !strings.Contains(w, "only_ann.txt") {
		t.Errorf("warnings %q", warns)
	}
	// Pooling two copies of the same video doubles every count and keeps
	// every F1.
	r := evaluate(t, task, pairs, Options{Face: -1})
	checkFloats(t, "F1", r.PerLabel, []float64{4.0 / 7, 1, 2.0 / 3, 1, 0, 0, 3.0 / 4, 0, 0, 0, 4.0 / 5, 0})
	checkCounts(t, r, 16, 4, 4)

	// A file and a folder: the namesake is used.
	_, pairs, _, err = LoadPairs(filepath.Join(preds, "b.csv"), anns)
	if err != nil || len(pairs) != 1 || pairs[0].Ann.Path != filepath.Join(anns, "b.txt") {
		t.Errorf("file+folder: %v %+v", err, pairs)
	}
	_, pairs, _, err = LoadPairs(preds, filepath.Join(anns, "a.txt"))
	if err != nil || len(pairs) != 1 || pairs[0].Pred.Path != filepath.Join(preds, "a.csv") {
		t.Errorf("folder+file: %v %+v", err, pairs)
	}
	if _, _, _, err = LoadPairs(preds, filepath.Join(anns, "only_ann.txt")); err == nil {
		t.Error("folder without the namesake: want an error")
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err = LoadPairs(empty, anns); err == nil {
		t.Error("no match: want an error")
	}
}

func TestExtraFramesAndNaN(t *testing.T) {
	dir := t.TempDir()
	ann := writeFile(t, dir, "v.txt", "valence,arousal\n0.1,0.2\n0.3,0.1\n")
	pred := writeFile(t, dir, "v.csv", vaCSV([][3]float64{{1, 0.1, 0.2}, {2, 0.3, 0.1}, {3, 0.5, 0.5}, {4, 0.5, 0.5}}))
	task, pairs := loadOne(t, pred, ann)
	r := evaluate(t, task, pairs, Options{Face: -1})
	if r.Videos[0].Extra != 2 || !strings.Contains(strings.Join(r.Notes, "\n"), "2 predicted frames past the 2 annotated") {
		t.Errorf("extra %d notes %q", r.Videos[0].Extra, r.Notes)
	}
	checkFloats(t, "CCC", r.PerLabel, []float64{1, 1})

	pred = writeFile(t, dir, "n.csv", "frame, face_id, valence, arousal\n1, 0, NaN, 0.2\n")
	p, err := ReadPredictions(pred)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Evaluate(VA, []Pair{{Name: "n", Pred: p, Ann: pairs[0].Ann}}, Options{Face: -1}); err == nil || !strings.Contains(err.Error(), "n.csv:2: valence is NaN") {
		t.Errorf("NaN: %v", err)
	}
}

func TestTaskString(t *testing.T) {
	if AU.String() != "AU" || EXPR.String() != "EXPR" || VA.String() != "VA" || Task(9).String() != "Task(9)" {
		t.Error("Task.String")
	}
	if len(Labels(AU)) != 12 || len(Labels(EXPR)) != 8 || len(Labels(VA)) != 2 || Labels(Task(9)) != nil {
		t.Error("Labels")
	}
	if !slices.Equal(Columns(VA), []string{"valence", "arousal"}) {
		t.Error("Columns")
	}
}
