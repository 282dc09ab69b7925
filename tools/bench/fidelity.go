package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/affectd/affectd/daemon"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

// benchFidelity runs `affectd analyze` (in-process, landmark backend, JSON
// Lines) over media whose truth is known by construction, and scores it:
// the test clips (faces moving, crossing, leaving and coming back,
// growing from 40 px, rolled both ways, a hard cut to another person, no
// face at all), title cards in large letters (videos), and stills (two
// faces, five pictures without one). See scoreInput for the metrics.
func benchFidelity(args []string) error {
	fs := flag.NewFlagSet("fidelity", flag.ExitOnError)
	size := fs.String("size", "640x360", "clip size")
	modelPath := fs.String("model", "none", `ONNX model ("none": the landmark backend alone; "": the demo ViT-tiny)`)
	keep := fs.Bool("keep", false, "keep the outputs and print where")
	fs.Parse(args)

	w, h, err := testmedia.ParseSize(*size)
	if err != nil {
		return err
	}
	cfg, err := benchConfig(*modelPath)
	if err != nil {
		return err
	}
	var inputs []input
	for _, name := range []string{"one_face", "two_faces", "reenter", "growing", "cut", "roll", "expression", "empty"} {
		c, err := testmedia.Ensure(name, w, h)
		if err != nil {
			return err
		}
		tr, err := c.Truth()
		if err != nil {
			return err
		}
		inputs = append(inputs, input{path: c.Path, truth: &tr})
	}
	for _, text := range []string{"CHAPTER ONE", "MOOD", "2026"} {
		size := 150
		if len(text) > 8 {
			size = 90
		}
		p, err := testmedia.TitleCard(text, size, w, h, 2)
		if err != nil {
			return err
		}
		inputs = append(inputs, input{path: p, faces: 0})
	}
	cache, _ := testenv.Cache()
	inputs = append(inputs, input{path: filepath.Join(cache, "photos", "astronaut.png"), faces: 1},
		input{path: filepath.Join(cache, "photos", "grace_hopper_512x512.jpg"), faces: 1})
	for _, n := range testmedia.Negatives {
		p, err := testmedia.Skimage(n)
		if err != nil {
			return err
		}
		inputs = append(inputs, input{path: p, faces: 0})
	}
	out, err := os.MkdirTemp("", "affectd-fidelity-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Printf("outputs: %s\n", out)
	} else {
		defer os.RemoveAll(out)
	}
	var paths []string
	for _, in := range inputs {
		paths = append(paths, in.path)
	}
	rep, err := daemon.Analyze(context.Background(), cfg, daemon.AnalyzeOptions{Inputs: paths, OutDir: out, Format: "jsonl", Force: true})
	if err != nil {
		return err
	}
	if rep.Failed() > 0 {
		for _, f := range rep.Files {
			if f.Err != nil {
				return fmt.Errorf("%s: %v", f.Input, f.Err)
			}
		}
	}
	var total score
	for i, in := range inputs {
		frames, err := readJSONL(rep.Files[i].Output)
		if err != nil {
			return err
		}
		s := scoreInput(in, frames)
		fmt.Printf("%-32s faces %4d/%-4d found, %3d false, %d id switches, first-frame lag %d, pose sign errors %d, AU saturated %d of %d rows\n",
			filepath.Base(in.path), s.found, s.eligible, s.output-s.matched, s.switches, s.lag, s.signErrors, s.saturated, s.rows)
		total.add(s)
	}
	fmt.Printf("fidelity: recall=%.3f precision=%.3f id_switches=%d first_frame_lag=%d pose_sign_errors=%d au_saturated_pct=%.1f\n",
		ratio(total.found, total.eligible), ratio(total.matched, total.output), total.switches, total.lag, total.signErrors,
		100*ratio(total.saturated, total.rows))
	return nil
}

// input is one medium and what is in it: a test clip's truth, or a
// number of faces (0 or 1) in every frame.
type input struct {
	path  string
	truth *testmedia.Truth
	faces int
}

type outFace struct {
	ID   string             `json:"id"`
	Box  [4]float64         `json:"box"`
	AU   map[string]float64 `json:"au"`
	Fail string             `json:"fail"`
	Pose *struct {
		R []float64 `json:"r"`
	} `json:"pose"`
}

type outFrame struct {
	Seq   int       `json:"seq"`
	Faces []outFace `json:"faces"`
}

func readJSONL(path string) ([]outFrame, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []outFrame
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var fr outFrame
		if err := json.Unmarshal(sc.Bytes(), &fr); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		out = append(out, fr)
	}
	return out, sc.Err()
}

// score counts one input's results.
type score struct {
	eligible, found int // truth faces that must be found, and found
	output, matched int // faces written, and those on a true face
	switches        int // id changes within a person's visible run, or ids carried to another person
	lag             int // the most frames between a face's appearance and its first row
	signErrors      int // frames whose pose_Rz sign is not the face's roll's (|roll| ≥ 10°)
	saturated, rows int // successful face rows with an AU at the top of its scale (5), and all
}

func (s *score) add(o score) {
	s.eligible += o.eligible
	s.found += o.found
	s.output += o.output
	s.matched += o.matched
	s.switches += o.switches
	s.lag = max(s.lag, o.lag)
	s.signErrors += o.signErrors
	s.saturated += o.saturated
	s.rows += o.rows
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

func iou(a, b [4]float64) float64 {
	x0, y0 := math.Max(a[0], b[0]), math.Max(a[1], b[1])
	x1, y1 := math.Min(a[0]+a[2], b[0]+b[2]), math.Min(a[1]+a[3], b[1]+b[3])
	if x1 <= x0 || y1 <= y0 {
		return 0
	}
	in := (x1 - x0) * (y1 - y0)
	return in / (a[2]*a[3] + b[2]*b[3] - in)
}

// eligible says whether a truth face must be found: fully in the frame,
// mostly unoccluded, and at least 30 px wide. Others are neither misses
// nor false alarms when found.
func eligible(f testmedia.Face) bool {
	return f.Visible >= 0.9 && f.Occluded <= 0.3 && f.Box[2] >= 30
}

// scoreInput scores one input. Each written face is matched to the true
// face it overlaps most (IoU ≥ 0.3), each true face taken once.
//   - recall: eligible true faces found; precision: written faces on a
//     true face (phantoms lower it).
//   - id switches: within a shot, a person's id changing between two
//     frames in a row where they are found; and an id found on two
//     different people (kept across a cut). A person who leaves and comes
//     back may get a new id (re-identification is not this bench's).
//   - first-frame lag: for each appearance of a person (from the start,
//     after leaving the frame, after a cut), the frames from the first in
//     which they are eligible until the first they are found in.
//   - pose sign errors: frames of a face rolled 10° or more whose pose_Rz
//     has the other sign.
//   - AU saturation: successful rows with any AU at 5.00.
func scoreInput(in input, frames []outFrame) score {
	var s score
	bySeq := map[int]outFrame{}
	for _, f := range frames {
		bySeq[f.Seq] = f
		s.output += len(f.Faces)
		for _, fc := range f.Faces {
			if fc.Fail != "" || fc.AU == nil {
				continue
			}
			s.rows++
			for _, v := range fc.AU {
				if v >= 4.995 {
					s.saturated++
					break
				}
			}
		}
	}
	if in.truth == nil { // stills and title cards: in.faces faces in every frame
		n := len(frames)
		if n == 0 {
			n = 1
		}
		s.eligible = in.faces * n
		for _, f := range frames {
			if in.faces > 0 && len(f.Faces) > 0 {
				s.found++
				s.matched++
			}
		}
		if in.faces > 0 && s.found == 0 {
			s.lag = 1
		}
		return s
	}
	tr := in.truth
	cuts := map[int]bool{}
	for _, c := range tr.Cuts {
		cuts[c] = true
	}
	lastID := map[string]string{} // identity → id found in the previous frame (within a shot)
	owner := map[string]string{}  // id → the identity it was found on
	// identity → the frame its appearance's clock started (its first
	// eligible frame since it appeared); -1: found already in this
	// appearance. An appearance lasts while the person is in the frame
	// (occlusion by another face does not end it).
	runStart := map[string]int{}
	for i, tf := range tr.Frames {
		if cuts[i] {
			lastID = map[string]string{}
			runStart = map[string]int{}
		}
		out := bySeq[i+1].Faces
		used := make([]bool, len(out))
		seen := map[string]bool{}
		// Greedy matching, best IoU first.
		type pair struct {
			t, o int
			v    float64
		}
		var pairs []pair
		for ti, f := range tf.Faces {
			for oi, o := range out {
				if v := iou(f.Box, o.Box); v >= 0.3 {
					pairs = append(pairs, pair{ti, oi, v})
				}
			}
		}
		sort.Slice(pairs, func(a, b int) bool { return pairs[a].v > pairs[b].v })
		tused := make([]bool, len(tf.Faces))
		match := make([]int, len(tf.Faces))
		for k := range match {
			match[k] = -1
		}
		for _, p := range pairs {
			if tused[p.t] || used[p.o] {
				continue
			}
			tused[p.t], used[p.o] = true, true
			match[p.t] = p.o
			s.matched++
		}
		for ti, f := range tf.Faces {
			id := f.Identity
			seen[id] = true
			el := eligible(f)
			if el {
				s.eligible++
				if _, ok := runStart[id]; !ok {
					runStart[id] = i
				}
			}
			o := match[ti]
			if o < 0 {
				delete(lastID, id)
				continue
			}
			if el {
				s.found++
				if st, ok := runStart[id]; ok && st >= 0 {
					s.lag = max(s.lag, i-st)
					runStart[id] = -1
				}
			}
			fc := out[o]
			if prev, ok := lastID[id]; ok && prev != fc.ID {
				s.switches++
			}
			lastID[id] = fc.ID
			if who, ok := owner[fc.ID]; ok && who != id {
				s.switches++
				owner[fc.ID] = id
			} else if !ok {
				owner[fc.ID] = id
			}
			if math.Abs(f.Roll) >= 10 && fc.Pose != nil && len(fc.Pose.R) == 3 && (fc.Pose.R[2] > 0) != (f.Roll > 0) {
				s.signErrors++
			}
		}
		for id := range runStart {
			if !seen[id] {
				delete(runStart, id)
			}
		}
		for id := range lastID {
			if !seen[id] {
				delete(lastID, id)
			}
		}
	}
	for _, st := range runStart { // never found in a run that lasted to the end
		if st >= 0 {
			s.lag = max(s.lag, len(tr.Frames)-st)
		}
	}
	return s
}
