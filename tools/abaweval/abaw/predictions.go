package abaw

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Row is one face in one frame of a predictions CSV. Values of a column
// group absent from the file are NaN.
type Row struct {
	Line    int // line number in the CSV, for messages
	Frame   int // 1-based frame number
	Face    int // face_id (0 when the file has no face_id column)
	AU      [12]float64
	Valence float64
	Arousal float64
	Expr    [8]float64
}

// Predictions holds the rows of one predictions CSV written by
// `affectd analyze` (OpenFace 2 FeatureExtraction style).
type Predictions struct {
	Path string
	// Rows maps a frame number to the rows (faces) of that frame. Rows with
	// success = 0 are not kept: such a frame counts as having no face.
	Rows map[int][]Row
	// Failed counts the rows dropped because success = 0.
	Failed int
	// absent lists, per task, the columns of that task the file lacks.
	absent [3][]string
}

// ReadPredictions reads a predictions CSV file.
func ReadPredictions(path string) (*Predictions, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParsePredictions(f, path)
}

// ParsePredictions reads a predictions CSV from r; name is used in messages.
//
// The header names the columns (spaces around names are trimmed, names match
// case-insensitively, order is free, unknown columns are ignored). "frame"
// is required; "face_id" defaults to 0 and "success" to 1 when absent. The
// columns of the AU, VA and EXPR groups are optional; Check tells whether a
// task can be scored.
func ParsePredictions(r io.Reader, name string) (*Predictions, error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty predictions file", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	cols := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if h == "" {
			continue
		}
		if _, dup := cols[h]; dup {
			return nil, fmt.Errorf("%s:1: duplicate column %q", name, h)
		}
		cols[h] = i
	}
	col := func(n string) int {
		if i, ok := cols[strings.ToLower(n)]; ok {
			return i
		}
		return -1
	}
	frameCol, faceCol, successCol := col("frame"), col("face_id"), col("success")
	if frameCol < 0 {
		return nil, fmt.Errorf("%s:1: no \"frame\" column", name)
	}
	p := &Predictions{Path: name, Rows: map[int][]Row{}}
	var idx [3][]int
	for _, t := range []Task{AU, EXPR, VA} {
		for _, c := range Columns(t) {
			i := col(c)
			if i < 0 {
				p.absent[t] = append(p.absent[t], c)
			}
			idx[t] = append(idx[t], i)
		}
	}

	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		num := func(i int, what string) (float64, error) {
			s := strings.TrimSpace(rec[i])
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return 0, fmt.Errorf("%s:%d: %s value %q is not a number", name, line, what, s)
			}
			return v, nil
		}
		integer := func(i int, what string) (int, error) {
			v, err := num(i, what)
			if err != nil {
				return 0, err
			}
			if v != math.Trunc(v) || math.Abs(v) > 1<<31 {
				return 0, fmt.Errorf("%s:%d: %s value %q is not an integer", name, line, what, strings.TrimSpace(rec[i]))
			}
			return int(v), nil
		}
		row := Row{Line: line, Valence: math.NaN(), Arousal: math.NaN()}
		if row.Frame, err = integer(frameCol, "frame"); err != nil {
			return nil, err
		}
		if row.Frame < 1 {
			return nil, fmt.Errorf("%s:%d: frame %d, want >= 1 (frames are 1-based)", name, line, row.Frame)
		}
		if faceCol >= 0 {
			if row.Face, err = integer(faceCol, "face_id"); err != nil {
				return nil, err
			}
		}
		if successCol >= 0 {
			s, err := num(successCol, "success")
			if err != nil {
				return nil, err
			}
			if s == 0 {
				p.Failed++
				continue
			}
		}
		for _, t := range []Task{AU, EXPR, VA} {
			for j, i := range idx[t] {
				v := math.NaN()
				if i >= 0 {
					if v, err = num(i, Columns(t)[j]); err != nil {
						return nil, err
					}
				}
				switch t {
				case AU:
					row.AU[j] = v
				case EXPR:
					row.Expr[j] = v
				case VA:
					if j == 0 {
						row.Valence = v
					} else {
						row.Arousal = v
					}
				}
			}
		}
		for _, o := range p.Rows[row.Frame] {
			if o.Face == row.Face {
				return nil, fmt.Errorf("%s:%d: second row for frame %d face_id %d (first on line %d)", name, line, row.Frame, row.Face, o.Line)
			}
		}
		p.Rows[row.Frame] = append(p.Rows[row.Frame], row)
	}
	return p, nil
}

// Check returns an error naming the columns missing for scoring task t, nil
// when the file has them all.
func (p *Predictions) Check(t Task) error {
	if t < AU || t > VA {
		return fmt.Errorf("unknown task %v", t)
	}
	if len(p.absent[t]) > 0 {
		return fmt.Errorf("%s: cannot score %s: missing columns %s", p.Path, t, strings.Join(p.absent[t], ", "))
	}
	return nil
}

// MostFrequentFace returns the face_id with the most rows (ties: the
// smallest face_id); ok is false when the file has no row.
func (p *Predictions) MostFrequentFace() (face int, ok bool) {
	count := map[int]int{}
	for _, rows := range p.Rows {
		for _, r := range rows {
			count[r.Face]++
		}
	}
	faces := make([]int, 0, len(count))
	for f := range count {
		faces = append(faces, f)
	}
	sort.Ints(faces)
	best := 0
	for _, f := range faces { // ascending: a tie keeps the smallest face_id
		if count[f] > best {
			face, best = f, count[f]
		}
	}
	return face, best > 0
}

// MaxFrame returns the largest frame number with a row, 0 when none.
func (p *Predictions) MaxFrame() int {
	m := 0
	for f := range p.Rows {
		m = max(m, f)
	}
	return m
}

// row returns the row of face in frame, nil when there is none.
func (p *Predictions) row(frame, face int) *Row {
	rows := p.Rows[frame]
	for i := range rows {
		if rows[i].Face == face {
			return &rows[i]
		}
	}
	return nil
}

var errNoFrames = errors.New("no frame to score")
