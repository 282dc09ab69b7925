package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/train"
	"github.com/affectd/affectd/track"
)

// featuresCmd: affectd features -aligned ROOT... writes the encoder's
// features for folders of aligned face crops (ABAW's cropped_aligned:
// one folder per video, one picture per frame).
func featuresCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("features", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: affectd features -model ENCODER.onnx [-out DIR] [-every N] FOLDER|VIDEO...

Writes MAE-Face's feature vector per face per frame. A video file goes
through the per-frame core exactly as affectd analyze -features takes it
(detection, tracking, landmark alignment: the live path's vectors;
resumable). A folder is ABAW's cropped_aligned layout, already aligned: a
folder per video (or the folder itself), a picture per frame named by its
number (00001.jpg); each crop is resized to the model's input as the
runtime's aligner samples (bilinear, pixel centres) and normalised as its
metadata says. Per video:
<video>.npy (float32, frames × D; numpy.load reads it) and
<video>.index.csv (row,frame,face), the input of affectd train. A video
whose output exists for the same model, pictures and -every is skipped
(<video>.key); an interrupted run redoes only the video it was in.

flags:
`)
		fs.PrintDefaults()
	}
	model := fs.String("model", "", "the encoder as ONNX (tools/export, no heads; a model with heads works too)")
	ort := fs.String("ort", "", "ONNX Runtime library (default: searched in "+searchOrder+")")
	out := fs.String("out", "features", "output folder")
	every := fs.Int("every", 1, "keep every N-th frame")
	batch := fs.Int("batch", 8, "crops per model batch")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *model == "" || fs.NArg() == 0 || *every < 1 || *batch < 1 || *batch > 256 {
		fs.Usage()
		return 2
	}
	c := config.Default()
	c.Model.Path = *model
	if *ort != "" {
		c.ORT.Library = *ort
	}
	findDefaults(&c, nil)
	// Features need neither expression_fer nor identities.
	c.ExpressionFER.Model, c.Identity.Mode = "", config.IdentityOff
	var dirs, files []string
	for _, a := range fs.Args() {
		if st, err := os.Stat(a); err != nil {
			fmt.Fprintf(stderr, "affectd features: %v\n", err)
			return 1
		} else if st.IsDir() {
			dirs = append(dirs, a)
		} else {
			files = append(files, a)
		}
	}
	if len(dirs) > 0 {
		n, err := ExtractFeatures(context.Background(), &c, dirs, *out, *every, *batch, stdout)
		if err != nil {
			fmt.Fprintf(stderr, "affectd features: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "wrote %d folders' features → %s\n", n, *out)
	}
	if len(files) > 0 {
		var bar io.Writer // analyze's progress bar with its ETA, on a terminal
		if isTerminal(stderr) {
			bar = stderr
		}
		if err := extractVideos(context.Background(), &c, files, *out, *every, stdout, bar); err != nil {
			fmt.Fprintf(stderr, "affectd features: %v\n", err)
			return 1
		}
	}
	return 0
}

var frameNumber = regexp.MustCompile(`^(\d+)\.(jpg|jpeg|png)$`)

// alignedVideo is one folder of crops: its frames by number.
type alignedVideo struct {
	name   string
	frames []int
	paths  []string
}

// listAligned finds the videos under roots: each folder holding numbered
// pictures is one, named after the folder.
func listAligned(roots []string) ([]alignedVideo, error) {
	var vids []alignedVideo
	seen := map[string]string{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			ents, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			v := alignedVideo{name: filepath.Base(p)}
			for _, e := range ents {
				if m := frameNumber.FindStringSubmatch(strings.ToLower(e.Name())); m != nil && !e.IsDir() {
					n, _ := strconv.Atoi(m[1])
					v.frames, v.paths = append(v.frames, n), append(v.paths, filepath.Join(p, e.Name()))
				}
			}
			if len(v.frames) == 0 {
				return nil
			}
			if other, dup := seen[v.name]; dup {
				return fmt.Errorf("two folders named %s (%s and %s): video names must be unique", v.name, other, p)
			}
			seen[v.name] = p
			idx := make([]int, len(v.frames))
			for i := range idx {
				idx[i] = i
			}
			sort.Slice(idx, func(a, b int) bool { return v.frames[idx[a]] < v.frames[idx[b]] })
			s := alignedVideo{name: v.name}
			for k, i := range idx {
				if k > 0 && v.frames[i] == s.frames[k-1] {
					return fmt.Errorf("%s: two pictures of frame %d", p, v.frames[i])
				}
				s.frames, s.paths = append(s.frames, v.frames[i]), append(s.paths, v.paths[i])
			}
			vids = append(vids, s)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(vids) == 0 {
		return nil, errors.New("no folder of numbered pictures (00001.jpg, …)")
	}
	return vids, nil
}

// ExtractFeatures runs the encoder c.Model.Path over every video of aligned
// crops under roots into outDir (the features format of infer/train),
// keeping every N-th frame, batch crops at a time; it returns how many
// videos there were.
func ExtractFeatures(ctx context.Context, c *config.Config, roots []string, outDir string, every, batch int, progress io.Writer) (int, error) {
	vids, err := listAligned(roots)
	if err != nil {
		return 0, err
	}
	m, err := infer.Load(c.Model.Path, infer.SessionOptions{LibraryPath: c.ORT.Library}, nil)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	md := m.Metadata()
	if md.FeatureDim == 0 {
		return 0, fmt.Errorf("%s has no features output", c.Model.Path)
	}
	al, err := track.NewAligner(md.Input.Size, 0, md.Input.Mean, md.Input.Std)
	if err != nil {
		return 0, err
	}
	eng, err := infer.New(m, infer.Options{MaxBatch: batch, QueueLimit: 2 * batch, Runners: 1, MaxWait: 1 << 62, Overload: infer.OverloadWait, KeepFeatures: true})
	if err != nil {
		return 0, err
	}
	ectx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); eng.Run(ectx) }()
	defer func() { cancel(); <-done; eng.Close() }()
	modelKey, err := stampSHA(c.Model.Path)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return 0, err
	}
	total, doneFrames := 0, 0
	for _, v := range vids {
		total += (len(v.frames) + every - 1) / every
	}
	began := time.Now()
	for vi, v := range vids {
		key := videoKey(modelKey, every, v)
		base := filepath.Join(outDir, v.name)
		if k, err := os.ReadFile(base + ".key"); err == nil && string(k) == key {
			if _, err := os.Stat(base + ".npy"); err == nil {
				total -= (len(v.frames) + every - 1) / every // done before
				continue
			}
		}
		var rows []float32
		var idx bytes.Buffer
		idx.WriteString("row,frame,face\n")
		var pending []*infer.Request
		var pframes []int
		flush := func() error {
			eng.Flush()
			for i, r := range pending {
				res, err := r.Wait(ctx)
				if err != nil {
					r.Release()
					return err
				}
				fmt.Fprintf(&idx, "%d,%d,%s/1\n", len(rows)/md.FeatureDim, pframes[i], v.name)
				rows = append(rows, res.Features...)
				r.Release()
			}
			pending, pframes = pending[:0], pframes[:0]
			return nil
		}
		for i := 0; i < len(v.frames); i += every {
			img := gocv.IMRead(v.paths[i], gocv.IMReadColor)
			if img.Empty() {
				img.Close()
				return vi, fmt.Errorf("%s: cannot read the picture", v.paths[i])
			}
			r, err := eng.Reserve(ctx)
			if err != nil {
				img.Close()
				return vi, err
			}
			err = al.Warp(img, resizeTo(img.Cols(), img.Rows(), md.Input.Size), r.Input())
			img.Close()
			if err != nil {
				r.Release()
				return vi, fmt.Errorf("%s: %w", v.paths[i], err)
			}
			r.Submit()
			pending, pframes = append(pending, r), append(pframes, v.frames[i])
			if len(pending) == batch {
				if err := flush(); err != nil {
					return vi, err
				}
			}
		}
		if err := flush(); err != nil {
			return vi, err
		}
		var npy bytes.Buffer
		n := len(rows) / md.FeatureDim
		if err := train.WriteNPY(&npy, n, md.FeatureDim, rows); err != nil {
			return vi, err
		}
		for _, f := range []struct {
			ext  string
			data []byte
		}{{".npy", npy.Bytes()}, {".index.csv", idx.Bytes()}, {".key", []byte(key)}} {
			if err := writeFileAtomic(base+f.ext, f.data); err != nil {
				return vi, err
			}
		}
		doneFrames += n
		rate := float64(doneFrames) / time.Since(began).Seconds()
		eta := time.Duration(float64(total-doneFrames) / rate * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(progress, "%s: %d frames (%d/%d videos, %.1f frames/s, ETA %v)\n", v.name, n, vi+1, len(vids), rate, eta)
	}
	return len(vids), nil
}

// resizeTo is the frame → crop similarity of a plain resize of a w×h
// picture to s×s (pixel centres onto pixel centres; w = h for aligned
// crops, the larger side otherwise).
func resizeTo(w, h, s int) track.Similarity {
	k := float32(max(w, h)) / float32(s) // crop → frame
	inv := track.Similarity{A: k, B: 0, Tx: 0.5*k - 0.5, Ty: 0.5*k - 0.5}
	return inv.Invert()
}

// stampSHA is a file's SHA-256.
func stampSHA(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

// videoKey names what a video's features come from: the model, -every,
// and each picture's name, size and time.
func videoKey(model string, every int, v alignedVideo) string {
	h := sha256.New()
	fmt.Fprintf(h, "affectd features v1\x00%s\x00%d\x00", model, every)
	for i, p := range v.paths {
		st, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(h, "%d missing\x00", v.frames[i])
			continue
		}
		fmt.Fprintf(h, "%d %s %d %d\x00", v.frames[i], filepath.Base(p), st.Size(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// extractVideos writes the features of video files through the per-frame
// core, exactly as `affectd analyze -features` computes them (detection,
// tracking, alignment, the engine; resumable by analyze's own
// checkpoints in outDir/.analyze), then turns each finished CSV into the
// features format, keeping every N-th frame.
func extractVideos(ctx context.Context, c *config.Config, inputs []string, outDir string, every int, progress, bar io.Writer) error {
	work := filepath.Join(outDir, ".analyze")
	ac := *c
	// affectd analyze's own defaults: the detector on every frame, raw
	// per-frame values; a later `affectd analyze -model trained.onnx`
	// then sees the very same faces and crops.
	ac.Detector.DetectEvery, ac.Smoothing.Enabled = 1, false
	rep, err := Analyze(ctx, &ac, AnalyzeOptions{Inputs: inputs, OutDir: work, Features: true, Points: false, Progress: bar})
	if err != nil {
		return err
	}
	if rep.Failed() > 0 {
		for _, f := range rep.Files {
			if f.Err != nil {
				return fmt.Errorf("%s: %w", f.Input, f.Err)
			}
		}
	}
	for _, f := range rep.Files {
		name := strings.TrimSuffix(filepath.Base(f.Output), ".csv")
		n, err := csvToFeatures(f.Output, filepath.Join(outDir, name), name, every)
		if err != nil {
			return err
		}
		fmt.Fprintf(progress, "%s: %d face rows\n", name, n)
	}
	return nil
}

// csvToFeatures converts an analyze CSV with features (f_0 …) into
// base.npy and base.index.csv; rows without a feature vector (faces the
// model did not analyse: a failed fit) are left out.
func csvToFeatures(csvPath, base, video string, every int) (int, error) {
	data, err := os.ReadFile(csvPath)
	if err != nil {
		return 0, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	head := strings.Split(lines[0], ",")
	frameCol, faceCol, f0 := -1, -1, -1
	for i, h := range head {
		switch h = strings.TrimSpace(h); {
		case h == "frame":
			frameCol = i
		case h == "face_id":
			faceCol = i
		case h == "f_0":
			f0 = i
		}
	}
	if frameCol < 0 || faceCol < 0 || f0 < 0 {
		return 0, fmt.Errorf("%s: no frame, face_id or f_0 column", csvPath)
	}
	dim := len(head) - f0
	var x []float32
	var idx bytes.Buffer
	idx.WriteString("row,frame,face\n")
	rows := 0
	for ln, l := range lines[1:] {
		p := strings.Split(l, ",")
		if len(p) != len(head) {
			return 0, fmt.Errorf("%s:%d: %d fields, the header has %d", csvPath, ln+2, len(p), len(head))
		}
		frame, err := strconv.Atoi(strings.TrimSpace(p[frameCol]))
		if err != nil || (frame-1)%every != 0 || strings.TrimSpace(p[f0]) == "" {
			continue
		}
		row := make([]float32, dim)
		ok := true
		for j := range dim {
			v, err := strconv.ParseFloat(strings.TrimSpace(p[f0+j]), 32)
			if err != nil {
				ok = false
				break
			}
			row[j] = float32(v)
		}
		if !ok {
			continue
		}
		x = append(x, row...)
		fmt.Fprintf(&idx, "%d,%d,%s/%s\n", rows, frame, video, strings.TrimSpace(p[faceCol]))
		rows++
	}
	var npy bytes.Buffer
	if err := train.WriteNPY(&npy, rows, dim, x); err != nil {
		return 0, err
	}
	if err := writeFileAtomic(base+".npy", npy.Bytes()); err != nil {
		return 0, err
	}
	return rows, writeFileAtomic(base+".index.csv", idx.Bytes())
}
