package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The EXPR data of the abaw package tests, as two videos (see
// abaw/abaw_test.go for the arithmetic).
const exprHeader = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n"

const predHeader = "frame, face_id, timestamp, confidence, success, expr_neutral, expr_anger, expr_disgust, expr_fear, expr_happiness, expr_sadness, expr_surprise, expr_other, valence, arousal\n"

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestRunFolders(t *testing.T) {
	dir := t.TempDir()
	preds, anns := filepath.Join(dir, "pred"), filepath.Join(dir, "ann")
	// Video a: frames 1..5, truth 0 4 -1 4 5, predictions 0 4 3 5 (frame 5 none).
	write(t, anns, "a.txt", exprHeader+"0\n4\n-1\n4\n5\n")
	write(t, preds, "a.csv", predHeader+
		"1, 0, 0.000, 0.9, 1, 0.7, 0.05, 0.05, 0.05, 0.05, 0.05, 0.03, 0.02, 0, 0\n"+
		"2, 0, 0.033, 0.9, 1, 0.1, 0.05, 0.05, 0.05, 0.6, 0.05, 0.05, 0.05, 0, 0\n"+
		"3, 0, 0.067, 0.9, 1, 0.1, 0.1, 0.1, 0.4, 0.1, 0.1, 0.05, 0.05, 0, 0\n"+
		"4, 0, 0.100, 0.9, 1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.05, 0.05, 0, 0\n")
	// Video b: frames 1..3, truth 6 0 1, predictions 6 4 (face 2), frame 3 none;
	// face 5 appears once (frame 2, Neutral) and is not chosen.
	write(t, anns, "b.txt", exprHeader+"6\n0\n1\n")
	write(t, preds, "b.csv", predHeader+
		"1, 2, 0.000, 0.9, 1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.65, 0.05, 0, 0\n"+
		"2, 5, 0.033, 0.9, 1, 0.9, 0.01, 0.01, 0.01, 0.03, 0.01, 0.02, 0.01, 0, 0\n"+
		"2, 2, 0.033, 0.9, 1, 0.3, 0.05, 0.05, 0.05, 0.4, 0.05, 0.05, 0.05, 0, 0\n")
	write(t, preds, "c.csv", predHeader)

	// Pooled, missing=zero: valid frames a1 a2 a4 a5 b1 b2 b3 (7), invalid 1
	// (a3), missing 2 (a5 and b3, predicted Neutral).
	// (truth, pred): (0,0) (4,4) (4,5) (5,0) (6,6) (0,4) (1,0)
	//  Neutral   truth a1 b2, pred a1 a5 b3: tp 1 fp 2 fn 1 -> 2/5
	//  Anger     truth b3: tp 0 -> 0; Disgust, Fear, Other never -> 0
	//  Happiness truth a2 a4, pred a2 b2: tp 1 fp 1 fn 1 -> 2/4 = 1/2
	//  Sadness   truth a5, pred a4: tp 0 -> 0
	//  Surprise  truth b1, pred b1: 1
	// macro = (2/5 + 1/2 + 1) / 8 = 1.9/8 = 0.2375
	var stdout, stderr bytes.Buffer
	code := run([]string{"-pred", preds, "-ann", anns}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	if got, want := lastLine(stdout.String()), "abaw: task=EXPR score=0.2375 frames=7 invalid=1 missing=2"; got != want {
		t.Errorf("last line %q, want %q\n%s", got, want, stdout.String())
	}
	if !strings.Contains(stderr.String(), "warning:") || !strings.Contains(stderr.String(), "c.csv") {
		t.Errorf("no warning about c.csv: %q", stderr.String())
	}
	out := stdout.String()
	for _, s := range []string{"Happiness", "macro-F1", "accuracy", "0.4286"} { // accuracy 3/7
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	// The face chosen in each video is reported: a -> 0, b -> 2 (2 rows vs 1).
	faces := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 5 {
			faces[f[0]] = f[1]
		}
	}
	if faces["a"] != "0" || faces["b"] != "2" {
		t.Errorf("faces %v, want a 0 and b 2:\n%s", faces, out)
	}

	// missing=skip: a5 and b3 left out; (0,0) (4,4) (4,5) (6,6) (0,4)
	//  Neutral truth a1 b2, pred a1: tp 1 fn 1 -> 2/3; Happiness 1/2; Surprise 1
	// macro = (2/3 + 1/2 + 1) / 8 = (13/6)/8 = 13/48 = 0.2708
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"-pred", preds, "-ann", anns, "-missing", "skip"}, &stdout, &stderr); code != 0 {
		t.Fatalf("skip: exit %d, %s", code, stderr.String())
	}
	if got, want := lastLine(stdout.String()), "abaw: task=EXPR score=0.2708 frames=5 invalid=1 missing=2"; got != want {
		t.Errorf("skip: last line %q, want %q", got, want)
	}
}

func TestRunFaceColumn(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "v.txt", "valence,arousal\n0.5,0.5\n-0.5,-0.5\n")
	write(t, dir, "v.csv", predHeader+
		"1, 0, 0, 1, 1, 0,0,0,0,0,0,0,0, 0.5, 0.5\n"+
		"2, 0, 0, 1, 1, 0,0,0,0,0,0,0,0, -0.5, -0.5\n"+
		"1, 3, 0, 1, 1, 0,0,0,0,0,0,0,0, 0.1, 0.1\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-pred", filepath.Join(dir, "v.csv"), "-ann", filepath.Join(dir, "v.txt")}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got, want := lastLine(stdout.String()), "abaw: task=VA score=1.0000 frames=2 invalid=0 missing=0"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// Face 3: frame 1 (0.1, 0.1), frame 2 missing -> (0, 0).
	// x = .1 0 (mean .05, var .0025), y = .5 -.5 (mean 0, var .25), cov = .025
	// CCC = .05 / (.0025 + .25 + .0025) = .05/.255 = 0.19608
	stdout.Reset()
	if code := run([]string{"-pred", filepath.Join(dir, "v.csv"), "-ann", filepath.Join(dir, "v.txt"), "-face", "3"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got, want := lastLine(stdout.String()), "abaw: task=VA score=0.1961 frames=2 invalid=0 missing=1"; got != want {
		t.Errorf("face 3: got %q, want %q", got, want)
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "v.txt", "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n1,0,0,0,0,0,0,0,0,0,0,0\n")
	write(t, dir, "v.csv", predHeader+"1, 0, 0, 1, 1, 0,0,0,0,0,0,0,0, 0, 0\n")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "-pred and -ann are required"},
		{[]string{"-pred", dir}, 2, "-pred and -ann are required"},
		{[]string{"-pred", dir, "-ann", dir, "-missing", "drop"}, 2, `-missing "drop"`},
		{[]string{"-pred", dir, "-ann", dir, "-face", "-2"}, 2, "-face -2"},
		{[]string{"-pred", dir, "-ann", dir, "extra"}, 2, "unexpected arguments"},
		{[]string{"-bogus"}, 2, "flag provided but not defined"},
		{[]string{"-pred", dir, "-ann", dir}, 1, "cannot score AU: missing columns AU01_c"},
		{[]string{"-pred", filepath.Join(dir, "nope.csv"), "-ann", dir}, 1, "nope.csv"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(c.args, &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: exit %d stderr %q, want %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}
