package abaw

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// Annotation is one Aff-Wild2 annotation file: one row per frame.
//
// Frames[k-1] holds the labels of frame k (1-based), nil when the frame is
// marked invalid. A valid row holds 12 values 0/1 (AU), one class index 0..7
// (EXPR) or valence and arousal (VA).
type Annotation struct {
	Path   string // file name, for messages
	Task   Task
	Frames [][]float64
}

// Valid returns the number of valid (non-nil) frames.
func (a *Annotation) Valid() int {
	n := 0
	for _, f := range a.Frames {
		if f != nil {
			n++
		}
	}
	return n
}

// ReadAnnotation reads an Aff-Wild2 annotation file; its task is detected
// from the header line.
func ReadAnnotation(path string) (*Annotation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseAnnotation(f, path)
}

// ParseAnnotation reads an annotation from r; name is used in messages.
//
// Line 1 is the header, which selects the task (case-insensitive, spaces
// around the commas ignored):
//
//	AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26
//	Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other
//	valence,arousal
//
// Line k+1 holds frame k. Invalid frames are AU rows containing -1, an EXPR
// value of -1, and VA rows where either value is -5. CRLF line ends, a UTF-8
// byte order mark and trailing blank lines are tolerated; a blank line
// followed by more data is an error (it would shift the frame numbers).
func ParseAnnotation(r io.Reader, name string) (*Annotation, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	a := &Annotation{Path: name}
	lineNo := 0
	blank := 0 // line number of the first blank line seen after the header
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(strings.TrimSuffix(sc.Text(), "\r"))
		if lineNo == 1 {
			line = strings.TrimSpace(strings.TrimPrefix(line, "\ufeff"))
			t, ok := headerTask(line)
			if !ok {
				return nil, fmt.Errorf("%s:1: unknown annotation header %q (want the AU, EXPR or VA header of Aff-Wild2)", name, line)
			}
			a.Task = t
			continue
		}
		if line == "" {
			if blank == 0 {
				blank = lineNo
			}
			continue
		}
		if blank != 0 {
			return nil, fmt.Errorf("%s:%d: blank line inside the data (next data on line %d)", name, blank, lineNo)
		}
		row, err := parseAnnotationRow(a.Task, line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, lineNo, err)
		}
		a.Frames = append(a.Frames, row)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if lineNo == 0 {
		return nil, fmt.Errorf("%s: empty annotation file", name)
	}
	return a, nil
}

func headerTask(line string) (Task, bool) {
	fields := strings.Split(line, ",")
	for i := range fields {
		fields[i] = strings.ToLower(strings.TrimSpace(fields[i]))
	}
	for _, t := range []Task{AU, EXPR, VA} {
		want := Labels(t)
		if len(want) != len(fields) {
			continue
		}
		ok := true
		for i := range want {
			if strings.ToLower(want[i]) != fields[i] {
				ok = false
				break
			}
		}
		if ok {
			return t, true
		}
	}
	return 0, false
}

// parseAnnotationRow returns the labels of one frame, nil for an invalid one.
func parseAnnotationRow(t Task, line string) ([]float64, error) {
	fields := strings.Split(line, ",")
	want := len(Labels(t)) // AU: 12 values, VA: 2
	if t == EXPR {
		want = 1 // the class index
	}
	if len(fields) != want {
		return nil, fmt.Errorf("%s row has %d values, want %d", t, len(fields), want)
	}
	vals := make([]float64, len(fields))
	for i, f := range fields {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("value %d %q is not a number", i+1, strings.TrimSpace(f))
		}
		vals[i] = v
	}
	switch t {
	case AU:
		invalid := false
		for i, v := range vals {
			switch v {
			case -1:
				invalid = true
			case 0, 1:
			default:
				return nil, fmt.Errorf("%s value %v, want 0, 1 or -1", auLabels[i], v)
			}
		}
		if invalid {
			return nil, nil
		}
	case EXPR:
		v := vals[0]
		if v == -1 {
			return nil, nil
		}
		if v != math.Trunc(v) || v < 0 || v > 7 {
			return nil, fmt.Errorf("expression %v, want an integer 0..7 or -1", v)
		}
	case VA:
		if vals[0] == -5 || vals[1] == -5 {
			return nil, nil
		}
		for i, v := range vals {
			if v < -1 || v > 1 {
				return nil, fmt.Errorf("%s %v out of [-1,1] (and not -5)", vaLabels[i], v)
			}
		}
	}
	return vals, nil
}
