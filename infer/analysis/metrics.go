package analysis

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the analyzers' counters, labelled by stream; one set serves
// every analyzer of a process.
type Metrics struct {
	detected *prometheus.CounterVec
	tracked  *prometheus.GaugeVec
	analysed *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	late     *prometheus.CounterVec
	embedded *prometheus.CounterVec
	reids    *prometheus.CounterVec
}

// NewMetrics registers the analyzers' metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
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
			Name: "affectd_analyses_skipped_total", Help: "Tracked faces not analysed in a frame, by reason (paced: fair share under load; in_flight: the previous analysis is not back; queue_full; align_error; track_error; landmarks_error: no landmark fit).",
		}, []string{"stream", "reason"}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_estimates_late_total", Help: "Results that missed their frame's schedule.max_latency and reached a later frame.",
		}, []string{"stream"}),
		embedded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_faces_embedded_total", Help: "Face embeddings computed for re-identification (a face's first, then one every identity.every).",
		}, []string{"stream"}),
		reids: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_faces_reidentified_total", Help: "New tracks that took back the id of a face whose track had ended.",
		}, []string{"stream"}),
	}
	for _, c := range []prometheus.Collector{m.detected, m.tracked, m.analysed, m.skipped, m.late, m.embedded, m.reids} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Forget removes a stream's series (the stream was removed).
func (m *Metrics) Forget(stream string) {
	if m == nil {
		return
	}
	m.detected.DeleteLabelValues(stream)
	m.tracked.DeleteLabelValues(stream)
	m.analysed.DeleteLabelValues(stream)
	m.skipped.DeletePartialMatch(prometheus.Labels{"stream": stream})
	m.late.DeleteLabelValues(stream)
	m.embedded.DeleteLabelValues(stream)
	m.reids.DeleteLabelValues(stream)
}

// streamMetrics are one analyzer's series (no-ops without Metrics).
type streamMetrics struct {
	m        *Metrics
	stream   string
	detected prometheus.Counter
	tracked  prometheus.Gauge
	analysed prometheus.Counter
	late     prometheus.Counter
	embeds   prometheus.Counter
	reids    prometheus.Counter
}

func (m *Metrics) forStream(stream string) streamMetrics {
	if m == nil {
		return streamMetrics{}
	}
	return streamMetrics{
		m: m, stream: stream,
		detected: m.detected.WithLabelValues(stream),
		tracked:  m.tracked.WithLabelValues(stream),
		analysed: m.analysed.WithLabelValues(stream),
		late:     m.late.WithLabelValues(stream),
		embeds:   m.embedded.WithLabelValues(stream),
		reids:    m.reids.WithLabelValues(stream),
	}
}

func (s *streamMetrics) skip(reason string) {
	if s.m != nil {
		s.m.skipped.WithLabelValues(s.stream, reason).Inc()
	}
}

func (s *streamMetrics) detections(n int) {
	if s.m != nil {
		s.detected.Add(float64(n))
	}
}

func (s *streamMetrics) faces(n int) {
	if s.m != nil {
		s.tracked.Set(float64(n))
	}
}

func (s *streamMetrics) submitted() {
	if s.m != nil {
		s.analysed.Inc()
	}
}

func (s *streamMetrics) lateResult() {
	if s.m != nil {
		s.late.Inc()
	}
}

func (s *streamMetrics) embedded() {
	if s.m != nil {
		s.embeds.Inc()
	}
}

func (s *streamMetrics) reidentified() {
	if s.m != nil {
		s.reids.Inc()
	}
}
