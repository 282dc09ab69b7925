package analysis_test

import (
	"testing"
	"time"

	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/reid"
)

// idFace is one face of one frame as the re-identification tests see it.
type idFace struct {
	id       string
	identity string // the truth's person under the box ("": none)
	whole    bool   // the truth box is wholly in the frame
	state    any    // the analyzer's state for the face
}

// idSink records, per frame, every face's id, the truth's person under
// it and the analyzer's state for it (on the analyzer's goroutine).
type idSink struct {
	truth  testmedia.Truth
	an     *analysis.Analyzer
	frames [][]idFace
	ended  []string
}

func (s *idSink) WriteFrame(r *analysis.FrameResult) error {
	s.ended = append(s.ended, r.Ended...)
	if r.Seq == 0 {
		return nil
	}
	var fr []idFace
	tf := s.truth.Frames[r.Seq-1].Faces
	for _, f := range r.Faces {
		g := idFace{id: f.ID, state: s.an.StateOf(f.ID)}
		best := 0.3
		for _, t := range tf {
			if iou := truthIoU(f.Box, t.Box); iou > best {
				best, g.identity = iou, t.Identity
				g.whole = t.Visible > 0.999 && t.Occluded < 0.01
			}
		}
		fr = append(fr, g)
	}
	s.frames = append(s.frames, fr)
	return nil
}

// truthIoU is the overlap of a result's box and a truth box.
func truthIoU(a [4]float32, b [4]float64) float64 {
	r := track.Rect{X: float32(b[0]), Y: float32(b[1]), W: float32(b[2]), H: float32(b[3])}
	return float64(track.Rect{X: a[0], Y: a[1], W: a[2], H: a[3]}.IoU(r))
}

// runIDs runs a clip through an analyzer with the given identity options
// (identity off when g is nil).
func runIDs(t *testing.T, m *analysis.Models, clip testmedia.Clip, g *analysis.Gallery) *idSink {
	t.Helper()
	return runStreamIDs(t, m, "c", clip, g)
}

func runStreamIDs(t *testing.T, m *analysis.Models, stream string, clip testmedia.Clip, g *analysis.Gallery) *idSink {
	t.Helper()
	truth, err := clip.Truth()
	if err != nil {
		t.Fatal(err)
	}
	s := &idSink{truth: truth}
	o := analysis.Options{Stream: stream, Admission: &analysis.Offline{FlushEvery: 32}, Strict: true, LandmarkAlign: true,
		LostAfter: time.Second, Cuts: true, Sinks: []analysis.Sink{s}, Identity: analysis.IdentityOptions{Gallery: g}}
	a, err := analysis.New(m, o)
	if err != nil {
		t.Fatal(err)
	}
	s.an = a
	err = runAnalyzer(t, a, stream, clip.Path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// idsOf lists, per truth person, the ids its faces showed under, in the
// order they first appear, and counts the frames each id was shown with
// the face cut by the picture's edge and not.
func idsOf(s *idSink) (ids map[string][]string, cut, whole map[string]int) {
	ids, cut, whole = map[string][]string{}, map[string]int{}, map[string]int{}
	for _, fr := range s.frames {
		for _, f := range fr {
			if f.identity == "" {
				continue
			}
			if l := ids[f.identity]; len(l) == 0 || l[len(l)-1] != f.id {
				seen := false
				for _, x := range l {
					seen = seen || x == f.id
				}
				if !seen {
					ids[f.identity] = append(l, f.id)
				}
			}
			if f.whole {
				whole[f.id]++
			} else {
				cut[f.id]++
			}
		}
	}
	return ids, cut, whole
}

func reidModels(t *testing.T) *analysis.Models {
	t.Helper()
	m := models(t, true)
	e, err := reid.New(testenv.RequireORT(t), testenv.HumanModel(t, "mobilefacenet"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	m.Reid = e
	return m
}

// TestReidentifyReenter: on the reenter clip the astronaut leaves for 2.5
// s, past the tracker's lost_after (1 s), and comes back. Without
// re-identification (the control) the tracker gives it a new id; with it,
// the old id and the very same state (neutral, calibration, smoothing)
// come back. The one allowance: a face first seen cut by the picture's
// edge that its first look does not match shows under an id of its own
// until it is wholly in; that id never shows on a whole face, and ends.
func TestReidentifyReenter(t *testing.T) {
	testenv.NoLeaks(t)
	clip := testmedia.MustEnsure(t, "reenter", 640, 360)
	m := reidModels(t)

	off := runIDs(t, m, clip, nil)
	offIDs, _, _ := idsOf(off)
	if n := len(offIDs["astronaut"]); n != 2 {
		t.Fatalf("control (identity off): ids %v, want the tracker's 2 (the long gap ends the track)", offIDs["astronaut"])
	}

	on := runIDs(t, m, clip, analysis.NewGallery(30*time.Second, false))
	ids, cut, whole := idsOf(on)
	first := ids["astronaut"][0]
	t.Logf("ids %v; frames with the face whole: %v, cut by the edge: %v", ids["astronaut"], whole, cut)
	for _, id := range ids["astronaut"][1:] {
		if whole[id] > 0 {
			t.Errorf("id %s shown on %d frames of the whole face: the face came back as somebody new", id, whole[id])
		}
		ended := false
		for _, e := range on.ended {
			ended = ended || e == id
		}
		if !ended {
			t.Errorf("the passing id %s never ended", id)
		}
	}
	// The same state before and after the gap.
	var before, after any
	for i, fr := range on.frames {
		for _, f := range fr {
			if f.id != first {
				continue
			}
			if i < 60 && before == nil {
				before = f.state
			}
			if i > 170 {
				after = f.state
			}
		}
	}
	if before == nil || after == nil || before != after {
		t.Errorf("state before the gap %p, after %p: want the same", before, after)
	}
}

// TestReidentifySwap: the astronaut and Grace Hopper leave on their own
// sides, are away 2.5 s, and come back on each other's. With
// re-identification each takes its own id back (so ids follow people,
// not places) and no id ever shows on both; without, both are new.
func TestReidentifySwap(t *testing.T) {
	testenv.NoLeaks(t)
	clip := testmedia.MustEnsure(t, "swap", 640, 360)
	m := reidModels(t)

	off := runIDs(t, m, clip, nil)
	offIDs, _, _ := idsOf(off)
	for _, who := range []string{"astronaut", "grace_hopper"} {
		if len(offIDs[who]) < 2 {
			t.Fatalf("control (identity off): %s has ids %v, want a new one after the gap", who, offIDs[who])
		}
	}

	on := runIDs(t, m, clip, analysis.NewGallery(30*time.Second, false))
	ids, cut, whole := idsOf(on)
	t.Logf("ids %v; frames with the face whole: %v, cut by the edge: %v", ids, whole, cut)
	owner := map[string]string{}
	for who, l := range ids {
		for _, id := range l {
			if o, ok := owner[id]; ok && o != who {
				t.Errorf("id %s shown on %s and on %s: two people merged", id, o, who)
			}
			owner[id] = who
		}
		for _, id := range l[1:] {
			if whole[id] > 0 {
				t.Errorf("%s: id %s (not its first, %s) on %d whole-face frames", who, id, l[0], whole[id])
			}
		}
	}
	if len(ids["astronaut"]) == 0 || len(ids["grace_hopper"]) == 0 {
		t.Fatalf("ids %v: somebody never seen", ids)
	}
}

// TestReidentifyGlobal: with one gallery for every stream (identity:
// global) the astronaut, whose track ended with stream a's input, takes
// its id from stream a on stream b; with a gallery per stream (the
// control) it is b's own new face. Grace Hopper, on stream c after both,
// is nobody's.
func TestReidentifyGlobal(t *testing.T) {
	testenv.NoLeaks(t)
	m := reidModels(t)
	one := testmedia.MustEnsure(t, "one_face", 640, 360)
	roll := testmedia.MustEnsure(t, "roll", 640, 360)
	cut := testmedia.MustEnsure(t, "cut", 640, 360) // the astronaut, then Grace Hopper

	g := analysis.NewGallery(time.Minute, true)
	a, _, _ := idsOf(runStreamIDs(t, m, "a", one, g))
	b, _, _ := idsOf(runStreamIDs(t, m, "b", roll, g))
	t.Logf("global: stream a %v, stream b %v", a, b)
	if len(a["astronaut"]) != 1 || len(b["astronaut"]) != 1 || b["astronaut"][0] != a["astronaut"][0] {
		t.Errorf("global: the astronaut is %v on a and %v on b, want a's id on both", a["astronaut"], b["astronaut"])
	}
	c, _, _ := idsOf(runStreamIDs(t, m, "c", cut, g))
	t.Logf("global: stream c %v", c)
	if gh := c["grace_hopper"]; len(gh) != 1 || gh[0] == a["astronaut"][0] || gh[0] == c["astronaut"][0] {
		t.Errorf("global: Grace Hopper shows as %v (the astronaut: %v on a, %v on c)", gh, a["astronaut"], c["astronaut"])
	}

	b2, _, _ := idsOf(runStreamIDs(t, m, "b", roll, analysis.NewGallery(time.Minute, false)))
	if len(b2["astronaut"]) != 1 || b2["astronaut"][0] == a["astronaut"][0] {
		t.Errorf("control (a gallery per stream): the astronaut on b is %v", b2["astronaut"])
	}
}
