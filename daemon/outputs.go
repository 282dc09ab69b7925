package daemon

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/stream/rig"
)

// outputs are the rig outputs of the config's outputs: list (stream/rig),
// shared by the pipelines: each pipeline has one outputSink that hands its
// results to the outputs of its stream in force. A reload replaces the
// set without touching the streams; an output whose settings did not
// change is kept, with its socket and its counts.
type outputs struct {
	log *slog.Logger
	set atomic.Pointer[outputSet]
	mu  sync.Mutex // apply and close take turns (both run on Run's goroutine)
}

type outputSet struct {
	all      []*outputEntry           // config order
	byStream map[string][]*rig.Output // the working ones, per stream
}

type outputEntry struct {
	cfg config.Output
	out *rig.Output // nil: it could not be made (err says why)
	err string
}

// apply makes the set of cfgs, keeping unchanged outputs and closing the
// rest; l is the models' layout (blend-shape names, heads).
func (o *outputs) apply(cfgs []config.Output, l *analysis.Layout) {
	o.mu.Lock()
	defer o.mu.Unlock()
	old := o.set.Load()
	next := &outputSet{byStream: map[string][]*rig.Output{}}
	kept := map[*rig.Output]bool{}
	for _, c := range cfgs {
		e := &outputEntry{cfg: c}
		if prev := old.find(c); prev != nil {
			e.out = prev
			kept[prev] = true
		} else if out, err := rig.New(rigOptions(c), l); err != nil {
			e.err = err.Error()
			o.log.Error("output not started", "output", c.Name, "err", err)
		} else {
			e.out = out
			o.log.Info("output started", "output", c.Name, "kind", c.Kind, "target", c.Target, "stream", c.Stream)
		}
		next.all = append(next.all, e)
		if e.out != nil {
			next.byStream[c.Stream] = append(next.byStream[c.Stream], e.out)
		}
	}
	o.set.Store(next)
	if old != nil {
		for _, e := range old.all {
			if e.out != nil && !kept[e.out] {
				e.out.Close()
				o.log.Info("output stopped", "output", e.cfg.Name)
			}
		}
	}
}

// find is the working output made with exactly c, or nil.
func (s *outputSet) find(c config.Output) *rig.Output {
	if s == nil {
		return nil
	}
	for _, e := range s.all {
		if e.out != nil && sameOutput(e.cfg, c) {
			return e.out
		}
	}
	return nil
}

func sameOutput(a, b config.Output) bool {
	ab, bb := a.Bundle != nil && *a.Bundle, b.Bundle != nil && *b.Bundle
	a.Bundle, b.Bundle = nil, nil
	return a == b && ab == bb
}

func rigOptions(c config.Output) rig.Options {
	return rig.Options{
		Name: c.Name, Kind: c.Kind, Target: c.Target, Stream: c.Stream, Face: c.Face,
		Rate: c.Rate, Bundle: c.Bundle != nil && *c.Bundle, Names: c.Names,
		Gain: c.Gain, DeadZone: c.DeadZone, Subject: c.Subject,
	}
}

// close closes every output.
func (o *outputs) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.set.Swap(nil); s != nil {
		for _, e := range s.all {
			if e.out != nil {
				e.out.Close()
			}
		}
	}
}

// sink is the analysis.Sink of a stream's pipeline.
func (o *outputs) sink(stream string) analysis.Sink { return &outputSink{o: o, stream: stream} }

type outputSink struct {
	o      *outputs
	stream string
}

// WriteFrame hands r to the stream's outputs; they never wait for their
// receivers and never fail the pipeline (their errors are counted).
func (s *outputSink) WriteFrame(r *analysis.FrameResult) error {
	set := s.o.set.Load()
	if set == nil {
		return nil
	}
	for _, out := range set.byStream[s.stream] {
		out.WriteFrame(r)
	}
	return nil
}

// OutputStatus is one output in GET /v1/outputs.
type OutputStatus struct {
	rig.Stats
	// Error says why the output could not be made (it sends nothing).
	Error string `json:"error,omitempty"`
}

// status lists the outputs in config order.
func (o *outputs) status() []OutputStatus {
	list := []OutputStatus{}
	set := o.set.Load()
	if set == nil {
		return list
	}
	for _, e := range set.all {
		if e.out != nil {
			list = append(list, OutputStatus{Stats: e.out.Stats()})
			continue
		}
		c := e.cfg
		list = append(list, OutputStatus{Stats: rig.Stats{Name: c.Name, Kind: c.Kind, Target: c.Target, Stream: c.Stream, Face: c.Face}, Error: e.err})
	}
	return list
}

func (d *Daemon) listOutputs(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"outputs": d.outs.status()})
}

// Metrics: counters read from the outputs in force when scraped.
var (
	outputPacketsDesc = prometheus.NewDesc("affectd_output_packets_total",
		"UDP datagrams sent by a rig output.", []string{"output", "kind"}, nil)
	outputBytesDesc = prometheus.NewDesc("affectd_output_bytes_total",
		"Bytes sent by a rig output.", []string{"output", "kind"}, nil)
	outputErrorsDesc = prometheus.NewDesc("affectd_output_errors_total",
		"Sends of a rig output that failed (such as connection refused).", []string{"output", "kind"}, nil)
	outputLimitedDesc = prometheus.NewDesc("affectd_output_limited_total",
		"Frames a rig output did not send because of its rate.", []string{"output", "kind"}, nil)
)

// Describe implements prometheus.Collector.
func (o *outputs) Describe(ch chan<- *prometheus.Desc) {
	ch <- outputPacketsDesc
	ch <- outputBytesDesc
	ch <- outputErrorsDesc
	ch <- outputLimitedDesc
}

// Collect implements prometheus.Collector.
func (o *outputs) Collect(ch chan<- prometheus.Metric) {
	for _, s := range o.status() {
		if s.Error != "" {
			continue
		}
		for _, m := range []struct {
			d *prometheus.Desc
			v uint64
		}{{outputPacketsDesc, s.Packets}, {outputBytesDesc, s.Bytes}, {outputErrorsDesc, s.Errors}, {outputLimitedDesc, s.Limited}} {
			ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v), s.Name, s.Kind)
		}
	}
}
