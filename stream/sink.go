package stream

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/infer/analysis"
)

// SinkMetrics are the websocket sinks' figures, labelled by stream.
type SinkMetrics struct {
	latency *prometheus.HistogramVec
}

// NewSinkMetrics registers the sinks' metrics.
func NewSinkMetrics(reg prometheus.Registerer) (*SinkMetrics, error) {
	m := &SinkMetrics{latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "affectd_latency_seconds", Help: "End-to-end latency, from capture to the frame message being sent.",
		Buckets: prometheus.ExponentialBuckets(0.005, 1.6, 14),
	}, []string{"stream"})}
	if err := reg.Register(m.latency); err != nil {
		return nil, err
	}
	return m, nil
}

// Forget removes a stream's series.
func (m *SinkMetrics) Forget(stream string) {
	if m != nil {
		m.latency.DeleteLabelValues(stream)
	}
}

// FrameSink publishes one stream's results on the hub as frame messages
// (an analysis.Sink). It belongs to the stream's analyzer; Rate is safe
// from any goroutine.
type FrameSink struct {
	hub     *Hub
	stream  string
	layout  *analysis.Layout
	enc     Encoding
	buf     []byte
	latency prometheus.Observer
	rate    capture.RateMeter
}

// NewFrameSink makes the sink of one stream (m may be nil: not measured).
func NewFrameSink(h *Hub, stream string, l *analysis.Layout, enc Encoding, m *SinkMetrics) *FrameSink {
	s := &FrameSink{hub: h, stream: stream, layout: l, enc: enc}
	if m != nil {
		s.latency = m.latency.WithLabelValues(stream)
	}
	return s
}

// WriteFrame implements analysis.Sink: it encodes the frame and publishes
// it (the hub never waits for a client).
func (s *FrameSink) WriteFrame(r *analysis.FrameResult) error {
	if r.Seq == 0 {
		return nil // the end of the input: no frame
	}
	now := time.Now()
	s.buf = AppendFrame(s.buf[:0], r, s.layout, s.enc, now)
	s.hub.Publish(s.stream, append([]byte(nil), s.buf...))
	if s.latency != nil && !r.CapturedAt.IsZero() {
		s.latency.Observe(now.Sub(r.CapturedAt).Seconds())
	}
	s.rate.Tick(now)
	return nil
}

// Rate is the frames published per second.
func (s *FrameSink) Rate() float64 { return s.rate.Rate() }
