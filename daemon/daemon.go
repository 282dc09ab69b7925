package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/stream"
	"github.com/affectd/affectd/stream/rig"
	"github.com/affectd/affectd/track"
)

// Daemon is affectd: capture → analysis → sinks, an HTTP server in
// front. New checks and allocates; Run does the work until its context
// ends, then stops every stream, drains the inference engine and closes
// the websocket clients. Daemon wires the parts: the per-frame work is
// infer/analysis, the outputs are in stream/.
type Daemon struct {
	// cfg is the running configuration, an immutable snapshot: Run swaps
	// in a new one on reload; pipelines keep the one they were made with.
	cfg  atomic.Pointer[config.Config]
	path string // the config file, re-read on Reload
	log  *slog.Logger
	reg  *prometheus.Registry

	hub         *stream.Hub
	capMetrics  *capture.Metrics
	anMetrics   *analysis.Metrics
	sinkMetrics *stream.SinkMetrics
	ids         track.IDSource

	// models is set once Run has loaded them (read-only afterwards);
	// ready once the streams have started too.
	models atomic.Pointer[Models]
	ready  atomic.Bool

	httpRefused *prometheus.CounterVec // requests refused by a limit, by reason
	watchers    atomic.Int64           // MJPEG preview watchers

	mu      sync.Mutex
	streams map[string]*pipeline // owned by Run; the mutex is for readers

	reload chan chan error
	addr   atomic.Value // the listener's address, once listening

	// WebRTC ingest, made when a whip:// stream or dynamic publishing
	// needs it (on Run's goroutine); HTTP handlers load the pointer.
	whip     atomic.Pointer[webrtc.Server]
	early    map[string]*webrtc.Source // whip sources registered before listening (Run's)
	dynamic  chan dynamicReq           // WHIP publishers for unconfigured ids → Run
	finished chan *pipeline            // dynamic streams whose session ended → Run
	failed   chan *pipeline            // streams stopped by a panic, due for a restart → Run

	failures *prometheus.CounterVec // streams stopped by a panic
	// cluster is set while the node is in a cluster (config cluster);
	// clusterMetrics are registered when the config turns it on.
	cluster        atomic.Pointer[clusterState]
	clusterMetrics clusterMetrics
	outs           outputs // rig outputs (VMC, OSC, Live Link Face)
	// testSink, when set (tests), adds a sink of its own to every stream.
	testSink func(stream string) analysis.Sink
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
		path: path, log: log,
		reg:      prometheus.NewRegistry(),
		streams:  map[string]*pipeline{},
		early:    map[string]*webrtc.Source{},
		reload:   make(chan chan error),
		dynamic:  make(chan dynamicReq),
		finished: make(chan *pipeline, 16),
		failed:   make(chan *pipeline, 16),
	}
	d.cfg.Store(cfg)
	d.outs.log = log.With("component", "outputs")
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &d.outs)
	if c := matsCollector(); c != nil {
		d.reg.MustRegister(c)
	}
	var err error
	if d.capMetrics, err = capture.NewMetrics(d.reg); err != nil {
		return nil, err
	}
	if d.anMetrics, err = analysis.NewMetrics(d.reg); err != nil {
		return nil, err
	}
	if d.sinkMetrics, err = stream.NewSinkMetrics(d.reg); err != nil {
		return nil, err
	}
	d.httpRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "affectd_http_refused_total", Help: "HTTP requests refused, by reason (host: not an allowed Host; watchers: preview.max_watchers).",
	}, []string{"reason"})
	if err := d.reg.Register(d.httpRefused); err != nil {
		return nil, err
	}
	d.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "affectd_stream_failures_total", Help: "Streams stopped by a panic in their capture or analysis (each restarted after a back-off).",
	}, []string{"stream"})
	if err := d.reg.Register(d.failures); err != nil {
		return nil, err
	}
	if cfg.Cluster.On() {
		if d.clusterMetrics, err = newClusterMetrics(d.reg); err != nil {
			return nil, err
		}
	}
	d.hub, err = stream.NewHub(stream.HubOptions{
		Mirror:       d.mirror,
		SendQueue:    cfg.WebSocket.SendQueue,
		MaxClients:   cfg.WebSocket.MaxClients,
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
	cfg := d.cfg.Load()
	// WHIP first: a configured whip stream takes offers as soon as the
	// listener accepts connections (its pipeline serves them once the
	// models are loaded).
	if err := d.registerWHIP(cfg); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		if w := d.whip.Load(); w != nil {
			w.Close()
		}
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	d.addr.Store(ln.Addr().String())
	srv := &http.Server{
		Handler: d.routes(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: cfg.HTTP.ReadTimeout.D(),
		IdleTimeout: cfg.HTTP.IdleTimeout.D(), MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(d.log.With("component", "http").Handler(), slog.LevelDebug),
	}
	srvDone := make(chan error, 1)
	scheme, ws := "http", "ws"
	if tls := cfg.HTTP.TLS; tls.Cert != "" {
		scheme, ws = "https", "wss"
		go func() { srvDone <- srv.ServeTLS(ln, tls.Cert, tls.Key) }()
	} else {
		go func() { srvDone <- srv.Serve(ln) }()
	}
	d.log.Info("listening", "addr", scheme+"://"+ln.Addr().String(), "websocket", ws+"://"+ln.Addr().String()+"/v1/ws")

	engCtx, engCancel := context.WithCancel(context.Background())
	engDone := make(chan struct{})
	loopCtx, loopCancel := context.WithCancel(context.Background())
	defer loopCancel()
	var m *Models
	stopAll := func() {
		d.leaveCluster(loopCancel) // its streams stop before its leases go
		d.stopStreams()
		d.outs.close()
		engCancel()
		if m != nil {
			<-engDone // the engine has drained
			m.Close()
		}
		if w := d.whip.Load(); w != nil {
			w.Close()
		}
		d.hub.Close() // close frames to every client
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}

	m, err = LoadModels(cfg, ModelOptions{Log: d.log, Registerer: d.reg})
	if err != nil {
		stopAll()
		return err
	}
	go func() { defer close(engDone); m.Run(engCtx) }()
	start := time.Now()
	if err := m.Warm(ctx); err != nil && ctx.Err() == nil {
		d.log.Warn("model warm-up failed", "err", err)
	} else if m.Core.Engine != nil {
		d.log.Info("model warmed up", "took", time.Since(start).Round(time.Millisecond))
	}
	d.models.Store(m)
	d.outs.apply(cfg.Outputs, m.Core.Layout())
	if err := rtsp.Configure(rtsp.Transport{Protocol: cfg.RTSP.Transport, Timeout: cfg.RTSP.Timeout.D()}); err != nil {
		d.log.Warn("rtsp options", "err", err)
	}
	var clusterOps chan *clusterOp // nil (never ready) unless in a cluster
	if cfg.Cluster.On() {
		if err := d.joinCluster(ctx, cfg); err != nil {
			stopAll()
			return err
		}
		c := d.cluster.Load()
		clusterOps = c.ops
		go d.clusterLoop(loopCtx, c)
	}
	for _, sc := range cfg.Streams {
		if cfg.Cluster.On() && sc.Kind() != "whip" {
			continue // the cluster loop starts those this node takes
		}
		if err := d.startStream(cfg, sc); err != nil {
			d.log.Error("stream not started", "stream", sc.ID, "err", err)
		}
	}
	d.ready.Store(true)
	if len(cfg.Streams) == 0 {
		d.log.Warn("no streams configured: add some to the config and send SIGHUP")
	}

	trim := time.NewTicker(time.Minute) // see malloc_linux.go
	defer trim.Stop()
	for {
		select {
		case <-trim.C:
			trimMalloc()
		case <-ctx.Done():
			d.log.Info("stopping")
			d.ready.Store(false)
			stopAll()
			return nil
		case res := <-d.reload:
			res <- d.applyReload()
		case op := <-clusterOps:
			d.applyCluster(d.cluster.Load(), op)
		case req := <-d.dynamic:
			src, err := d.startDynamic(req.stream)
			req.reply <- dynamicReply{src, err}
		case p := <-d.failed:
			d.restart(p)
		case p := <-d.finished:
			d.mu.Lock()
			if d.streams[p.cfg.ID] == p {
				delete(d.streams, p.cfg.ID)
			}
			d.mu.Unlock()
			d.forgetStream(p.cfg.ID)
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

// hello is the first message of every websocket connection.
func (d *Daemon) hello() []byte {
	h := stream.Hello{Type: "hello", V: stream.Version, Server: "affectd " + Version, Streams: []stream.StreamInfo{}}
	if m := d.models.Load(); m != nil {
		h.Model = m.Info
		if l := m.Core.Layout(); len(l.BlendShapes) > 0 {
			h.BlendShapes = &stream.BlendShapeInfo{Names: rig.ARKit[:], Estimated: rig.NewARKitMap(l.BlendShapes).EstimatedNames()}
		}
	}
	if h.Model.Heads == nil {
		h.Model.Heads = []analysis.HeadInfo{}
	}
	if h.Model.Demo {
		h.Notice = "demo model: random weights, its values are not affect estimates"
	}
	for _, p := range d.pipelines() {
		h.Streams = append(h.Streams, p.info())
	}
	h.Streams = append(h.Streams, d.remoteStreams()...)
	b, _ := json.Marshal(h)
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

// applyReload runs on Run's goroutine: the new streams get pipelines made
// with the new snapshot; settings other than streams need a restart.
func (d *Daemon) applyReload() error {
	if d.path == "" {
		return errors.New("no config file to reload")
	}
	nc, err := config.Load(d.path)
	if err != nil {
		d.log.Error("reload: config rejected, keeping the running one", "err", err)
		return err
	}
	old := d.cfg.Load()
	keep := *old
	keep.Streams, keep.Outputs = nc.Streams, nc.Outputs
	cfg := &keep
	added, removed, changed := config.StreamsDiff(old.Streams, nc.Streams)
	if c := d.cluster.Load(); c != nil {
		d.clusterReload(c, cfg, added, removed, changed)
		// The WHIP streams stay this node's own, as without a cluster.
		added, removed, changed = whipOnly(added), whipOnly(removed), whipOnly(changed)
	}
	for _, s := range removed {
		d.stopStream(s.ID)
		d.hub.PublishStatus(stream.Status{Stream: s.ID, State: "removed", At: time.Now()})
		d.log.Info("stream removed", "stream", s.ID)
	}
	for _, s := range changed {
		d.stopStream(s.ID)
		if err := d.startStream(cfg, s); err != nil {
			d.log.Error("reload: stream not restarted", "stream", s.ID, "err", err)
		}
	}
	for _, s := range added {
		if err := d.startStream(cfg, s); err != nil {
			d.log.Error("reload: stream not started", "stream", s.ID, "err", err)
		}
	}
	if m := d.models.Load(); m != nil {
		d.outs.apply(nc.Outputs, m.Core.Layout())
	}
	if rest := restartOnly(old, nc); len(rest) > 0 {
		d.log.Warn("reload: these settings changed but apply only after a restart", "sections", rest)
	}
	d.cfg.Store(cfg)
	d.log.Info("reloaded", "added", len(added), "removed", len(removed), "changed", len(changed))
	return nil
}

// restartOnly lists the sections other than streams that differ.
func restartOnly(a, b *config.Config) []string {
	var out []string
	x, y := *a, *b
	x.Streams, y.Streams = nil, nil
	x.Outputs, y.Outputs = nil, nil
	pairs := []struct {
		name string
		a, b any
	}{
		{"listen", x.Listen, y.Listen}, {"auth_token", x.AuthToken, y.AuthToken}, {"onnxruntime", x.ORT, y.ORT},
		{"model", x.Model, y.Model}, {"detector", x.Detector, y.Detector}, {"tracker", x.Tracker, y.Tracker},
		{"align", x.Align, y.Align}, {"batch", x.Batch, y.Batch}, {"schedule", x.Schedule, y.Schedule},
		{"smoothing", x.Smoothing, y.Smoothing}, {"rtsp", x.RTSP, y.RTSP}, {"websocket", x.WebSocket, y.WebSocket},
		{"webrtc", x.WebRTC, y.WebRTC}, {"landmarks", x.Landmarks, y.Landmarks}, {"preview", x.Preview, y.Preview},
	}
	for _, p := range pairs {
		if !reflect.DeepEqual(p.a, p.b) {
			out = append(out, p.name)
		}
	}
	return out
}
