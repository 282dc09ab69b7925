package train

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Task is what a label set teaches.
type Task string

// The tasks ABAW defines, and one for any other CSV columns.
const (
	TaskAU   Task = "au"   // binary per label, -1 unannotated
	TaskVA   Task = "va"   // valence, arousal in [-1, 1], -5 unannotated
	TaskExpr Task = "expr" // one class index per frame, -1 unannotated
)

// ABAW's headers, as the files carry them.
var (
	AUNames   = []string{"AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"}
	VANames   = []string{"valence", "arousal"}
	ExprNames = []string{"Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other"}
)

// Labels are one task's labels for a set of videos: per video, per frame
// (numbered from 1 as ABAW's images are), the values, NaN where the frame
// is unannotated. AU values are 0 or 1, VA's in [-1, 1], expression's one
// class index.
type Labels struct {
	Task   Task
	Names  []string // the label columns (expression: the classes)
	Videos map[string][][]float32
}

// Frames counts the annotated frames.
func (l *Labels) Frames() int {
	n := 0
	for _, v := range l.Videos {
		for _, row := range v {
			if annotated(row) {
				n++
			}
		}
	}
	return n
}

// annotated says whether a row has at least one value.
func annotated(row []float32) bool {
	for _, v := range row {
		if !math.IsNaN(float64(v)) {
			return true
		}
	}
	return false
}

// LineError is a malformed label file: the file, the line and why.
type LineError struct {
	File string
	Line int
	Msg  string
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Bounds on label files: no real annotation comes near them.
const (
	maxLineBytes = 1 << 16
	maxRows      = 10_000_000
)

// ReadABAW reads an ABAW label folder (AU_Set, VA_Set or EXPR_Set: one
// <video>.txt per video, possibly under Train_Set/ and Validation_Set/
// sub-folders, which are read alike). The task comes from the header.
func ReadABAW(dir string) (*Labels, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".txt") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no <video>.txt label files", dir)
	}
	sort.Strings(files)
	var out *Labels
	for _, f := range files {
		task, rows, err := readABAWFile(f)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = &Labels{Task: task, Names: namesOf(task), Videos: map[string][][]float32{}}
		} else if task != out.Task {
			return nil, &LineError{f, 1, fmt.Sprintf("a %s file among %s files", task, out.Task)}
		}
		video := strings.TrimSuffix(filepath.Base(f), ".txt")
		if _, dup := out.Videos[video]; dup {
			return nil, &LineError{f, 1, fmt.Sprintf("video %s labelled twice", video)}
		}
		out.Videos[video] = rows
	}
	return out, nil
}

func namesOf(t Task) []string {
	switch t {
	case TaskAU:
		return AUNames
	case TaskVA:
		return VANames
	}
	return ExprNames
}

// readABAWFile reads one video's ABAW file.
func readABAWFile(path string) (Task, [][]float32, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), maxLineBytes)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return "", nil, &LineError{path, 1, err.Error()}
		}
		return "", nil, &LineError{path, 1, "empty: want a header line"}
	}
	header := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\ufeff"))
	var task Task
	switch header {
	case strings.Join(AUNames, ","):
		task = TaskAU
	case strings.Join(VANames, ","):
		task = TaskVA
	case strings.Join(ExprNames, ","):
		task = TaskExpr
	default:
		return "", nil, &LineError{path, 1, fmt.Sprintf("header %.80q is none of ABAW's (AU_Set: %s; VA_Set: %s; EXPR_Set: %s)",
			header, strings.Join(AUNames, ","), strings.Join(VANames, ","), strings.Join(ExprNames, ","))}
	}
	var rows [][]float32
	line := 1
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		if len(rows) >= maxRows {
			return "", nil, &LineError{path, line, fmt.Sprintf("more than %d frames", maxRows)}
		}
		row, err := parseABAWRow(task, text)
		if err != nil {
			return "", nil, &LineError{path, line, err.Error()}
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return "", nil, &LineError{path, line + 1, err.Error()}
	}
	if len(rows) == 0 {
		return "", nil, &LineError{path, line, "no frames after the header"}
	}
	return task, rows, nil
}

var nan = float32(math.NaN())

func parseABAWRow(task Task, text string) ([]float32, error) {
	fields := strings.Split(text, ",")
	switch task {
	case TaskAU:
		if len(fields) != len(AUNames) {
			return nil, fmt.Errorf("%d values, want %d (one per AU)", len(fields), len(AUNames))
		}
		row := make([]float32, len(fields))
		for i, s := range fields {
			switch strings.TrimSpace(s) {
			case "0":
				row[i] = 0
			case "1":
				row[i] = 1
			case "-1":
				row[i] = nan
			default:
				return nil, fmt.Errorf("%s = %.20q: want 0, 1 or -1 (unannotated)", AUNames[i], s)
			}
		}
		return row, nil
	case TaskVA:
		if len(fields) != 2 {
			return nil, fmt.Errorf("%d values, want 2 (valence,arousal)", len(fields))
		}
		row := make([]float32, 2)
		for i, s := range fields {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			switch {
			case err != nil:
				return nil, fmt.Errorf("%s = %.20q: not a number", VANames[i], s)
			case v == -5:
				row[i] = nan
			case v < -1 || v > 1 || math.IsNaN(v):
				return nil, fmt.Errorf("%s = %g: want -1 to 1, or -5 (unannotated)", VANames[i], v)
			default:
				row[i] = float32(v)
			}
		}
		if math.IsNaN(float64(row[0])) != math.IsNaN(float64(row[1])) {
			return nil, errors.New("one of valence and arousal unannotated (-5) and the other not")
		}
		return row, nil
	}
	if len(fields) != 1 {
		return nil, fmt.Errorf("%d values, want 1 (the class index)", len(fields))
	}
	k, err := strconv.Atoi(strings.TrimSpace(fields[0]))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%.20q: want a class index", fields[0])
	case k == -1:
		return []float32{nan}, nil
	case k < 0 || k >= len(ExprNames):
		return nil, fmt.Errorf("class %d: want 0 to %d, or -1 (unannotated)", k, len(ExprNames)-1)
	}
	return []float32{float32(k)}, nil
}

// ReadCSV reads labels for any task from one CSV: a header
// `video,frame,<label columns>`, then rows; an empty cell is unannotated.
// task says how to read the columns: au (0/1), va (two numbers in
// [-1, 1]), expr (one column of class indices, classes named by names),
// or anything else: numbers, regressed as they are.
func ReadCSV(path string, task Task, classes []string) (*Labels, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), maxLineBytes)
	if !sc.Scan() {
		return nil, &LineError{path, 1, "empty: want a header video,frame,<labels>"}
	}
	head := strings.Split(strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\ufeff")), ",")
	if len(head) < 3 || head[0] != "video" || head[1] != "frame" {
		return nil, &LineError{path, 1, "want a header video,frame,<label columns>"}
	}
	names := head[2:]
	if task == TaskExpr {
		if len(names) != 1 {
			return nil, &LineError{path, 1, "an expression CSV has one label column (the class index)"}
		}
		if len(classes) < 2 {
			return nil, &LineError{path, 1, "an expression CSV needs its class names (at least 2)"}
		}
	}
	out := &Labels{Task: task, Names: names, Videos: map[string][][]float32{}}
	if task == TaskExpr {
		out.Names = classes
	}
	line, rows := 1, 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		if rows++; rows > maxRows {
			return nil, &LineError{path, line, fmt.Sprintf("more than %d rows", maxRows)}
		}
		fields := strings.Split(text, ",")
		if len(fields) != len(head) {
			return nil, &LineError{path, line, fmt.Sprintf("%d fields, the header has %d", len(fields), len(head))}
		}
		video := strings.TrimSpace(fields[0])
		frame, err := strconv.Atoi(strings.TrimSpace(fields[1]))
		if video == "" || err != nil || frame < 1 || frame > maxRows {
			return nil, &LineError{path, line, fmt.Sprintf("video %.40q frame %.20q: want a name and a frame number from 1", fields[0], fields[1])}
		}
		row := make([]float32, len(fields)-2)
		for i, s := range fields[2:] {
			s = strings.TrimSpace(s)
			if s == "" {
				row[i] = nan
				continue
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, &LineError{path, line, fmt.Sprintf("%s = %.20q: not a number", names[i], s)}
			}
			switch task {
			case TaskAU:
				if v != 0 && v != 1 {
					return nil, &LineError{path, line, fmt.Sprintf("%s = %g: want 0 or 1 (empty: unannotated)", names[i], v)}
				}
			case TaskVA:
				if v < -1 || v > 1 {
					return nil, &LineError{path, line, fmt.Sprintf("%s = %g: want -1 to 1", names[i], v)}
				}
			case TaskExpr:
				if v != math.Trunc(v) || v < 0 || int(v) >= len(classes) {
					return nil, &LineError{path, line, fmt.Sprintf("class %g: want 0 to %d", v, len(classes)-1)}
				}
			}
			row[i] = float32(v)
		}
		v := out.Videos[video]
		for len(v) < frame {
			v = append(v, nil)
		}
		if v[frame-1] != nil {
			return nil, &LineError{path, line, fmt.Sprintf("video %s frame %d labelled twice", video, frame)}
		}
		v[frame-1] = row
		out.Videos[video] = v
	}
	if err := sc.Err(); err != nil {
		return nil, &LineError{path, line + 1, err.Error()}
	}
	// Frames between labelled ones are unannotated.
	for video, v := range out.Videos {
		for i := range v {
			if v[i] == nil {
				v[i] = make([]float32, len(names))
				for k := range v[i] {
					v[i][k] = nan
				}
			}
		}
		out.Videos[video] = v
	}
	if len(out.Videos) == 0 {
		return nil, &LineError{path, line, "no rows after the header"}
	}
	return out, nil
}
