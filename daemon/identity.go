package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // uploaded photos
	_ "image/png"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/track/reid"
)

// identities are a run's re-identification parts: the enrolled people
// (live only) and the galleries of ended faces, one per stream id (kept
// across reloads and restarts of the stream) or one for all (global).
type identities struct {
	store  *reid.Store // nil: offline, or the store could not be opened
	mode   string
	expiry config.Duration
	global *analysis.Gallery

	mu      sync.Mutex
	streams map[string]*analysis.Gallery
}

// loadReid loads the embedding model unless identity is off; a missing
// model turns it off with a log line.
func loadReid(cfg *config.Config, log *slog.Logger) (*reid.Embedder, error) {
	if cfg.Identity.Mode == config.IdentityOff {
		return nil, nil
	}
	p := cfg.Identity.Model
	if _, err := os.Stat(p); err != nil {
		log.Warn("identity off: no face-embedding model (run `make setup`, or set identity.model)", "path", p, "err", err)
		return nil, nil
	}
	e, err := reid.NewPool(cfg.ORT.Library, p, min(runtime.GOMAXPROCS(0), 4))
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	log.Info("identity on", "mode", cfg.Identity.Mode, "model", p, "threshold", cfg.Identity.Threshold, "expiry", cfg.Identity.Expiry)
	return e, nil
}

// newIdentities sets up the galleries and, live, opens the store of
// enrolled people (a store that cannot be read is logged and left out:
// the rest works).
func newIdentities(cfg *config.Config, e *reid.Embedder, live bool, log *slog.Logger) *identities {
	if e == nil {
		return nil
	}
	id := &identities{mode: cfg.Identity.Mode, expiry: cfg.Identity.Expiry, streams: map[string]*analysis.Gallery{}}
	if id.mode == config.IdentityGlobal {
		id.global = analysis.NewGallery(cfg.Identity.Expiry.D(), true)
	}
	if live {
		path := cfg.Identity.StorePath()
		s, err := reid.OpenStore(path, e.ModelID())
		if err != nil {
			log.Error("enrolled identities not loaded: names are off", "path", path, "err", err)
		} else {
			id.store = s
			log.Info("enrolled identities", "path", path, "people", len(s.List(false)))
		}
	}
	return id
}

// options are a stream's identity settings.
func (id *identities) options(cfg *config.Config, stream string) analysis.IdentityOptions {
	if id == nil {
		return analysis.IdentityOptions{}
	}
	o := analysis.IdentityOptions{Store: id.store, Threshold: float32(cfg.Identity.Threshold), Every: cfg.Identity.Every.D()}
	if id.global != nil {
		o.Gallery = id.global
		return o
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	g := id.streams[stream]
	if g == nil {
		g = analysis.NewGallery(id.expiry.D(), false)
		id.streams[stream] = g
	}
	o.Gallery = g
	return o
}

// file are the settings for one file of `affectd analyze`: a gallery of
// its own, gone with the file (files are separate recordings).
func (id *identities) file(cfg *config.Config) analysis.IdentityOptions {
	if id == nil {
		return analysis.IdentityOptions{}
	}
	return analysis.IdentityOptions{Gallery: analysis.NewGallery(cfg.Identity.Expiry.D(), false),
		Threshold: float32(cfg.Identity.Threshold), Every: cfg.Identity.Every.D()}
}

// forget drops a removed stream's gallery.
func (id *identities) forget(stream string) {
	if id == nil {
		return
	}
	id.mu.Lock()
	delete(id.streams, stream)
	id.mu.Unlock()
}

// Bounds of an uploaded photo.
const (
	maxPhotoBytes  = 8 << 20
	maxPhotoPixels = 4096 * 4096
)

// enrolRequest is POST /v1/identities's JSON body; a photo comes as the
// body itself (image/jpeg or image/png) with ?name=.
type enrolRequest struct {
	Name   string `json:"name"`
	Stream string `json:"stream"`
	Face   string `json:"face"`
}

func replyJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// identityStore is the store, or an error reply.
func (d *Daemon) identityStore(w http.ResponseWriter) (*Models, *reid.Store) {
	m := d.models.Load()
	if m == nil || m.ids == nil || m.ids.store == nil {
		replyJSON(w, http.StatusConflict, map[string]any{"error": "identity is off (identity.mode off, no embedding model, or the store could not be read: see the log)"})
		return nil, nil
	}
	return m, m.ids.store
}

// listIdentities: GET /v1/identities lists the enrolled people; their
// embeddings only with ?embeddings=true.
func (d *Daemon) listIdentities(w http.ResponseWriter, r *http.Request) {
	_, s := d.identityStore(w)
	if s == nil {
		return
	}
	replyJSON(w, http.StatusOK, map[string]any{"identities": s.List(r.URL.Query().Get("embeddings") == "true")})
}

// deleteIdentity: DELETE /v1/identities/{name}.
func (d *Daemon) deleteIdentity(w http.ResponseWriter, r *http.Request) {
	_, s := d.identityStore(w)
	if s == nil {
		return
	}
	name := r.PathValue("name")
	ok, err := s.Delete(name)
	switch {
	case err != nil:
		d.log.Error("identities: delete", "err", err)
		replyJSON(w, http.StatusInternalServerError, map[string]any{"error": "could not write the store"})
	case !ok:
		replyJSON(w, http.StatusNotFound, map[string]any{"error": "nobody enrolled by that name"})
	default:
		replyJSON(w, http.StatusOK, map[string]any{"deleted": name})
	}
}

// enrol: POST /v1/identities names a tracked face ({"name","stream",
// "face"}) or the largest face of an uploaded photo (the body, image/jpeg
// or image/png, with ?name=).
func (d *Daemon) enrol(w http.ResponseWriter, r *http.Request) {
	m, s := d.identityStore(w)
	if s == nil {
		return
	}
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "image/") {
		d.enrolPhoto(w, r, m, s)
		return
	}
	var req enrolRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		replyJSON(w, http.StatusBadRequest, map[string]any{"error": "want JSON {\"name\", \"stream\", \"face\"} or an image/jpeg or image/png body with ?name=: " + err.Error()})
		return
	}
	if err := reid.ValidName(req.Name); err != nil {
		replyJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	face := req.Face
	if face != "" && !strings.Contains(face, "/") {
		face = req.Stream + "/" + face
	}
	d.mu.Lock()
	p := d.streams[req.Stream]
	d.mu.Unlock()
	if p == nil || face == "" {
		replyJSON(w, http.StatusNotFound, map[string]any{"error": "no such stream, or no face given"})
		return
	}
	err := p.an.Enrol(r.Context(), face, req.Name)
	switch {
	case errors.Is(err, analysis.ErrNoFace):
		replyJSON(w, http.StatusNotFound, map[string]any{"error": err.Error()})
	case errors.Is(err, analysis.ErrStopped):
		replyJSON(w, http.StatusNotFound, map[string]any{"error": "stream stopped"})
	case err != nil && r.Context().Err() == nil:
		replyJSON(w, http.StatusConflict, map[string]any{"error": err.Error()})
	case err == nil:
		d.log.Info("identity enrolled", "name", req.Name, "face", face)
		replyJSON(w, http.StatusCreated, map[string]any{"enrolled": req.Name, "face": face})
	}
}

func (d *Daemon) enrolPhoto(w http.ResponseWriter, r *http.Request, m *Models, s *reid.Store) {
	name := r.URL.Query().Get("name")
	if err := reid.ValidName(name); err != nil {
		replyJSON(w, http.StatusBadRequest, map[string]any{"error": "?name=: " + err.Error()})
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		replyJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"error": fmt.Sprintf("a photo is at most %d bytes", maxPhotoBytes)})
		return
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || (format != "jpeg" && format != "png") {
		replyJSON(w, http.StatusBadRequest, map[string]any{"error": "want a JPEG or PNG photo"})
		return
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width*cfg.Height > maxPhotoPixels {
		replyJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf("photo %dx%d: at most %d pixels", cfg.Width, cfg.Height, maxPhotoPixels)})
		return
	}
	img, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil || img.Empty() {
		img.Close()
		replyJSON(w, http.StatusBadRequest, map[string]any{"error": "the photo cannot be decoded"})
		return
	}
	defer img.Close()
	dets, err := m.Core.Detector.Detect(img, nil)
	if err != nil || len(dets) == 0 {
		replyJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "no face in the photo"})
		return
	}
	best := 0
	for i, dt := range dets {
		if dt.Box.W*dt.Box.H > dets[best].Box.W*dets[best].Box.H {
			best = i
		}
	}
	e, err := m.Core.Reid.Embed(img, dets[best].Box, &dets[best].Keypoints)
	if err != nil {
		replyJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": err.Error()})
		return
	}
	var t reid.Templates
	t.Add(e, dets[best].Score)
	if err := s.Add(name, "photo", t); err != nil {
		d.log.Error("identities: enrol", "err", err)
		replyJSON(w, http.StatusInternalServerError, map[string]any{"error": "could not write the store"})
		return
	}
	d.log.Info("identity enrolled", "name", name, "from", "photo", "faces", len(dets))
	replyJSON(w, http.StatusCreated, map[string]any{"enrolled": name, "faces": len(dets)})
}
