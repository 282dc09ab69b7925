package daemon

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/train"
)

// labelFlags collects -labels: an ABAW folder (AU_Set, VA_Set or
// EXPR_Set; the task from its header) or task=FILE.csv.
type labelFlags []string

func (l *labelFlags) String() string     { return strings.Join(*l, ",") }
func (l *labelFlags) Set(s string) error { *l = append(*l, s); return nil }

// Report is what `affectd train` measured, written as report.json beside
// the model.
type Report struct {
	Date     time.Time              `json:"date"`
	Base     string                 `json:"base"`
	Features string                 `json:"features"`
	Seed     uint64                 `json:"seed"`
	Hidden   int                    `json:"hidden"`
	ValShare float64                `json:"val_fraction"`
	Heads    map[string]train.Score `json:"heads"`
	Missing  map[string]int         `json:"labelled_frames_without_features"`
	Seconds  float64                `json:"seconds"`
}

func trainCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var labels labelFlags
	fs.Var(&labels, "labels", "labels: an ABAW folder (AU_Set, VA_Set or EXPR_Set, with or without Train_Set/ and Validation_Set/), or au=FILE.csv, va=FILE.csv, expr=FILE.csv (video,frame,<labels>; expr: one class column); repeat for several heads")
	features := fs.String("features", "", "folder of <video>.npy and <video>.index.csv (affectd features)")
	base := fs.String("base", "", "the encoder as ONNX (tools/export of the released checkpoint, no heads): the heads are attached to it")
	out := fs.String("out", "trained", "output folder: model.onnx, heads.json, report.json, report.png")
	val := fs.Float64("val", 0.2, "share of the videos held out for validation (whole videos)")
	seed := fs.Uint64("seed", 1, "seed of the split")
	hidden := fs.Int("hidden", 0, "a hidden ReLU layer of this width in every head (0: linear heads, the standard probe)")
	classes := fs.String("classes", strings.Join(train.ExprNames, ","), "expression classes of an expr=FILE.csv, in index order")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: affectd train -labels AU_Set [-labels VA_Set ...] -features DIR -base ENCODER.onnx [-out DIR]

Fits heads on MAE-Face features (affectd features) from labels, with whole
videos held out for validation: class-balanced logistic regression per AU
with per-AU thresholds tuned for F1, tanh regression of valence and arousal
against MSE + (1 − CCC), softmax regression of expression with class
weights, each stopped early on the validation split; -hidden N puts a
hidden ReLU layer of N units in every head. Writes the encoder
with the heads (model.onnx: affectd run -model loads it), the heads alone
(heads.json), the validation metrics (report.json, and a table here) and a
picture of them (report.png: AU F1 bars, valence/arousal scatter).

flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(labels) == 0 || *features == "" || *base == "" || fs.NArg() > 0 || !(*val > 0 && *val < 1) || *hidden < 0 || *hidden > 4096 {
		fs.Usage()
		return 2
	}
	start := time.Now()
	if err := runTrain(labels, *features, *base, *out, *val, *seed, *hidden, strings.Split(*classes, ","), start, stdout); err != nil {
		fmt.Fprintf(stderr, "affectd train: %v\n", err)
		return 1
	}
	return 0
}

func runTrain(labelArgs []string, featDir, base, outDir string, valShare float64, seed uint64, hidden int, classes []string, start time.Time, stdout io.Writer) error {
	var sets []*train.Labels
	seen := map[train.Task]bool{}
	for _, a := range labelArgs {
		var l *train.Labels
		var err error
		if task, path, ok := strings.Cut(a, "="); ok {
			t := train.Task(task)
			if t != train.TaskAU && t != train.TaskVA && t != train.TaskExpr {
				return fmt.Errorf("-labels %s: the task is au, va or expr", a)
			}
			l, err = train.ReadCSV(path, t, classes)
		} else {
			l, err = train.ReadABAW(a)
		}
		if err != nil {
			return err
		}
		if seen[l.Task] {
			return fmt.Errorf("-labels %s: a second set of %s labels", a, l.Task)
		}
		seen[l.Task] = true
		sets = append(sets, l)
	}
	baseModel, err := os.ReadFile(base)
	if err != nil {
		return err
	}
	feats, err := train.ReadFeatures(featDir)
	if err != nil {
		return err
	}
	rep := Report{Date: time.Now().UTC().Truncate(time.Second), Base: base, Features: featDir, Seed: seed, Hidden: hidden, ValShare: valShare,
		Heads: map[string]train.Score{}, Missing: map[string]int{}}
	var heads []*train.Head
	var auHead *train.Head
	var vaPoints [][2][2]float32 // validation frames: (true, predicted) valence and arousal
	for _, l := range sets {
		d, missing, err := train.Join(feats, l)
		if err != nil {
			return fmt.Errorf("%s labels: %w", l.Task, err)
		}
		tr, va, err := train.SplitByVideo(d, valShare, seed)
		if err != nil {
			return fmt.Errorf("%s labels: %w", l.Task, err)
		}
		h, sc, err := train.Fit(string(l.Task), l.Task, l.Names, tr, va, train.Options{Hidden: hidden})
		if err != nil {
			return err
		}
		heads = append(heads, h)
		rep.Heads[h.Name], rep.Missing[h.Name] = sc, missing
		switch l.Task {
		case train.TaskAU:
			auHead = h
		case train.TaskVA:
			p := make([]float32, 2)
			for i := range va.Len() {
				y := va.Y[i]
				if math.IsNaN(float64(y[0])) {
					continue
				}
				h.Predict(va.Row(i), p)
				vaPoints = append(vaPoints, [2][2]float32{{y[0], p[0]}, {y[1], p[1]}})
			}
		}
	}
	sum := sha256.Sum256(baseModel)
	info := &infer.ModelInfo{Name: "affectd-train", Backbone: "vit", CheckpointSHA256: hex.EncodeToString(sum[:]), Precision: "fp32"}
	model, err := train.AttachHeads(baseModel, heads, info)
	if err != nil {
		return err
	}
	rep.Seconds = time.Since(start).Seconds()
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	hj, _ := json.MarshalIndent(heads, "", " ")
	rj, _ := json.MarshalIndent(rep, "", "  ")
	var plot bytes.Buffer
	var auScore train.Score
	if auHead != nil {
		auScore = rep.Heads[auHead.Name]
	}
	if err := train.Plot(&plot, auHead, auScore, vaPoints); err != nil {
		return err
	}
	for name, b := range map[string][]byte{"model.onnx": model, "heads.json": hj, "report.json": rj, "report.png": plot.Bytes()} {
		if err := writeFileAtomic(filepath.Join(outDir, name), b); err != nil {
			return err
		}
	}
	printReport(stdout, &rep, heads)
	fmt.Fprintf(stdout, "wrote %s (affectd run -model %s)\n", outDir, filepath.Join(outDir, "model.onnx"))
	return nil
}

// printReport prints the validation metrics as ABAW reports them.
func printReport(w io.Writer, rep *Report, heads []*train.Head) {
	fmt.Fprintf(w, "%-6s %-10s %8s %8s %8s %7s\n", "head", "label", "metric", "value", "frames", "epochs")
	for _, h := range heads {
		s := rep.Heads[h.Name]
		names := make([]string, 0, len(s.PerLabel))
		for n := range s.PerLabel {
			names = append(names, n)
		}
		sort.Slice(names, func(i, j int) bool { return indexOf(h.Labels, names[i]) < indexOf(h.Labels, names[j]) })
		for _, n := range names {
			fmt.Fprintf(w, "%-6s %-10s %8s %8.3f\n", h.Name, n, s.Metric, s.PerLabel[n])
		}
		fmt.Fprintf(w, "%-6s %-10s %8s %8.3f %8d %7d\n", h.Name, "mean", s.Metric, s.Mean, s.Val, s.Epochs)
	}
}

func indexOf(l []string, s string) int {
	for i, x := range l {
		if x == s {
			return i
		}
	}
	return len(l)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
