package stream

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/affectd/affectd/capture/streamid"
	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/tools/testenv"
)

func newTestHub(t *testing.T, o HubOptions) (*Hub, *httptest.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	if o.Hello == nil {
		o.Hello = func() []byte { return []byte(`{"type":"hello","v":1}`) }
	}
	h, err := NewHub(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return h, srv, reg
}

func dial(t *testing.T, srv *httptest.Server, query string) *websocket.Conn {
	t.Helper()
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/ws" + query
	c, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readJSON(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return m
}

func waitClients(t *testing.T, h *Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Clients() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d clients, want %d", h.Clients(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHubHelloAndSubscriptions(t *testing.T) {
	h, srv, _ := newTestHub(t, HubOptions{})
	all := dial(t, srv, "")
	one := dial(t, srv, "?streams=b,c")
	for _, c := range []*websocket.Conn{all, one} {
		if m := readJSON(t, c); m["type"] != "hello" {
			t.Fatalf("first message %v, want hello", m)
		}
	}
	waitClients(t, h, 2)
	h.Publish("a", []byte(`{"n":1}`))
	h.Publish("b", []byte(`{"n":2}`))
	h.PublishStatus(Status{Stream: "c", State: "up", At: time.Unix(0, 0)})
	for _, want := range []string{"1", "2", "status"} {
		m := readJSON(t, all)
		if fmt.Sprint(m["n"]) != want && m["type"] != want {
			t.Fatalf("all-streams client got %v, want %s", m, want)
		}
	}
	if m := readJSON(t, one); fmt.Sprint(m["n"]) != "2" {
		t.Fatalf("client of b,c got %v first, want message 2 (a is not subscribed)", m)
	}
	if m := readJSON(t, one); m["type"] != "status" || m["stream"] != "c" || m["v"] != float64(1) {
		t.Fatalf("client of b,c got %v, want c's status", m)
	}
}

// A client that stops reading loses messages (counted), is disconnected
// past MaxDrops, and never slows a normal client or the publisher.
func TestHubSlowClient(t *testing.T) {
	h, srv, reg := newTestHub(t, HubOptions{SendQueue: 64, MaxDrops: 200, WriteTimeout: 500 * time.Millisecond})
	slow := dial(t, srv, "")
	fast := dial(t, srv, "")
	waitClients(t, h, 2)
	readJSON(t, fast) // hello
	got := make(chan int, 1)
	go func() {
		n := 0
		for {
			fast.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, b, err := fast.ReadMessage()
			if err != nil {
				got <- n
				return
			}
			if strings.Contains(string(b), `"frame"`) {
				n++
				if n == 1000 {
					got <- n
					return
				}
			}
		}
	}()
	// Big messages, so the stalled client's socket buffers fill quickly.
	payload := strings.Repeat("x", 16<<10)
	start := time.Now()
	for i := 0; i < 1000; i++ {
		h.Publish("s", []byte(`{"type":"frame","pad":"`+payload+`"}`))
		time.Sleep(time.Millisecond) // 1000 messages/s of 16 KiB
	}
	publishTime := time.Since(start)
	if n := <-got; n != 1000 {
		t.Errorf("the fast client got %d of 1000 messages", n)
	}
	waitClients(t, h, 1) // the slow one was dropped
	dropped := testutil.ToFloat64(h.m.dropped)
	if dropped < 200 {
		t.Errorf("dropped_total %v, want ≥ MaxDrops", dropped)
	}
	if n := testutil.ToFloat64(h.m.disconnects.WithLabelValues("slow")); n != 1 {
		t.Errorf("disconnects{reason=slow} %v, want 1", n)
	}
	t.Logf("published 1000 messages in %v, %v dropped for the stalled client", publishTime, dropped)
	// The stalled client finally reads: its connection was closed, with a
	// 1008 close frame when the socket had room for one.
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := slow.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if asCloseError(err, &ce) && ce.Code != websocket.ClosePolicyViolation && ce.Code != websocket.CloseAbnormalClosure {
				t.Errorf("close code %d, want 1008 (or 1006 when the frame could not be sent)", ce.Code)
			}
			break
		}
	}
	if problems, err := testutil.CollectAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", err, problems)
	}
}

func asCloseError(err error, ce **websocket.CloseError) bool {
	c, ok := err.(*websocket.CloseError)
	if ok {
		*ce = c
	}
	return ok
}

// A client that reads late gets a "dropped" notice with the count.
func TestHubDroppedNotice(t *testing.T) {
	h, srv, _ := newTestHub(t, HubOptions{SendQueue: 4, MaxDrops: 1000})
	c := dial(t, srv, "")
	readJSON(t, c) // hello
	waitClients(t, h, 1)
	// Hold the client's writer back: publish faster than one read.
	for i := 0; i < 50; i++ {
		h.Publish("s", []byte(fmt.Sprintf(`{"type":"frame","i":%d}`, i)))
	}
	var lastI float64 = -1
	var dropped float64
	deadline := time.Now().Add(3 * time.Second)
	for lastI < 49 && time.Now().Before(deadline) {
		m := readJSON(t, c)
		switch m["type"] {
		case "dropped":
			dropped += m["count"].(float64)
		case "frame":
			if m["i"].(float64) <= lastI {
				t.Fatalf("out of order: %v after %v", m["i"], lastI)
			}
			lastI = m["i"].(float64)
		}
	}
	if lastI != 49 {
		t.Fatalf("last message %v, want 49 (the newest is never dropped)", lastI)
	}
	if got := testutil.ToFloat64(h.m.dropped); got != dropped {
		t.Errorf("told %v dropped, counted %v", dropped, got)
	}
}

func TestHubPingKeepsAliveAndCloseSaysGoingAway(t *testing.T) {
	h, srv, _ := newTestHub(t, HubOptions{PingInterval: 30 * time.Millisecond, WriteTimeout: 30 * time.Millisecond})
	alive := dial(t, srv, "")
	readJSON(t, alive)
	// A reading client answers pings (gorilla replies in ReadMessage).
	done := make(chan error, 1)
	go func() {
		for {
			alive.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := alive.ReadMessage(); err != nil {
				done <- err
				return
			}
		}
	}()
	// A client that never reads never answers: disconnected after ~2 periods.
	mute := dial(t, srv, "")
	waitClients(t, h, 2)
	time.Sleep(300 * time.Millisecond)
	waitClients(t, h, 1)
	_ = mute
	h.Close()
	err := <-done
	var ce *websocket.CloseError
	if !asCloseError(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("after Close: %v, want close 1001", err)
	}
	if h.Clients() != 0 {
		t.Fatalf("%d clients after Close", h.Clients())
	}
}

func TestHubNoGoroutineLeak(t *testing.T) {
	goroutines := testenv.SnapshotGoroutines()
	func() {
		h, srv, _ := newTestHub(t, HubOptions{})
		for i := 0; i < 5; i++ {
			c := dial(t, srv, "")
			readJSON(t, c)
			c.Close()
		}
		waitClients(t, h, 0)
		h.Close()
		srv.Close()
	}()
	goroutines.Check(t)
}

func TestAppendFrameIsValidJSON(t *testing.T) {
	th := float32(0.5)
	layout := &analysis.Layout{Heads: []analysis.HeadInfo{
		{Name: "au", Labels: []string{"AU1", "AU12"}, Activation: "sigmoid", Threshold: &th, Source: "model"},
		{Name: "va", Labels: []string{"valence", "arousal"}, Activation: "tanh", Source: "model"},
	}, BlendShapes: []string{"jawOpen", "browInnerUp"}}
	f := &analysis.FrameResult{
		Stream: `cam"1`, Seq: 42, CapturedAt: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC), PTS: 1500 * time.Millisecond,
		Faces: []analysis.Face{
			{ID: "cam1/7", Box: [4]float32{1, 2, 3, 4}, Score: 0.97, EstimateSeq: 40, Values: [][]float32{{0.2, 0.81}, {0.32, float32(math.NaN())}}},
			{ID: "cam1/8", Box: [4]float32{5, 6, 7, 8}, Score: 0.9, Pose: &analysis.Pose{Yaw: 10, Pitch: -5, Roll: 2.5, T: [3]float32{1, 2, 600}, R: [3]float32{0.0873, -0.1745, 0.0436}},
				Blend: []float32{0.25, 0}, Landmarks: &[68][2]float32{{1, 2}}},
		},
	}
	b := AppendFrame(nil, f, layout, Encoding{Blendshapes: true, Landmarks: true}, f.CapturedAt.Add(41200*time.Microsecond))
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if m["stream"] != `cam"1` || m["seq"] != 42.0 || m["latency_ms"] != 41.2 || m["captured_at"] != "2026-01-02T03:04:05.006Z" {
		t.Errorf("header %v", m)
	}
	faces := m["faces"].([]any)
	f0 := faces[0].(map[string]any)
	if f0["au"].(map[string]any)["AU12"] != 0.81 || f0["estimate_seq"] != 40.0 {
		t.Errorf("face 0 %v", f0)
	}
	if act := f0["au_active"].([]any); len(act) != 1 || act[0] != "AU12" {
		t.Errorf("au_active %v, want [AU12]", act)
	}
	if f0["va"].(map[string]any)["arousal"] != nil {
		t.Errorf("NaN should encode as null: %v", f0["va"])
	}
	if src := f0["source"].(map[string]any); src["au"] != "model" || src["va"] != "model" {
		t.Errorf("face 0 sources %v", src)
	}
	f1 := faces[1].(map[string]any)
	if _, ok := f1["au"]; ok || f1["estimate_seq"] != nil || f1["source"] != nil {
		t.Errorf("a face without estimate carries values: %v", f1)
	}
	pose := f1["pose"].(map[string]any)
	if pose["yaw"] != 10.0 || pose["roll"] != 2.5 || pose["t"].([]any)[2] != 600.0 || pose["r"].([]any)[1] != -0.1745 {
		t.Errorf("pose %v", pose)
	}
	if bs := f1["blendshapes"].(map[string]any); bs["jawOpen"] != 0.25 || bs["browInnerUp"] != 0.0 {
		t.Errorf("blendshapes %v", bs)
	}
	if lm := f1["landmarks"].([]any); len(lm) != 68 || lm[0].([]any)[1] != 2.0 {
		t.Errorf("landmarks %v", lm)
	}

	// Without the stream's options no blend shapes or points; offline, no
	// capture time or latency.
	b = AppendFrame(nil, f, layout, Encoding{Offline: true}, time.Now())
	m = nil
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	f1 = m["faces"].([]any)[1].(map[string]any)
	if _, ok := f1["blendshapes"]; ok || f1["landmarks"] != nil || m["captured_at"] != nil || m["latency_ms"] != nil || m["pts_ms"] != 1500.0 {
		t.Errorf("offline, no options: %s", b)
	}
}

// FuzzParseStreams: ?streams= from any client parses into at most
// MaxSubscriptions valid stream ids, or is refused.
func FuzzParseStreams(f *testing.F) {
	for _, s := range []string{"", "a", "a,b, c", ",,", "a..b", "\xff", strings.Repeat("x,", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		subs, err := ParseStreams(q)
		if err != nil {
			return
		}
		if len(subs) > MaxSubscriptions {
			t.Fatalf("%d subscriptions", len(subs))
		}
		for id := range subs {
			if !streamid.Valid(id) {
				t.Fatalf("accepted id %q", id)
			}
		}
	})
}

// TestHubMaxClients: a client over MaxClients gets 503 with Retry-After;
// a place freed is taken again.
func TestHubMaxClients(t *testing.T) {
	h, srv, reg := newTestHub(t, HubOptions{MaxClients: 2})
	a := dial(t, srv, "")
	readJSON(t, a)
	b := dial(t, srv, "")
	readJSON(t, b)
	_, resp, err := websocket.DefaultDialer.Dial(strings.Replace(srv.URL, "http", "ws", 1), nil)
	if err == nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a third client: %v %+v, want 503 with Retry-After", err, resp)
	}
	if n := testutil.ToFloat64(h.m.refused.WithLabelValues("too_many")); n != 1 {
		t.Errorf("refused too_many = %v", n)
	}
	a.Close()
	waitClients(t, h, 1)
	c := dial(t, srv, "")
	readJSON(t, c)
	c.Close()
	b.Close()
	_ = reg
}
