package infer

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	batchSize  prometheus.Histogram
	runSeconds prometheus.Histogram
	queueWait  prometheus.Histogram
	pending    prometheus.Gauge
	faces      prometheus.Counter
	failures   prometheus.Counter
	rejected   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "affectd_infer_batch_size",
			Help:    "Faces per model run.",
			Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128},
		}),
		runSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "affectd_infer_run_seconds",
			Help:    "Time of one model run (one batch), in seconds.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "affectd_infer_queue_seconds",
			Help:    "Time a face waited in the batcher before its batch ran, in seconds.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "affectd_infer_pending",
			Help: "Faces reserved in the batcher and not yet running.",
		}),
		faces: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "affectd_infer_faces_total",
			Help: "Faces run through the model.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "affectd_infer_failures_total",
			Help: "Model runs that failed.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "affectd_infer_rejected_total",
			Help:        "Faces refused because the inference queue was full.",
			ConstLabels: prometheus.Labels{"reason": "queue_full"},
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.batchSize, m.runSeconds, m.queueWait, m.pending, m.faces, m.failures, m.rejected} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
