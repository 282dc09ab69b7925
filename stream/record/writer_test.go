package record

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/affectd/affectd/infer/analysis"
)

// lines is a Format of one line per frame: its sequence number.
type lines struct{}

func (lines) Header(buf []byte) []byte { return append(buf, "seq\n"...) }
func (lines) Frame(buf []byte, r *analysis.FrameResult) []byte {
	return append(strconv.AppendUint(buf, r.Seq, 10), '\n')
}

// write runs frames 1..n through a Writer with checkpoints every 4; it
// finishes when finish is set and aborts (keeping the partial) otherwise.
func write(t *testing.T, o Options, n uint64, finish bool) {
	t.Helper()
	w, err := Create(o)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= n; seq++ {
		if err := w.WriteFrame(&analysis.FrameResult{Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	if finish {
		if err := w.Finish(); err != nil {
			t.Fatal(err)
		}
	} else {
		w.Abort(true)
	}
}

// TestResume: a run interrupted after frame 10 (checkpoint at 8) and
// resumed writes exactly the bytes of an uninterrupted run; files are
// 0640.
func TestResume(t *testing.T) {
	dir := t.TempDir()
	whole, resumed := filepath.Join(dir, "whole.csv"), filepath.Join(dir, "resumed.csv")
	write(t, Options{Path: whole, Format: lines{}, Signature: "s", Every: 4}, 20, true)
	write(t, Options{Path: resumed, Format: lines{}, Signature: "s", Every: 4}, 10, false)
	if _, err := LoadState(resumed, "other"); !errors.Is(err, ErrChanged) {
		t.Errorf("another signature: %v, want ErrChanged", err)
	}
	st, err := LoadState(resumed, "s")
	if err != nil || st.Frames != 8 {
		t.Fatalf("state %+v %v, want 8 frames", st, err)
	}
	write(t, Options{Path: resumed, Format: lines{}, Signature: "s", Every: 4, Resume: st}, 20, true)
	a, _ := os.ReadFile(whole)
	b, _ := os.ReadFile(resumed)
	if !bytes.Equal(a, b) {
		t.Errorf("resumed output differs:\n%s\nwant\n%s", b, a)
	}
	if fi, err := os.Stat(resumed); err != nil || fi.Mode().Perm() != FileMode {
		t.Errorf("output mode %v %v, want %v", fi.Mode().Perm(), err, os.FileMode(FileMode))
	}
}

// FuzzLoadState: whatever a state file holds (hand-edited, truncated,
// hostile), LoadState either refuses it or returns a state a Writer can
// resume from: within the partial file, non-negative.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"version":1,"signature":"s","frames":8,"bytes":20}`), 40)
	f.Add([]byte(`{"version":1,"signature":"s","frames":8,"bytes":-5}`), 40)
	f.Add([]byte(`{"version":1,"signature":"s","frames":18446744073709551615,"bytes":9223372036854775807}`), 0)
	f.Add([]byte(`{"version":1`), 3)
	f.Fuzz(func(t *testing.T, state []byte, partial int) {
		dir := t.TempDir()
		path := filepath.Join(dir, "out.csv")
		if err := os.WriteFile(StatePath(path), state, 0o600); err != nil {
			t.Fatal(err)
		}
		size := int64(partial) & 0xffff
		if err := os.WriteFile(PartialPath(path), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := LoadState(path, "s")
		if err != nil {
			return
		}
		if st.Bytes < 0 || st.Bytes > size || st.Signature != "s" {
			t.Fatalf("accepted %+v for a partial of %d bytes", st, size)
		}
		w, err := Create(Options{Path: path, Format: lines{}, Signature: "s", Resume: st})
		if err != nil {
			t.Fatalf("resuming %+v: %v", st, err)
		}
		w.Abort(false)
	})
}

// TestAdopt: worker b resumes worker a's interrupted output from a's
// checkpoint through its own partial file. a, stalled, keeps writing
// into its own file afterwards; b's output is still exactly an
// uninterrupted run's. A Commit that refuses leaves the output unmade
// and the partial in place; Partials lists both workers' partial files
// and RemovePartials clears every one.
func TestAdopt(t *testing.T) {
	dir := t.TempDir()
	whole, out := filepath.Join(dir, "whole.csv"), filepath.Join(dir, "out.csv")
	write(t, Options{Path: whole, Format: lines{}, Signature: "s", Every: 4}, 20, true)
	pa, pb := PartialPath(out)+".a", PartialPath(out)+".b"

	// a stops after frame 10 (checkpoint 8), its writer left open.
	wa, err := Create(Options{Path: out, Partial: pa, Format: lines{}, Signature: "s", Every: 4})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 10; seq++ {
		if err := wa.WriteFrame(&analysis.FrameResult{Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	if got := Partials(out); len(got) != 1 || got[0] != pa {
		t.Fatalf("Partials %q, want [%s]", got, pa)
	}
	st, err := LoadPartial(pa, "s")
	if err != nil || st.Frames != 8 {
		t.Fatalf("a's state %+v %v, want 8 frames", st, err)
	}
	if err := Adopt(pa, pb, st); err != nil {
		t.Fatal(err)
	}
	// a wakes and writes on, into its own file only.
	for seq := uint64(11); seq <= 14; seq++ {
		if err := wa.WriteFrame(&analysis.FrameResult{Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	stb, err := LoadPartial(pb, "s")
	if err != nil || stb != st {
		t.Fatalf("b's state %+v %v, want a's %+v", stb, err, st)
	}
	if got := Partials(out); len(got) != 2 {
		t.Fatalf("Partials %q, want a's and b's", got)
	}

	// b's first finish is refused by its Commit: nothing renamed.
	refused := errors.New("lost")
	o := Options{Path: out, Partial: pb, Format: lines{}, Signature: "s", Every: 4, Resume: stb, Commit: func() error { return refused }}
	w, err := Create(o)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 20; seq++ {
		if err := w.WriteFrame(&analysis.FrameResult{Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(); !errors.Is(err, refused) {
		t.Fatalf("Finish with a refusing Commit: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("the output exists after a refused commit: %v", err)
	}
	stb, err = LoadPartial(pb, "s")
	if err != nil || stb.Frames != 20 {
		t.Fatalf("b's state after the refused commit %+v %v, want 20 frames", stb, err)
	}

	// b resumes its own partial (complete) and commits.
	commits := 0
	o.Resume, o.Commit = stb, func() error { commits++; return nil }
	write(t, o, 20, true)
	a, _ := os.ReadFile(whole)
	b, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(a, b) || commits != 1 {
		t.Fatalf("b's output %q (%v, %d commits), want %q", b, err, commits, a)
	}
	wa.Abort(true)
	RemovePartials(out)
	if left, _ := filepath.Glob(filepath.Join(dir, "out.csv.*")); len(left) > 0 {
		t.Fatalf("left after RemovePartials: %q", left)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatalf("RemovePartials removed the output: %v", err)
	}
}
