package daemon

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync/atomic"
	"time"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/open"
	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/stream"
	"github.com/affectd/affectd/stream/preview"
)

// pipeline is one live stream, wired: its source supervised by a
// capture.Stream (newest frame wins), its analyzer (Live admission) and
// its sinks (the websocket hub, the preview). Its settings are a snapshot
// taken when it was made; a reload makes a new pipeline.
type pipeline struct {
	snap    *config.Config // the settings it was made with
	cfg     config.Stream
	src     capture.Source
	cap     *capture.Stream
	an      *analysis.Analyzer
	frames  *stream.FrameSink
	preview *preview.Preview // nil: previews off
	dynamic bool             // made for a WHIP publisher: removed when its session ends
	node    string           // this node's name, in a cluster

	cancel  context.CancelFunc // set by the daemon when it starts Run
	done    chan struct{}      // closed when Run has returned
	lastErr atomic.Pointer[string]
	// failures counts the panics that stopped this stream (carried over
	// to the pipeline that replaces it); the restart waits longer each time.
	failures atomic.Int32
}

// newPipeline wires a stream around a source, with the settings of cfg.
func (d *Daemon) newPipeline(cfg *config.Config, sc config.Stream, src capture.Source, m *Models) (*pipeline, error) {
	p := &pipeline{snap: cfg, cfg: sc, src: src, done: make(chan struct{})}
	var err error
	p.cap, err = capture.NewStream(capture.StreamOptions{
		ID: sc.ID, Source: src, Queue: 2, Metrics: d.capMetrics, OnStatus: p.onStatus(d),
	})
	if err != nil {
		return nil, err
	}
	enc := stream.Encoding{Blendshapes: sc.Blendshapes, Landmarks: sc.Landmarks, Mesh: sc.Mesh}
	if c := d.cluster.Load(); c != nil {
		enc.Node, enc.Lease = c.node.Name, c.epochs[sc.ID] // Run's goroutine, as epochs
	}
	p.node = enc.Node
	p.frames = stream.NewFrameSink(d.hub, sc.ID, m.Core.Layout(), enc, d.sinkMetrics)
	sinks := []analysis.Sink{p.frames, d.outs.sink(sc.ID)}
	if d.testSink != nil {
		sinks = append(sinks, d.testSink(sc.ID))
	}
	if c := cfg.Preview; c.Enabled {
		p.preview = preview.New(preview.Options{FPS: c.FPS, MaxWidth: c.MaxWidth, Quality: c.Quality})
		sinks = append(sinks, p.preview)
	}
	o := coreOptions(cfg, sc.ID)
	o.IDs, o.Metrics, o.Sinks = &d.ids, d.anMetrics, sinks
	o.Identity = m.ids.options(cfg, sc.ID)
	o.Admission = &analysis.Live{Pacer: m.Pacer, Stream: sc.ID, MaxLatency: cfg.Schedule.MaxLatency.D()}
	if p.an, err = analysis.New(m.Core, o); err != nil {
		return nil, err
	}
	return p, nil
}

// openSource opens a configured stream's input.
func (d *Daemon) openSource(sc config.Stream) (capture.Source, error) {
	if sc.Kind() == "whip" {
		if src := d.early[sc.ID]; src != nil { // registered before listening
			delete(d.early, sc.ID)
			return src, nil
		}
		w, err := d.whipServer()
		if err != nil {
			return nil, err
		}
		return w.Register(sc.ID, sc.Token)
	}
	return open.Source(sc.URL, open.Options{Realtime: sc.Paced(), Loop: sc.Loop, Width: sc.Width, Height: sc.Height, FPS: sc.FPS})
}

// onStatus runs on the capture goroutine: it only records and forwards.
func (p *pipeline) onStatus(d *Daemon) func(capture.Status) {
	return func(s capture.Status) {
		msg := stream.Status{Stream: s.Stream, State: s.State.String(), At: s.At, RetryMs: s.Retry.Milliseconds()}
		if s.Err != nil {
			msg.Error = s.Err.Error()
			p.lastErr.Store(&msg.Error)
		} else if s.State == capture.StateUp {
			p.lastErr.Store(nil)
		}
		d.hub.PublishStatus(msg)
		attrs := []any{"stream", s.Stream, "state", s.State.String()}
		if s.Err != nil {
			attrs = append(attrs, "err", s.Err, "retry", s.Retry.Round(time.Millisecond))
		}
		d.log.Info("stream status", attrs...)
	}
}

// Run runs the capture and the analyzer until ctx ends or the input ends
// for good; it returns once both have stopped. A panic in either ends it
// with an error wrapping errPanic (the daemon restarts the stream); the
// rest of the daemon goes on.
func (p *pipeline) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	capDone := make(chan error, 1)
	go func() {
		capDone <- safely("capture", func() error { return p.cap.Run(ctx) })
		cancel() // a capture that panicked stops the analyzer too
	}()
	err := safely("analysis", func() error { return p.an.Run(ctx, p.cap.Frames()) })
	cancel()
	for f := range p.cap.Frames() { // until the capture has stopped
		f.Release()
	}
	if capErr := <-capDone; capErr != nil && err == nil {
		err = capErr
	}
	p.cap.Close() // its frames' memory, now and as the last ones come back
	if p.preview != nil {
		p.preview.Close()
	}
	return err
}

// errPanic marks a stream stopped by a panic in its own goroutines.
var errPanic = errors.New("panic")

// safely runs fn, turning a panic into an error that wraps errPanic and
// holds the stack.
func safely(part string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w in %s: %v\n%s", errPanic, part, r, debug.Stack())
		}
	}()
	return fn()
}

// lastError is the stream's latest problem: the source's, else the
// analyzer's.
func (p *pipeline) lastError() string {
	if e := p.lastErr.Load(); e != nil {
		return *e
	}
	return p.an.Stats().Err
}

// info describes the stream for hello and /v1/streams.
func (p *pipeline) info() stream.StreamInfo {
	return stream.StreamInfo{ID: p.cfg.ID, URL: p.src.String(), Kind: p.cfg.Kind(), State: p.cap.State().String(), Node: p.node}
}

func sortPipelines(ps []*pipeline) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].cfg.ID < ps[j].cfg.ID })
}
