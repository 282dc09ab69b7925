package capture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrEnded is returned by a source whose input has ended for good (a file
// without loop): the stream stops instead of reconnecting.
var ErrEnded = errors.New("source ended")

// Source is one kind of video input: a file, an RTSP URL, a camera.
type Source interface {
	// Run opens the input and reads frames into sink until ctx ends
	// (returns nil or ctx.Err()), the input ends for good (returns
	// ErrEnded), or it fails (any other error: the stream reconnects
	// after a backoff). Run must close what it opened before returning.
	Run(ctx context.Context, sink Sink) error
	// String describes the input for logs and the API, without credentials.
	String() string
}

// Sink receives a source's frames. Its methods are called from the
// source's Run goroutine only.
type Sink interface {
	// Frame returns a pooled frame to read into.
	Frame() *Frame
	// Deliver stamps the frame (stream id, sequence number, capture time
	// when unset) and hands it downstream. The source sets PTS.
	Deliver(f *Frame)
	// Discard returns a frame that could not be filled and counts it.
	Discard(f *Frame, reason string)
	// Up marks the input as producing (call it on the first frame after
	// each open).
	Up()
	// Ended marks the input as ended for now without ending the stream:
	// for inputs that come and go on their own, like a WebRTC publisher
	// whose session closed. A later Up brings the stream back up.
	Ended(err error)
}

// State is a stream's lifecycle state.
type State int

// Stream states, as reported in status events.
const (
	StateStarting State = iota
	StateUp
	StateReconnecting
	StateEnded
	StateStopped
)

var stateNames = [...]string{"starting", "up", "reconnecting", "ended", "stopped"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Status is a change of a stream's state.
type Status struct {
	Stream string
	State  State
	// Err is why the stream is reconnecting or ended (nil otherwise).
	Err error
	// Retry is the wait before the next attempt (reconnecting only).
	Retry time.Duration
	At    time.Time
}

// StreamOptions configure a stream.
type StreamOptions struct {
	// ID names the stream (frames, metrics, track ids).
	ID     string
	Source Source
	// Queue is how many frames may wait for the consumer (default 2);
	// beyond that the oldest is dropped.
	Queue int
	// Lossless makes the source wait for the consumer instead of dropping
	// frames (offline analysis of files; never for live inputs).
	Lossless bool
	// MinBackoff, MaxBackoff bound the wait between reconnection attempts:
	// it doubles from min to max, with ±25% jitter (defaults 250ms, 5s).
	MinBackoff, MaxBackoff time.Duration
	// StableAfter resets the backoff once a connection has delivered
	// frames this long (default 10s).
	StableAfter time.Duration
	// Pool provides frames (default: a pool of the stream's own).
	Pool *Pool
	// Metrics counts frames and reconnects (nil: not counted).
	Metrics *Metrics
	// OnStatus receives state changes on the stream's goroutine. It must
	// only forward the event (not block).
	OnStatus func(Status)
}

// Stream supervises one source: it runs it, restarts it after failures
// with exponential backoff and jitter, numbers and stamps its frames, and
// hands them downstream through a newest-wins Queue. Consumers stay
// attached across reconnects: Frames is one channel for the stream's life.
type Stream struct {
	o     StreamOptions
	queue *Queue
	m     streamMetrics

	ctx      context.Context // Run's, for lossless delivery
	seq      uint64
	restart  bool // the input ended: mark the next frame
	upSince  time.Time
	upMarked bool

	state    atomic.Int32
	captured atomic.Uint64
	dropped  atomic.Uint64
	fps      RateMeter

	runOnce sync.Once
	ownPool bool // the stream made its Pool: Close closes it
}

// Close frees the frames of the stream's own pool (not a pool passed in
// StreamOptions): those idle now, and those still out when they are
// released. Call it after Run has returned; it is safe to call twice.
func (s *Stream) Close() {
	if s.ownPool {
		s.o.Pool.Close()
	}
}

// NewStream checks the options and allocates the stream.
func NewStream(o StreamOptions) (*Stream, error) {
	if o.ID == "" {
		return nil, errors.New("capture: stream without an id")
	}
	if o.Source == nil {
		return nil, fmt.Errorf("capture: stream %q: no source", o.ID)
	}
	if o.Queue <= 0 {
		o.Queue = 2
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.StableAfter <= 0 {
		o.StableAfter = 10 * time.Second
	}
	own := o.Pool == nil
	if own {
		o.Pool = NewPool(o.Queue + 4)
	}
	s := &Stream{o: o, m: o.Metrics.forStream(o.ID), ownPool: own}
	s.queue = NewQueue(o.Queue, func() {
		s.dropped.Add(1)
		s.m.dropQueue.Inc()
	})
	return s, nil
}

// ID is the stream's id.
func (s *Stream) ID() string { return s.o.ID }

// Source is the stream's input.
func (s *Stream) Source() Source { return s.o.Source }

// Frames delivers the stream's frames. It is closed when Run returns; the
// receiver releases every frame it takes.
func (s *Stream) Frames() <-chan *Frame { return s.queue.C() }

// State is the current state.
func (s *Stream) State() State { return State(s.state.Load()) }

// Stats are a stream's running figures.
type Stats struct {
	State    State
	Captured uint64
	Dropped  uint64
	FPS      float64
}

// Stats returns the stream's figures (safe from any goroutine).
func (s *Stream) Stats() Stats {
	return Stats{State: s.State(), Captured: s.captured.Load(), Dropped: s.dropped.Load(), FPS: s.fps.Rate()}
}

// Run supervises the source until ctx ends or the source ends for good.
// It returns nil in both cases; the Frames channel is closed on return.
func (s *Stream) Run(ctx context.Context) error {
	ran := false
	s.runOnce.Do(func() { ran = true })
	if !ran {
		return fmt.Errorf("capture: stream %q: Run called twice", s.o.ID)
	}
	s.ctx = ctx
	defer close(s.queue.ch)
	defer s.m.up.Set(0)
	backoff := s.o.MinBackoff
	s.setState(StateStarting, nil, 0)
	for {
		s.upMarked = false
		err := s.o.Source.Run(ctx, s)
		if ctx.Err() != nil {
			s.setState(StateStopped, nil, 0)
			return nil
		}
		if errors.Is(err, ErrEnded) {
			s.setState(StateEnded, err, 0)
			return nil
		}
		if err == nil {
			err = errors.New("source stopped without an error")
		}
		if s.upMarked && time.Since(s.upSince) >= s.o.StableAfter {
			backoff = s.o.MinBackoff
		}
		wait := jitter(backoff)
		s.m.up.Set(0)
		s.m.reconnects.Inc()
		s.setState(StateReconnecting, err, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.setState(StateStopped, nil, 0)
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, s.o.MaxBackoff)
	}
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
}

func (s *Stream) setState(st State, err error, retry time.Duration) {
	s.state.Store(int32(st))
	if s.o.OnStatus != nil {
		s.o.OnStatus(Status{Stream: s.o.ID, State: st, Err: err, Retry: retry, At: time.Now()})
	}
}

// Frame implements Sink.
func (s *Stream) Frame() *Frame { return s.o.Pool.Get() }

// Deliver implements Sink.
func (s *Stream) Deliver(f *Frame) {
	s.seq++
	f.Stream, f.Seq = s.o.ID, s.seq
	if s.restart {
		f.Restart, s.restart = true, false
	}
	if f.CapturedAt.IsZero() {
		f.CapturedAt = time.Now()
	}
	s.captured.Add(1)
	s.m.captured.Inc()
	s.fps.Tick(f.CapturedAt)
	if s.o.Lossless {
		select {
		case s.queue.ch <- f:
		case <-s.ctx.Done():
			f.Release()
		}
		return
	}
	s.queue.Push(f)
}

// Discard implements Sink.
func (s *Stream) Discard(f *Frame, reason string) {
	f.Release()
	s.dropped.Add(1)
	s.o.Metrics.drop(s.o.ID, reason)
}

// Up implements Sink.
func (s *Stream) Up() {
	if s.upMarked {
		return
	}
	s.upMarked = true
	s.upSince = time.Now()
	s.m.up.Set(1)
	s.setState(StateUp, nil, 0)
}

// Ended implements Sink.
func (s *Stream) Ended(err error) {
	s.upMarked = false
	s.restart = true
	s.m.up.Set(0)
	s.setState(StateEnded, err, 0)
}

// Drop counts a frame of this stream dropped downstream for reason (for
// consumers: a tracker too busy, a stale frame).
func (s *Stream) Drop(reason string) {
	s.dropped.Add(1)
	s.o.Metrics.drop(s.o.ID, reason)
}

// RateMeter is an exponentially weighted event rate (frames per second).
// Safe for concurrent use.
type RateMeter struct {
	mu   sync.Mutex
	last time.Time
	ewma float64 // seconds per event
}

// Tick records an event at t.
func (m *RateMeter) Tick(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.last.IsZero() {
		dt := t.Sub(m.last).Seconds()
		if m.ewma == 0 {
			m.ewma = dt
		} else {
			m.ewma += 0.1 * (dt - m.ewma)
		}
	}
	m.last = t
}

// Rate is the events per second (0 after two seconds without one).
func (m *RateMeter) Rate() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ewma <= 0 || time.Since(m.last) > 2*time.Second {
		return 0
	}
	return 1 / m.ewma
}

// Metrics are the capture counters, shared by every stream.
type Metrics struct {
	captured   *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	reconnects *prometheus.CounterVec
	up         *prometheus.GaugeVec
}

// NewMetrics registers the capture metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		captured: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_frames_captured_total", Help: "Frames read from the source.",
		}, []string{"stream"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_frames_dropped_total", Help: "Frames dropped, by reason.",
		}, []string{"stream", "reason"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_source_reconnects_total", Help: "Times a source failed and was restarted.",
		}, []string{"stream"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "affectd_source_up", Help: "1 while the source delivers frames.",
		}, []string{"stream"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.captured, m.dropped, m.reconnects, m.up} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// Forget removes a stream's series (the stream was removed).
func (m *Metrics) Forget(stream string) {
	if m == nil {
		return
	}
	m.captured.DeleteLabelValues(stream)
	m.dropped.DeletePartialMatch(prometheus.Labels{"stream": stream})
	m.reconnects.DeleteLabelValues(stream)
	m.up.DeleteLabelValues(stream)
}

func (m *Metrics) drop(stream, reason string) {
	if m != nil {
		m.dropped.WithLabelValues(stream, reason).Inc()
	}
}

type streamMetrics struct {
	captured, dropQueue, reconnects prometheus.Counter
	up                              prometheus.Gauge
}

func (m *Metrics) forStream(id string) streamMetrics {
	if m == nil {
		nop := prometheus.NewCounter(prometheus.CounterOpts{Name: "nop"})
		return streamMetrics{nop, nop, nop, prometheus.NewGauge(prometheus.GaugeOpts{Name: "nop"})}
	}
	return streamMetrics{
		captured:   m.captured.WithLabelValues(id),
		dropQueue:  m.dropped.WithLabelValues(id, "queue_full"),
		reconnects: m.reconnects.WithLabelValues(id),
		up:         m.up.WithLabelValues(id),
	}
}

// Captured is a stream's frames_captured_total counter.
func (m *Metrics) Captured(stream string) prometheus.Counter {
	return m.captured.WithLabelValues(stream)
}

// Dropped is a stream's frames_dropped_total counter for reason.
func (m *Metrics) Dropped(stream, reason string) prometheus.Counter {
	return m.dropped.WithLabelValues(stream, reason)
}

// Reconnects is a stream's source_reconnects_total counter.
func (m *Metrics) Reconnects(stream string) prometheus.Counter {
	return m.reconnects.WithLabelValues(stream)
}
