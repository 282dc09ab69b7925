package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/rtsp"
	"github.com/affectd/affectd/capture/webrtc"
	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/stream"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/landmarks"
)

// Daemon is affectd: capture → track → infer → stream, an HTTP server in
// front. New checks and allocates; Run does the work until its context
// ends, then stops every stream, drains the inference engine and closes
// the websocket clients.
type Daemon struct {
	cfg  *config.Config
	path string // the config file, re-read on Reload
	log  *slog.Logger
	reg  *prometheus.Registry

	hub        *stream.Hub
	capMetrics *capture.Metrics
	pm         *pipelineMetrics
	ids        track.IDSource

	// loaded is set once Run has loaded the models (the fields below are
	// then read-only); ready once the streams have started too.
	loaded    atomic.Bool
	ready     atomic.Bool
	model     *infer.Model
	engine    *infer.Engine
	pacer     *infer.Pacer
	det       *track.Detector
	aligner   *track.Aligner
	landmarks *landmarks.Predictor // nil: landmarks off
	layout    stream.Layout
	lmHead    int    // index of the landmark AU head in layout.Heads (-1: none)
	softmax   []bool // per model head
	modelIn   stream.ModelInfo
	offline   *offlineEngine // set by analyze before loadModels

	mu      sync.Mutex
	streams map[string]*pipeline // owned by Run; the mutex is for readers

	reload chan chan error
	addr   atomic.Value // the listener's address, once listening

	// WebRTC ingest, made when a whip:// stream or dynamic publishing
	// needs it (on Run's goroutine); HTTP handlers load the pointer.
	whip     atomic.Pointer[webrtc.Server]
	dynamic  chan dynamicReq // WHIP publishers for unconfigured ids → Run
	finished chan *pipeline  // dynamic streams whose session ended → Run
}

type dynamicReq struct {
	stream string
	reply  chan dynamicReply
}

type dynamicReply struct {
	src *webrtc.Source
	err error
}

// New checks the configuration and allocates the daemon. path is the
// config file Reload re-reads ("" disables reloading).
func New(cfg *config.Config, path string, log *slog.Logger) (*Daemon, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg: cfg, path: path, log: log, lmHead: -1,
		reg:      prometheus.NewRegistry(),
		streams:  map[string]*pipeline{},
		reload:   make(chan chan error),
		dynamic:  make(chan dynamicReq),
		finished: make(chan *pipeline, 16),
	}
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var err error
	if d.capMetrics, err = capture.NewMetrics(d.reg); err != nil {
		return nil, err
	}
	if d.pm, err = newPipelineMetrics(d.reg); err != nil {
		return nil, err
	}
	d.hub, err = stream.NewHub(stream.HubOptions{
		SendQueue:    cfg.WebSocket.SendQueue,
		MaxDrops:     cfg.WebSocket.MaxDrops,
		PingInterval: cfg.WebSocket.PingInterval.D(),
		Hello:        d.hello,
		Registerer:   d.reg,
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Addr is the HTTP listener's address ("" before Run listens).
func (d *Daemon) Addr() string {
	a, _ := d.addr.Load().(string)
	return a
}

// Registry is the daemon's Prometheus registry.
func (d *Daemon) Registry() *prometheus.Registry { return d.reg }

// Reload re-reads the config file and applies its streams: added streams
// start, removed ones stop, changed ones restart; the others are not
// touched. Other settings need a restart (a warning says which).
func (d *Daemon) Reload(ctx context.Context) error {
	res := make(chan error, 1)
	select {
	case d.reload <- res:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run serves until ctx ends. It returns nil after a clean shutdown and
// the error when start-up fails (listening, loading the models).
func (d *Daemon) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", d.cfg.Listen, err)
	}
	d.addr.Store(ln.Addr().String())
	srv := &http.Server{Handler: d.routes(), ReadHeaderTimeout: 10 * time.Second}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	d.log.Info("listening", "addr", "http://"+ln.Addr().String(), "websocket", "ws://"+ln.Addr().String()+"/v1/ws")

	var wg sync.WaitGroup
	engCtx, engCancel := context.WithCancel(context.Background())
	defer engCancel()
	stopAll := func() {
		d.stopStreams()
		if d.engine != nil {
			d.engine.Close() // drains in-flight batches
		}
		engCancel()
		if w := d.whip.Load(); w != nil {
			w.Close()
		}
		d.hub.Close() // close frames to every client
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shut)
		wg.Wait()
		d.closeModels()
	}

	if err := d.loadModels(); err != nil {
		stopAll()
		return err
	}
	d.loaded.Store(true)
	if d.engine != nil {
		wg.Add(2)
		go func() { defer wg.Done(); d.engine.Run(engCtx) }()
		go func() { defer wg.Done(); d.pacer.Run(engCtx) }()
	}
	if err := rtsp.Configure(rtsp.Transport{Protocol: d.cfg.RTSP.Transport, Timeout: d.cfg.RTSP.Timeout.D()}); err != nil {
		d.log.Warn("rtsp options", "err", err)
	}
	if d.cfg.WebRTC.AllowDynamic {
		if _, err := d.whipServer(); err != nil {
			stopAll()
			return err
		}
	}
	for _, sc := range d.cfg.Streams {
		if err := d.startStream(sc); err != nil {
			d.log.Error("stream not started", "stream", sc.ID, "err", err)
		}
	}
	d.ready.Store(true)
	if len(d.cfg.Streams) == 0 {
		d.log.Warn("no streams configured: add some to the config and send SIGHUP")
	}

	for {
		select {
		case <-ctx.Done():
			d.log.Info("stopping")
			d.ready.Store(false)
			stopAll()
			return nil
		case res := <-d.reload:
			res <- d.applyReload()
		case req := <-d.dynamic:
			src, err := d.startDynamic(req.stream)
			req.reply <- dynamicReply{src, err}
		case p := <-d.finished:
			d.mu.Lock()
			if d.streams[p.cfg.ID] == p {
				delete(d.streams, p.cfg.ID)
			}
			d.mu.Unlock()
			d.capMetrics.Forget(p.cfg.ID)
			d.pm.forget(p.cfg.ID)
			if d.pacer != nil {
				d.pacer.Forget(p.cfg.ID)
			}
			d.log.Info("dynamic stream removed", "stream", p.cfg.ID)
		case err := <-srvDone:
			if !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("http server failed", "err", err)
				stopAll()
				return fmt.Errorf("http server: %w", err)
			}
		}
	}
}

// loadModels loads the face detector, the landmarks (optional) and the
// MAE-Face model with its engine (optional: without one, the landmark
// backend gives the AUs).
func (d *Daemon) loadModels() error {
	c := d.cfg
	var err error
	d.det, err = track.NewDetector(track.DetectorOptions{
		LibraryPath: c.ORT.Library, ModelPath: c.Detector.Model, ScoreThreshold: float32(c.Detector.ScoreThreshold),
		Threads: c.Detector.Threads, RefineRuns: refineRuns(c.Detector.RefineRuns),
		SerialRefine: d.offline != nil,
	})
	if err != nil {
		return fmt.Errorf("detector: %w", err)
	}
	if err := d.loadLandmarks(); err != nil {
		return err
	}
	if c.Model.Path != "" {
		if err := d.loadModel(); err != nil {
			return err
		}
	} else {
		d.log.Info("no MAE-Face model (model.path is empty): AUs from the landmark backend, no valence/arousal or expression")
	}
	d.layout.BlendShapes = lmau.BlendShapes
	if d.landmarks != nil && d.modelHead("au") < 0 {
		d.lmHead = len(d.layout.Heads)
		th := float32(lmau.Occurrence)
		d.layout.Heads = append(d.layout.Heads, stream.HeadInfo{
			Name: "au", Labels: lmau.AUs, Activation: "intensity", Threshold: &th, Source: "landmarks", Range: "0..5",
		})
	}
	if d.landmarks == nil && d.model == nil {
		d.log.Warn("neither a MAE-Face model nor landmarks: frames carry boxes and ids only")
	}
	name := "none (landmark backend)"
	if d.landmarks == nil {
		name = "none"
	}
	d.modelIn = stream.ModelInfo{Name: name, Heads: d.layout.Heads}
	if d.model != nil {
		md := d.model.Metadata()
		d.modelIn = stream.ModelInfo{
			Name: md.Model.Name, Backbone: md.Model.Backbone, Demo: md.Model.Demo,
			Precision: md.Model.Precision, Provider: d.model.Provider().String(), Heads: d.layout.Heads,
		}
	}
	return nil
}

// offlineEngine are the engine settings of offline analysis.
type offlineEngine struct {
	maxBatch     int
	keepFeatures bool
}

// closeModels frees the detector, landmarks and model (after the engine
// has drained).
func (d *Daemon) closeModels() {
	if d.det != nil {
		d.det.Close()
	}
	if d.landmarks != nil {
		d.landmarks.Close()
	}
	if d.model != nil {
		d.model.Close()
	}
}

// loadModel loads the MAE-Face model, its engine and pacer and aligner.
func (d *Daemon) loadModel() error {
	c := d.cfg
	prov, err := infer.ParseProvider(c.ORT.Provider)
	if err != nil {
		return err
	}
	start := time.Now()
	d.model, err = infer.Load(c.Model.Path, infer.SessionOptions{
		LibraryPath: c.ORT.Library, Provider: prov, NoFallback: !c.ORT.Fallback,
		DeviceID: c.ORT.DeviceID, IntraOpThreads: c.ORT.Threads,
	}, d.log.With("component", "infer"))
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	md := d.model.Metadata()
	d.log.Info("model loaded", "path", c.Model.Path, "name", md.Model.Name, "backbone", md.Model.Backbone,
		"heads", len(md.Heads), "provider", d.model.Provider().String(), "onnxruntime", infer.RuntimeVersion(), "took", time.Since(start).Round(time.Millisecond))
	if md.Model.Demo {
		d.log.Warn("DEMO MODEL: random weights — its AU, valence/arousal and expression values are NOT affect estimates; install a real MAE-Face export (see README)")
	}
	if len(md.Heads) == 0 {
		d.log.Warn("the model has no heads (an encoder only): frames carry no AU/VA/expression from it")
	}
	eo := infer.Options{
		MaxBatch: c.Batch.MaxBatch, MaxWait: c.Batch.MaxWait.D(), QueueLimit: c.Batch.QueueLimit,
		Runners: c.Batch.Runners, KeepFeatures: c.Model.KeepFeatures, Registerer: d.reg,
		Overload: infer.OverloadReject,
	}
	if o := d.offline; o != nil {
		// Offline: one submitter, batches cut only when full or flushed
		// (deterministic), and back-pressure instead of dropping faces.
		eo.MaxBatch, eo.QueueLimit, eo.Runners = o.maxBatch, 3*o.maxBatch, 1
		eo.MaxWait, eo.Overload, eo.KeepFeatures = time.Hour, infer.OverloadWait, o.keepFeatures
	}
	d.engine, err = infer.New(d.model, eo)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	d.pacer = infer.NewPacer(d.engine, infer.PacerOptions{Headroom: c.Schedule.Headroom, MaxRate: c.Schedule.MaxRate})
	d.aligner, err = track.NewAligner(md.Input.Size, float32(c.Align.Margin), md.Input.Mean, md.Input.Std)
	if err != nil {
		return fmt.Errorf("aligner: %w", err)
	}
	for _, h := range md.Heads {
		rng := "0..1"
		switch h.Activation {
		case infer.ActivationTanh:
			rng = "-1..1"
		case infer.ActivationNone:
			rng = "logits"
		}
		d.layout.Heads = append(d.layout.Heads, stream.HeadInfo{Name: h.Name, Labels: h.Labels, Activation: h.Activation.String(),
			Threshold: h.Threshold, Source: "model", Range: rng})
		d.softmax = append(d.softmax, h.Activation == infer.ActivationSoftmax)
	}
	return nil
}

// loadLandmarks loads dlib's landmark model; a missing model turns
// landmarks off with a log line, it does not stop the daemon.
func (d *Daemon) loadLandmarks() error {
	path := d.cfg.Landmarks.Model
	if path == "" {
		d.log.Info("landmarks off (landmarks.model is empty): no head pose, landmark AUs or blend shapes")
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		d.log.Warn("landmarks off: no landmark model (install Debian's libdlib-data, or set landmarks.model)", "path", path, "err", err)
		return nil
	}
	start := time.Now()
	p, err := landmarks.Load(path)
	if err != nil {
		return fmt.Errorf("landmarks: %w", err)
	}
	d.landmarks = p
	d.log.Info("landmarks loaded", "path", path, "took", time.Since(start).Round(time.Millisecond),
		"licence", "dlib 68-point model trained on iBUG 300-W: research use only")
	return nil
}

// landmarkAlign tells whether the landmarks give the alignment points: the
// detector's refinement (keypoints for alignment) is then wasted work.
func (d *Daemon) landmarkAlign() bool { return d.landmarks != nil && d.cfg.Landmarks.Align }

// modelHead is the index of the model's head with that name, or -1.
func (d *Daemon) modelHead(name string) int {
	for i, h := range d.layout.Heads {
		if h.Name == name && h.Source == "model" {
			return i
		}
	}
	return -1
}

// refineRuns maps the config's count (0: none) to the detector's (-1: none).
func refineRuns(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// hello is the first message of every websocket connection.
func (d *Daemon) hello() []byte {
	h := stream.Hello{Type: "hello", V: stream.Version, Server: "affectd " + Version, Streams: []stream.StreamInfo{}}
	if d.loaded.Load() {
		h.Model = d.modelIn
	}
	if h.Model.Heads == nil {
		h.Model.Heads = []stream.HeadInfo{}
	}
	if h.Model.Demo {
		h.Notice = "demo model: random weights, its values are not affect estimates"
	}
	for _, p := range d.pipelines() {
		h.Streams = append(h.Streams, p.info())
	}
	b, _ := jsonMarshal(h)
	return b
}

func (d *Daemon) pipelines() []*pipeline {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*pipeline, 0, len(d.streams))
	for _, p := range d.streams {
		out = append(out, p)
	}
	sortPipelines(out)
	return out
}

// whipServer returns the WebRTC ingest server, making it on first use
// (Run's goroutine only).
func (d *Daemon) whipServer() (*webrtc.Server, error) {
	if w := d.whip.Load(); w != nil {
		return w, nil
	}
	c := d.cfg.WebRTC
	w, err := webrtc.NewServer(webrtc.Options{
		UDPPort: c.UDPPort, PortMin: uint16(c.PortMin), PortMax: uint16(c.PortMax),
		NAT1To1IPs: c.NAT1To1IPs, ReceiveBuffer: c.ReceiveBuffer, Loopback: c.Loopback,
		Token: d.cfg.AuthToken, AllowDynamic: c.AllowDynamic, MaxSessions: c.MaxSessions,
		CORSOrigin: c.CORSOrigin, Registerer: d.reg, Dynamic: d.requestDynamic,
	})
	if err != nil {
		return nil, fmt.Errorf("webrtc: %w", err)
	}
	d.whip.Store(w)
	attrs := []any{"path", "/v1/whip/{stream}", "dynamic", c.AllowDynamic}
	if a := w.UDPAddr(); a != nil {
		attrs = append(attrs, "ice_udp", a.String())
	}
	d.log.Info("WHIP ingest on", attrs...)
	return w, nil
}

// requestDynamic runs on an HTTP goroutine: Run makes the stream.
func (d *Daemon) requestDynamic(ctx context.Context, stream string) (*webrtc.Source, error) {
	req := dynamicReq{stream, make(chan dynamicReply, 1)}
	select {
	case d.dynamic <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r.src, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startDynamic makes a stream for a WHIP publisher of an unconfigured id
// (Run's goroutine); it lasts as long as the session.
func (d *Daemon) startDynamic(id string) (*webrtc.Source, error) {
	if !d.ready.Load() {
		return nil, errors.New("not ready")
	}
	d.mu.Lock()
	_, exists := d.streams[id]
	d.mu.Unlock()
	if exists {
		return nil, errors.New("a configured stream has this id")
	}
	w := d.whip.Load()
	src, err := w.NewDynamicSource(id)
	if err != nil {
		return nil, err
	}
	p, err := newPipelineFrom(d, config.Stream{ID: id, URL: "whip://"}, src)
	if err != nil {
		w.Unregister(id)
		return nil, err
	}
	p.dynamic = true
	d.mu.Lock()
	d.streams[id] = p
	d.mu.Unlock()
	p.start()
	d.log.Info("dynamic stream started", "stream", id)
	return src, nil
}

func (d *Daemon) startStream(sc config.Stream) error {
	p, err := newPipeline(d, sc)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.streams[sc.ID] = p
	d.mu.Unlock()
	p.start()
	d.log.Info("stream started", "stream", sc.ID, "url", p.src.String())
	return nil
}

func (d *Daemon) stopStream(id string) {
	d.mu.Lock()
	p := d.streams[id]
	delete(d.streams, id)
	d.mu.Unlock()
	if p == nil {
		return
	}
	p.stop()
	d.capMetrics.Forget(id)
	d.pm.forget(id)
	if d.pacer != nil {
		d.pacer.Forget(id)
	}
}

func (d *Daemon) stopStreams() {
	var wg sync.WaitGroup
	for _, p := range d.pipelines() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
		}()
	}
	wg.Wait()
}

// applyReload runs on Run's goroutine.
func (d *Daemon) applyReload() error {
	if d.path == "" {
		return errors.New("no config file to reload")
	}
	nc, err := config.Load(d.path)
	if err != nil {
		d.log.Error("reload: config rejected, keeping the running one", "err", err)
		return err
	}
	added, removed, changed := config.StreamsDiff(d.cfg.Streams, nc.Streams)
	for _, s := range removed {
		d.stopStream(s.ID)
		d.hub.PublishStatus(stream.Status{Stream: s.ID, State: "removed", At: time.Now()})
		d.log.Info("stream removed", "stream", s.ID)
	}
	for _, s := range changed {
		d.stopStream(s.ID)
		if err := d.startStream(s); err != nil {
			d.log.Error("reload: stream not restarted", "stream", s.ID, "err", err)
		}
	}
	for _, s := range added {
		if err := d.startStream(s); err != nil {
			d.log.Error("reload: stream not started", "stream", s.ID, "err", err)
		}
	}
	if rest := restartOnly(d.cfg, nc); len(rest) > 0 {
		d.log.Warn("reload: these settings changed but apply only after a restart", "sections", rest)
	}
	keep := *d.cfg
	keep.Streams = nc.Streams
	d.cfg = &keep
	d.log.Info("reloaded", "added", len(added), "removed", len(removed), "changed", len(changed))
	return nil
}

// restartOnly lists the sections other than streams that differ.
func restartOnly(a, b *config.Config) []string {
	var out []string
	x, y := *a, *b
	x.Streams, y.Streams = nil, nil
	pairs := []struct {
		name string
		a, b any
	}{
		{"listen", x.Listen, y.Listen}, {"auth_token", x.AuthToken, y.AuthToken}, {"onnxruntime", x.ORT, y.ORT},
		{"model", x.Model, y.Model}, {"detector", x.Detector, y.Detector}, {"tracker", x.Tracker, y.Tracker},
		{"align", x.Align, y.Align}, {"batch", x.Batch, y.Batch}, {"schedule", x.Schedule, y.Schedule},
		{"smoothing", x.Smoothing, y.Smoothing}, {"rtsp", x.RTSP, y.RTSP}, {"websocket", x.WebSocket, y.WebSocket},
		{"webrtc", x.WebRTC, y.WebRTC}, {"landmarks", x.Landmarks, y.Landmarks},
	}
	for _, p := range pairs {
		if !reflect.DeepEqual(p.a, p.b) {
			out = append(out, p.name)
		}
	}
	return out
}
