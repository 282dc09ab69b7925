package config

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/affectd/affectd/capture/streamid"
)

// Validate checks every setting and returns nil or Errors with every
// problem, each naming its key (and, for a parsed file, its file and line).
// It calls one validate method per section. A Config from Parse is already
// valid; call Validate after changing one in code.
func (c *Config) Validate() error {
	p := &problems{src: c.src}
	c.validate(p)
	return p.err()
}

func (c *Config) validate(p *problems) {
	c.validateListen(p)
	c.ORT.validate(p)
	c.Model.validate(p)
	c.Detector.validate(p)
	c.Tracker.validate(p)
	c.Align.validate(p)
	c.Batch.validate(p)
	c.Schedule.validate(p)
	c.Smoothing.validate(p)
	c.RTSP.validate(p)
	c.WebSocket.validate(p)
	c.WebRTC.validate(p)
	c.Landmarks.validate(p)
	c.Identity.validate(p)
	c.Cluster.validate(p)
	c.Preview.validate(p)
	c.HTTP.validate(p)
	validateStreams(p, c.Streams)
	validateOutputs(p, c.Outputs)
}

func (c *Config) validateListen(p *problems) {
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		p.add("listen", `want host:port such as "127.0.0.1:8686", got %s`, quote(c.Listen))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add("listen", "port must be a number from 0 to 65535, got %s", quote(port))
	}
}

func (o ORT) validate(p *problems) {
	required(p, "onnxruntime.library", o.Library)
	switch o.Provider {
	case "cpu", "cuda", "tensorrt":
	default:
		p.add("onnxruntime.provider", "must be one of cpu, cuda, tensorrt, got %s", quote(o.Provider))
	}
	atLeast(p, "onnxruntime.device_id", o.DeviceID, 0)
	between(p, "onnxruntime.threads", o.Threads, 0, 256)
	between(p, "onnxruntime.inter_threads", o.InterThreads, 0, 256)
	switch o.Optimization {
	case "", "all", "extended", "basic", "disabled":
	default:
		p.add("onnxruntime.optimization", "must be one of all, extended, basic, disabled, got %s", quote(o.Optimization))
	}
}

// An empty model.path runs without a MAE-Face model (landmark AUs only).
func (m Model) validate(p *problems) {}

func (v Preview) validate(p *problems) {
	if v.FPS <= 0 || v.FPS > 30 {
		p.add("preview.fps", "must be > 0 and <= 30, got %g", v.FPS)
	}
	between(p, "preview.max_width", v.MaxWidth, 64, 4096)
	between(p, "preview.quality", v.Quality, 1, 100)
	between(p, "preview.max_watchers", v.MaxWatchers, 1, 10000)
}

func (h HTTP) validate(p *problems) {
	for i, name := range h.AllowedHosts {
		if name == "" || strings.ContainsAny(name, ":/ \t") {
			p.add("http.allowed_hosts["+strconv.Itoa(i)+"]", "want a host name without port or scheme, got %s", quote(name))
		}
	}
	durationBetween(p, "http.read_timeout", h.ReadTimeout, time.Second, time.Hour)
	durationBetween(p, "http.idle_timeout", h.IdleTimeout, time.Second, 24*time.Hour)
	if (h.TLS.Cert == "") != (h.TLS.Key == "") {
		p.add("http.tls", "cert and key go together")
	}
}

func (d Detector) validate(p *problems) {
	required(p, "detector.model", d.Model)
	if !(d.ScoreThreshold > 0 && d.ScoreThreshold < 1) {
		p.add("detector.score_threshold", "must be > 0 and < 1, got %g", d.ScoreThreshold)
	}
	between(p, "detector.detect_every", d.DetectEvery, 1, 100)
	between(p, "detector.refine_runs", d.RefineRuns, 0, 4)
	between(p, "detector.threads", d.Threads, 1, 64)
	if !(d.VerifyThreshold >= -3 && d.VerifyThreshold <= 3) {
		p.add("detector.verify_threshold", "must be between -3 and 3, got %g", d.VerifyThreshold)
	}
}

func (t Tracker) validate(p *problems) {
	durationBetween(p, "tracker.lost_after", t.LostAfter, 10*time.Millisecond, time.Hour)
	between(p, "tracker.confirm_hits", t.ConfirmHits, 1, 100)
	if !(t.FitThreshold > 0 && t.FitThreshold <= 2) {
		p.add("tracker.fit_threshold", "must be > 0 and <= 2, got %g", t.FitThreshold)
	}
}

func (a Align) validate(p *problems) {
	if !(a.Margin >= 0 && a.Margin <= 1) {
		p.add("align.margin", "must be between 0 and 1, got %g", a.Margin)
	}
}

// maxMaxBatch and maxQueueLimit bound the batcher's memory.
const (
	maxMaxBatch   = 1024
	maxQueueLimit = 1 << 20
)

func (b Batch) validate(p *problems) {
	between(p, "batch.max_batch", b.MaxBatch, 1, maxMaxBatch)
	durationBetween(p, "batch.max_wait", b.MaxWait, 0, 10*time.Second)
	switch {
	case b.QueueLimit == 0: // 4 × max_batch
	case b.QueueLimit < b.MaxBatch:
		p.add("batch.queue_limit", "must be at least max_batch (%d), got %d", b.MaxBatch, b.QueueLimit)
	case b.QueueLimit > maxQueueLimit:
		p.add("batch.queue_limit", "must be at most %d, got %d", maxQueueLimit, b.QueueLimit)
	}
	between(p, "batch.runners", b.Runners, 1, 16)
}

func (s Schedule) validate(p *problems) {
	durationBetween(p, "schedule.max_latency", s.MaxLatency, time.Millisecond, 10*time.Second)
	if !(s.MaxRate >= 0) {
		p.add("schedule.max_rate", "must be >= 0, got %g", s.MaxRate)
	}
	if !(s.Headroom > 0 && s.Headroom <= 1) {
		p.add("schedule.headroom", "must be > 0 and <= 1, got %g", s.Headroom)
	}
}

func (s Smoothing) validate(p *problems) {
	if !(s.MinCutoff > 0) {
		p.add("smoothing.min_cutoff", "must be > 0, got %g", s.MinCutoff)
	}
	if !(s.Beta >= 0) {
		p.add("smoothing.beta", "must be >= 0, got %g", s.Beta)
	}
	if !(s.DCutoff > 0) {
		p.add("smoothing.d_cutoff", "must be > 0, got %g", s.DCutoff)
	}
}

func (r RTSP) validate(p *problems) {
	if r.Transport != "tcp" && r.Transport != "udp" {
		p.add("rtsp.transport", "must be tcp or udp, got %s", quote(r.Transport))
	}
	durationBetween(p, "rtsp.timeout", r.Timeout, 100*time.Millisecond, time.Minute)
}

func (w WebSocket) validate(p *problems) {
	between(p, "websocket.send_queue", w.SendQueue, 1, 100000)
	between(p, "websocket.max_clients", w.MaxClients, 1, 100000)
	between(p, "websocket.max_drops", w.MaxDrops, 1, 1000000)
	durationBetween(p, "websocket.ping_interval", w.PingInterval, time.Second, 10*time.Minute)
}

func (w WebRTC) validate(p *problems) {
	between(p, "webrtc.udp_port", w.UDPPort, 0, 65535)
	between(p, "webrtc.port_min", w.PortMin, 0, 65535)
	between(p, "webrtc.port_max", w.PortMax, 0, 65535)
	if (w.PortMin == 0) != (w.PortMax == 0) || w.PortMax < w.PortMin {
		p.add("webrtc.port_max", "port_min and port_max go together, with port_min <= port_max (got %d and %d)", w.PortMin, w.PortMax)
	}
	for i, ip := range w.NAT1To1IPs {
		if net.ParseIP(ip) == nil {
			p.add("webrtc.nat_1to1_ips["+strconv.Itoa(i)+"]", "not an IP address: %s", quote(ip))
		}
	}
	between(p, "webrtc.receive_buffer", w.ReceiveBuffer, 1<<20, 1<<30)
	between(p, "webrtc.max_sessions", w.MaxSessions, 1, 1000)
	if o := w.CORSOrigin; o != "" && o != "*" {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			p.add("webrtc.cors_origin", "want \"\", \"*\" or an origin such as https://app.example.com, got %s", quote(o))
		}
	}
	between(p, "webrtc.max_frame_bytes", w.MaxFrameBytes, 64<<10, 256<<20)
	between(p, "webrtc.max_pixels", w.MaxPixels, 64*64, 16384*16384)
}

func validateStreams(p *problems, streams []Stream) {
	first := map[string]int{}
	for i, s := range streams {
		at := "streams[" + strconv.Itoa(i) + "]"
		s.validate(p, at)
		if s.ID == "" {
			continue
		}
		if j, dup := first[s.ID]; dup {
			p.add(at+".id", "duplicate id %s (also streams[%d])", quote(s.ID), j)
		} else {
			first[s.ID] = i
		}
	}
}

func (s Stream) validate(p *problems, at string) {
	switch {
	case s.ID == "":
		p.add(at+".id", "required")
	case !streamid.Valid(s.ID):
		p.add(at+".id", "want %s, got %s", streamid.Rule, quote(s.ID))
	}
	kind, problem := urlKind(s.URL)
	if problem != "" {
		p.add(at+".url", "%s", problem)
	}
	if kind != "" && kind != "file" {
		if s.Realtime != nil {
			p.add(at+".realtime", "only applies to file streams, not %s", kind)
		}
		if s.Loop {
			p.add(at+".loop", "only applies to file streams, not %s", kind)
		}
	}
	if kind != "" && kind != "v4l2" {
		for _, f := range []struct {
			name string
			v    int
		}{{"width", s.Width}, {"height", s.Height}, {"fps", s.FPS}} {
			if f.v != 0 {
				p.add(at+"."+f.name, "only applies to cameras (v4l2), not %s", kind)
			}
		}
	}
	if s.Token != "" && kind != "" && kind != "whip" {
		p.add(at+".token", "only applies to whip:// streams, not %s", kind)
	}
	between(p, at+".width", s.Width, 0, 8192)
	between(p, at+".height", s.Height, 0, 8192)
	between(p, at+".fps", s.FPS, 0, 1000)
}

func required(p *problems, key, v string) {
	if v == "" {
		p.add(key, "required")
	}
}

func between(p *problems, key string, v, lo, hi int) {
	if v < lo || v > hi {
		p.add(key, "must be between %d and %d, got %d", lo, hi, v)
	}
}

func atLeast(p *problems, key string, v, lo int) {
	if v < lo {
		p.add(key, "must be >= %d, got %d", lo, v)
	}
}

func durationBetween(p *problems, key string, v Duration, lo, hi time.Duration) {
	if v.D() < lo || v.D() > hi {
		p.add(key, "must be between %s and %s, got %s", Duration(lo), Duration(hi), v)
	}
}
