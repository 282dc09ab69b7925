package analysis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/track/reid"
)

// Re-identification. Every face is embedded (track/reid) when its track
// starts, on first sight, and matched against the gallery of faces whose
// tracks ended less than its expiry ago: a match takes that face's id and
// its state (neutral, calibration, smoothing) back, so the face never
// shows under another id. A face cut by the picture's edge that matches
// nobody is embedded once more when it is wholly in the picture (or after
// DecideWithin) and matched again; when that second try finds it, the id
// it showed under meanwhile ends in the frame the old one comes back.
// Then the face is embedded every IdentityOptions.Every, on a frame at
// least nearly as good as the best seen (never every frame). Later embeddings only add views of the face (templates)
// for when its track ends, and look it up among the enrolled people.

// Identity modes (config identity.mode).
const (
	IdentityStream = "stream" // ended faces come back within their stream
	IdentityGlobal = "global" // and across the streams of the process
	IdentityOff    = "off"
)

// IdentityOptions configure re-identification and enrolled names for an
// analyzer. It is off when Models.Reid or both Gallery and Store are nil.
type IdentityOptions struct {
	// Gallery keeps ended faces for their return: one per analyzer
	// (stream mode) or one for all (global).
	Gallery *Gallery
	// Store holds the enrolled people (nil: none).
	Store *reid.Store
	// Threshold is the cosine at or above which two embeddings are one
	// person (default reid.DefaultThreshold).
	Threshold float32
	// Every is how often a tracked face is embedded again (default 2 s).
	Every time.Duration
}

// DecideWithin is how long a new face waits for a frame that shows it
// whole before its identity is decided on what there is.
const DecideWithin = time.Second

// identity is what re-identification keeps of a face.
type identity struct {
	t        reid.Templates
	first    uint64        // the frame the face was first seen on
	start    time.Duration // its PTS
	tried    bool          // embedded once (on first sight)
	decided  bool          // matched against the gallery: who it is is settled
	last     time.Duration // PTS of the latest embedding
	best     float32       // the best quality seen
	name     string        // the enrolled person matched ("": none)
	replaced bool          // its track came back under an older id: nothing to keep
}

// Gallery holds the faces whose tracks ended, for a while, so that a face
// coming back takes its old id. Safe for concurrent use (a global gallery
// is shared by every analyzer); an entry's state passes to the analyzer
// that claims it.
type Gallery struct {
	expiry time.Duration
	wall   bool // times are the wall clock's (shared between streams)

	mu      sync.Mutex
	entries []galleryEntry
}

type galleryEntry struct {
	id     string
	stream string
	at     time.Duration // when it ended: PTS (stream) or wall time
	state  *faceState
}

// NewGallery makes a gallery whose entries last expiry. shared makes it
// global: its clock is the wall clock, since streams' PTS do not compare;
// a stream's own gallery ages by its PTS (offline files run faster than
// real time).
func NewGallery(expiry time.Duration, shared bool) *Gallery {
	return &Gallery{expiry: expiry, wall: shared}
}

func (g *Gallery) now(pts time.Duration) time.Duration {
	if g.wall {
		return time.Duration(time.Now().UnixNano())
	}
	return pts
}

// prune drops expired entries (and any from the future: a source that
// restarted its PTS). Call with mu held.
func (g *Gallery) prune(now time.Duration) {
	keep := g.entries[:0]
	for _, e := range g.entries {
		if age := now - e.at; age >= 0 && age <= g.expiry {
			keep = append(keep, e)
		}
	}
	clear(g.entries[len(keep):])
	g.entries = keep
}

// maxGallery bounds a gallery: past it the oldest entries go first.
const maxGallery = 1024

func (g *Gallery) put(e galleryEntry) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prune(e.at)
	if len(g.entries) >= maxGallery {
		copy(g.entries, g.entries[1:])
		g.entries = g.entries[:len(g.entries)-1]
	}
	g.entries = append(g.entries, e)
}

// claim takes the entry that matches e best at or above threshold out of
// the gallery.
func (g *Gallery) claim(e *reid.Embedding, threshold float32, now time.Duration) (galleryEntry, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prune(now)
	best, bestC := -1, threshold
	for i := range g.entries {
		if c := g.entries[i].state.id.t.Match(e); c >= bestC {
			best, bestC = i, c
		}
	}
	if best < 0 {
		return galleryEntry{}, false
	}
	ent := g.entries[best]
	g.entries = append(g.entries[:best], g.entries[best+1:]...)
	return ent, true
}

// Len is how many ended faces wait (after pruning by now's wall clock in
// a shared gallery).
func (g *Gallery) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.entries)
}

func (a *Analyzer) identityOn() bool {
	return a.m.Reid != nil && (a.o.Identity.Gallery != nil || a.o.Identity.Store != nil)
}

// publicID is the id a tracker's track is shown under.
func (a *Analyzer) publicID(trackID string) string {
	if id, ok := a.alias[trackID]; ok {
		return id
	}
	return trackID
}

// endTracks records tracks the tracker ended, under their public ids.
func (a *Analyzer) endTracks(ids []string) {
	for _, t := range ids {
		id := a.publicID(t)
		delete(a.alias, t)
		a.ended = append(a.ended, id)
	}
}

// quality rates a face's view for embedding, 0 to 1: 0 for a box not
// wholly in the frame, otherwise the detection score times how close the
// box comes to the model's 112 pixels.
func quality(box [4]float32, score float32, w, h int) float32 {
	x, y, bw, bh := box[0], box[1], box[2], box[3]
	if x < 0 || y < 0 || x+bw > float32(w) || y+bh > float32(h) {
		return 0
	}
	return score * min(1, max(bw, bh)/reid.Size)
}

// identify embeds the faces that are due and matches the new ones against
// the gallery and everyone against the enrolled people.
func (a *Analyzer) identify(f *capture.Frame, pf *pendingFrame) {
	io := &a.o.Identity
	for i := range pf.faces {
		p := &pf.faces[i]
		id := &p.state.id
		b := p.face.Box
		q := quality([4]float32{b.X, b.Y, b.W, b.H}, p.face.Score, pf.w, pf.h)
		waited := pf.pts-id.start >= DecideWithin
		var due bool
		switch {
		case !id.decided:
			due = !id.tried || q > 0 || waited
		default:
			since := pf.pts - id.last
			due = since >= 2*io.Every || since >= io.Every && q >= 0.9*id.best
		}
		if !due {
			continue
		}
		start := time.Now()
		e, err := a.m.Reid.Embed(f.Mat, p.face.Box, &p.face.Keypoints)
		pf.stats.Identity += time.Since(start)
		if err != nil {
			a.sm.skip("identity_error")
			id.tried = true
			if id.decided || waited {
				id.decided, id.last = true, pf.pts // not again before Every
			}
			continue
		}
		a.sm.embedded()
		if !id.decided {
			// A face cut by the picture's edge is tried once, on first
			// sight; no match, and it waits for a whole view.
			id.tried = true
			if a.o.Identity.Gallery != nil && a.reclaim(pf, p, &e) {
				id = &p.state.id
			} else if q == 0 && !waited {
				continue
			}
			id.decided = true
		}
		id.last, id.best = pf.pts, max(id.best, q)
		id.t.Add(e, q)
		if st := io.Store; st != nil {
			if name, c := st.Match(&e); c >= io.Threshold {
				id.name = name
			} else if c < io.Threshold-0.1 {
				id.name = "" // clearly somebody else now (enrolment deleted, or a wrong first match)
			}
		}
	}
}

// reclaim gives a new face the id and state of the ended face it matches,
// if any, and says whether it did.
func (a *Analyzer) reclaim(pf *pendingFrame, p *pendingFace, e *reid.Embedding) bool {
	g := a.o.Identity.Gallery
	ent, ok := g.claim(e, a.o.Identity.Threshold, g.now(pf.pts))
	if !ok {
		return false
	}
	fs, old := p.state, ent.state
	tmp := p.face.ID
	// The track shows the old face from now on: its tracker id maps there.
	a.alias[p.trackID] = ent.id
	old.id.t.Merge(fs.id.t)
	old.id.decided, old.id.last, old.id.best = true, fs.id.last, max(old.id.best, fs.id.best)
	old.id.replaced = false
	old.inflight, old.last = 0, time.Time{}
	if ent.stream != a.o.Stream {
		// Another stream's PTS: its filters resume from where they were,
		// as if the face had been away for the wall-clock gap, and its
		// model estimate (another stream's frame) is dropped.
		gap := max(0, time.Duration(time.Now().UnixNano())-ent.at)
		old.shift(pf.pts - gap)
		old.est = estimate{}
	}
	fs.id.replaced = true
	a.faces[ent.id] = old
	p.state, p.face.ID = old, ent.id
	if fs.id.first != pf.seq {
		// Shown under its own id already: that id ends here.
		pf.ended = append(pf.ended, tmp)
	} else {
		delete(a.faces, tmp)
	}
	a.sm.reidentified()
	return true
}

// shift moves every filter's clock so that the latest sample is at t.
func (fs *faceState) shift(t time.Duration) {
	for _, f := range []filters{fs.lmSmooth, fs.poseSm, fs.gazeSm, fs.ferSm, fs.estSm} {
		for i := range f {
			f[i].t = t
		}
	}
}

// keep puts an ended face into the gallery (state forgotten by the
// analyzer from here on).
func (a *Analyzer) keep(id string, fs *faceState, pts time.Duration) {
	g := a.o.Identity.Gallery
	if g == nil || fs.id.replaced || len(fs.id.t.E) == 0 {
		return
	}
	fs.est.seq = 0 // a frame of this run of the track
	g.put(galleryEntry{id: id, stream: a.o.Stream, at: g.now(pts), state: fs})
}

// Enrol names a tracked face: its embeddings go into the store under
// name, and the face carries the name from its next frame. It fails when
// the face is not tracked or has no embedding yet.
func (a *Analyzer) Enrol(ctx context.Context, face, name string) error {
	if !a.identityOn() || a.o.Identity.Store == nil {
		return errors.New("identity is off, or no store of enrolled people")
	}
	var t reid.Templates
	var found bool
	if err := a.call(ctx, func() {
		fs := a.faces[face]
		if fs == nil {
			return
		}
		found, t = true, fs.id.t.Clone()
		if len(t.E) > 0 {
			fs.id.name = name
		}
	}); err != nil {
		return err
	}
	switch {
	case !found:
		return fmt.Errorf("%w: %s", ErrNoFace, face)
	case len(t.E) == 0:
		return fmt.Errorf("face %s has no embedding yet (it is embedded once it is wholly in the picture): try again", face)
	}
	return a.o.Identity.Store.Add(name, "stream "+face, t)
}

// ErrNoFace: the face is not tracked (now).
var ErrNoFace = errors.New("no such face")
