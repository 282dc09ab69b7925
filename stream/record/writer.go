package record

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"

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

// PartialPath is where the output grows; StatePath where its progress is
// recorded.
func PartialPath(path string) string { return path + ".partial" }

// StatePath is the file of an output's State.
func StatePath(path string) string { return path + ".partial.state" }

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
	f, err := os.Open(StatePath(path))
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
	if fi, err := os.Stat(PartialPath(path)); err != nil || fi.Size() < st.Bytes {
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
		w.f, err = os.OpenFile(PartialPath(o.Path), os.O_RDWR, 0)
		if err == nil {
			err = w.f.Truncate(o.Resume.Bytes)
		}
		if err == nil {
			_, err = w.f.Seek(o.Resume.Bytes, io.SeekStart)
		}
		w.bytes = o.Resume.Bytes
	} else {
		os.Remove(StatePath(o.Path))
		w.f, err = os.OpenFile(PartialPath(o.Path), os.O_RDWR|os.O_CREATE|os.O_TRUNC, FileMode)
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
	b, _ := json.Marshal(State{Version: stateVersion, Signature: w.o.Signature, Frames: frames, Bytes: w.bytes})
	tmp := StatePath(w.o.Path) + ".tmp"
	if err := os.WriteFile(tmp, b, FileMode); err != nil {
		return err
	}
	return os.Rename(tmp, StatePath(w.o.Path))
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
	if err == nil {
		err = os.Rename(PartialPath(w.o.Path), w.o.Path)
	}
	if err == nil {
		os.Remove(StatePath(w.o.Path))
	}
	return err
}

// Abort closes an output that did not finish. keep leaves the partial
// file and its state for a later run to resume; otherwise both go.
func (w *Writer) Abort(keep bool) {
	w.f.Close()
	if !keep {
		os.Remove(PartialPath(w.o.Path))
		os.Remove(StatePath(w.o.Path))
	}
}
