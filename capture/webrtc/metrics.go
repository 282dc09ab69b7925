package webrtc

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	sessions      prometheus.Gauge
	refused       *prometheus.CounterVec
	framesRecv    *prometheus.CounterVec
	framesDecoded *prometheus.CounterVec
	decodeErrors  *prometheus.CounterVec
	framesDropped *prometheus.CounterVec
	plis          *prometheus.CounterVec
	decodeSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "affectd_whip_sessions", Help: "WHIP publishing sessions open."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_whip_refused_total", Help: "WHIP offers refused, by reason.",
		}, []string{"reason"}),
		framesRecv: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_whip_frames_received_total", Help: "Video frames assembled from RTP.",
		}, []string{"stream"}),
		framesDecoded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_whip_frames_decoded_total", Help: "Video frames decoded into pictures.",
		}, []string{"stream"}),
		decodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_whip_decode_errors_total", Help: "Frames lost to packet loss or decoding errors.",
		}, []string{"stream"}),
		framesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_whip_frames_dropped_total", Help: "Frames dropped over a limit, by reason (frame_too_large: more than webrtc.max_frame_bytes assembled; picture_too_large: more than webrtc.max_pixels).",
		}, []string{"stream", "reason"}),
		plis: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_whip_plis_total", Help: "Key frames requested from publishers (RTCP PLI).",
		}, []string{"stream"}),
		decodeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "affectd_whip_decode_seconds", Help: "Time to decode and convert one frame.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 12),
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.sessions, m.refused, m.framesRecv, m.framesDecoded, m.decodeErrors, m.framesDropped, m.plis, m.decodeSeconds} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// Forget drops a removed stream's metric series.
func (s *Server) Forget(stream string) {
	m := s.m
	for _, v := range []*prometheus.CounterVec{m.framesRecv, m.framesDecoded, m.decodeErrors, m.plis} {
		v.DeleteLabelValues(stream)
	}
	m.framesDropped.DeletePartialMatch(prometheus.Labels{"stream": stream})
}
