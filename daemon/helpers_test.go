package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

// testPaths are the artefacts every daemon test uses.
type testPaths struct {
	lib, model, detector string
}

func paths(t *testing.T) testPaths {
	t.Helper()
	lib := testenv.RequireORT(t)
	m := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 1, Heads: "abaw", GlobalPool: true, Demo: true})
	c, _ := testenv.Cache()
	return testPaths{lib: lib, model: m.ONNX, detector: filepath.Join(c, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")}
}

// listStreams is GET /v1/streams of the daemon at addr.
func listStreams(t *testing.T, addr string) []StreamStatus {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/streams")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Streams []StreamStatus `json:"streams"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("/v1/streams: %v", err)
	}
	return list.Streams
}

// streamSpec is one stream of a generated config.
type streamSpec struct {
	id, clip string
	loop     bool
}

// configYAML writes a config for the test clips.
func configYAML(t *testing.T, p testPaths, extra string, streams ...streamSpec) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\nonnxruntime:\n  library: %s\nmodel:\n  path: %s\ndetector:\n  model: %s\n%s\nstreams:\n", p.lib, p.model, p.detector, extra)
	if len(streams) == 0 {
		b.WriteString("  []\n")
	}
	for _, s := range streams {
		if strings.HasPrefix(s.clip, "whip://") {
			fmt.Fprintf(&b, "  - id: %s\n    url: %s\n", s.id, s.clip)
			continue
		}
		fmt.Fprintf(&b, "  - id: %s\n    url: %s\n    realtime: true\n    loop: %v\n", s.id, s.clip, s.loop)
	}
	return b.String()
}

func clipPath(t *testing.T, name string) string {
	return testmedia.MustEnsure(t, name, 640, 360).Path
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the real affectd once per test process, with the race
// detector: a race anywhere in the daemon fails the test that saw it
// (startBinary checks the log and the exit status).
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		// AFFECTD_TEST_BINARY runs these tests against another build, such
		// as an older commit's, to see a regression test fail there.
		if other := os.Getenv("AFFECTD_TEST_BINARY"); other != "" {
			binPath = other
			return
		}
		root, err := testenv.Root()
		if err != nil {
			binErr = err
			return
		}
		dir, err := os.MkdirTemp("", "affectd-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "affectd")
		cmd := exec.Command("go", "build", "-race", "-o", binPath, "./daemon/cmd/affectd")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a running affectd binary (built with -race).
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	cfg    string
	addr   string
	mu     sync.Mutex
	log    strings.Builder
	line   []byte      // a partial line of the log
	listen chan string // the address, from the log
	exited chan struct{}
	err    error
}

var listenRE = regexp.MustCompile(`msg=listening addr=http://(\S+)`)

// Write collects the daemon's log (its stderr): exec copies into it, and
// Wait returns only once all of it is in.
func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log.Write(b)
	p.line = append(p.line, b...)
	for {
		i := bytes.IndexByte(p.line, '\n')
		if i < 0 {
			break
		}
		if m := listenRE.FindSubmatch(p.line[:i]); m != nil {
			select {
			case p.listen <- string(m[1]):
			default:
			}
		}
		p.line = p.line[i+1:]
	}
	return len(b), nil
}

// raceReport is how the race detector begins a report.
const raceReport = "WARNING: DATA RACE"

// startBinary runs affectd on a config and waits until it listens and is
// ready. When the test ends the daemon gets SIGTERM (SIGKILL after 10 s);
// a race report in its log fails the test.
func startBinary(t *testing.T, cfg string) *proc {
	t.Helper()
	return startBinaryWith(t, cfg, true)
}

// startBinaryWith is startBinary, waiting for /readyz only when ready.
func startBinaryWith(t *testing.T, cfg string, ready bool) *proc {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "affectd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cfg: path, exited: make(chan struct{}), listen: make(chan string, 1)}
	p.cmd = exec.Command(binary(t), "run", "-config", path)
	p.cmd.Stderr = p
	// Enrolled people go to the test's own directory, never the user's.
	p.cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+dir)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.exited
		}
		if strings.Contains(p.logs(), raceReport) {
			t.Errorf("the race detector reported a data race in affectd:\n%s", p.logs())
		} else if t.Failed() {
			t.Logf("affectd log:\n%s", p.logs())
		}
	})
	select {
	case p.addr = <-p.listen:
	case <-p.exited:
		t.Fatalf("affectd exited: %v\n%s", p.err, p.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("affectd did not listen\n%s", p.logs())
	}
	deadline := time.Now().Add(60 * time.Second)
	for ready {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("affectd not ready\n%s", p.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// metric returns the sum of a metric's samples whose line contains all of
// the given label fragments.
func metric(t *testing.T, addr, name string, labels ...string) float64 {
	t.Helper()
	return metricWithToken(t, addr, "", name, labels...)
}

// metricWithToken is metric for a daemon with an auth token.
func metricWithToken(t *testing.T, addr, token, name string, labels ...string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if ok {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// wsMsg is any protocol message, decoded loosely.
type wsMsg struct {
	Type      string    `json:"type"`
	Stream    string    `json:"stream"`
	State     string    `json:"state"`
	Seq       uint64    `json:"seq"`
	LatencyMs float64   `json:"latency_ms"`
	Faces     []wsFace  `json:"faces"`
	Model     wsModel   `json:"model"`
	Notice    string    `json:"notice"`
	Count     int       `json:"count"`
	At        time.Time `json:"at"`
	received  time.Time
}

type wsModel struct {
	Name      string `json:"name"`
	Demo      bool   `json:"demo"`
	Precision string `json:"precision"`
	Heads     []struct {
		Name   string   `json:"name"`
		Labels []string `json:"labels"`
	} `json:"heads"`
}

type wsFace struct {
	ID          string             `json:"id"`
	Box         [4]float64         `json:"box"`
	EstimateSeq uint64             `json:"estimate_seq"`
	AU          map[string]float64 `json:"au"`
	VA          map[string]float64 `json:"va"`
	Expr        map[string]float64 `json:"expr"`
	Pose        *struct {
		Yaw, Pitch, Roll float64
	} `json:"pose"`
}

// dialWS connects a websocket client and returns a channel of its messages.
func dialWS(t *testing.T, addr, query string) (*websocket.Conn, <-chan wsMsg) {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	out := make(chan wsMsg, 4096)
	go func() {
		defer close(out)
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			var m wsMsg
			if json.Unmarshal(b, &m) != nil {
				t.Errorf("not JSON: %q", b)
				return
			}
			m.received = time.Now()
			select {
			case out <- m:
			default:
				t.Errorf("test reader overflowed")
				return
			}
		}
	}()
	return c, out
}

// nextMessage reads websocket messages, each decoded into a fresh T, until
// keep accepts one (each message within 10 s).
func nextMessage[T any](t *testing.T, conn *websocket.Conn, keep func(*T) bool) T {
	t.Helper()
	for {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var m T
		if json.Unmarshal(b, &m) == nil && keep(&m) {
			return m
		}
	}
}
