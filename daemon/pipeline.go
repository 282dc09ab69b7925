package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"image"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/open"
	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/stream"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/landmarks"
)

// pipeline runs one stream: capture (the capture.Stream's goroutine) →
// worker (tracking, pacing, alignment into the engine's batch tensor) →
// collector (results, smoothing, messages). Each goroutine owns its state;
// they talk through a bounded channel of pending frames.
type pipeline struct {
	d       *Daemon
	cfg     config.Stream
	src     capture.Source
	cap     *capture.Stream
	tracker *track.Tracker
	m       streamMetrics

	cancel  context.CancelFunc
	done    chan struct{}
	dynamic bool // made for a WHIP publisher: removed when its session ends

	// inflight holds the faces with a request in the engine: a face gets a
	// new analysis only once its previous one is back, so the queue never
	// holds more than one crop per face and waiting stays bounded by the
	// fair share, not by a backlog. The worker adds, the collector removes.
	inflightMu sync.Mutex
	inflight   map[string]bool

	calibrate chan calibrateReq // → the collector

	// The preview: the latest JPEG, made while somebody watches.
	preview       atomic.Pointer[previewPicture]
	previewWanted atomic.Int64 // unix nanoseconds until which pictures are wanted
	previewMat    gocv.Mat     // the worker's scaled copy
	previewNext   time.Time
	width, height atomic.Int32 // the source's frame size
	// For readers on other goroutines (/v1/streams, hello).
	faces   atomic.Int32
	lastErr atomic.Value // string
	outFPS  capture.RateMeter
}

// pendingFrame is a tracked frame waiting for its faces' results.
type pendingFrame struct {
	seq        uint64
	capturedAt time.Time
	pts        time.Duration
	faces      []track.Face
	reqs       []faceReq
	ended      []string
	// Per face, with landmarks on (nil entries: the fit failed).
	shapes []*landmarks.Shape
	poses  []*landmarks.Pose
}

type faceReq struct {
	face int // index in faces
	req  *infer.Request
}

// pendingFrames bounds the frames between worker and collector: when the
// collector falls this far behind, the worker waits and the capture queue
// drops the oldest frames (counted).
const pendingFrames = 8

func newPipeline(d *Daemon, sc config.Stream) (*pipeline, error) {
	var src capture.Source
	var err error
	if sc.Kind() == "whip" {
		w, err := d.whipServer()
		if err != nil {
			return nil, err
		}
		if src, err = w.Register(sc.ID, sc.Token); err != nil {
			return nil, err
		}
	} else if src, err = open.Source(sc.URL, open.Options{Realtime: sc.Paced(), Loop: sc.Loop, Width: sc.Width, Height: sc.Height, FPS: sc.FPS}); err != nil {
		return nil, err
	}
	p, err := newPipelineFrom(d, sc, src)
	if err != nil && sc.Kind() == "whip" {
		d.whip.Load().Unregister(sc.ID)
	}
	return p, err
}

// newPipelineFrom builds a pipeline around a source.
func newPipelineFrom(d *Daemon, sc config.Stream, src capture.Source) (*pipeline, error) {
	var err error
	p := &pipeline{d: d, cfg: sc, src: src, done: make(chan struct{}), m: d.pm.forStream(sc.ID), inflight: map[string]bool{}, calibrate: make(chan calibrateReq)}
	p.lastErr.Store("")
	p.cap, err = capture.NewStream(capture.StreamOptions{
		ID: sc.ID, Source: src, Queue: 2, Metrics: d.capMetrics,
		OnStatus: p.onStatus,
	})
	if err != nil {
		return nil, err
	}
	p.tracker, err = track.NewTracker(d.det, track.TrackerOptions{
		Stream: sc.ID, IDs: &d.ids, DetectEvery: d.cfg.Detector.DetectEvery,
		LostAfter: d.cfg.Tracker.LostAfter.D(), ConfirmHits: d.cfg.Tracker.ConfirmHits,
		NoRefine: d.cfg.Detector.RefineRuns == 0 || d.landmarkAlign(),
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// onStatus runs on the capture goroutine: it only records and forwards.
func (p *pipeline) onStatus(s capture.Status) {
	msg := stream.Status{Stream: s.Stream, State: s.State.String(), At: s.At, RetryMs: s.Retry.Milliseconds()}
	if s.Err != nil {
		msg.Error = s.Err.Error()
		p.lastErr.Store(s.Err.Error())
	} else if s.State == capture.StateUp {
		p.lastErr.Store("")
	}
	p.d.hub.PublishStatus(msg)
	attrs := []any{"stream", s.Stream, "state", s.State.String()}
	if s.Err != nil {
		attrs = append(attrs, "err", s.Err, "retry", s.Retry.Round(time.Millisecond))
	}
	p.d.log.Info("stream status", attrs...)
}

func (p *pipeline) start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	pending := make(chan *pendingFrame, pendingFrames)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); p.cap.Run(ctx) }()
	go func() { defer wg.Done(); p.work(ctx, pending) }()
	go func() { defer wg.Done(); p.collect(pending) }()
	go func() {
		wg.Wait()
		close(p.done)
		if p.dynamic && ctx.Err() == nil { // ended on its own: Run removes it
			p.d.finished <- p
		}
	}()
}

// stop cancels the stream and waits for its goroutines.
func (p *pipeline) stop() {
	if p.cancel != nil {
		p.cancel()
	}
	<-p.done
}

// work tracks every frame and submits the faces that are due.
func (p *pipeline) work(ctx context.Context, pending chan<- *pendingFrame) {
	defer close(pending)
	d := p.d
	last := map[string]time.Time{} // face → when last submitted
	var order []int
	var lastPTS time.Duration
	for f := range p.cap.Frames() {
		var restarted []string
		if f.Restart { // a new session: its faces are new tracks
			restarted = p.tracker.Flush()
			for _, id := range restarted {
				delete(last, id)
			}
		}
		u, err := p.tracker.Step(f.Mat, f.PTS)
		if err != nil {
			p.lastErr.Store(err.Error())
			p.m.skipped("track_error").Inc()
			f.Release()
			if len(restarted) > 0 {
				select {
				case pending <- &pendingFrame{ended: restarted}:
				case <-ctx.Done():
				}
			}
			continue
		}
		if u.Detected {
			p.m.detected.Add(float64(u.Detections))
		}
		p.faces.Store(int32(len(u.Faces)))
		p.m.tracked.Set(float64(len(u.Faces)))
		frameDur := f.PTS - lastPTS
		lastPTS = f.PTS
		if frameDur <= 0 || frameDur > time.Second {
			frameDur = 40 * time.Millisecond
		}
		pf := &pendingFrame{seq: f.Seq, capturedAt: f.CapturedAt, pts: f.PTS, faces: append([]track.Face(nil), u.Faces...)}
		pf.ended = append(append(pf.ended, restarted...), u.Ended...)
		for _, id := range u.Ended {
			delete(last, id)
		}
		if d.landmarks != nil {
			p.fitLandmarks(f, pf)
		}
		p.width.Store(int32(f.Mat.Cols()))
		p.height.Store(int32(f.Mat.Rows()))
		p.updatePreview(f)
		if d.engine != nil {
			d.pacer.Report(p.cfg.ID, len(u.Faces), 1/frameDur.Seconds())
			p.submit(ctx, f, pf, last, &order, frameDur)
		}
		f.Release() // the crops are in the batch tensor already
		select {
		case pending <- pf:
		case <-ctx.Done():
			releaseAll(pf.reqs)
		}
	}
	for _, id := range p.tracker.Flush() {
		select {
		case pending <- &pendingFrame{ended: []string{id}}:
		case <-ctx.Done():
		}
	}
	if p.previewMat.Ptr() != nil {
		p.previewMat.Close()
	}
}

// fitLandmarks fits the 68 landmarks and the head pose of every face (on
// every frame: rigs want them all); with landmarks.align the fitted points
// replace BlazeFace's keypoints for the MAE-Face crop.
func (p *pipeline) fitLandmarks(f *capture.Frame, pf *pendingFrame) {
	d := p.d
	pf.shapes = make([]*landmarks.Shape, len(pf.faces))
	pf.poses = make([]*landmarks.Pose, len(pf.faces))
	w, h := f.Mat.Cols(), f.Mat.Rows()
	for i := range pf.faces {
		face := &pf.faces[i]
		s, err := d.landmarks.Fit(f.Mat, face.Box)
		if err != nil {
			p.m.skipped("landmarks_error").Inc()
			continue
		}
		pf.shapes[i] = &s
		if pose, err := cameraFor(w, h, d.cfg.Landmarks.FOV).EstimatePose(s); err == nil {
			pf.poses[i] = &pose
		}
		if d.cfg.Landmarks.Align {
			face.Keypoints = s.Keypoints()
		}
	}
}

// previewPicture is one encoded preview frame.
type previewPicture struct {
	jpeg          []byte
	seq           uint64
	width, height int // the source frame's size (boxes are in its pixels)
}

// updatePreview encodes the frame as the stream's preview, at most
// preview.fps times a second and only while somebody watches.
func (p *pipeline) updatePreview(f *capture.Frame) {
	c := p.d.cfg.Preview
	now := time.Now()
	if !c.Enabled || now.UnixNano() > p.previewWanted.Load() || now.Before(p.previewNext) {
		return
	}
	p.previewNext = now.Add(time.Duration(float64(time.Second) / c.FPS))
	src := f.Mat
	if w := f.Mat.Cols(); w > c.MaxWidth {
		if p.previewMat.Ptr() == nil {
			p.previewMat = gocv.NewMat()
		}
		h := f.Mat.Rows() * c.MaxWidth / w
		gocv.Resize(f.Mat, &p.previewMat, image.Pt(c.MaxWidth, h), 0, 0, gocv.InterpolationArea)
		src = p.previewMat
	}
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, src, []int{gocv.IMWriteJpegQuality, c.Quality})
	if err != nil {
		return
	}
	pic := &previewPicture{jpeg: append([]byte(nil), buf.GetBytes()...), seq: f.Seq, width: f.Mat.Cols(), height: f.Mat.Rows()}
	buf.Close()
	p.preview.Store(pic)
}

// wantPreview asks the worker for pictures for the next d.
func (p *pipeline) wantPreview(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		old := p.previewWanted.Load()
		if old >= until || p.previewWanted.CompareAndSwap(old, until) {
			return
		}
	}
}

// cameraFor is the pinhole camera of a w×h source with the configured
// horizontal field of view (sources do not report their intrinsics).
func cameraFor(w, h int, fovDeg float64) landmarks.Camera {
	f := float32(float64(w) / 2 / math.Tan(fovDeg*math.Pi/360))
	return landmarks.Camera{Fx: f, Fy: f, Cx: float32(w) / 2, Cy: float32(h) / 2}
}

// submit sends the faces that are due to the engine, their crops written
// straight into its batch tensor, the faces waiting longest first.
func (p *pipeline) submit(ctx context.Context, f *capture.Frame, pf *pendingFrame, last map[string]time.Time, order *[]int, frameDur time.Duration) {
	d := p.d
	*order = (*order)[:0]
	for i := range pf.faces {
		*order = append(*order, i)
	}
	sort.Slice(*order, func(a, b int) bool {
		return last[pf.faces[(*order)[a]].ID].Before(last[pf.faces[(*order)[b]].ID])
	})
	now := f.CapturedAt
	full := false
	for _, i := range *order {
		face := &pf.faces[i]
		if full {
			p.m.skipped("queue_full").Inc()
			continue
		}
		if !d.pacer.Due(last[face.ID], now, frameDur) {
			p.m.skipped("paced").Inc()
			continue
		}
		if p.busy(face.ID) {
			p.m.skipped("in_flight").Inc()
			continue
		}
		r, err := d.engine.Reserve(ctx)
		if err != nil {
			if errors.Is(err, infer.ErrOverloaded) {
				full = true
				p.m.skipped("queue_full").Inc()
				continue
			}
			return // stopping
		}
		if _, err := d.aligner.Align(f.Mat, face.Keypoints, r.Input()); err != nil {
			r.Release()
			p.m.skipped("align_error").Inc()
			continue
		}
		r.Submit()
		p.setBusy(face.ID, true)
		last[face.ID] = now
		pf.reqs = append(pf.reqs, faceReq{i, r})
		p.m.analysed.Inc()
	}
}

func (p *pipeline) busy(id string) bool {
	p.inflightMu.Lock()
	defer p.inflightMu.Unlock()
	return p.inflight[id]
}

func (p *pipeline) setBusy(id string, busy bool) {
	p.inflightMu.Lock()
	defer p.inflightMu.Unlock()
	if busy {
		p.inflight[id] = true
	} else {
		delete(p.inflight, id)
	}
}

func releaseAll(reqs []faceReq) {
	for _, fr := range reqs {
		fr.req.Release()
	}
}

// estimate is a face's latest (smoothed) result.
type estimate struct {
	seq    uint64
	values [][]float32
}

// collect waits for each frame's results (up to schedule.max_latency after
// capture), keeps each face's latest estimate, and publishes the frame.
func (p *pipeline) collect(pending <-chan *pendingFrame) {
	d := p.d
	smooth := stream.NewSmoother(stream.SmoothOptions{
		Enabled: d.cfg.Smoothing.Enabled, MinCutoff: d.cfg.Smoothing.MinCutoff,
		Beta: d.cfg.Smoothing.Beta, DCutoff: d.cfg.Smoothing.DCutoff,
	})
	est := map[string]*estimate{}
	lm := newLandmarkState()
	type lateReq struct {
		id  string
		seq uint64
		pts time.Duration
		req *infer.Request
	}
	var late []lateReq
	apply := func(id string, seq uint64, pts time.Duration, res *infer.Result) {
		e := est[id]
		if e == nil {
			e = &estimate{values: make([][]float32, len(res.Heads))}
			for i, h := range res.Heads {
				e.values[i] = make([]float32, len(h.Values))
			}
			est[id] = e
		}
		if seq < e.seq {
			return // a late result older than what we have
		}
		e.seq = seq
		for i, h := range res.Heads {
			copy(e.values[i], h.Values)
		}
		smooth.Apply(id, pts, e.values, d.softmax)
	}
	maxLatency := d.cfg.Schedule.MaxLatency.D()
	nheads := len(d.layout.Heads)
	var buf []byte
	for {
		var pf *pendingFrame
		select {
		case c := <-p.calibrate:
			c.reply <- lm.est.Calibrate(c.face)
			continue
		case f, ok := <-pending:
			if !ok {
				for _, l := range late {
					l.req.Release()
				}
				return
			}
			pf = f
		}
		// Results that missed their own frame's deadline.
		keep := late[:0]
		for _, l := range late {
			if !l.req.Ready() {
				keep = append(keep, l)
				continue
			}
			if res, err := l.req.Wait(context.Background()); err == nil {
				apply(l.id, l.seq, l.pts, res)
			}
			l.req.Release()
			p.setBusy(l.id, false)
		}
		late = keep
		if pf.seq > 0 {
			ctx, cancel := context.WithDeadline(context.Background(), pf.capturedAt.Add(maxLatency))
			for _, fr := range pf.reqs {
				id := pf.faces[fr.face].ID
				res, err := fr.req.Wait(ctx)
				switch {
				case err == nil:
					apply(id, pf.seq, pf.pts, res)
					fr.req.Release()
					p.setBusy(id, false)
				case ctx.Err() != nil:
					late = append(late, lateReq{id, pf.seq, pf.pts, fr.req})
					p.m.late.Inc()
				default:
					p.lastErr.Store(err.Error())
					fr.req.Release()
					p.setBusy(id, false)
				}
			}
			cancel()
			frame := stream.Frame{Stream: p.cfg.ID, Seq: pf.seq, CapturedAt: pf.capturedAt, PTS: pf.pts, Faces: make([]stream.Face, len(pf.faces))}
			for i, f := range pf.faces {
				sf := &frame.Faces[i]
				sf.ID, sf.Score = f.ID, f.Score
				sf.Box = [4]float32{f.Box.X, f.Box.Y, f.Box.W, f.Box.H}
				if nheads > 0 {
					sf.Values = make([][]float32, nheads)
				}
				if e := est[f.ID]; e != nil {
					sf.EstimateSeq = e.seq
					copy(sf.Values, e.values)
				}
				if pf.shapes != nil && pf.shapes[i] != nil {
					lm.apply(p, smooth, sf, pf.shapes[i], pf.poses[i], pf.pts)
				}
			}
			now := time.Now()
			buf = stream.AppendFrame(buf[:0], &frame, &d.layout, now)
			msg := append([]byte(nil), buf...)
			d.hub.Publish(p.cfg.ID, msg)
			p.m.latency.Observe(now.Sub(pf.capturedAt).Seconds())
			p.outFPS.Tick(now)
		}
		for _, id := range pf.ended {
			delete(est, id)
			smooth.Forget(id)
			lm.forget(smooth, id)
			keep := late[:0]
			for _, l := range late {
				if l.id == id {
					l.req.Release() // its face is gone: nobody needs the result
					p.setBusy(id, false)
				} else {
					keep = append(keep, l)
				}
			}
			late = keep
		}
	}
}

// calibrateReq asks the collector to take a face's current landmarks as
// its neutral.
type calibrateReq struct {
	face  string
	reply chan bool
}

// landmarkState is the collector's per-face landmark output: the AU
// backend's neutrals and the smoothed AU, blend-shape and pose values.
type landmarkState struct {
	est   *lmau.Estimator
	faces map[string]*lmValues
}

type lmValues struct {
	au, blend, pose []float32
	lms             [68][2]float32
}

func newLandmarkState() *landmarkState {
	return &landmarkState{est: lmau.NewEstimator(), faces: map[string]*lmValues{}}
}

// apply runs the landmark backend on one face and fills its output.
func (l *landmarkState) apply(p *pipeline, smooth *stream.Smoother, sf *stream.Face, shape *landmarks.Shape, pose *landmarks.Pose, pts time.Duration) {
	d := p.d
	r, ok := l.est.Update(sf.ID, (*lmau.Shape)(shape))
	if !ok {
		return
	}
	v := l.faces[sf.ID]
	if v == nil {
		v = &lmValues{au: make([]float32, lmau.NumAUs), blend: make([]float32, len(lmau.BlendShapes)), pose: make([]float32, 6)}
		l.faces[sf.ID] = v
	}
	copy(v.au, r.AU[:])
	copy(v.blend, r.Blend[:])
	series := [][]float32{v.au, v.blend}
	if pose != nil {
		v.pose[0], v.pose[1], v.pose[2] = pose.Yaw, pose.Pitch, pose.Roll
		copy(v.pose[3:], pose.T[:])
		series = append(series, v.pose)
	}
	smooth.Apply(sf.ID+"\x00landmarks", pts, series, nil)
	if d.lmHead >= 0 {
		sf.Values[d.lmHead] = v.au
	}
	if pose != nil {
		sf.Pose = &stream.Pose{Yaw: v.pose[0], Pitch: v.pose[1], Roll: v.pose[2], T: [3]float32{v.pose[3], v.pose[4], v.pose[5]}}
	}
	if p.cfg.Blendshapes {
		sf.Blend = v.blend
	}
	if p.cfg.Landmarks {
		for i, q := range shape {
			v.lms[i] = [2]float32{q.X, q.Y}
		}
		sf.Landmarks = &v.lms
	}
}

func (l *landmarkState) forget(smooth *stream.Smoother, id string) {
	l.est.Forget(id)
	delete(l.faces, id)
	smooth.Forget(id + "\x00landmarks")
}

// info describes the stream for hello and /v1/streams.
func (p *pipeline) info() stream.StreamInfo {
	return stream.StreamInfo{ID: p.cfg.ID, URL: p.src.String(), Kind: p.cfg.Kind(), State: p.cap.State().String()}
}

func sortPipelines(ps []*pipeline) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].cfg.ID < ps[j].cfg.ID })
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// pipelineMetrics are the per-stream counters of tracking, scheduling and
// delivery.
type pipelineMetrics struct {
	detected *prometheus.CounterVec
	tracked  *prometheus.GaugeVec
	analysed *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	late     *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newPipelineMetrics(reg prometheus.Registerer) (*pipelineMetrics, error) {
	m := &pipelineMetrics{
		detected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_faces_detected_total", Help: "Faces found by the detector.",
		}, []string{"stream"}),
		tracked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "affectd_faces_tracked", Help: "Faces tracked in the stream's latest frame.",
		}, []string{"stream"}),
		analysed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_analyses_total", Help: "Faces submitted to the model.",
		}, []string{"stream"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_analyses_skipped_total", Help: "Tracked faces not analysed in a frame, by reason (paced: fair share under load; in_flight: the previous analysis is not back; queue_full; align_error; track_error).",
		}, []string{"stream", "reason"}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_estimates_late_total", Help: "Results that missed their frame's schedule.max_latency and reached a later frame.",
		}, []string{"stream"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "affectd_latency_seconds", Help: "End-to-end latency, from capture to the frame message being sent.",
			Buckets: prometheus.ExponentialBuckets(0.005, 1.6, 14),
		}, []string{"stream"}),
	}
	for _, c := range []prometheus.Collector{m.detected, m.tracked, m.analysed, m.skipped, m.late, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *pipelineMetrics) forget(id string) {
	m.detected.DeleteLabelValues(id)
	m.tracked.DeleteLabelValues(id)
	m.analysed.DeleteLabelValues(id)
	m.skipped.DeletePartialMatch(prometheus.Labels{"stream": id})
	m.late.DeleteLabelValues(id)
	m.latency.DeleteLabelValues(id)
}

type streamMetrics struct {
	id       string
	pm       *pipelineMetrics
	detected prometheus.Counter
	tracked  prometheus.Gauge
	analysed prometheus.Counter
	late     prometheus.Counter
	latency  prometheus.Observer
}

func (m *pipelineMetrics) forStream(id string) streamMetrics {
	return streamMetrics{
		id: id, pm: m,
		detected: m.detected.WithLabelValues(id),
		tracked:  m.tracked.WithLabelValues(id),
		analysed: m.analysed.WithLabelValues(id),
		late:     m.late.WithLabelValues(id),
		latency:  m.latency.WithLabelValues(id),
	}
}

func (m streamMetrics) skipped(reason string) prometheus.Counter {
	return m.pm.skipped.WithLabelValues(m.id, reason)
}
