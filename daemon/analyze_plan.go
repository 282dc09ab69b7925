package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/affectd/affectd/capture/file"
	"github.com/affectd/affectd/stream/record"
)

// VideoExtensions are the file name endings a folder is searched for.
var VideoExtensions = []string{".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".y4m", ".ogv"}

// job is one input file.
type job struct {
	rep    *FileReport
	name   string // the output's base name, also the analyzer's stream id
	sig    string
	resume record.State // what an interrupted run did
	probed int          // frames the container claims (0: unknown)
	// partial and commit are record.Options' (analyze -cluster: this
	// worker's own partial file, and the check that the file is still
	// this worker's before its output is put in place).
	partial string
	commit  func() error
}

// plan expands the inputs into jobs: folders are searched, outputs named,
// finished outputs skipped and interrupted ones prepared for resuming.
func (a *analyzer) plan(rep *AnalyzeReport) ([]*job, error) {
	if err := os.MkdirAll(a.o.OutDir, 0o750); err != nil {
		return nil, fmt.Errorf("analyze: output folder: %w", err)
	}
	files, err := expandInputs(a.o.Inputs, a.o.Frames, func(p string, err error) {
		rep.Files = append(rep.Files, &FileReport{Input: p, Status: "failed", Err: err})
	}, func(folder string) {
		a.o.Log.Warn("no videos or pictures in folder", "folder", folder, "videos", strings.Join(VideoExtensions, " "), "pictures", strings.Join(file.ImageExtensions, " "))
	})
	if err != nil {
		return nil, err
	}
	var jobs []*job
	for i, name := range outputNames(files) {
		j := a.prepare(files[i], name)
		rep.Files = append(rep.Files, j.rep)
		if j.rep.Status != "" {
			continue // skipped or failed
		}
		a.total.Add(int64(j.probed))
		jobs = append(jobs, j)
	}
	a.filesAll = int32(len(jobs))
	return jobs, nil
}

// expandInputs lists the inputs to analyse: files as given, folders
// searched for videos and pictures (or, with frames, folders of pictures),
// each folder's finds in name order. bad gets what cannot be read, empty
// the folders without any.
func expandInputs(inputs []string, frames bool, bad func(path string, err error), empty func(folder string)) ([]string, error) {
	var files []string
	for _, in := range inputs {
		st, err := os.Stat(in)
		if err != nil {
			bad(in, err)
			continue
		}
		if !st.IsDir() {
			files = append(files, in)
			continue
		}
		var found []string
		err = filepath.WalkDir(in, func(p string, de fs.DirEntry, err error) error {
			switch {
			case err != nil:
				bad(p, err)
			case de.IsDir() && frames:
				if fr, _ := file.Frames(p); len(fr) > 0 {
					found = append(found, p) // a folder of frames: one input
				}
			case de.IsDir():
			case slices.Contains(VideoExtensions, strings.ToLower(filepath.Ext(p))):
				found = append(found, p)
			case file.IsImage(p) && !frames:
				found = append(found, p) // a still: a one-frame input
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		if len(found) == 0 {
			empty(in)
		}
		files = append(files, found...)
	}
	return files, nil
}

// outputNames names each input's output: its base name, numbered when an
// earlier input has the name.
func outputNames(files []string) []string {
	used := map[string]bool{}
	out := make([]string, len(files))
	for i, in := range files {
		base := strings.TrimSuffix(filepath.Base(in), filepath.Ext(in))
		name := base
		for n := 2; used[name]; n++ {
			name = fmt.Sprintf("%s_%d", base, n)
		}
		used[name] = true
		out[i] = name
	}
	return out
}

// prepare makes the job of one input: its report's Status is "skipped"
// (the output exists; -force redoes it) or "failed", or "" with the job
// ready to run, an interrupted run's state loaded.
func (a *analyzer) prepare(in, name string) *job {
	j := &job{name: name, rep: &FileReport{Input: in, Output: filepath.Join(a.o.OutDir, name+"."+a.o.Format)}}
	if _, err := os.Stat(j.rep.Output); err == nil && !a.o.Force && !a.o.TrackOnly {
		j.rep.Status = "skipped"
		return j
	}
	sig, err := a.signature(in)
	if err != nil {
		j.rep.Status, j.rep.Err = "failed", err
		return j
	}
	j.sig = sig
	if a.node != "" {
		j.partial = workerPartial(j.rep.Output, a.node)
	}
	if info, err := file.Probe(in); err == nil && info.Frames > 0 {
		j.probed = info.Frames
	}
	if !a.o.Force && !a.o.TrackOnly {
		a.loadResume(j)
	}
	return j
}

// loadResume reads an interrupted run's state; one made with other inputs
// or options is started over. A worker of analyze -cluster takes the
// furthest of every worker's (resumeShared).
func (a *analyzer) loadResume(j *job) {
	if a.node != "" {
		a.resumeShared(j)
		return
	}
	st, err := record.LoadState(j.rep.Output, j.sig)
	switch {
	case err == nil:
		j.resume = st
	case errors.Is(err, record.ErrNoState):
	default:
		a.o.Log.Warn(err.Error()+": starting over", "output", j.rep.Output)
	}
}

// signature identifies an input and everything that changes its output:
// a resumed run must produce the bytes an uninterrupted one would.
func (a *analyzer) signature(in string) (string, error) {
	fi, err := os.Stat(in)
	if err != nil {
		return "", err
	}
	c := a.cfg
	stamp := func(p string) string {
		if p == "" {
			return ""
		}
		if fi, err := os.Stat(p); err == nil {
			return fmt.Sprintf("%s|%d|%d", p, fi.Size(), fi.ModTime().UnixNano())
		}
		return p
	}
	abs, _ := filepath.Abs(in)
	parts := []any{
		"affectd analyze v3", Version, abs, fi.Size(), fi.ModTime().UnixNano(),
		a.o.Format, a.o.Points, a.o.Features, a.o.Batch,
		stamp(c.Model.Path), stamp(c.ORT.Library), c.ORT.Provider, c.ORT.Threads,
		stamp(c.Detector.Model), c.Detector.ScoreThreshold, c.Detector.DetectEvery, c.Detector.RefineRuns, c.Detector.Threads,
		c.Tracker.LostAfter.D(), c.Tracker.ConfirmHits, c.Align.Margin,
		stamp(c.Landmarks.Model), c.Landmarks.Align, c.Landmarks.FOV, c.Smoothing,
		c.Landmarks.Backend, stamp(c.Landmarks.MeshModel), stamp(c.Landmarks.IrisModel), a.o.Mesh,
		c.Detector.Verify, c.Detector.VerifyThreshold, c.Tracker.Cuts, c.Tracker.FitThreshold, a.o.Frames, a.o.Neutral, stamp(a.o.Neutral),
		stamp(c.ExpressionFER.Model), c.Identity.Mode, stamp(c.Identity.Model), c.Identity.Threshold, c.Identity.Expiry.D(), c.Identity.Every.D(),
	}
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%v\x00", p)
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// workerPartial is where node grows the output out: a partial file of its
// own, so a worker that stalled and lost the file (another resumed it)
// can never write into the file of the worker that has it now.
func workerPartial(out, node string) string {
	p := record.PartialPath(out) + "." + node
	if len(filepath.Base(p))+len(".state.tmp") > 255 { // a long output name: the node's hash
		sum := sha256.Sum256([]byte(node))
		p = record.PartialPath(out) + "." + hex.EncodeToString(sum[:6])
	}
	return p
}

// resumeShared picks the furthest checkpoint among the output's partial
// files (this worker's, other workers', an interrupted single-machine
// run's) and, unless it is this worker's own, copies it into that.
func (a *analyzer) resumeShared(j *job) {
	best := ""
	for _, p := range record.Partials(j.rep.Output) {
		if st, err := record.LoadPartial(p, j.sig); err == nil && st.Frames > j.resume.Frames {
			best, j.resume = p, st
		}
	}
	if best == "" || best == j.partial {
		return
	}
	if err := record.Adopt(best, j.partial, j.resume); err != nil {
		a.o.Log.Warn("could not copy another worker's checkpoint: starting over", "from", best, "err", err)
		j.resume = record.State{}
	}
}
