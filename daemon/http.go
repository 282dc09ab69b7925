package daemon

import (
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/stream/preview"
)

// routes is the one HTTP surface (DESIGN.md): /v1/ws, /v1/streams,
// /metrics, /healthz, /readyz, / (the dashboard) and /v1 (a list of
// these). With auth_token set, /v1/* and /metrics want "Authorization:
// Bearer <token>" (or ?token=, for browsers' websockets and pictures);
// /healthz, /readyz, /v1 and the dashboard's static files stay open and
// say nothing secret.
func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", d.readyz)
	mux.Handle("GET /metrics", d.auth(promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg})))
	mux.Handle("GET /v1/ws", d.auth(d.hub))
	mux.Handle("GET /v1/streams", d.auth(http.HandlerFunc(d.listStreams)))
	mux.Handle("GET /v1/outputs", d.auth(http.HandlerFunc(d.listOutputs)))
	mux.Handle("GET /v1/cluster", d.auth(http.HandlerFunc(d.clusterHandler)))
	// WHIP checks its own tokens (a stream may have its own).
	mux.HandleFunc("/v1/whip/", func(w http.ResponseWriter, r *http.Request) {
		s := d.whip.Load()
		if s == nil {
			http.Error(w, "WebRTC ingest is off: no whip:// stream is configured and webrtc.allow_dynamic is false", http.StatusNotFound)
			return
		}
		s.ServeHTTP(w, r)
	})
	mux.Handle("POST /v1/streams/{stream}/faces/{face}/calibrate", d.auth(http.HandlerFunc(d.calibrate)))
	mux.Handle("GET /v1/streams/{stream}/preview", d.auth(http.HandlerFunc(d.previewHandler)))
	mux.Handle("GET /v1/identities", d.auth(http.HandlerFunc(d.listIdentities)))
	mux.Handle("POST /v1/identities", d.auth(http.HandlerFunc(d.enrol)))
	mux.Handle("DELETE /v1/identities/{name}", d.auth(http.HandlerFunc(d.deleteIdentity)))
	dashboardRoutes(mux)
	mux.HandleFunc("GET /v1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "affectd %s\n\nGET /                   dashboard\nGET /v1/ws?streams=a,b   websocket (protocol v1: hello, frame, status, dropped)\nGET /v1/streams         streams, status, fps, faces\nGET /v1/streams/{stream}/preview   live picture: a JPEG, ?mjpeg=1 for MJPEG\nPOST /v1/streams/{stream}/faces/{face}/calibrate   the face's current expression is its neutral\nGET /v1/identities      enrolled people (?embeddings=true: their vectors too)\nPOST /v1/identities     enrol {\"name\",\"stream\",\"face\"}, or a JPEG/PNG body with ?name=\nDELETE /v1/identities/{name}\nPOST /v1/whip/{stream}  WebRTC ingest (WHIP); GET /publish: from a browser\nGET /metrics            Prometheus\nGET /healthz, /readyz\n", Version)
	})
	return d.guard(mux)
}

// maxBody bounds every request body (WHIP offers are the largest, 64 KiB).
const maxBody = 128 << 10

// writeTimeout bounds writing an ordinary response; the MJPEG stream
// extends it part by part, and websockets set their own once upgraded.
const writeTimeout = 30 * time.Second

// guard is every request's first stop: a Host the daemon answers to
// (http.allowed_hosts; else 421: no web page on another name reaches it
// through DNS rebinding), a bounded body, and a write deadline.
func (d *Daemon) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, d.cfg.Load().HTTP.AllowedHosts) {
			d.httpRefused.WithLabelValues("host").Inc()
			http.Error(w, "misdirected request: this daemon does not answer to that host name (add it to http.allowed_hosts)", http.StatusMisdirectedRequest)
			return
		}
		limit := int64(maxBody)
		if r.Method == http.MethodPost && r.URL.Path == "/v1/identities" {
			limit = maxPhotoBytes // a photo to enrol
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeTimeout))
		next.ServeHTTP(w, r)
	})
}

// hostAllowed says whether a request's Host is one the daemon answers
// to: an IP address (a page cannot rebind one), localhost, or a name in
// allowed. A request without a Host (HTTP/1.0 tools) is no browser's.
func hostAllowed(host string, allowed []string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
	if h == "" || net.ParseIP(h) != nil || h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimSuffix(a, "."), h) {
			return true
		}
	}
	return false
}

func (d *Daemon) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := d.cfg.Load().AuthToken
		if token == "" {
			next.ServeHTTP(w, r)
			return
		}
		got := ""
		if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
			got = strings.TrimPrefix(h, "Bearer ")
		} else if q := r.URL.Query().Get("token"); q != "" {
			got = q
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="affectd"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// engineStall is how long the engine may hold faces without finishing a
// batch before /readyz says it is stalled (a ViT-B batch takes about a
// second on a slow CPU).
const engineStall = 30 * time.Second

// readyz: 200 once the models are loaded and every stream is up (or has
// ended, for files); 503 with the reasons otherwise.
func (d *Daemon) readyz(w http.ResponseWriter, r *http.Request) {
	var reasons []string
	if !d.ready.Load() {
		reasons = append(reasons, "model not loaded")
	}
	if m := d.models.Load(); m != nil && m.Core.Engine != nil && m.Core.Engine.Stalled(engineStall) {
		reasons = append(reasons, fmt.Sprintf("the inference engine is stalled: faces wait and no batch has finished for %v", engineStall))
	}
	for _, p := range d.pipelines() {
		if p.failures.Load() > 0 && p.cap.State() != capture.StateUp {
			reasons = append(reasons, fmt.Sprintf("stream %s failed (%s)", p.cfg.ID, p.lastError()))
			continue
		}
		if p.cfg.Kind() == "whip" {
			continue // waits for a publisher: nothing to be ready for
		}
		switch st := p.cap.State().String(); st {
		case "up", "ended":
		default:
			reasons = append(reasons, fmt.Sprintf("stream %s is %s", p.cfg.ID, st))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if len(reasons) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(map[string]any{"ready": len(reasons) == 0, "reasons": reasons})
}

// StreamStatus is one entry of GET /v1/streams.
type StreamStatus struct {
	ID       string  `json:"id"`
	URL      string  `json:"url"` // without credentials
	Kind     string  `json:"kind"`
	State    string  `json:"state"`
	Error    string  `json:"error,omitempty"`
	FPS      float64 `json:"fps"`       // frames published per second
	InputFPS float64 `json:"input_fps"` // frames read per second
	Faces    int     `json:"faces"`     // faces in the latest frame
	Width    int     `json:"width"`     // the source's frame size (boxes are in its pixels)
	Height   int     `json:"height"`
	Captured uint64  `json:"captured"`    // frames read
	Dropped  uint64  `json:"dropped"`     // frames dropped before tracking
	Interval float64 `json:"interval_ms"` // least time between two analyses of a face (fair share)
}

func (d *Daemon) listStreams(w http.ResponseWriter, r *http.Request) {
	out := []StreamStatus{}
	var interval float64
	if m := d.models.Load(); m != nil && m.Pacer != nil {
		interval = float64(m.Pacer.Interval().Microseconds()) / 1000
	}
	for _, p := range d.pipelines() {
		st, an := p.cap.Stats(), p.an.Stats()
		info := p.info()
		out = append(out, StreamStatus{
			ID: info.ID, URL: info.URL, Kind: info.Kind, State: info.State, Error: p.lastError(),
			FPS: round1(p.frames.Rate()), InputFPS: round1(st.FPS), Faces: an.Faces,
			Captured: st.Captured, Dropped: st.Dropped, Interval: interval,
			Width: an.Width, Height: an.Height,
		})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"streams": out})
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

// calibrate takes a face's current landmarks as its neutral for the
// landmark AU backend: POST /v1/streams/{stream}/faces/{face}/calibrate,
// the face as its full id ("cam1/7", URL-escaped) or its number ("7").
func (d *Daemon) calibrate(w http.ResponseWriter, r *http.Request) {
	id, face := r.PathValue("stream"), r.PathValue("face")
	if !strings.Contains(face, "/") {
		face = id + "/" + face
	}
	w.Header().Set("Content-Type", "application/json")
	if m := d.models.Load(); m == nil || !m.Core.HasLandmarks() {
		w.WriteHeader(http.StatusConflict)
		json.NewEncoder(w).Encode(map[string]any{"error": "landmarks are off: nothing to calibrate"})
		return
	}
	d.mu.Lock()
	p := d.streams[id]
	d.mu.Unlock()
	if p == nil {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]any{"error": "no such stream"})
		return
	}
	known, err := p.an.Calibrate(r.Context(), face)
	if err != nil {
		if r.Context().Err() == nil {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"error": "stream stopped"})
		}
		return
	}
	if !known {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]any{"error": "no such face on this stream", "face": face})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"calibrated": face})
}

// previewHandler serves a stream's live picture: one JPEG, or with
// ?mjpeg=1 a multipart/x-mixed-replace stream of them, at most
// preview.fps a second and scaled to preview.max_width. X-Frame-Size gives
// the source's size (face boxes are in its pixels).
func (d *Daemon) previewHandler(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	p := d.streams[r.PathValue("stream")]
	d.mu.Unlock()
	if p == nil {
		http.Error(w, "no such stream", http.StatusNotFound)
		return
	}
	pv := p.preview
	if pv == nil {
		http.Error(w, "previews are off (preview.enabled)", http.StatusNotFound)
		return
	}
	mjpeg := r.URL.Query().Get("mjpeg") != ""
	if mjpeg {
		if d.watchers.Add(1) > int64(d.cfg.Load().Preview.MaxWatchers) {
			d.watchers.Add(-1)
			d.httpRefused.WithLabelValues("watchers").Inc()
			w.Header().Set("Retry-After", "10")
			http.Error(w, "too many preview watchers (preview.max_watchers)", http.StatusServiceUnavailable)
			return
		}
		defer d.watchers.Add(-1)
	}
	pv.Want(3 * time.Second)
	interval := pv.Interval()
	next := func(after uint64, within time.Duration) *preview.Picture {
		deadline := time.Now().Add(within)
		for {
			if pic := pv.Latest(); pic != nil && pic.Seq > after {
				return pic
			}
			if time.Now().After(deadline) {
				return nil
			}
			select {
			case <-r.Context().Done():
				return nil
			case <-p.done:
				return nil
			case <-time.After(interval / 4):
			}
			pv.Want(3 * time.Second)
		}
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if !mjpeg {
		pic := next(0, 3*time.Second)
		if pic == nil {
			http.Error(w, "no picture yet", http.StatusServiceUnavailable)
			return
		}
		h.Set("Content-Type", "image/jpeg")
		h.Set("X-Frame-Size", fmt.Sprintf("%dx%d", pic.Width, pic.Height))
		h.Set("X-Frame-Seq", fmt.Sprint(pic.Seq))
		w.Write(pic.JPEG)
		return
	}
	const boundary = "affectdframe"
	h.Set("Content-Type", "multipart/x-mixed-replace; boundary="+boundary)
	flusher, _ := w.(http.Flusher)
	rc := http.NewResponseController(w)
	var seq uint64
	for {
		pic := next(seq, time.Minute)
		if pic == nil {
			return
		}
		rc.SetWriteDeadline(time.Now().Add(writeTimeout)) // a watcher that stops reading is let go
		seq = pic.Seq
		fmt.Fprintf(w, "--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Frame-Size: %dx%d\r\nX-Frame-Seq: %d\r\n\r\n", boundary, len(pic.JPEG), pic.Width, pic.Height, pic.Seq)
		if _, err := w.Write(pic.JPEG); err != nil {
			return
		}
		io.WriteString(w, "\r\n")
		if flusher != nil {
			flusher.Flush()
		}
	}
}
