package daemon

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testenv"
)

const dashToken = "dash-s3cret"

// dashConfig is a daemon with a token, landmarks on the faces, and
// previews on or off, playing the two-face clip in a loop as stream "cam"
// (and more streams if given).
func dashConfig(t *testing.T, preview bool, more ...streamSpec) string {
	t.Helper()
	cfg := configYAML(t, paths(t), fmt.Sprintf("auth_token: %s\npreview:\n  enabled: %v\n%s", dashToken, preview, meshConfig(t)),
		append([]streamSpec{{"cam", clipPath(t, "two_faces"), true}}, more...)...)
	return strings.Replace(cfg, "    loop: true\n", "    loop: true\n    landmarks: true\n", 1)
}

// TestDashboard: headless Chromium opens the dashboard (GET /) with
// ?token= and ?stream=; within 45 s the page counts frames of the stream,
// shows a card per face whose AU bars, valence/arousal plane and
// expression bars (a softmax: they sum to 1) move, draws the boxes over
// the MJPEG preview where the faces are, the head-pose axes and the gaze
// arrows (landmarks.backend mesh468 with the iris model), and lists
// the stream as up. The page is static and open; the data endpoints still
// want the token. A screenshot goes to the test artefacts (dashboard.png).
func TestDashboard(t *testing.T) {
	proc := startBinary(t, dashConfig(t, true))
	base := "http://" + proc.addr

	t.Run("http", func(t *testing.T) {
		for _, tc := range []struct {
			path, wantType string
			want           int
		}{
			{"/", "text/html; charset=utf-8", 200},
			{"/dashboard.js", "text/javascript; charset=utf-8", 200},
			{"/dashboard-preview.js", "text/javascript; charset=utf-8", 200},
			{"/dashboard-faces.js", "text/javascript; charset=utf-8", 200},
			{"/dashboard.css", "text/css; charset=utf-8", 200},
			{"/v1", "text/plain; charset=utf-8", 200},
			{"/v1/streams", "", 401},
			{"/v1/streams/cam/preview", "", 401},
		} {
			resp, err := http.Get(base + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET %s without a token: %s, want %d", tc.path, resp.Status, tc.want)
				continue
			}
			if tc.wantType == "" {
				continue
			}
			if ct := resp.Header.Get("Content-Type"); ct != tc.wantType {
				t.Errorf("GET %s: Content-Type %q, want %q", tc.path, ct, tc.wantType)
			}
			if tc.path == "/v1" {
				if !strings.Contains(string(body), "GET /                   dashboard") || !strings.Contains(string(body), "/v1/streams/{stream}/preview") {
					t.Errorf("GET /v1 lists:\n%s", body)
				}
				continue
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("GET %s: Cache-Control %q", tc.path, cc)
			}
		}
	})

	b := startBrowser(t, fmt.Sprintf("%s/?token=%s&stream=cam", base, dashToken))
	defer b.screenshot("dashboard.png")
	b.check(45*time.Second, func(s1, s2 *dashSnapshot) error {
		if s2.Frames == 0 || s2.Frames <= s1.Frames {
			return fmt.Errorf("body[data-frames] did not increase: %d, then %d a second later", s1.Frames, s2.Frames)
		}
		if err := s2.streamUp("cam"); err != nil {
			return err
		}
		if len(s2.Faces) == 0 {
			return errors.New("no face card ([data-face-id])")
		}
		if err := s2.boxes(); err != nil {
			return err
		}
		if len(s2.Poses) == 0 {
			return errors.New("no head-pose axes ([data-pose]), though the daemon has landmarks")
		}
		if len(s2.Gazes) == 0 {
			return errors.New("no gaze arrows ([data-gaze]), though the daemon runs the mesh and iris models")
		}
		for _, f := range s2.Faces {
			if !strings.Contains(f.Source, "au=model") {
				return fmt.Errorf("face %s: [data-source] %q, want au=model", f.ID, f.Source)
			}
			if len(f.AU) != 12 {
				return fmt.Errorf("face %s: %d AU rows ([data-au]), want the model's 12", f.ID, len(f.AU))
			}
			for _, r := range f.AU {
				v, err := strconv.ParseFloat(r.Value, 64)
				if err != nil {
					return fmt.Errorf("face %s %s: data-value %q", f.ID, r.Label, r.Value)
				}
				// au_active is the daemon's (threshold 0.5, before the
				// value is rounded to 4 digits).
				if math.Abs(v-0.5) > 1e-3 && (r.Active == "true") != (v >= 0.5) {
					return fmt.Errorf("face %s %s: value %v with data-active %q (threshold 0.5)", f.ID, r.Label, v, r.Active)
				}
			}
			if len(f.Expr) != 8 {
				return fmt.Errorf("face %s: %d expression rows ([data-expr]), want 8", f.ID, len(f.Expr))
			}
			sum := 0.0
			for _, r := range f.Expr {
				v, err := strconv.ParseFloat(r.Value, 64)
				if err != nil {
					return fmt.Errorf("face %s expression %s: data-value %q", f.ID, r.Label, r.Value)
				}
				sum += v
			}
			if math.Abs(sum-1) > 0.01 {
				return fmt.Errorf("face %s: expression values sum to %.4f, want 1 (softmax)", f.ID, sum)
			}
			if f.VA == nil {
				return fmt.Errorf("face %s: no valence/arousal plane ([data-va-plane])", f.ID)
			}
		}
		var auMoved, vaMoved, trail bool
		for _, f2 := range s2.Faces {
			f1 := s1.face(f2.ID)
			if f1 == nil {
				continue
			}
			for i := range f2.AU {
				if i < len(f1.AU) && f1.AU[i].Value != f2.AU[i].Value {
					auMoved = true
				}
			}
			if f1.VA != nil && f2.VA != nil && f1.VA.Valence != f2.VA.Valence {
				vaMoved = true
			}
			if n, _ := strconv.Atoi(f2.VA.Points); n >= 2 {
				trail = true
			}
		}
		switch {
		case !auMoved:
			return errors.New("no AU bar's data-value changed within a second")
		case !trail:
			return errors.New("no valence/arousal trail of 2 points or more ([data-va-plane] data-points)")
		case !vaMoved:
			return errors.New("no valence ([data-va-plane] data-valence) changed within a second")
		}
		if s2.Preview.NaturalWidth == 0 {
			return fmt.Errorf("the preview img has no picture (src %q, placeholder %q)", s2.Preview.Src, s2.Placeholder)
		}
		return nil
	})
}

// TestDashboardTokenForm: opened without a token, the page asks for one;
// once it is entered the first stream's data flows; with previews off the
// page says so and still draws the boxes; a click on another stream in the
// list shows that stream's faces.
func TestDashboardTokenForm(t *testing.T) {
	proc := startBinary(t, dashConfig(t, false, streamSpec{"solo", clipPath(t, "one_face"), true}))
	b := startBrowser(t, "http://"+proc.addr+"/")
	defer b.screenshot("dashboard-token.png")
	b.check(20*time.Second, func(_, s *dashSnapshot) error {
		if s.Conn != "unauthorized" || !s.TokenForm {
			return fmt.Errorf("without a token: connection %q, token form shown %v; want unauthorized and the form", s.Conn, s.TokenForm)
		}
		return nil
	})
	b.eval(fmt.Sprintf(`document.getElementById("tokeninput").value = %q; document.getElementById("tokenform").requestSubmit(); true`, dashToken))
	b.check(30*time.Second, func(s1, s2 *dashSnapshot) error {
		if s2.TokenForm {
			return errors.New("the token form is still shown after the token was entered")
		}
		if s2.Frames <= s1.Frames {
			return fmt.Errorf("body[data-frames] did not increase after the token: %d, then %d", s1.Frames, s2.Frames)
		}
		if err := s2.streamUp("cam"); err != nil {
			return err
		}
		if !strings.HasPrefix(s2.Placeholder, "preview off") {
			return fmt.Errorf("previews are off but the placeholder says %q", s2.Placeholder)
		}
		if len(s2.Faces) == 0 {
			return errors.New("no face card ([data-face-id])")
		}
		return s2.boxes()
	})
	b.eval(`document.querySelector('[data-stream="solo"]').click(); true`)
	b.check(20*time.Second, func(s1, s2 *dashSnapshot) error {
		if s2.Frames <= s1.Frames {
			return fmt.Errorf("body[data-frames] did not increase after selecting solo: %d, then %d", s1.Frames, s2.Frames)
		}
		if len(s2.Faces) == 0 {
			return errors.New("no face card ([data-face-id]) after selecting solo")
		}
		for _, f := range s2.Faces {
			if !strings.HasPrefix(f.ID, "solo/") {
				return fmt.Errorf("after selecting solo the page shows face %s", f.ID)
			}
		}
		if !strings.Contains(s2.URL, "stream=solo") || strings.Contains(s2.URL, "token=") {
			return fmt.Errorf("the page's address is %s: want stream=solo and no token", s2.URL)
		}
		return s2.boxes()
	})
}

// dashSnapshot is the page's state as its data attributes tell it.
type dashSnapshot struct {
	Frames    int    `json:"frames"`
	Conn      string `json:"conn"`
	TokenForm bool   `json:"tokenForm"`
	Streams   []struct {
		ID, State, FPS string
	} `json:"streams"`
	Faces []dashFace `json:"faces"`
	Boxes []struct {
		ID                   string
		X, Y, W, H           float64 // source pixels (the rect's attributes)
		Left, Top, Width     float64 // on screen
		StageLeft, StageTop  float64
		StageWidth, SourceW  float64
		StageHeight, SourceH float64
	} `json:"boxes"`
	Poses   []string `json:"poses"`
	Gazes   []string `json:"gazes"`
	Preview struct {
		Src          string `json:"src"`
		NaturalWidth int    `json:"naturalWidth"`
	} `json:"preview"`
	Placeholder string `json:"placeholder"`
	URL         string `json:"url"`
}

// dashSnapshotJS reads a dashSnapshot (as JSON) from the page.
const dashSnapshotJS = `(() => {
  const q = (root, sel) => [...root.querySelectorAll(sel)];
  const stage = document.getElementById("stage").getBoundingClientRect();
  const vb = (document.getElementById("overlay").getAttribute("viewBox") || "0 0 0 0").split(" ").map(Number);
  const img = document.querySelector("[data-preview]");
  const ph = document.getElementById("placeholder");
  return JSON.stringify({
    frames: Number(document.body.dataset.frames || 0),
    conn: document.getElementById("conn").dataset.conn,
    tokenForm: !document.getElementById("tokenform").hidden,
    streams: q(document, "[data-stream]").map((e) => ({ID: e.dataset.stream, State: e.dataset.state, FPS: e.dataset.fps})),
    faces: q(document, "[data-face-id]").map((c) => {
      const va = c.querySelector("[data-va-plane]");
      const src = c.querySelector("[data-source]");
      return {
        id: c.dataset.faceId,
        source: src ? src.dataset.source : "",
        au: q(c, "[data-au]").map((r) => ({Label: r.dataset.au, Value: r.dataset.value, Active: r.dataset.active})),
        expr: q(c, "[data-expr]").map((r) => ({Label: r.dataset.expr, Value: r.dataset.value})),
        va: va ? {Valence: va.dataset.valence, Arousal: va.dataset.arousal, Points: va.dataset.points} : null,
      };
    }),
    boxes: q(document, "[data-box]").map((r) => {
      const b = r.getBoundingClientRect();
      const n = (k) => Number(r.getAttribute(k));
      return {ID: r.dataset.box, X: n("x"), Y: n("y"), W: n("width"), H: n("height"),
        Left: b.left, Top: b.top, Width: b.width,
        StageLeft: stage.left, StageTop: stage.top, StageWidth: stage.width, StageHeight: stage.height,
        SourceW: vb[2], SourceH: vb[3]};
    }),
    poses: q(document, "[data-pose]").map((g) => g.dataset.pose),
    gazes: q(document, "[data-gaze]").map((g) => g.dataset.gaze),
    preview: {src: img.getAttribute("src") || "", naturalWidth: img.naturalWidth},
    placeholder: ph.hidden ? "" : ph.textContent.trim(),
    url: location.href,
  });
})()`

// dashFace is a face card.
type dashFace struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	AU     []struct {
		Label, Value, Active string
	} `json:"au"`
	Expr []struct {
		Label, Value string
	} `json:"expr"`
	VA *struct {
		Valence, Arousal, Points string
	} `json:"va"`
}

func (s *dashSnapshot) face(id string) *dashFace {
	for i := range s.Faces {
		if s.Faces[i].ID == id {
			return &s.Faces[i]
		}
	}
	return nil
}

func (s *dashSnapshot) streamUp(id string) error {
	for _, st := range s.Streams {
		if st.ID == id {
			if st.State != "up" {
				return fmt.Errorf("stream list: %s is %q, want up", id, st.State)
			}
			return nil
		}
	}
	return fmt.Errorf("stream list: no [data-stream=%q]", id)
}

// boxes checks that every face has a box and that the boxes sit where
// their source-pixel coordinates fall on the displayed picture.
func (s *dashSnapshot) boxes() error {
	have := map[string]bool{}
	for _, b := range s.Boxes {
		have[b.ID] = true
		if b.SourceW != 640 || b.SourceH != 360 {
			return fmt.Errorf("overlay viewBox is %vx%v, want the source's 640x360", b.SourceW, b.SourceH)
		}
		k := b.StageWidth / b.SourceW
		if math.Abs(b.StageHeight/b.SourceH-k) > 0.01*k {
			return fmt.Errorf("the picture is %vx%v on screen: not the source's aspect ratio", b.StageWidth, b.StageHeight)
		}
		wantL, wantT, wantW := b.StageLeft+b.X*k, b.StageTop+b.Y*k, b.W*k
		// The stroke (2 px, not scaled) widens the rect's bounds a little.
		if math.Abs(b.Left-wantL) > 3 || math.Abs(b.Top-wantT) > 3 || math.Abs(b.Width-wantW) > 4 {
			return fmt.Errorf("box %s at (%.0f,%.0f) %.0f px wide on screen, want (%.0f,%.0f) %.0f px for %v,%v %vx%v in source pixels",
				b.ID, b.Left, b.Top, b.Width, wantL, wantT, wantW, b.X, b.Y, b.W, b.H)
		}
	}
	for _, f := range s.Faces {
		if !have[f.ID] {
			return fmt.Errorf("face %s has a card but no overlay box ([data-box])", f.ID)
		}
	}
	return nil
}

// browser is a headless Chromium driven over the DevTools protocol.
type browser struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *syncBuffer
	conn   *websocket.Conn
	nextID int
	mu     sync.Mutex
	errs   []string // exceptions and CSP violations the page reported
}

// startBrowser starts Chromium on about:blank, attaches to its page,
// turns on its error reports and opens url.
func startBrowser(t *testing.T, url string) *browser {
	t.Helper()
	chrome, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium missing: make setup installs Debian's chromium")
	}
	profile := t.TempDir()
	b := &browser{t: t, stderr: &syncBuffer{}}
	b.cmd = exec.Command(chrome, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--user-data-dir="+profile, "--remote-debugging-port=0", "--window-size=1400,1000", "--hide-scrollbars",
		"about:blank")
	b.cmd.Stderr = b.stderr
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b.conn != nil {
			b.conn.Close()
		}
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL) // the browser and its helpers
		b.cmd.Wait()
		if t.Failed() {
			t.Logf("chromium stderr (last 30 lines):\n%s", lastLines(b.stderr.String(), 30))
		}
	})

	// The DevTools port: Chromium writes "port\npath" once it listens.
	var port string
	deadline := time.Now().Add(30 * time.Second)
	for port == "" {
		if raw, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort")); err == nil {
			if lines := strings.Split(string(raw), "\n"); len(lines) >= 2 && lines[0] != "" {
				port = lines[0]
			}
		}
		if port == "" && time.Now().After(deadline) {
			t.Fatal("chromium wrote no DevToolsActivePort within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var targets []struct {
		Type, URL            string
		WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
	}
	for {
		resp, err := http.Get("http://127.0.0.1:" + port + "/json/list")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
		}
		page := ""
		for _, tg := range targets {
			if tg.Type == "page" {
				page = tg.WebSocketDebuggerURL
				break
			}
		}
		if page != "" {
			b.conn, _, err = websocket.DefaultDialer.Dial(page, nil)
			if err != nil {
				t.Fatalf("DevTools: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DevTools lists no page: %v %+v", err, targets)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		b.call(m, nil)
	}
	// The screenshot's size, whatever the window's decorations take.
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false})
	b.call("Page.navigate", map[string]any{"url": url})
	// Until the dashboard's script has run (evaluations may fail while the
	// page changes).
	for {
		raw, err := b.try("Runtime.evaluate", map[string]any{
			"expression": `document.readyState === "complete" && !!document.getElementById("stage")`, "returnByValue": true,
		})
		if err == nil && strings.Contains(string(raw), `"value":true`) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard did not load within 30 s: %v %s", err, raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call sends one DevTools command and waits for its result; events that
// arrive meanwhile are scanned for the page's errors.
func (b *browser) call(method string, params any) json.RawMessage {
	b.t.Helper()
	r, err := b.try(method, params)
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

// try is call that returns its error.
func (b *browser) try(method string, params any) (json.RawMessage, error) {
	b.nextID++
	id := b.nextID
	if params == nil {
		params = map[string]any{}
	}
	b.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := b.conn.WriteJSON(map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return nil, fmt.Errorf("DevTools %s: %w", method, err)
	}
	for {
		b.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		var m struct {
			ID     int             `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := b.conn.ReadJSON(&m); err != nil {
			return nil, fmt.Errorf("DevTools %s: %w", method, err)
		}
		if m.ID == 0 {
			b.event(m.Method, m.Params)
			continue
		}
		if m.ID != id {
			continue
		}
		if m.Error != nil {
			return nil, fmt.Errorf("DevTools %s: %d %s", method, m.Error.Code, m.Error.Message)
		}
		return m.Result, nil
	}
}

func (b *browser) event(method string, params json.RawMessage) {
	switch method {
	case "Runtime.exceptionThrown":
		var e struct {
			ExceptionDetails struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		json.Unmarshal(params, &e)
		b.mu.Lock()
		b.errs = append(b.errs, "exception: "+e.ExceptionDetails.Text+" "+e.ExceptionDetails.Exception.Description)
		b.mu.Unlock()
	case "Log.entryAdded":
		var e struct {
			Entry struct {
				Level, Source, Text, URL string
			} `json:"entry"`
		}
		json.Unmarshal(params, &e)
		if e.Entry.Level == "error" {
			b.t.Logf("page log: %s %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL)
		}
		if strings.Contains(e.Entry.Text, "Content Security Policy") {
			b.mu.Lock()
			b.errs = append(b.errs, "CSP: "+e.Entry.Text)
			b.mu.Unlock()
		}
	}
}

// eval runs a JavaScript expression in the page and returns its value.
func (b *browser) eval(expr string) json.RawMessage {
	b.t.Helper()
	raw := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		b.t.Fatalf("Runtime.evaluate: %v", err)
	}
	if e := r.ExceptionDetails; e != nil {
		b.t.Fatalf("Runtime.evaluate: %s %s", e.Text, e.Exception.Description)
	}
	return r.Result.Value
}

func (b *browser) snapshot() *dashSnapshot {
	b.t.Helper()
	var js string
	if err := json.Unmarshal(b.eval(dashSnapshotJS), &js); err != nil {
		b.t.Fatalf("snapshot: %v", err)
	}
	s := &dashSnapshot{}
	if err := json.Unmarshal([]byte(js), s); err != nil {
		b.t.Fatalf("snapshot: %v\n%s", err, js)
	}
	return s
}

// check takes two snapshots a second apart until ok passes on them (and
// the page reported no error), and fails with ok's last complaint at the
// deadline.
func (b *browser) check(within time.Duration, ok func(before, after *dashSnapshot) error) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s1 := b.snapshot()
		time.Sleep(time.Second)
		s2 := b.snapshot()
		err := ok(s1, s2)
		b.mu.Lock()
		if len(b.errs) > 0 {
			err = fmt.Errorf("the page reported errors: %s", strings.Join(b.errs, "; "))
		}
		b.mu.Unlock()
		if err == nil {
			b.t.Logf("dashboard: %d frames, %d faces, %d boxes, %d pose axes, preview %dpx wide",
				s2.Frames, len(s2.Faces), len(s2.Boxes), len(s2.Poses), s2.Preview.NaturalWidth)
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("dashboard check failed after %v: %v", within, err)
		}
	}
}

// screenshot writes the page as a PNG to the test artefacts:
// $AFFECTD_TEST_ARTEFACTS, or test-artefacts/ at the repository's root.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("AFFECTD_TEST_ARTEFACTS")
	if dir == "" {
		root, err := testenv.Root()
		if err != nil {
			b.t.Errorf("screenshot: %v", err)
			return
		}
		dir = filepath.Join(root, "test-artefacts")
	}
	var r struct {
		Data string `json:"data"`
	}
	raw, err := b.try("Page.captureScreenshot", map[string]any{"format": "png"})
	if err != nil {
		b.t.Errorf("screenshot: %v", err)
		return
	}
	json.Unmarshal(raw, &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil || len(png) == 0 {
		b.t.Errorf("screenshot: %v (%d bytes)", err, len(png))
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Errorf("screenshot: %v", err)
		return
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("screenshot: %v", err)
		return
	}
	b.t.Logf("screenshot: %s", path)
}

// syncBuffer is a strings.Builder safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
