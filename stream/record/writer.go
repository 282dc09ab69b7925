package record

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/affectd/affectd/infer/analysis"
)

// Format lays results out as the lines of a file.
type Format interface {
	// Header appends the lines that open a new file (none: buf as is).
	Header(buf []byte) []byte
	// Frame appends one frame's lines.
	Frame(buf []byte, r *analysis.FrameResult) []byte
}

// State is how far an interrupted run got: the frames whose lines are in
// the partial file, and the file's length after them.
type State struct {
	Version   int    `json:"version"`
	Signature string `json:"signature"`
	Frames    uint64 `json:"frames"`
	Bytes     int64  `json:"bytes"`
}

// PartialPath is where the output grows by default; StatePath where its
// progress is recorded.
func PartialPath(path string) string { return path + ".partial" }

// StatePath is the file of an output's State.
func StatePath(path string) string { return stateOf(PartialPath(path)) }

// stateOf is the state file of a partial file.
func stateOf(partial string) string { return partial + ".state" }

// Errors of LoadState: the run starts over.
var (
	ErrNoState      = errors.New("no interrupted run")
	ErrBadState     = errors.New("unreadable resume state")
	ErrChanged      = errors.New("the input or options changed since the interrupted run")
	ErrShortPartial = errors.New("the partial output is shorter than its state says")
)

// stateVersion is the version of State's format.
const stateVersion = 1

// maxStateBytes bounds a state file (one is under 200 bytes; its
// signature is a hash).
const maxStateBytes = 4096

// LoadState reads an interrupted run's state for the output at path,
// made with the signature sig.
// A state file is small: one longer than maxStateBytes, or one whose
// counts are negative, is unreadable.
func LoadState(path, sig string) (State, error) {
	return LoadPartial(PartialPath(path), sig)
}

// LoadPartial is LoadState for an output growing at partial (Options.Partial).
func LoadPartial(partial, sig string) (State, error) {
	f, err := os.Open(stateOf(partial))
	if err != nil {
		return State{}, ErrNoState
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateBytes+1))
	if err != nil || len(b) > maxStateBytes {
		return State{}, ErrBadState
	}
	var st State
	if json.Unmarshal(b, &st) != nil || st.Version != stateVersion || st.Bytes < 0 {
		return State{}, ErrBadState
	}
	if st.Signature != sig {
		return State{}, ErrChanged
	}
	if fi, err := os.Stat(partial); err != nil || fi.Size() < st.Bytes {
		return State{}, ErrShortPartial
	}
	return st, nil
}

// FileMode is the outputs' permissions: faces' data is personal data,
// readable by its owner and group only.
const FileMode = 0o640

// Options configure a Writer.
type Options struct {
	// Path is the finished file.
	Path   string
	Format Format
	// Signature identifies the input and every option that changes the
	// output: a resumed run must write the bytes an uninterrupted one
	// would.
	Signature string
	// Every is how many frames lie between two checkpoints (0: none).
	Every uint64
	// Resume continues an interrupted run (from LoadState; zero: start
	// afresh). The results of its frames are not written again.
	Resume State
	// Partial is where the output grows, its state beside it with
	// ".state" added ("": PartialPath(Path)). Workers of one job that
	// share the output folder each grow their own (analyze -cluster), so
	// one that stalled and lost the file cannot write into another's.
	Partial string
	// Commit, when set, is asked once the complete output is synced and
	// before it is renamed into place: an error leaves the partial file
	// and its state as they are and is Finish's error.
	Commit func() error
}

func (o *Options) partial() string {
	if o.Partial != "" {
		return o.Partial
	}
	return PartialPath(o.Path)
}

// Writer is a file sink with checkpoints.
type Writer struct {
	o     Options
	f     *os.File
	w     *bufio.Writer
	bytes int64 // written so far (through w)
	buf   []byte
}

// Create opens the output: a new partial file with the format's header,
// or the interrupted one cut back to its last checkpoint.
func Create(o Options) (*Writer, error) {
	w := &Writer{o: o}
	var err error
	if o.Resume.Frames > 0 {
		w.f, err = os.OpenFile(o.partial(), os.O_RDWR, 0)
		if err == nil {
			err = w.f.Truncate(o.Resume.Bytes)
		}
		if err == nil {
			_, err = w.f.Seek(o.Resume.Bytes, io.SeekStart)
		}
		w.bytes = o.Resume.Bytes
	} else {
		os.Remove(stateOf(o.partial()))
		w.f, err = os.OpenFile(o.partial(), os.O_RDWR|os.O_CREATE|os.O_TRUNC, FileMode)
	}
	if err != nil {
		if w.f != nil {
			w.f.Close()
		}
		return nil, err
	}
	w.w = bufio.NewWriterSize(w.f, 256<<10)
	if o.Resume.Frames == 0 {
		if err := w.emit(o.Format.Header(w.buf[:0])); err != nil {
			w.f.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *Writer) emit(b []byte) error {
	w.buf = b
	n, err := w.w.Write(b)
	w.bytes += int64(n)
	return err
}

// WriteFrame implements analysis.Sink: the frame's lines, and a checkpoint
// every Every frames.
func (w *Writer) WriteFrame(r *analysis.FrameResult) error {
	if r.Seq == 0 || r.Seq <= w.o.Resume.Frames {
		return nil // the end, or done by the interrupted run
	}
	if err := w.emit(w.o.Format.Frame(w.buf[:0], r)); err != nil {
		return err
	}
	if w.o.Every > 0 && r.Seq%w.o.Every == 0 {
		return w.checkpoint(r.Seq)
	}
	return nil
}

// checkpoint makes the lines so far durable and records them as done.
func (w *Writer) checkpoint(frames uint64) error {
	if err := w.w.Flush(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	return writeState(w.o.partial(), State{Version: stateVersion, Signature: w.o.Signature, Frames: frames, Bytes: w.bytes})
}

// writeState replaces a partial file's state at once.
func writeState(partial string, st State) error {
	b, _ := json.Marshal(st)
	tmp := stateOf(partial) + ".tmp"
	if err := os.WriteFile(tmp, b, FileMode); err != nil {
		return err
	}
	return os.Rename(tmp, stateOf(partial))
}

// Finish completes the output: flushed, synced and renamed into place.
func (w *Writer) Finish() error {
	err := w.w.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil && w.o.Commit != nil {
		if err = w.o.Commit(); err != nil {
			return err // the partial file stays: not this writer's to finish
		}
	}
	if err == nil {
		err = os.Rename(w.o.partial(), w.o.Path)
	}
	if err == nil {
		os.Remove(stateOf(w.o.partial()))
	}
	return err
}

// Abort closes an output that did not finish. keep leaves the partial
// file and its state for a later run to resume; otherwise both go.
func (w *Writer) Abort(keep bool) {
	w.f.Close()
	if !keep {
		os.Remove(w.o.partial())
		os.Remove(stateOf(w.o.partial()))
	}
}

// Partials lists the partial files of the output at path that have a
// state: the default one and every worker's (PartialPath(path) followed
// by a dot and a name).
func Partials(path string) []string {
	dir, base := filepath.Split(path)
	pre := filepath.Join(dir, PartialPath(base)) // as partialFiles names them
	var out []string
	for _, p := range partialFiles(path) {
		if s, ok := strings.CutSuffix(p, ".state"); ok && (s == pre || !strings.Contains(strings.TrimPrefix(s, pre+"."), ".")) {
			out = append(out, s)
		}
	}
	return out
}

// RemovePartials deletes every partial file of the output at path, its
// state and leftovers (the output is complete).
func RemovePartials(path string) {
	for _, p := range partialFiles(path) {
		os.Remove(p)
	}
}

// partialFiles lists the files beside the output at path named
// PartialPath(path), or that followed by a dot and more.
func partialFiles(path string) []string {
	dir, base := filepath.Split(path)
	ents, err := os.ReadDir(cmp.Or(dir, "."))
	if err != nil {
		return nil
	}
	pre := filepath.Base(PartialPath(base))
	var out []string
	for _, e := range ents {
		if n := e.Name(); n == pre || strings.HasPrefix(n, pre+".") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}

// Adopt makes partial, this writer's, a copy of the first st.Bytes of
// another's (from, whose state is st) with the same state, so a run
// resumes from another worker's checkpoint without touching its file,
// which a stalled worker may still be writing.
func Adopt(from, partial string, st State) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	os.Remove(stateOf(partial))
	tmp := partial + ".tmp"
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, FileMode)
	if err != nil {
		return err
	}
	n, err := io.CopyN(dst, src, st.Bytes)
	if err == nil && n != st.Bytes {
		err = ErrShortPartial
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, partial)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return writeState(partial, st)
}
