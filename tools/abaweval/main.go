package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/affectd/affectd/tools/abaweval/abaw"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command: it returns the exit status (0 success, 1 failure,
// 2 bad usage).
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("abaweval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: abaweval -pred PATH -ann PATH [-face N] [-missing zero|skip]")
		fmt.Fprintln(stderr, "Scores affectd predictions (<video>.csv) against Aff-Wild2 annotations (<video>.txt) with the ABAW metrics.")
		fs.PrintDefaults()
	}
	pred := fs.String("pred", "", "predictions: a `<video>.csv` file or a folder of them")
	ann := fs.String("ann", "", "annotations: a `<video>.txt` file or a folder of them")
	face := fs.Int("face", -1, "face_id to score; -1: per video, the face_id with the most rows")
	missing := fs.String("missing", "zero", "frames without a prediction row: zero (AU 0, VA 0,0, EXPR Neutral) or skip")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "abaweval: unexpected arguments %q\n", fs.Args())
		return 2
	case *pred == "" || *ann == "":
		fmt.Fprintln(stderr, "abaweval: -pred and -ann are required")
		fs.Usage()
		return 2
	case *face < -1:
		fmt.Fprintf(stderr, "abaweval: -face %d: want a face_id >= 0, or -1\n", *face)
		return 2
	case *missing != "zero" && *missing != "skip":
		fmt.Fprintf(stderr, "abaweval: -missing %q: want zero or skip\n", *missing)
		return 2
	}

	task, pairs, warnings, err := abaw.LoadPairs(*pred, *ann)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "abaweval: warning: %s\n", w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "abaweval: %v\n", err)
		return 1
	}
	res, err := abaw.Evaluate(task, pairs, abaw.Options{Face: *face, Missing: *missing})
	if err != nil {
		fmt.Fprintf(stderr, "abaweval: %v\n", err)
		return 1
	}
	report(stdout, res, *missing)
	return 0
}

// report writes the per-video and per-label tables and the summary line.
func report(w io.Writer, res abaw.Result, missing string) {
	fmt.Fprintf(w, "task %s, %d video(s), frames without a prediction: %s\n\n", res.Task, len(res.Videos), missing)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "video\tface_id\tscored\tinvalid\tmissing")
	for _, v := range res.Videos {
		face := fmt.Sprint(v.Face)
		if v.Face < 0 {
			face = "none"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", v.Name, face, v.Frames, v.Invalid, v.Missing)
	}
	tw.Flush()
	fmt.Fprintln(w)

	metric, mean := "F1", "macro-F1"
	if res.Task == abaw.VA {
		metric, mean = "CCC", "mean CCC"
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if res.Support != nil {
		fmt.Fprintf(tw, "label\t%s\tpositives\n", metric)
		for i, l := range res.Labels {
			fmt.Fprintf(tw, "%s\t%.4f\t%d\n", l, res.PerLabel[i], res.Support[i])
		}
		fmt.Fprintf(tw, "%s\t%.4f\n", mean, res.Score)
		if res.Task == abaw.EXPR {
			fmt.Fprintf(tw, "accuracy\t%.4f\n", res.Accuracy)
		}
	} else {
		fmt.Fprintf(tw, "label\t%s\n", metric)
		for i, l := range res.Labels {
			fmt.Fprintf(tw, "%s\t%.4f\n", l, res.PerLabel[i])
		}
		fmt.Fprintf(tw, "%s\t%.4f\n", mean, res.Score)
	}
	tw.Flush()
	if len(res.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range res.Notes {
			fmt.Fprintf(w, "note: %s\n", n)
		}
	}
	fmt.Fprintf(w, "abaw: task=%s score=%.4f frames=%d invalid=%d missing=%d\n",
		res.Task, res.Score, res.Frames, res.Invalid, res.Missing)
}
