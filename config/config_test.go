package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// noEnv keeps the test's environment from changing what Parse returns.
func noEnv(t *testing.T) {
	t.Helper()
	t.Setenv(AuthTokenEnv, "")
}

func ptr[T any](v T) *T { return &v }

// plain drops where a Config came from, for comparisons.
func plain(c *Config) Config {
	r := *c
	r.src = nil
	return r
}

func TestDefault(t *testing.T) {
	want := Config{
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
		Model:     Model{Path: "/var/lib/affectd/model.onnx", KeepFeatures: false},
		Detector:  Detector{Model: "/usr/lib/affectd/blazeface/face_detection_back_256x256.onnx", ScoreThreshold: 0.6, DetectEvery: 3, RefineRuns: 4, Threads: 1, Verify: true, VerifyThreshold: -0.5},
		Tracker:   Tracker{LostAfter: Duration(time.Second), ConfirmHits: 2, Cuts: true, FitThreshold: 0.15},
		Align:     Align{Margin: 0.2},
		Batch:     Batch{MaxBatch: 8, MaxWait: Duration(5 * time.Millisecond), QueueLimit: 0, Runners: 1},
		Schedule:  Schedule{MaxLatency: Duration(100 * time.Millisecond), MaxRate: 0, Headroom: 0.85},
		Smoothing: Smoothing{Enabled: true, MinCutoff: 1, Beta: 0.05, DCutoff: 1},
		RTSP:      RTSP{Transport: "tcp", Timeout: Duration(2 * time.Second)},
		WebSocket: WebSocket{SendQueue: 64, MaxDrops: 250, PingInterval: Duration(20 * time.Second), MaxClients: 256},
		WebRTC:    WebRTC{ReceiveBuffer: 4 << 20, MaxSessions: 8, CORSOrigin: "", MaxFrameBytes: 8 << 20, MaxPixels: 4096 * 2304},
		Landmarks: Landmarks{Backend: "dlib68", Model: "/usr/share/dlib/shape_predictor_68_face_landmarks.dat",
			MeshModel: "/usr/lib/affectd/human-models/facemesh.onnx", IrisModel: "/usr/lib/affectd/human-models/iris.onnx", Align: true, FOV: 53},
		ExpressionFER: ExpressionFER{Model: "/usr/lib/affectd/human-models/emotion.onnx"},
		Identity: Identity{Mode: "stream", Model: "/usr/lib/affectd/human-models/mobilefacenet.onnx", Threshold: 0.9,
			Expiry: Duration(30 * time.Second), Every: Duration(2 * time.Second)},
		Cluster: Cluster{LeaseTTL: Duration(3 * time.Second), Capacity: 8, Routes: []string{}},
		Preview: Preview{Enabled: true, FPS: 5, MaxWidth: 640, Quality: 70, MaxWatchers: 16},
		HTTP:    HTTP{AllowedHosts: []string{}, ReadTimeout: Duration(30 * time.Second), IdleTimeout: Duration(2 * time.Minute)},
	}
	noEnv(t)
	t.Run("values", func(t *testing.T) {
		if got := Default(); !reflect.DeepEqual(got, want) {
			t.Errorf("Default() =\n%+v\nwant\n%+v", got, want)
		}
	})
	t.Run("valid", func(t *testing.T) {
		d := Default()
		if err := d.Validate(); err != nil {
			t.Errorf("Default().Validate() = %v", err)
		}
	})
	for _, tc := range []struct{ name, doc string }{
		{"empty file", ""},
		{"only comments", "# nothing here\n"},
		{"null document", "~\n"},
		{"explicit start", "---\n"},
		{"null sections", "detector:\nbatch: ~\nstreams:\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc), "empty.yaml")
			if err != nil {
				t.Fatal(err)
			}
			w := want
			w.Batch.QueueLimit = 32 // 4 × max_batch, filled in by Parse
			if got := plain(c); !reflect.DeepEqual(got, w) {
				t.Errorf("Parse(%q) =\n%+v\nwant\n%+v", tc.doc, got, w)
			}
		})
	}
}

const fullDoc = `# every key set, none to its default
listen: "0.0.0.0:9000"
auth_token: s3cret
onnxruntime:
  library: /opt/ort/libonnxruntime.so.1
  provider: cuda
  fallback: false
  device_id: 1
  threads: 8
  inter_threads: 2
  optimization: extended
  optimized_model: /var/cache/affectd/model.opt.onnx
model:
  path: /models/maeface.onnx
  keep_features: true
detector:
  model: /models/blazeface.onnx
  score_threshold: 0.7
  detect_every: 5
  refine_runs: 2
  verify: false
  verify_threshold: 0.5
  threads: 2
tracker:
  lost_after: 2.5s
  confirm_hits: 3
  cuts: false
  fit_threshold: 0.2
align:
  margin: 0.25
batch:
  max_batch: 32
  max_wait: 10ms
  queue_limit: 256
  runners: 2
schedule:
  max_latency: 200ms
  max_rate: 10
  headroom: 0.9
smoothing:
  enabled: false
  min_cutoff: 0.5
  beta: 0.1
  d_cutoff: 2
rtsp:
  transport: udp
  timeout: 1m
websocket:
  send_queue: 128
  max_drops: 500
  ping_interval: 30s
  max_clients: 40
webrtc:
  udp_port: 8189
  port_min: 20000
  port_max: 20100
  nat_1to1_ips: [203.0.113.7]
  receive_buffer: 8388608
  loopback: true
  allow_dynamic: true
  max_sessions: 4
  cors_origin: https://app.example.com
  max_frame_bytes: 1048576
  max_pixels: 2073600
landmarks:
  backend: mesh468
  model: /models/landmarks.dat
  mesh_model: /models/facemesh.onnx
  iris_model: ""
  align: false
  fov: 70
expression_fer:
  model: /models/emotion.onnx
identity:
  mode: global
  model: /models/mobilefacenet.onnx
  threshold: 0.85
  expiry: 5m
  every: 5s
  store: /var/lib/affectd/people.json
cluster:
  nats: embedded
  node: gpu-1
  lease_ttl: 5s
  capacity: 12
  retention: 10m
  listen: 0.0.0.0:4222
  cluster_listen: 0.0.0.0:6222
  routes: [nats-route://gpu-2:6222, nats-route://gpu-3:6222]
  replicas: 3
  store_dir: /var/lib/affectd/nats
  credentials: /etc/affectd/nats.creds
  ca: /etc/affectd/nats-ca.pem
  cert: /etc/affectd/nats-cert.pem
  key: /etc/affectd/nats-key.pem
preview:
  enabled: false
  fps: 2
  max_width: 320
  quality: 50
  max_watchers: 3
http:
  allowed_hosts: [affectd.lab.example]
  read_timeout: 10s
  idle_timeout: 30s
  tls:
    cert: /etc/affectd/cert.pem
    key: /etc/affectd/key.pem
streams:
  - id: clip
    url: /data/clip.mp4
    realtime: false
    loop: true
  - id: door
    url: rtsp://cam.local:554/stream1
  - id: desk
    url: v4l2:///dev/video0
    width: 1280
    height: 720
    fps: 30
  - id: browser
    url: whip://
    token: pub
    blendshapes: true
    landmarks: true
outputs:
  - name: avatar
    kind: vmc
    target: 127.0.0.1:39539
    stream: browser
    face: first
    rate: 30
    bundle: false
    names: vrm
    gain: 1.5
    dead_zone: 0.1
  - kind: livelink
    target: 192.168.1.20:11111
    stream: desk
    face: "3"
    subject: desk-face
  - kind: osc
    target: localhost:9000
    stream: door
`

var fullWant = Config{
	Listen:    "0.0.0.0:9000",
	AuthToken: "s3cret",
	ORT: ORT{Library: "/opt/ort/libonnxruntime.so.1", Provider: "cuda", Fallback: false, DeviceID: 1, Threads: 8,
		InterThreads: 2, Optimization: "extended", OptimizedModel: "/var/cache/affectd/model.opt.onnx"},
	Model:     Model{Path: "/models/maeface.onnx", KeepFeatures: true},
	Detector:  Detector{Model: "/models/blazeface.onnx", ScoreThreshold: 0.7, DetectEvery: 5, RefineRuns: 2, Threads: 2, Verify: false, VerifyThreshold: 0.5},
	Tracker:   Tracker{LostAfter: Duration(2500 * time.Millisecond), ConfirmHits: 3, Cuts: false, FitThreshold: 0.2},
	Align:     Align{Margin: 0.25},
	Batch:     Batch{MaxBatch: 32, MaxWait: Duration(10 * time.Millisecond), QueueLimit: 256, Runners: 2},
	Schedule:  Schedule{MaxLatency: Duration(200 * time.Millisecond), MaxRate: 10, Headroom: 0.9},
	Smoothing: Smoothing{Enabled: false, MinCutoff: 0.5, Beta: 0.1, DCutoff: 2},
	RTSP:      RTSP{Transport: "udp", Timeout: Duration(time.Minute)},
	WebSocket: WebSocket{SendQueue: 128, MaxDrops: 500, PingInterval: Duration(30 * time.Second), MaxClients: 40},
	WebRTC: WebRTC{UDPPort: 8189, PortMin: 20000, PortMax: 20100, NAT1To1IPs: []string{"203.0.113.7"}, ReceiveBuffer: 8 << 20,
		Loopback: true, AllowDynamic: true, MaxSessions: 4, CORSOrigin: "https://app.example.com", MaxFrameBytes: 1 << 20, MaxPixels: 1920 * 1080},
	Landmarks:     Landmarks{Backend: "mesh468", Model: "/models/landmarks.dat", MeshModel: "/models/facemesh.onnx", IrisModel: "", Align: false, FOV: 70},
	ExpressionFER: ExpressionFER{Model: "/models/emotion.onnx"},
	Identity: Identity{Mode: "global", Model: "/models/mobilefacenet.onnx", Threshold: 0.85, Expiry: Duration(5 * time.Minute),
		Every: Duration(5 * time.Second), Store: "/var/lib/affectd/people.json"},
	Cluster: Cluster{NATS: "embedded", Node: "gpu-1", LeaseTTL: Duration(5 * time.Second), Capacity: 12, Retention: Duration(10 * time.Minute),
		Listen: "0.0.0.0:4222", ClusterListen: "0.0.0.0:6222", Routes: []string{"nats-route://gpu-2:6222", "nats-route://gpu-3:6222"},
		Replicas: 3, StoreDir: "/var/lib/affectd/nats", Credentials: "/etc/affectd/nats.creds", CA: "/etc/affectd/nats-ca.pem",
		Cert: "/etc/affectd/nats-cert.pem", Key: "/etc/affectd/nats-key.pem"},
	Preview: Preview{Enabled: false, FPS: 2, MaxWidth: 320, Quality: 50, MaxWatchers: 3},
	HTTP: HTTP{AllowedHosts: []string{"affectd.lab.example"}, ReadTimeout: Duration(10 * time.Second), IdleTimeout: Duration(30 * time.Second),
		TLS: TLS{Cert: "/etc/affectd/cert.pem", Key: "/etc/affectd/key.pem"}},
	Streams: []Stream{
		{ID: "clip", URL: "/data/clip.mp4", Realtime: ptr(false), Loop: true},
		{ID: "door", URL: "rtsp://cam.local:554/stream1"},
		{ID: "desk", URL: "v4l2:///dev/video0", Width: 1280, Height: 720, FPS: 30},
		{ID: "browser", URL: "whip://", Token: "pub", Blendshapes: true, Landmarks: true},
	},
	Outputs: []Output{
		{Name: "avatar", Kind: "vmc", Target: "127.0.0.1:39539", Stream: "browser", Face: "first", Rate: 30,
			Bundle: ptr(false), Names: "vrm", Gain: 1.5, DeadZone: 0.1},
		{Name: "livelink-1", Kind: "livelink", Target: "192.168.1.20:11111", Stream: "desk", Face: "3", Gain: 1, Subject: "desk-face"},
		{Name: "osc-2", Kind: "osc", Target: "localhost:9000", Stream: "door", Face: "largest", Gain: 1},
	},
}

func TestFullConfig(t *testing.T) {
	noEnv(t)
	c, err := Parse([]byte(fullDoc), "full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("parse", func(t *testing.T) {
		if got := plain(c); !reflect.DeepEqual(got, fullWant) {
			t.Errorf("got\n%+v\nwant\n%+v", got, fullWant)
		}
	})
	t.Run("every key differs from its default", func(t *testing.T) {
		// So that a field added to the schema without a test fails here.
		d, f := reflect.ValueOf(Default()), reflect.ValueOf(fullWant)
		for i := range d.NumField() {
			name := d.Type().Field(i).Name
			if !d.Type().Field(i).IsExported() || name == "Streams" || name == "Outputs" {
				continue
			}
			if d.Field(i).Kind() != reflect.Struct {
				if d.Field(i).Equal(f.Field(i)) {
					t.Errorf("%s is its default", name)
				}
				continue
			}
			for j := range d.Field(i).NumField() {
				if reflect.DeepEqual(d.Field(i).Field(j).Interface(), f.Field(i).Field(j).Interface()) {
					t.Errorf("%s.%s is its default", name, d.Field(i).Type().Field(j).Name)
				}
			}
		}
	})
	t.Run("round trip", func(t *testing.T) {
		out, err := yaml.Marshal(plain(c))
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out, "marshalled.yaml")
		if err != nil {
			t.Fatalf("%v\nin:\n%s", err, out)
		}
		if got := plain(back); !reflect.DeepEqual(got, fullWant) {
			t.Errorf("got\n%+v\nwant\n%+v\nfrom:\n%s", got, fullWant, out)
		}
	})
	t.Run("kinds", func(t *testing.T) {
		var kinds []string
		for _, s := range c.Streams {
			kinds = append(kinds, s.Kind())
		}
		if got := strings.Join(kinds, ","); got != "file,rtsp,v4l2,whip" {
			t.Errorf("kinds = %s", got)
		}
	})
}

// confErrors are bad configs and exactly what Parse says about them. They
// also seed FuzzParse.
var confErrors = []struct {
	name, doc, want string
}{
	{"unknown top-level key", "listen: 127.0.0.1:1\nlisen: x\n",
		"demo.yaml:2: lisen: unknown key (known: listen, auth_token, onnxruntime, model, detector, tracker, align, batch, schedule, smoothing, rtsp, websocket, webrtc, landmarks, expression_fer, identity, cluster, preview, http, streams, outputs)"},
	{"unknown nested key", "detector:\n  model: /m.onnx\n  detect_evrey: 3\n",
		"demo.yaml:3: detector.detect_evrey: unknown key (known: model, score_threshold, detect_every, refine_runs, threads, verify, verify_threshold)"},
	{"unknown stream key", "streams:\n  - id: a\n    uri: '0'\n",
		"demo.yaml:2: streams[0].url: required\n" +
			"demo.yaml:3: streams[0].uri: unknown key (known: id, url, realtime, loop, width, height, fps, token, blendshapes, landmarks, mesh)"},
	{"wrong type int", "batch:\n  max_batch: big\n",
		`demo.yaml:2: batch.max_batch: want an integer, got "big"`},
	{"float for int", "onnxruntime:\n  threads: 2.5\n",
		`demo.yaml:2: onnxruntime.threads: want an integer, got "2.5"`},
	{"quoted int", "batch:\n  runners: \"2\"\n",
		`demo.yaml:2: batch.runners: want an integer, got "2"`},
	{"wrong type bool", "smoothing:\n  enabled: yes\n",
		`demo.yaml:2: smoothing.enabled: want true or false, got "yes"`},
	{"wrong type float", "align:\n  margin: wide\n",
		`demo.yaml:2: align.margin: want a number, got "wide"`},
	{"nan", "schedule:\n  headroom: .nan\n",
		`demo.yaml:2: schedule.headroom: want a number, got ".nan"`},
	{"list for string", "listen: [a, b]\n",
		"demo.yaml:1: listen: want a string, got a list"},
	{"scalar section", "detector: 3\n",
		`demo.yaml:1: detector: want a mapping, got "3"`},
	{"mapping for streams", "streams:\n  id: a\n",
		"demo.yaml:1: streams: want a list, got a mapping"},
	{"duration without unit", "batch:\n  max_wait: 5\n",
		`demo.yaml:2: batch.max_wait: want a duration with a unit, such as "5ms", "1.5s" or "2m", got "5"`},
	{"bad duration", "tracker:\n  lost_after: fast\n",
		`demo.yaml:2: tracker.lost_after: want a duration such as "5ms", "1.5s" or "2m", got "fast"`},
	{"duration out of range", "tracker:\n  lost_after: 1ms\n",
		"demo.yaml:2: tracker.lost_after: must be between 10ms and 1h, got 1ms"},
	{"negative duration", "batch:\n  max_wait: -1ms\n",
		"demo.yaml:2: batch.max_wait: must be between 0s and 10s, got -1ms"},
	{"provider gpu", "onnxruntime:\n  provider: gpu\n",
		`demo.yaml:2: onnxruntime.provider: must be one of cpu, cuda, tensorrt, got "gpu"`},
	{"listen without port", "listen: nohost\n",
		`demo.yaml:1: listen: want host:port such as "127.0.0.1:8686", got "nohost"`},
	{"listen port out of range", "listen: \":70000\"\n",
		`demo.yaml:1: listen: port must be a number from 0 to 65535, got "70000"`},
	{"bad optimization", "onnxruntime:\n  optimization: fastest\n",
		`demo.yaml:2: onnxruntime.optimization: must be one of all, extended, basic, disabled, got "fastest"`},
	{"negative threads", "onnxruntime:\n  threads: -1\n",
		"demo.yaml:2: onnxruntime.threads: must be between 0 and 256, got -1"},
	{"negative device", "onnxruntime:\n  device_id: -2\n",
		"demo.yaml:2: onnxruntime.device_id: must be >= 0, got -2"},
	{"landmarks fov", "landmarks:\n  fov: 200\n",
		"demo.yaml:2: landmarks.fov: must be between 10 and 170 degrees, got 200"},
	{"landmarks backend", "landmarks:\n  backend: mesh68\n",
		"demo.yaml:2: landmarks.backend: must be mesh468 or dlib68, got \"mesh68\""},
	{"detect_every 0", "detector:\n  detect_every: 0\n",
		"demo.yaml:2: detector.detect_every: must be between 1 and 100, got 0"},
	{"score_threshold 1.5", "detector:\n  score_threshold: 1.5\n",
		"demo.yaml:2: detector.score_threshold: must be > 0 and < 1, got 1.5"},
	{"queue_limit below max_batch", "batch:\n  max_batch: 32\n  queue_limit: 8\n",
		"demo.yaml:3: batch.queue_limit: must be at least max_batch (32), got 8"},
	{"margin 2", "align: {margin: 2}\n",
		"demo.yaml:1: align.margin: must be between 0 and 1, got 2"},
	{"headroom 0", "schedule:\n  headroom: 0\n",
		"demo.yaml:2: schedule.headroom: must be > 0 and <= 1, got 0"},
	{"transport", "rtsp:\n  transport: http\n",
		`demo.yaml:2: rtsp.transport: must be tcp or udp, got "http"`},
	{"duplicate key", "listen: a:1\nlisten: b:2\n",
		"demo.yaml:2: listen: duplicate key (first at line 1)"},
	{"duplicate stream id", "streams:\n  - id: cam\n    url: 0\n  - id: cam\n    url: 1\n",
		`demo.yaml:4: streams[1].id: duplicate id "cam" (also streams[0])`},
	{"missing stream id", "streams:\n  - url: 0\n",
		"demo.yaml:2: streams[0].id: required"},
	{"bad stream id", "streams:\n  - id: front door\n    url: 0\n",
		`demo.yaml:2: streams[0].id: want 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, without "..", got "front door"`},
	{"missing url", "streams:\n  - id: a\n",
		"demo.yaml:2: streams[0].url: required"},
	{"http url", "streams:\n  - id: a\n    url: http://cam/x.mjpg\n",
		`demo.yaml:3: streams[0].url: unsupported scheme "http" (want file://, rtsp://, rtsps://, v4l2://, whip://, a file path or a camera index)`},
	{"v4l2 device name", "streams:\n  - id: a\n    url: v4l2://video0\n",
		"demo.yaml:3: streams[0].url: want v4l2:///dev/videoN or v4l2://N"},
	{"rtsp without host", "streams:\n  - id: a\n    url: rtsp:///x\n",
		"demo.yaml:3: streams[0].url: RTSP URL has no host"},
	{"negative camera index", "streams:\n  - id: a\n    url: -1\n",
		`demo.yaml:3: streams[0].url: want a camera index of 0 or more, got "-1"`},
	{"empty file url", "streams:\n  - id: a\n    url: file://\n",
		"demo.yaml:3: streams[0].url: empty file path"},
	{"realtime on rtsp", "streams:\n  - id: a\n    url: rtsp://cam/x\n    realtime: false\n",
		"demo.yaml:4: streams[0].realtime: only applies to file streams, not rtsp"},
	{"loop on camera", "streams:\n  - id: a\n    url: 0\n    loop: true\n",
		"demo.yaml:4: streams[0].loop: only applies to file streams, not v4l2"},
	{"width on file", "streams:\n  - id: a\n    url: clip.mp4\n    width: 640\n",
		"demo.yaml:4: streams[0].width: only applies to cameras (v4l2), not file"},
	{"fps out of range", "streams:\n  - id: a\n    url: 0\n    fps: 5000\n",
		"demo.yaml:4: streams[0].fps: must be between 0 and 1000, got 5000"},
	{"missing env var", "streams:\n  - id: a\n    url: rtsp://viewer:${AFFECTD_TEST_UNSET}@cam/x\n",
		"demo.yaml:3: streams[0].url: environment variable AFFECTD_TEST_UNSET is not set"},
	{"unterminated env ref", "auth_token: ${TOKEN\n",
		`demo.yaml:1: auth_token: unterminated "${" (write "$$" for a literal "$")`},
	{"two errors sorted by line", "batch:\n  runners: 0\ndetector:\n  threads: 0\n",
		"demo.yaml:2: batch.runners: must be between 1 and 16, got 0\n" +
			"demo.yaml:4: detector.threads: must be between 1 and 64, got 0"},
	{"decode and check errors together", "websocket:\n  send_queue: 0\n  ping_interval: soon\nbogus: 1\n",
		"demo.yaml:2: websocket.send_queue: must be between 1 and 100000, got 0\n" +
			`demo.yaml:3: websocket.ping_interval: want a duration such as "5ms", "1.5s" or "2m", got "soon"` + "\n" +
			"demo.yaml:4: bogus: unknown key (known: listen, auth_token, onnxruntime, model, detector, tracker, align, batch, schedule, smoothing, rtsp, websocket, webrtc, landmarks, expression_fer, identity, cluster, preview, http, streams, outputs)"},
	{"tabs", "detector:\n  model: /m.onnx\n\tthreads: 2\n",
		"demo.yaml:3: tab in indentation (YAML indents with spaces only)"},
	{"syntax error", "detector:\n  model: [a\n",
		"demo.yaml:2: did not find expected ',' or ']'"},
	{"multiple documents", "listen: a:1\n---\nlisten: b:2\n",
		"demo.yaml:2: a second YAML document starts here; want one"},
	{"list at top level", "- listen: a:1\n",
		"demo.yaml:1: want a mapping of settings at the top level, got a list"},
	{"scalar at top level", "listen\n",
		`demo.yaml:1: want a mapping of settings at the top level, got "listen"`},
	{"non-string key", "? [a]\n: 1\n",
		"demo.yaml:1: keys must be plain strings, got a list"},
	{"control character", "listen: a\x01\n",
		"demo.yaml:1: control characters are not allowed"},
	{"merge into itself", "detector: &d {threads: 2, <<: *d}\n",
		"demo.yaml:1: detector.<<: merges a mapping into itself"},
	{"merge of a scalar", "detector: {<<: 3}\n",
		`demo.yaml:1: detector.<<: want a mapping or a list of mappings to merge, got "3"`},
	{"merged key unknown here", "detector: &d {threads: 2}\nbatch:\n  <<: *d\n",
		"demo.yaml:1: batch.threads: unknown key (known: max_batch, max_wait, queue_limit, runners)"},
}

func TestConfErrors(t *testing.T) {
	noEnv(t)
	if len(confErrors) < 25 {
		t.Fatalf("only %d cases", len(confErrors))
	}
	for _, tc := range confErrors {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc), "demo.yaml")
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tc.doc, plain(c))
			}
			if c != nil {
				t.Errorf("Parse returned a config with its error")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Parse(%q):\n got: %s\nwant: %s", tc.doc, got, tc.want)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != strings.Count(tc.want, "\n")+1 {
				t.Errorf("errors.As(Errors) = %v, %d errors", es, len(es))
			}
			var e *Error
			if !errors.As(err, &e) || e.File != "demo.yaml" {
				t.Errorf("errors.As(*Error) = %+v", e)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    Error
		want string
	}{
		{"all", Error{File: "a.yaml", Line: 3, Key: "batch.runners", Msg: "bad"}, "a.yaml:3: batch.runners: bad"},
		{"no line", Error{File: "a.yaml", Key: "batch.runners", Msg: "bad"}, "a.yaml: batch.runners: bad"},
		{"no key", Error{File: "a.yaml", Line: 2, Msg: "bad"}, "a.yaml:2: bad"},
		{"no file", Error{Line: 2, Key: "listen", Msg: "bad"}, "line 2: listen: bad"},
		{"key only", Error{Key: "listen", Msg: "bad"}, "listen: bad"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.e.Error(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	noEnv(t)
	t.Run("built in code", func(t *testing.T) {
		c := Default()
		c.Batch.MaxBatch = 0
		c.Streams = []Stream{{ID: "a", URL: "http://x"}}
		want := "batch.max_batch: must be between 1 and 1024, got 0\n" +
			`streams[0].url: unsupported scheme "http" (want file://, rtsp://, rtsps://, v4l2://, whip://, a file path or a camera index)`
		if err := c.Validate(); err == nil || err.Error() != want {
			t.Errorf("got %v\nwant %s", err, want)
		}
	})
	t.Run("after Parse, a default names its section's line", func(t *testing.T) {
		c, err := Parse([]byte("listen: a:1\nbatch:\n  runners: 2\n"), "demo.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("a parsed config is valid: %v", err)
		}
		c.Batch.MaxWait = Duration(time.Minute) // not in the file: line of batch
		c.Detector.Threads = 0                  // no detector section: no line
		want := "demo.yaml: detector.threads: must be between 1 and 64, got 0\n" +
			"demo.yaml:2: batch.max_wait: must be between 0s and 10s, got 1m"
		if err := c.Validate(); err == nil || err.Error() != want {
			t.Errorf("got %v\nwant %s", err, want)
		}
	})
	t.Run("queue_limit defaults to 4 × max_batch", func(t *testing.T) {
		c, err := Parse([]byte("batch:\n  max_batch: 8\n"), "demo.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if c.Batch.QueueLimit != 32 {
			t.Errorf("queue_limit = %d, want 32", c.Batch.QueueLimit)
		}
	})
	t.Run("cluster replicas", func(t *testing.T) {
		for _, tc := range []struct {
			doc, err string
			n        int
		}{
			{"cluster: nats://n1:4222\n", "", 1},
			{"cluster:\n  nats: nats://n1:4222\n  replicas: 3\n", "", 3},
			{"cluster:\n  nats: embedded\n", "", 1},
			{"cluster:\n  nats: embedded\n  cluster_listen: a:6222\n  routes: [nats-route://b:6222, nats-route://c:6222]\n", "", 3},
			{"cluster:\n  nats: embedded\n  cluster_listen: a:6222\n  routes: [nats-route://b:6222]\n", "", 2},
			{"cluster:\n  nats: nats://n1:4222\n  replicas: 6\n", "demo.yaml:3: cluster.replicas: must be from 1 to 5 (JetStream's limit), or 0 for the default, got 6", 0},
			{"cluster:\n  nats: embedded\n  replicas: 3\n", "demo.yaml:3: cluster.replicas: a single embedded server keeps one copy: 3 replicas need routes to other servers", 0},
		} {
			c, err := Parse([]byte(tc.doc), "demo.yaml")
			if err == nil {
				err = c.Validate()
			}
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Errorf("%q: got %v, want %s", tc.doc, err, tc.err)
				}
				continue
			}
			if err != nil || c.Cluster.ReplicaCount() != tc.n {
				t.Errorf("%q: %v, %d replicas, want %d", tc.doc, err, c.Cluster.ReplicaCount(), tc.n)
			}
		}
	})
	t.Run("too complex", func(t *testing.T) {
		doc := "streams: [&s {id: a, url: '0'}" + strings.Repeat(", *s", 40000) + "]\n"
		_, err := Parse([]byte(doc), "demo.yaml")
		want := "demo.yaml:1: document too complex: more than 100000 values (counting each use of an alias or merge)"
		if err == nil || err.Error() != want {
			t.Errorf("got %v", err)
		}
	})
	t.Run("many problems are cut", func(t *testing.T) {
		doc := "streams:\n" + strings.Repeat("  - {}\n", 200)
		_, err := Parse([]byte(doc), "demo.yaml")
		var es Errors
		if !errors.As(err, &es) || len(es) != maxErrors+1 || es[maxErrors].Msg != "… and 300 more problems" {
			t.Errorf("got %d errors, last %v", len(es), es[len(es)-1])
		}
	})
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		str  string
	}{
		{"5ms", 5 * time.Millisecond, "5ms"},
		{"1.5s", 1500 * time.Millisecond, "1.5s"},
		{"2m", 2 * time.Minute, "2m"},
		{"1h", time.Hour, "1h"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"1h0m5s", time.Hour + 5*time.Second, "1h0m5s"},
		{"0", 0, "0s"},
		{"250us", 250 * time.Microsecond, "250µs"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			d, err := parseDuration(tc.in)
			if err != nil || d.D() != tc.want || d.String() != tc.str {
				t.Errorf("parseDuration(%q) = %v (%s), %v; want %v (%s)", tc.in, d.D(), d, err, tc.want, tc.str)
			}
			var back Duration
			if err := back.UnmarshalText([]byte(d.String())); err != nil || back != d {
				t.Errorf("text round trip: %v, %v", back, err)
			}
			out, err := yaml.Marshal(struct{ D Duration }{d})
			if err != nil || string(out) != "d: "+tc.str+"\n" {
				t.Errorf("yaml.Marshal = %q, %v", out, err)
			}
		})
	}
	for _, in := range []string{"5", "1.5", "fast", "", "5 ms"} {
		t.Run("bad "+in, func(t *testing.T) {
			if _, err := parseDuration(in); err == nil {
				t.Errorf("parseDuration(%q) succeeded", in)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	const doc = "auth_token: ${AFFECTD_TEST_TOKEN}\nstreams:\n  - id: door\n    url: rtsp://viewer:${AFFECTD_TEST_PASS}@cam/x?a=$$1&b=$2\n"
	for _, tc := range []struct {
		name          string
		env           map[string]string
		token, url    string
		wantErrSuffix string
	}{
		{"expanded", map[string]string{"AFFECTD_TEST_TOKEN": "t0k", "AFFECTD_TEST_PASS": "p4ss"},
			"t0k", "rtsp://viewer:p4ss@cam/x?a=$1&b=$2", ""},
		{"set but empty", map[string]string{"AFFECTD_TEST_TOKEN": "", "AFFECTD_TEST_PASS": ""},
			"", "rtsp://viewer:@cam/x?a=$1&b=$2", ""},
		{"override", map[string]string{AuthTokenEnv: "from-env", "AFFECTD_TEST_PASS": "p"},
			"from-env", "rtsp://viewer:p@cam/x?a=$1&b=$2", ""},
		{"missing", map[string]string{"AFFECTD_TEST_PASS": "p"},
			"", "", "demo.yaml:1: auth_token: environment variable AFFECTD_TEST_TOKEN is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noEnv(t)
			for _, k := range []string{"AFFECTD_TEST_TOKEN", "AFFECTD_TEST_PASS"} {
				t.Setenv(k, "")
				os.Unsetenv(k) // t.Setenv restores it
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := Parse([]byte(doc), "demo.yaml")
			if tc.wantErrSuffix != "" {
				if err == nil || err.Error() != tc.wantErrSuffix {
					t.Errorf("got %v, want %s", err, tc.wantErrSuffix)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.AuthToken != tc.token || c.Streams[0].URL != tc.url {
				t.Errorf("token %q url %q, want %q %q", c.AuthToken, c.Streams[0].URL, tc.token, tc.url)
			}
		})
	}
	t.Run("bad name", func(t *testing.T) {
		noEnv(t)
		_, err := Parse([]byte("auth_token: ${1X}\n"), "demo.yaml")
		want := `demo.yaml:1: auth_token: bad environment variable name "1X" in ${…}`
		if err == nil || err.Error() != want {
			t.Errorf("got %v", err)
		}
	})
	t.Run("only in auth_token and urls", func(t *testing.T) {
		noEnv(t)
		c, err := Parse([]byte("model:\n  path: /m/${X}.onnx\n"), "demo.yaml")
		if err != nil || c.Model.Path != "/m/${X}.onnx" {
			t.Errorf("got %v, %v", c, err)
		}
	})
}

func TestLoad(t *testing.T) {
	noEnv(t)
	dir := t.TempDir()
	sub := filepath.Join(dir, "conf")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	doc := `onnxruntime:
  library: ../.cache/ort/libonnxruntime.so.1
model:
  path: models/m.onnx
detector:
  model: /abs/blaze.onnx
streams:
  - id: plain
    url: ../media/a.mp4
  - id: fileurl
    url: file://../media/b c.mp4
  - id: absolute
    url: file:///srv/c.mp4
  - id: cam
    url: "0"
  - id: net
    url: rtsp://cam/x
`
	path := filepath.Join(sub, "affectd.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, got, want string }{
		{"library", c.ORT.Library, filepath.Join(dir, ".cache/ort/libonnxruntime.so.1")},
		{"model", c.Model.Path, filepath.Join(sub, "models/m.onnx")},
		{"absolute detector", c.Detector.Model, "/abs/blaze.onnx"},
		{"plain path", c.Streams[0].URL, filepath.Join(dir, "media/a.mp4")},
		{"file url", c.Streams[1].URL, "file://" + strings.ReplaceAll(filepath.Join(dir, "media/b c.mp4"), " ", "%20")},
		{"absolute file url", c.Streams[2].URL, "file:///srv/c.mp4"},
		{"camera", c.Streams[3].URL, "0"},
		{"rtsp", c.Streams[4].URL, "rtsp://cam/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
	t.Run("resolved file url reads back", func(t *testing.T) {
		p, err := filePath(c.Streams[1].URL)
		if want := filepath.Join(dir, "media/b c.mp4"); err != nil || p != want {
			t.Errorf("filePath = %q, %v; want %q", p, err, want)
		}
	})
	t.Run("bare library name left to the loader", func(t *testing.T) {
		p := filepath.Join(dir, "bare.yaml")
		os.WriteFile(p, []byte("onnxruntime:\n  library: libonnxruntime.so.1\n"), 0o644)
		c, err := Load(p)
		if err != nil || c.ORT.Library != "libonnxruntime.so.1" {
			t.Errorf("got %v, %v", c, err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "nope.yaml"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("got %v, want a not-exist error", err)
		}
	})
	t.Run("errors name the path", func(t *testing.T) {
		p := filepath.Join(dir, "bad.yaml")
		os.WriteFile(p, []byte("batch:\n  runners: 0\n"), 0o644)
		_, err := Load(p)
		if want := p + ":2: batch.runners: must be between 1 and 16, got 0"; err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
}

func TestExampleFile(t *testing.T) {
	noEnv(t)
	c, err := Load("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Every key of the schema is written out in the example.
	var missing []string
	var walk func(t reflect.Type, path, seen string)
	walk = func(t reflect.Type, path, seen string) {
		for _, name := range fieldsOf(t).names {
			f := t.Field(fieldsOf(t).index[name])
			p, s := join(path, name), join(seen, name)
			found := false
			for k := range c.src.lines {
				if k == s || (strings.Contains(s, "[*]") && matchIndex(k, s)) {
					found = true
				}
			}
			if !found {
				missing = append(missing, p)
			}
			switch f.Type.Kind() {
			case reflect.Struct:
				walk(f.Type, p, s)
			case reflect.Slice:
				if f.Type.Elem().Kind() == reflect.Struct {
					walk(f.Type.Elem(), p+"[]", s+"[*]")
				}
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "", "")
	if len(missing) > 0 {
		t.Errorf("example.yaml does not set %s", strings.Join(missing, ", "))
	}
}

// matchIndex matches "streams[3].fps" against "streams[*].fps".
func matchIndex(k, pattern string) bool {
	before, after, _ := strings.Cut(pattern, "[*]")
	if !strings.HasPrefix(k, before+"[") {
		return false
	}
	_, rest, ok := strings.Cut(k[len(before):], "]")
	return ok && rest == after
}

// TestIdentityShorthand: `identity: <mode>` is the section with that mode;
// a mode that is none of the three is refused, naming the key.
func TestIdentityShorthand(t *testing.T) {
	noEnv(t)
	for _, mode := range []string{"off", "global", "stream"} {
		c, err := Parse([]byte("identity: "+mode+"\n"), "a.yaml")
		if err != nil || c.Identity.Mode != mode || c.Identity.Threshold != 0.9 {
			t.Errorf("identity: %s → %+v, %v", mode, c.Identity, err)
		}
	}
	if _, err := Parse([]byte("identity: sometimes\n"), "a.yaml"); err == nil || !strings.Contains(err.Error(), "identity.mode: must be stream, global or off") {
		t.Errorf("identity: sometimes → %v", err)
	}
	if _, err := Parse([]byte("identity:\n  threshold: 1.5\n  every: 1ms\n"), "a.yaml"); err == nil ||
		!strings.Contains(err.Error(), "identity.threshold") || !strings.Contains(err.Error(), "identity.every") {
		t.Errorf("bad threshold and every → %v", err)
	}
}
