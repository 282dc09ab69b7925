package train

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The features format (`affectd features` writes it, `affectd train`
// reads it), one pair of files per video in a folder:
//
//	<video>.npy        float32 little-endian, shape (rows, dim), NPY 1.0:
//	                   numpy.load reads it as it is
//	<video>.index.csv  header `row,frame,face`, then one line per row:
//	                   the frame number (from 1) and the face's id
//
// A video with several faces has several rows per frame; training uses the
// frames with exactly one face (labels are per frame).

// WriteNPY writes a float32 (rows, dim) array in NPY 1.0.
func WriteNPY(w io.Writer, rows, dim int, data []float32) error {
	if len(data) != rows*dim {
		return fmt.Errorf("npy: %d values for %d×%d", len(data), rows, dim)
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, dim)
	// Magic (6) + version (2) + header length (2) + header + '\n', padded to 64.
	total := 10 + len(header) + 1
	pad := (64 - total%64) % 64
	header += strings.Repeat(" ", pad) + "\n"
	buf := make([]byte, 0, 10+len(header)+4*len(data))
	buf = append(buf, "\x93NUMPY\x01\x00"...)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(header)))
	buf = append(buf, header...)
	for _, v := range data {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	_, err := w.Write(buf)
	return err
}

var npyShape = regexp.MustCompile(`'shape':\s*\((\d+),\s*(\d+),?\)`)

// maxNPYValues bounds one file (4 GiB of float32).
const maxNPYValues = 1 << 30

// ReadNPY reads a float32 little-endian C-order 2-D NPY file.
func ReadNPY(path string) (rows, dim int, data []float32, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var pre [10]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil || string(pre[:6]) != "\x93NUMPY" {
		return 0, 0, nil, fmt.Errorf("%s: not an NPY file", path)
	}
	var hl int
	switch pre[6] {
	case 1:
		hl = int(binary.LittleEndian.Uint16(pre[8:]))
	case 2, 3:
		var more [2]byte
		if _, err := io.ReadFull(r, more[:]); err != nil {
			return 0, 0, nil, fmt.Errorf("%s: truncated header", path)
		}
		hl = int(binary.LittleEndian.Uint32(append(pre[8:10:10], more[:]...)))
	default:
		return 0, 0, nil, fmt.Errorf("%s: NPY version %d", path, pre[6])
	}
	if hl > 1<<16 {
		return 0, 0, nil, fmt.Errorf("%s: header of %d bytes", path, hl)
	}
	h := make([]byte, hl)
	if _, err := io.ReadFull(r, h); err != nil {
		return 0, 0, nil, fmt.Errorf("%s: truncated header", path)
	}
	hs := string(h)
	if !strings.Contains(hs, "'descr': '<f4'") || !strings.Contains(hs, "'fortran_order': False") {
		return 0, 0, nil, fmt.Errorf("%s: want little-endian float32 in C order, header %s", path, strings.TrimSpace(hs))
	}
	m := npyShape.FindStringSubmatch(hs)
	if m == nil {
		return 0, 0, nil, fmt.Errorf("%s: want a 2-D array, header %s", path, strings.TrimSpace(hs))
	}
	rows, _ = strconv.Atoi(m[1])
	dim, _ = strconv.Atoi(m[2])
	if rows < 0 || dim <= 0 || rows > maxNPYValues/dim {
		return 0, 0, nil, fmt.Errorf("%s: shape (%d, %d) out of bounds", path, rows, dim)
	}
	raw := make([]byte, 4*rows*dim)
	if _, err := io.ReadFull(r, raw); err != nil {
		return 0, 0, nil, fmt.Errorf("%s: %d values promised, file shorter", path, rows*dim)
	}
	data = make([]float32, rows*dim)
	for i := range data {
		data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return rows, dim, data, nil
}

// VideoFeatures are one video's feature rows and where they come from.
type VideoFeatures struct {
	Video string
	Dim   int
	X     []float32 // rows × Dim
	Frame []int     // per row, from 1
	Face  []string  // per row
}

// ReadFeatures reads every <video>.npy with its <video>.index.csv in dir,
// by video name.
func ReadFeatures(dir string) ([]VideoFeatures, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.npy"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: no <video>.npy feature files (make them with affectd features)", dir)
	}
	sort.Strings(paths)
	var out []VideoFeatures
	dim := 0
	for _, p := range paths {
		rows, d, x, err := ReadNPY(p)
		if err != nil {
			return nil, err
		}
		if dim != 0 && d != dim {
			return nil, fmt.Errorf("%s: %d features per row, other videos %d", p, d, dim)
		}
		dim = d
		v := VideoFeatures{Video: strings.TrimSuffix(filepath.Base(p), ".npy"), Dim: d, X: x}
		idx := strings.TrimSuffix(p, ".npy") + ".index.csv"
		if v.Frame, v.Face, err = readIndex(idx, rows); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func readIndex(path string, rows int) (frames []int, faces []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), maxLineBytes)
	if !sc.Scan() || strings.TrimSpace(sc.Text()) != "row,frame,face" {
		return nil, nil, &LineError{path, 1, "want the header row,frame,face"}
	}
	line := 1
	for sc.Scan() {
		line++
		p := strings.Split(strings.TrimSpace(sc.Text()), ",")
		if len(p) != 3 {
			return nil, nil, &LineError{path, line, "want row,frame,face"}
		}
		row, err1 := strconv.Atoi(p[0])
		frame, err2 := strconv.Atoi(p[1])
		if err1 != nil || err2 != nil || row != len(frames) || frame < 1 {
			return nil, nil, &LineError{path, line, fmt.Sprintf("row %q frame %q: want rows numbered from 0 in order and frames from 1", p[0], p[1])}
		}
		frames, faces = append(frames, frame), append(faces, p[2])
	}
	if err := sc.Err(); err != nil {
		return nil, nil, &LineError{path, line + 1, err.Error()}
	}
	if len(frames) != rows {
		return nil, nil, &LineError{path, line, fmt.Sprintf("%d index rows for %d feature rows", len(frames), rows)}
	}
	return frames, faces, nil
}

// Join pairs features with labels: for every video in both, each frame
// with exactly one face and an annotation becomes a row. It reports how
// many labelled frames had no features (or several faces).
func Join(feats []VideoFeatures, l *Labels) (*Data, int, error) {
	if len(feats) == 0 {
		return nil, 0, errors.New("no features")
	}
	d := &Data{Dim: feats[0].Dim}
	missing := 0
	counts := map[string]map[int]int{} // per video: faces per frame
	for _, v := range feats {
		count := map[int]int{}
		for _, fr := range v.Frame {
			count[fr]++
		}
		counts[v.Video] = count
		rows := l.Videos[v.Video]
		if rows == nil {
			continue
		}
		for i, fr := range v.Frame {
			if count[fr] != 1 || fr > len(rows) || !annotated(rows[fr-1]) {
				continue
			}
			d.Add(v.Video, v.X[i*v.Dim:(i+1)*v.Dim], rows[fr-1])
		}
	}
	for video, rows := range l.Videos {
		for fr, row := range rows {
			if annotated(row) && counts[video][fr+1] != 1 {
				missing++
			}
		}
	}
	if d.Len() == 0 {
		return nil, missing, errors.New("no labelled frame has features: check that the label files are named after the videos")
	}
	return d, missing, nil
}
