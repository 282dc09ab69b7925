package abaw

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Options controls how predictions are matched with annotations.
type Options struct {
	// Face is the face_id to score. A negative value (use -1) selects, per
	// video, the face_id with the most rows (ties: the smallest). Note that
	// the zero Options selects face_id 0.
	Face int
	// Missing says what to do with a valid annotated frame that has no row
	// for the selected face: "zero" (or "") scores it as the prediction a
	// submission usually holds for a no-face frame (AU all 0, VA 0,0, EXPR
	// Neutral); "skip" leaves the frame out.
	Missing string
}

// Pair is the predictions and annotation of one video.
type Pair struct {
	Name string // video name, for messages
	Pred *Predictions
	Ann  *Annotation
}

// Video summarises one video of an evaluation.
type Video struct {
	Name string
	// Face is the face_id scored; -1 when the face was to be chosen
	// automatically and the predictions have no row at all.
	Face    int
	Frames  int // frames scored
	Invalid int // frames marked invalid in the annotation
	Missing int // valid frames with no row for Face (scored as zero or skipped)
	Extra   int // prediction frames past the end of the annotation (ignored)
}

// Result is the outcome of Evaluate.
type Result struct {
	Task   Task
	Labels []string
	// PerLabel holds the F1 of each AU or expression class, or the CCC of
	// valence and arousal, in Labels order.
	PerLabel []float64
	// Support holds, for AU and EXPR, the number of scored frames whose
	// annotation has the label; nil for VA.
	Support []int
	// Score is the mean of PerLabel: macro-F1 (AU, EXPR) or mean CCC (VA).
	Score float64
	// Accuracy is the fraction of scored frames whose class is right (EXPR
	// only; 0 otherwise).
	Accuracy float64
	// Frames counts the frames scored, Invalid the frames marked invalid in
	// the annotations, Missing the valid frames without a prediction row for
	// the selected face (included in Frames with Missing "zero", not with
	// "skip"); all summed over the videos.
	Frames, Invalid, Missing int
	Videos                   []Video
	// Notes are remarks worth showing with the result (labels without
	// positives, videos without the requested face, ...).
	Notes []string
}

// Evaluate computes the metric of task over all the pairs, pooling the
// frames of all videos. Every annotation must be of task and every
// predictions file must have the columns of task.
func Evaluate(task Task, pairs []Pair, o Options) (Result, error) {
	if task < AU || task > VA {
		return Result{}, fmt.Errorf("unknown task %v", task)
	}
	skip := false
	switch o.Missing {
	case "", "zero":
	case "skip":
		skip = true
	default:
		return Result{}, fmt.Errorf("missing policy %q, want zero or skip", o.Missing)
	}
	if len(pairs) == 0 {
		return Result{}, fmt.Errorf("no video to evaluate")
	}
	res := Result{Task: task, Labels: Labels(task)}
	nl := len(res.Labels)
	tp, fp, fn := make([]int, nl), make([]int, nl), make([]int, nl)
	var pred, gt [2][]float64 // VA
	correct := 0

	for _, p := range pairs {
		if p.Pred == nil || p.Ann == nil {
			return Result{}, fmt.Errorf("%s: predictions or annotation not read", p.Name)
		}
		if p.Ann.Task != task {
			return Result{}, fmt.Errorf("%s: annotation is for task %s, want %s", p.Ann.Path, p.Ann.Task, task)
		}
		if err := p.Pred.Check(task); err != nil {
			return Result{}, err
		}
		v := Video{Name: p.Name, Face: o.Face}
		if o.Face < 0 {
			if f, ok := p.Pred.MostFrequentFace(); ok {
				v.Face = f
			} else {
				v.Face = -1
				res.Notes = append(res.Notes, fmt.Sprintf("%s: no face in any frame; all its frames are missing", p.Name))
			}
		} else if p.Pred.count(o.Face) == 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: no row for face_id %d; all its frames are missing", p.Name, o.Face))
		}
		for k, lab := range p.Ann.Frames {
			if lab == nil {
				v.Invalid++
				continue
			}
			var r *Row
			if v.Face >= 0 {
				r = p.Pred.row(k+1, v.Face)
			}
			if r == nil {
				v.Missing++
				if skip {
					continue
				}
			}
			v.Frames++
			switch task {
			case AU:
				for i := range nl {
					g := lab[i] == 1
					pr := false
					if r != nil {
						if math.IsNaN(r.AU[i]) {
							return Result{}, fmt.Errorf("%s:%d: %s is NaN", p.Pred.Path, r.Line, auColumns[i])
						}
						pr = r.AU[i] >= 0.5
					}
					switch {
					case g && pr:
						tp[i]++
					case pr:
						fp[i]++
					case g:
						fn[i]++
					}
				}
			case EXPR:
				g, c := int(lab[0]), 0
				if r != nil {
					for i, x := range r.Expr {
						if math.IsNaN(x) {
							return Result{}, fmt.Errorf("%s:%d: %s is NaN", p.Pred.Path, r.Line, exprColumns[i])
						}
						if x > r.Expr[c] {
							c = i
						}
					}
				}
				if g == c {
					tp[g]++
					correct++
				} else {
					fn[g]++
					fp[c]++
				}
			case VA:
				var x [2]float64
				if r != nil {
					x = [2]float64{r.Valence, r.Arousal}
					for i := range x {
						if math.IsNaN(x[i]) {
							return Result{}, fmt.Errorf("%s:%d: %s is NaN", p.Pred.Path, r.Line, vaColumns[i])
						}
					}
				}
				for i := range x {
					pred[i] = append(pred[i], x[i])
					gt[i] = append(gt[i], lab[i])
				}
			}
		}
		for f := range p.Pred.Rows {
			if f > len(p.Ann.Frames) {
				v.Extra++
			}
		}
		if v.Extra > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %d predicted frames past the %d annotated ones ignored", p.Name, v.Extra, len(p.Ann.Frames)))
		}
		res.Frames += v.Frames
		res.Invalid += v.Invalid
		res.Missing += v.Missing
		res.Videos = append(res.Videos, v)
	}
	if res.Frames == 0 {
		return res, fmt.Errorf("%w (invalid %d, missing %d)", errNoFrames, res.Invalid, res.Missing)
	}

	res.PerLabel = make([]float64, nl)
	switch task {
	case AU, EXPR:
		res.Support = make([]int, nl)
		var none []string
		for i := range nl {
			res.PerLabel[i] = F1(tp[i], fp[i], fn[i])
			res.Support[i] = tp[i] + fn[i]
			if res.Support[i] == 0 {
				none = append(none, res.Labels[i])
			}
		}
		if len(none) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("no positive frame in the annotations (F1 is 0): %s", strings.Join(none, ", ")))
		}
		if task == EXPR {
			res.Accuracy = float64(correct) / float64(res.Frames)
		}
	case VA:
		for i := range nl {
			res.PerLabel[i] = CCC(pred[i], gt[i])
		}
	}
	for _, x := range res.PerLabel {
		res.Score += x
	}
	res.Score /= float64(nl)
	return res, nil
}

// count returns the number of rows of face.
func (p *Predictions) count(face int) int {
	n := 0
	for _, rows := range p.Rows {
		for _, r := range rows {
			if r.Face == face {
				n++
			}
		}
	}
	return n
}

// LoadPairs reads the predictions and annotations to evaluate and returns
// their common task.
//
// predPath and annPath are each a file or a folder. Two files make one pair.
// Two folders are paired by base name, <video>.csv with <video>.txt; files
// present on one side only are reported in warnings. A file and a folder
// pair the file with its namesake in the folder. The task of each
// annotation comes from its header; all must be of one task.
func LoadPairs(predPath, annPath string) (Task, []Pair, []string, error) {
	pi, err := os.Stat(predPath)
	if err != nil {
		return 0, nil, nil, err
	}
	ai, err := os.Stat(annPath)
	if err != nil {
		return 0, nil, nil, err
	}
	type paths struct{ name, pred, ann string }
	var list []paths
	var warnings []string
	switch {
	case !pi.IsDir() && !ai.IsDir():
		list = append(list, paths{stem(annPath), predPath, annPath})
	case !pi.IsDir():
		name := stem(predPath)
		list = append(list, paths{name, predPath, filepath.Join(annPath, name+".txt")})
	case !ai.IsDir():
		name := stem(annPath)
		list = append(list, paths{name, filepath.Join(predPath, name+".csv"), annPath})
	default:
		preds, err := listExt(predPath, ".csv")
		if err != nil {
			return 0, nil, nil, err
		}
		anns, err := listExt(annPath, ".txt")
		if err != nil {
			return 0, nil, nil, err
		}
		for _, name := range sortedKeys(anns) {
			if p, ok := preds[name]; ok {
				list = append(list, paths{name, p, anns[name]})
			} else {
				warnings = append(warnings, fmt.Sprintf("%s: no predictions %s.csv in %s; video not evaluated", anns[name], name, predPath))
			}
		}
		for _, name := range sortedKeys(preds) {
			if _, ok := anns[name]; !ok {
				warnings = append(warnings, fmt.Sprintf("%s: no annotation %s.txt in %s; video not evaluated", preds[name], name, annPath))
			}
		}
		if len(list) == 0 {
			return 0, nil, warnings, fmt.Errorf("no <video>.csv in %s matches a <video>.txt in %s", predPath, annPath)
		}
	}

	pairs := make([]Pair, len(list))
	byTask := map[Task][]string{}
	for i, l := range list {
		a, err := ReadAnnotation(l.ann)
		if err != nil {
			return 0, nil, warnings, err
		}
		pairs[i] = Pair{Name: l.name, Ann: a}
		byTask[a.Task] = append(byTask[a.Task], l.ann)
	}
	if len(byTask) > 1 {
		var parts []string
		for _, t := range []Task{AU, EXPR, VA} {
			if files := byTask[t]; len(files) > 0 {
				parts = append(parts, fmt.Sprintf("%s: %s", t, strings.Join(files, ", ")))
			}
		}
		return 0, nil, warnings, fmt.Errorf("annotations of several tasks (%s)", strings.Join(parts, "; "))
	}
	task := pairs[0].Ann.Task
	for i, l := range list {
		p, err := ReadPredictions(l.pred)
		if err != nil {
			return 0, nil, warnings, err
		}
		if err := p.Check(task); err != nil {
			return 0, nil, warnings, err
		}
		pairs[i].Pred = p
	}
	return task, pairs, warnings, nil
}

// stem returns the base name of path without its extension.
func stem(path string) string {
	b := filepath.Base(path)
	return strings.TrimSuffix(b, filepath.Ext(b))
}

// listExt maps the stem of each regular file of dir ending in ext to its path.
func listExt(dir, ext string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.EqualFold(filepath.Ext(e.Name()), ext) {
			continue
		}
		m[stem(e.Name())] = filepath.Join(dir, e.Name())
	}
	return m, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
