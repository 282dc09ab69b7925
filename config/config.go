package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/affectd/affectd/capture/urls"
)

// Config is the daemon's configuration file.
type Config struct {
	// Listen is the HTTP/WebSocket address, host:port (port 0 picks one).
	Listen string `yaml:"listen"`
	// AuthToken is the bearer token clients must send; empty disables auth.
	// AFFECTD_AUTH_TOKEN overrides it.
	AuthToken string    `yaml:"auth_token"`
	ORT       ORT       `yaml:"onnxruntime"`
	Model     Model     `yaml:"model"`
	Detector  Detector  `yaml:"detector"`
	Tracker   Tracker   `yaml:"tracker"`
	Align     Align     `yaml:"align"`
	Batch     Batch     `yaml:"batch"`
	Schedule  Schedule  `yaml:"schedule"`
	Smoothing Smoothing `yaml:"smoothing"`
	RTSP      RTSP      `yaml:"rtsp"`
	WebSocket WebSocket `yaml:"websocket"`
	WebRTC    WebRTC    `yaml:"webrtc"`
	Landmarks Landmarks `yaml:"landmarks"`
	// ExpressionFER adds the expression_fer head (config/landmarks.go).
	ExpressionFER ExpressionFER `yaml:"expression_fer"`
	// Identity re-identifies faces and names enrolled people
	// (config/identity.go).
	Identity Identity `yaml:"identity"`
	// Cluster shares the streams between nodes (config/cluster.go).
	Cluster Cluster `yaml:"cluster"`
	Preview Preview `yaml:"preview"`
	HTTP    HTTP    `yaml:"http"`
	// Streams are the video sources. None is valid: the daemon idles until
	// a reload gives it some.
	Streams []Stream `yaml:"streams"`
	// Outputs send faces to animation rigs (VMC, OSC, Live Link Face).
	Outputs []Output `yaml:"outputs"`

	src *source // where Parse read it, for Validate's line numbers; nil if built in code
}

// ORT configures ONNX Runtime.
type ORT struct {
	// Library is the path of libonnxruntime.so. A bare file name (no "/")
	// is left to the dynamic loader's search path.
	Library string `yaml:"library"`
	// Provider is the execution provider: cpu, cuda or tensorrt.
	Provider string `yaml:"provider"`
	// Fallback runs on the CPU when Provider is not available.
	Fallback bool `yaml:"fallback"`
	// DeviceID is the GPU for cuda and tensorrt.
	DeviceID int `yaml:"device_id"`
	// Threads is the intra-op thread count; 0 means one per CPU.
	Threads int `yaml:"threads"`
	// InterThreads runs independent operators in parallel (0: 1).
	InterThreads int `yaml:"inter_threads"`
	// Optimization is the graph optimisation level: all, extended, basic, disabled.
	Optimization string `yaml:"optimization"`
	// OptimizedModel caches the optimised graph in this file ("": none).
	OptimizedModel string `yaml:"optimized_model"`
}

// Model is the affect model (an ONNX file following affectd's model contract).
type Model struct {
	Path string `yaml:"path"`
	// KeepFeatures sends the backbone's feature vector along with the heads.
	KeepFeatures bool `yaml:"keep_features"`
}

// Detector configures the BlazeFace face detector.
type Detector struct {
	Model          string  `yaml:"model"`
	ScoreThreshold float64 `yaml:"score_threshold"`
	// DetectEvery runs the detector on one frame in this many; the tracker
	// carries faces in between.
	DetectEvery int `yaml:"detect_every"`
	// RefineRuns is how many refinement passes run on a track's box (0: none).
	RefineRuns int `yaml:"refine_runs"`
	Threads    int `yaml:"threads"`
	// Verify checks a detection with a second face detector (dlib's HOG)
	// before it starts a track; VerifyThreshold is the least score of a
	// face (higher: stricter).
	Verify          bool    `yaml:"verify"`
	VerifyThreshold float64 `yaml:"verify_threshold"`
}

// Tracker configures face tracking.
type Tracker struct {
	// LostAfter ends a track not seen for this long.
	LostAfter Duration `yaml:"lost_after"`
	// ConfirmHits is how many detections make a track real (without
	// detector.verify; a verified detection is real at once).
	ConfirmHits int `yaml:"confirm_hits"`
	// Cuts ends every track at a cut between shots.
	Cuts bool `yaml:"cuts"`
	// FitThreshold is how far (in box widths) a face's landmark fit may
	// stray from the detector's keypoints and still be trusted.
	FitThreshold float64 `yaml:"fit_threshold"`
}

// Align configures face cropping.
type Align struct {
	// Margin widens the face box by this fraction on each side.
	Margin float64 `yaml:"margin"`
}

// Batch configures the inference batcher.
type Batch struct {
	MaxBatch int `yaml:"max_batch"`
	// MaxWait is how long the oldest crop waits for a fuller batch; 0
	// flushes as soon as a runner is free.
	MaxWait Duration `yaml:"max_wait"`
	// QueueLimit bounds the crops waiting for inference. 0 in the file
	// means 4 × MaxBatch, which Parse fills in.
	QueueLimit int `yaml:"queue_limit"`
	// Runners is how many batches run at once.
	Runners int `yaml:"runners"`
}

// Schedule configures which faces are analysed when.
type Schedule struct {
	// MaxLatency is how long a frame's message waits for its inferences.
	MaxLatency Duration `yaml:"max_latency"`
	// MaxRate caps analyses per face per second; 0 analyses every frame.
	MaxRate float64 `yaml:"max_rate"`
	// Headroom is the fraction of measured capacity the scheduler uses.
	Headroom float64 `yaml:"headroom"`
}

// Smoothing configures the One-Euro filter on the outputs.
type Smoothing struct {
	Enabled   bool    `yaml:"enabled"`
	MinCutoff float64 `yaml:"min_cutoff"` // Hz
	Beta      float64 `yaml:"beta"`
	DCutoff   float64 `yaml:"d_cutoff"` // Hz
}

// RTSP configures RTSP sources.
type RTSP struct {
	// Transport is tcp or udp.
	Transport string   `yaml:"transport"`
	Timeout   Duration `yaml:"timeout"`
}

// Preview configures GET /v1/streams/{id}/preview, the dashboard's live
// picture (JPEG, MJPEG).
type Preview struct {
	// Enabled serves previews (off: 404, and no frame is ever encoded).
	Enabled bool `yaml:"enabled"`
	// FPS is the most pictures per second per stream.
	FPS float64 `yaml:"fps"`
	// MaxWidth scales larger frames down (pixels).
	MaxWidth int `yaml:"max_width"`
	// Quality is the JPEG quality (1..100).
	Quality int `yaml:"quality"`
	// MaxWatchers bounds the MJPEG watchers of all streams together: more
	// get 503.
	MaxWatchers int `yaml:"max_watchers"`
}

// HTTP configures the HTTP server.
type HTTP struct {
	// AllowedHosts are the host names, besides IP addresses and
	// "localhost", that requests may name in their Host header; others
	// get 421, so that a web page served from another name cannot reach
	// the daemon through DNS rebinding.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// ReadTimeout bounds reading a whole request (headers and body);
	// IdleTimeout closes keep-alive connections idle this long.
	ReadTimeout Duration `yaml:"read_timeout"`
	IdleTimeout Duration `yaml:"idle_timeout"`
	// TLS serves HTTPS (and WSS) with this certificate and key (PEM files)
	// when both are set.
	TLS TLS `yaml:"tls"`
}

// TLS is a certificate and its key.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// WebSocket configures the clients' WebSocket.
type WebSocket struct {
	// SendQueue is each client's queue, in messages.
	SendQueue int `yaml:"send_queue"`
	// MaxDrops disconnects a client that has lost this many messages
	// within its window.
	MaxDrops     int      `yaml:"max_drops"`
	PingInterval Duration `yaml:"ping_interval"`
	// MaxClients bounds the connected clients: more get 503.
	MaxClients int `yaml:"max_clients"`
}

// WebRTC configures WHIP ingest (streams with url whip://).
type WebRTC struct {
	// UDPPort is the one UDP port all WebRTC sessions share (0 picks a free
	// one). PortMin/PortMax, when set, use a port range instead.
	UDPPort int `yaml:"udp_port"`
	PortMin int `yaml:"port_min"`
	PortMax int `yaml:"port_max"`
	// NAT1To1IPs are public addresses to announce from behind a 1:1 NAT.
	NAT1To1IPs []string `yaml:"nat_1to1_ips"`
	// ReceiveBuffer is the UDP socket's receive buffer in bytes.
	ReceiveBuffer int `yaml:"receive_buffer"`
	// Loopback offers only 127.0.0.1 ICE candidates (one-machine setups).
	Loopback bool `yaml:"loopback"`
	// AllowDynamic accepts publishers for stream ids not configured here.
	AllowDynamic bool `yaml:"allow_dynamic"`
	// MaxSessions bounds concurrent WHIP sessions.
	MaxSessions int `yaml:"max_sessions"`
	// CORSOrigin is the one web origin (scheme://host[:port]) whose pages
	// may publish through the WHIP endpoint from another origin ("": none,
	// the default; "*": any page).
	CORSOrigin string `yaml:"cors_origin"`
	// MaxFrameBytes bounds one assembled video frame; MaxPixels a decoded
	// picture's width × height.
	MaxFrameBytes int `yaml:"max_frame_bytes"`
	MaxPixels     int `yaml:"max_pixels"`
}

// Stream is one video source.
type Stream struct {
	// ID names the stream in messages and metrics.
	ID string `yaml:"id"`
	// URL is file:///path, a plain path, rtsp://…, rtsps://…,
	// v4l2:///dev/videoN, v4l2://N, a camera index such as "0", or whip://
	// for a stream published over WebRTC (POST /v1/whip/{id}).
	URL string `yaml:"url"`
	// Realtime paces a file at its frame rate; nil means true. Files only.
	Realtime *bool `yaml:"realtime"`
	// Loop restarts a file at its end. Files only.
	Loop bool `yaml:"loop"`
	// Width, Height and FPS are requested from a camera; 0 keeps the
	// driver's choice. Cameras only.
	Width  int `yaml:"width"`
	Height int `yaml:"height"`
	FPS    int `yaml:"fps"`
	// Token is the bearer token a WHIP publisher of this stream needs
	// (instead of auth_token). whip:// streams only.
	Token string `yaml:"token"`
	// Blendshapes adds ARKit blend shapes to this stream's faces.
	Blendshapes bool `yaml:"blendshapes"`
	// Landmarks adds the 68 landmarks to this stream's faces; Mesh the
	// face mesh's 468 points (landmarks.backend mesh468).
	Landmarks bool `yaml:"landmarks"`
	Mesh      bool `yaml:"mesh"`
}

// Default returns the configuration of an empty file. Every default lives
// here.
func Default() Config {
	return Config{
		Listen:    "127.0.0.1:8686",
		AuthToken: "",
		ORT: ORT{
			Library:  "/usr/lib/affectd/libonnxruntime.so.1",
			Provider: "cpu",
			Fallback: true,
			DeviceID: 0,
			Threads:  0,

			Optimization: "all",
		},
		Model: Model{
			Path:         "/var/lib/affectd/model.onnx",
			KeepFeatures: false,
		},
		Detector: Detector{
			Model:           "/usr/lib/affectd/blazeface/face_detection_back_256x256.onnx",
			ScoreThreshold:  0.6,
			DetectEvery:     3,
			RefineRuns:      4,
			Threads:         1,
			Verify:          true,
			VerifyThreshold: -0.5,
		},
		Tracker: Tracker{
			LostAfter:    Duration(time.Second),
			ConfirmHits:  2,
			Cuts:         true,
			FitThreshold: 0.15,
		},
		Align: Align{Margin: 0.2},
		Batch: Batch{
			MaxBatch:   8,
			MaxWait:    Duration(5 * time.Millisecond),
			QueueLimit: 0, // 4 × MaxBatch, filled in by Parse
			Runners:    1,
		},
		Schedule: Schedule{
			MaxLatency: Duration(100 * time.Millisecond),
			MaxRate:    0,
			Headroom:   0.85,
		},
		Smoothing: Smoothing{
			Enabled:   true,
			MinCutoff: 1.0,
			Beta:      0.05,
			DCutoff:   1.0,
		},
		RTSP: RTSP{
			Transport: "tcp",
			Timeout:   Duration(2 * time.Second),
		},
		WebSocket: WebSocket{
			SendQueue:    64,
			MaxDrops:     250,
			PingInterval: Duration(20 * time.Second),
			MaxClients:   256,
		},
		WebRTC: WebRTC{
			UDPPort:       0,
			ReceiveBuffer: 4 << 20,
			MaxSessions:   8,
			CORSOrigin:    "",
			MaxFrameBytes: 8 << 20,
			MaxPixels:     4096 * 2304,
		},
		Landmarks:     defaultLandmarks(),
		ExpressionFER: ExpressionFER{Model: "/usr/lib/affectd/human-models/emotion.onnx"},
		Identity:      defaultIdentity(),
		Cluster:       defaultCluster(),
		Preview: Preview{
			Enabled:     true,
			FPS:         5,
			MaxWidth:    640,
			Quality:     70,
			MaxWatchers: 16,
		},
		HTTP: HTTP{
			AllowedHosts: []string{},
			ReadTimeout:  Duration(30 * time.Second),
			IdleTimeout:  Duration(2 * time.Minute),
		},
		Streams: nil,
	}
}

// AuthTokenEnv, when set and not empty, overrides auth_token.
const AuthTokenEnv = "AFFECTD_AUTH_TOKEN"

// Load reads and parses the file at path (see Parse), then makes relative
// paths absolute against the file's directory: onnxruntime.library,
// model.path, detector.model, and file streams given as a relative path or
// file://relative/path. A config kept in a repository can so point at
// "../.cache/…" wherever the daemon is started.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		dir = filepath.Dir(path)
	}
	c.resolvePaths(dir)
	return c, nil
}

func (c *Config) resolvePaths(dir string) {
	if strings.Contains(c.ORT.Library, "/") {
		c.ORT.Library = resolvePath(dir, c.ORT.Library)
	}
	c.Model.Path = resolvePath(dir, c.Model.Path)
	c.ORT.OptimizedModel = resolvePath(dir, c.ORT.OptimizedModel)
	c.Detector.Model = resolvePath(dir, c.Detector.Model)
	c.Landmarks.resolvePaths(dir)
	c.ExpressionFER.Model = resolvePath(dir, c.ExpressionFER.Model)
	c.Identity.Model = resolvePath(dir, c.Identity.Model)
	c.Identity.Store = resolvePath(dir, c.Identity.Store)
	c.Cluster.resolvePaths(dir)
	c.HTTP.TLS.Cert = resolvePath(dir, c.HTTP.TLS.Cert)
	c.HTTP.TLS.Key = resolvePath(dir, c.HTTP.TLS.Key)
	for i, s := range c.Streams {
		if s.Kind() != "file" {
			continue
		}
		p, _ := filePath(s.URL)
		if p == "" || filepath.IsAbs(p) {
			continue
		}
		if strings.HasPrefix(s.URL, "file://") {
			c.Streams[i].URL = (&url.URL{Scheme: "file", Path: resolvePath(dir, p)}).String()
		} else {
			c.Streams[i].URL = resolvePath(dir, p)
		}
	}
}

func resolvePath(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Kind is the stream's source kind: "file", "rtsp" or "v4l2", or "" when
// the URL is not valid.
func (s Stream) Kind() string {
	k, _ := urlKind(s.URL)
	return k
}

// Paced reports whether the stream is a file read at its frame rate
// (realtime, which defaults to true).
func (s Stream) Paced() bool {
	return s.Kind() == "file" && (s.Realtime == nil || *s.Realtime)
}

// Equal reports whether the two streams are configured alike; an unset
// realtime equals its default.
// Every field counts (a new one too, without touching this): a changed
// token, blend shapes or landmarks restarts the stream on reload.
func (s Stream) Equal(o Stream) bool {
	rt := func(s Stream) bool { return s.Realtime == nil || *s.Realtime }
	if rt(s) != rt(o) {
		return false
	}
	s.Realtime, o.Realtime = nil, nil
	return s == o
}

// StreamsDiff compares two stream lists by ID (which Validate keeps
// unique): added are in new only, removed in old only, changed in both but
// not Equal (given as in new). Each keeps its list's order.
func StreamsDiff(old, new []Stream) (added, removed, changed []Stream) {
	index := func(ss []Stream) map[string]Stream {
		m := make(map[string]Stream, len(ss))
		for _, s := range ss {
			if _, dup := m[s.ID]; !dup {
				m[s.ID] = s
			}
		}
		return m
	}
	before, after := index(old), index(new)
	seen := make(map[string]bool, len(new))
	for _, s := range new {
		if seen[s.ID] {
			continue
		}
		seen[s.ID] = true
		if prev, ok := before[s.ID]; !ok {
			added = append(added, s)
		} else if !prev.Equal(s) {
			changed = append(changed, s)
		}
	}
	clear(seen)
	for _, s := range old {
		if seen[s.ID] {
			continue
		}
		seen[s.ID] = true
		if _, ok := after[s.ID]; !ok {
			removed = append(removed, s)
		}
	}
	return added, removed, changed
}

// Redacted returns a copy safe to log or print: a set auth_token reads
// "<redacted>" and stream URLs show no credentials (capture/urls.Show: no
// user information, no secret query parameters).
func (c *Config) Redacted() Config {
	r := *c
	if r.AuthToken != "" {
		r.AuthToken = "<redacted>"
	}
	if c.Streams != nil {
		r.Streams = make([]Stream, len(c.Streams))
		for i, s := range c.Streams {
			if s.Realtime != nil {
				v := *s.Realtime
				s.Realtime = &v
			}
			if s.Token != "" {
				s.Token = "<redacted>"
			}
			s.URL = urls.Show(s.URL)
			r.Streams[i] = s
		}
	}
	return r
}

var (
	schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*)://`)
	digitsRE = regexp.MustCompile(`^[0-9]+$`)
)

// urlKind classifies a stream URL as capture/open does, or says what is
// wrong with it. Problems never repeat the URL, which may hold a password.
func urlKind(raw string) (kind, problem string) {
	if raw == "" {
		return "", "required"
	}
	if digitsRE.MatchString(raw) {
		if _, err := strconv.Atoi(raw); err != nil {
			return "", "camera index out of range"
		}
		return "v4l2", ""
	}
	if m := schemeRE.FindStringSubmatch(raw); m != nil {
		rest := raw[len(m[0]):]
		switch m[1] {
		case "rtsp", "rtsps":
			u, err := url.Parse(raw)
			if err != nil {
				if ue, ok := err.(*url.Error); ok {
					err = ue.Err
				}
				return "", "not a valid URL: " + err.Error()
			}
			if u.Hostname() == "" {
				return "", "RTSP URL has no host"
			}
			return "rtsp", ""
		case "whip":
			if rest != "" {
				return "", "want whip:// (the stream id is the WHIP path: POST /v1/whip/{id})"
			}
			return "whip", ""
		case "v4l2":
			if digitsRE.MatchString(rest) {
				if _, err := strconv.Atoi(rest); err == nil {
					return "v4l2", ""
				}
			} else if len(rest) > 1 && rest[0] == '/' {
				return "v4l2", ""
			}
			return "", "want v4l2:///dev/videoN or v4l2://N"
		case "file":
			p, err := filePath(raw)
			if err != nil {
				return "", err.Error()
			}
			if p == "" {
				return "", "empty file path"
			}
			return "file", ""
		default:
			return "", fmt.Sprintf("unsupported scheme %q (want file://, rtsp://, rtsps://, v4l2://, whip://, a file path or a camera index)", m[1])
		}
	}
	if strings.Contains(raw, "://") {
		return "", "want file://, rtsp://, rtsps://, v4l2://, a file path or a camera index"
	}
	if _, err := strconv.Atoi(raw); err == nil {
		return "", fmt.Sprintf("want a camera index of 0 or more, got %q", raw)
	}
	return "file", ""
}

// filePath is the file a file stream reads, as capture/open finds it:
// file:///abs, file://localhost/abs, file://relative/path, or a plain path.
func filePath(raw string) (string, error) {
	if !strings.HasPrefix(raw, "file://") {
		return raw, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return "", fmt.Errorf("not a valid URL: %w", err)
	}
	p := u.Path
	if u.Host != "" && u.Host != "localhost" {
		p = u.Host + u.Path
	}
	return p, nil
}
