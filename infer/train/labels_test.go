package train

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const auHeader = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n"

// TestReadABAW: the three ABAW layouts as the challenge ships them
// (Train_Set/ and Validation_Set/ folders, one <video>.txt each, -1 and -5
// for unannotated frames) parse, with the unannotated frames NaN.
func TestReadABAW(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "AU_Set/Train_Set/1-30-1280x720.txt", auHeader+
		"0,0,0,1,1,0,1,0,0,0,1,0\n"+
		"-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\n"+
		"1,1,0,0,0,0,0,0,0,0,1,1\n")
	write(t, dir, "AU_Set/Validation_Set/video2.txt", auHeader+"0,0,0,0,0,0,0,0,0,0,0,0\n")
	write(t, dir, "VA_Set/Train_Set/v1.txt", "valence,arousal\n0.25,-0.5\n-5,-5\n1,1\n")
	write(t, dir, "EXPR_Set/Train_Set/v1.txt", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n4\n-1\n7\n")

	au, err := ReadABAW(filepath.Join(dir, "AU_Set"))
	if err != nil {
		t.Fatal(err)
	}
	if au.Task != TaskAU || len(au.Videos) != 2 || len(au.Videos["1-30-1280x720"]) != 3 || au.Frames() != 3 {
		t.Fatalf("AU_Set: %+v, %d annotated frames", au, au.Frames())
	}
	if r := au.Videos["1-30-1280x720"]; r[0][3] != 1 || r[0][0] != 0 || !math.IsNaN(float64(r[1][5])) || r[2][11] != 1 {
		t.Errorf("AU rows %v", r)
	}
	va, err := ReadABAW(filepath.Join(dir, "VA_Set"))
	if err != nil {
		t.Fatal(err)
	}
	if r := va.Videos["v1"]; va.Task != TaskVA || r[0][0] != 0.25 || r[0][1] != -0.5 || !math.IsNaN(float64(r[1][0])) || va.Frames() != 2 {
		t.Errorf("VA_Set: %v", va)
	}
	ex, err := ReadABAW(filepath.Join(dir, "EXPR_Set"))
	if err != nil {
		t.Fatal(err)
	}
	if r := ex.Videos["v1"]; ex.Task != TaskExpr || len(ex.Names) != 8 || r[1][0] != 4 || !math.IsNaN(float64(r[2][0])) || r[3][0] != 7 || ex.Frames() != 3 {
		t.Errorf("EXPR_Set: %v", ex)
	}
}

// TestReadCSV: the plain layout, video,frame,<labels>, with empty cells
// and frames left out unannotated.
func TestReadCSV(t *testing.T) {
	p := write(t, t.TempDir(), "labels.csv", "video,frame,engagement,smile\nclipA,1,0.5,1\nclipA,3,,0\nclipB,2,-0.25,\n")
	l, err := ReadCSV(p, "custom", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := l.Videos["clipA"]
	if len(l.Names) != 2 || len(a) != 3 || a[0][0] != 0.5 || !math.IsNaN(float64(a[1][0])) || !math.IsNaN(float64(a[2][0])) || a[2][1] != 0 || l.Frames() != 3 {
		t.Errorf("CSV: names %v, clipA %v, %d frames", l.Names, a, l.Frames())
	}
}

// TestMalformedLabels: every kind of broken file gives one error naming
// the file and the line.
func TestMalformedLabels(t *testing.T) {
	for _, c := range []struct {
		name, text string
		line       int
		want       string
	}{
		{"bad header", "AU1,AU2\n0,1\n", 1, "none of ABAW's"},
		{"empty", "", 1, "empty"},
		{"AU value", auHeader + "0,0,0,0,0,0,0,0,0,0,0,0\n0,0,2,0,0,0,0,0,0,0,0,0\n", 3, "AU4 = \"2\""},
		{"AU count", auHeader + "0,0,0\n", 2, "3 values, want 12"},
		{"VA range", "valence,arousal\n0.1,0.2\n1.5,0\n", 3, "valence = 1.5"},
		{"VA half", "valence,arousal\n-5,0.3\n", 2, "one of valence and arousal"},
		{"VA text", "valence,arousal\nhigh,0\n", 2, "not a number"},
		{"EXPR class", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n3\n8\n", 3, "class 8"},
		{"no frames", "valence,arousal\n", 1, "no frames"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := write(t, dir, "set/v.txt", c.text)
			_, err := ReadABAW(filepath.Join(dir, "set"))
			var le *LineError
			if !errors.As(err, &le) || le.File != p || le.Line != c.line || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v; want %s:%d: …%s…", err, p, c.line, c.want)
			}
		})
	}
	for _, c := range []struct {
		name, text string
		task       Task
		line       int
		want       string
	}{
		{"header", "clip,frame,x\n", "custom", 1, "video,frame"},
		{"fields", "video,frame,x\na,1,0.5,7\n", "custom", 2, "4 fields"},
		{"frame", "video,frame,x\na,0,0.5\n", "custom", 2, "frame number"},
		{"twice", "video,frame,x\na,1,0.5\na,1,0.6\n", "custom", 3, "labelled twice"},
		{"au", "video,frame,AU12\na,1,0.5\n", TaskAU, 2, "want 0 or 1"},
	} {
		t.Run("csv "+c.name, func(t *testing.T) {
			p := write(t, t.TempDir(), "l.csv", c.text)
			_, err := ReadCSV(p, c.task, nil)
			var le *LineError
			if !errors.As(err, &le) || le.File != p || le.Line != c.line || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v; want %s:%d: …%s…", err, p, c.line, c.want)
			}
		})
	}
}

// TestNPYRoundTrip: WriteNPY's files read back (numpy reads the same
// layout: NPY 1.0, '<f4', C order, a 64-byte aligned header), and the
// features folder joins with labels frame by frame, leaving out frames
// with two faces.
func TestNPYRoundTrip(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "vid.npy"))
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	if err := WriteNPY(f, 4, 2, x); err != nil {
		t.Fatal(err)
	}
	f.Close()
	write(t, dir, "vid.index.csv", "row,frame,face\n0,1,vid/1\n1,2,vid/1\n2,2,vid/2\n3,3,vid/1\n")
	rows, dim, got, err := ReadNPY(filepath.Join(dir, "vid.npy"))
	if err != nil || rows != 4 || dim != 2 || got[5] != 6 {
		t.Fatalf("ReadNPY: %d×%d %v %v", rows, dim, got, err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "vid.npy")); (st.Size()-32)%64 != 0 {
		t.Errorf("header not 64-byte aligned: file of %d bytes", st.Size())
	}
	feats, err := ReadFeatures(dir)
	if err != nil {
		t.Fatal(err)
	}
	l := &Labels{Task: TaskVA, Names: VANames, Videos: map[string][][]float32{"vid": {{0.1, 0.2}, {0.3, 0.4}, {0.5, 0.6}, {0.7, 0.8}}}}
	d, missing, err := Join(feats, l)
	if err != nil {
		t.Fatal(err)
	}
	// Frame 1 and 3 have one face each; frame 2 has two, frame 4 none.
	if d.Len() != 2 || d.Row(1)[0] != 7 || d.Y[1][0] != 0.5 || missing != 2 {
		t.Errorf("joined %d rows (second %v, labels %v), %d missing; want frames 1 and 3, 2 missing", d.Len(), d.Row(1), d.Y[1], missing)
	}
	write(t, dir, "vid.index.csv", "row,frame,face\n0,1,vid/1\n")
	if _, err := ReadFeatures(dir); err == nil || !strings.Contains(err.Error(), "1 index rows for 4 feature rows") {
		t.Errorf("a short index: %v", err)
	}
}
