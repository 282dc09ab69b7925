package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// cutProxy forwards TCP connections to a NATS server until Cut, which
// closes them all and refuses new ones: a node behind it is cut off from
// NATS while its process runs on.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	t.Cleanup(p.Cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.cut {
				c.Close()
				up.Close()
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

// clusterFrame is what the test reads of a frame published on NATS.
type clusterFrame struct {
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Node   string `json:"node"`
	Lease  uint64 `json:"lease"`
	at     time.Time
}

// frameWatch follows every frame the cluster publishes: per stream, who
// ran its latest frame, when each node's first frame under a lease came,
// and every frame of an older lease after a newer one (a stream run twice).
type frameWatch struct {
	mu     sync.Mutex
	last   map[string]clusterFrame
	first  map[string]map[uint64]time.Time // stream → lease → first frame
	maxL   map[string]uint64
	stale  []clusterFrame
	frames int
}

func watchFrames(t *testing.T, url string) *frameWatch {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w := &frameWatch{last: map[string]clusterFrame{}, first: map[string]map[uint64]time.Time{}, maxL: map[string]uint64{}}
	_, err = nc.Subscribe("affectd.v1.frames.>", func(m *nats.Msg) {
		var f clusterFrame
		if err := json.Unmarshal(m.Data, &f); err != nil {
			t.Errorf("frame not JSON: %v", err)
			return
		}
		f.at = time.Now()
		if f.Node == "" || f.Node != m.Header.Get("Affectd-Node") || f.Lease == 0 {
			t.Errorf("frame %+v: want its node (as in the header %q) and lease", f, m.Header.Get("Affectd-Node"))
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.frames++
		if f.Lease < w.maxL[f.Stream] {
			w.stale = append(w.stale, f)
		}
		w.maxL[f.Stream] = max(w.maxL[f.Stream], f.Lease)
		if w.first[f.Stream] == nil {
			w.first[f.Stream] = map[uint64]time.Time{}
		}
		if _, ok := w.first[f.Stream][f.Lease]; !ok {
			w.first[f.Stream][f.Lease] = f.at
		}
		w.last[f.Stream] = f
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// owners is who ran each stream's latest frame, among frames newer than
// fresh.
func (w *frameWatch) owners(fresh time.Duration) map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]string{}
	for s, f := range w.last {
		if time.Since(f.at) < fresh {
			out[s] = f.Node
		}
	}
	return out
}

// resumed is when stream's first frame under a lease taken by a node other
// than from, after t, came (zero: not yet).
func (w *frameWatch) resumed(stream, from string, t time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.last[stream]
	if f.Node == from || f.at.Before(t) {
		return time.Time{}
	}
	return w.first[stream][f.Lease]
}

func waitFor(t *testing.T, what string, limit time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCluster: three race-built affectd processes share six looping file
// streams through a real nats-server. Each stream runs on exactly one
// node, and every node runs some; a websocket client on node a gets frames
// of a stream that node c runs; after kill -9 of c its streams' frames
// flow again from the others within 5 s; node b, cut off from NATS (its
// connection goes through a proxy the test cuts), stops its streams within
// the lease TTL, before another node starts them. No frame of an older
// lease ever follows one of a newer lease for the same stream: no stream
// ran on two nodes at once.
func TestCluster(t *testing.T) {
	p := paths(t)
	url := natsServer(t)
	proxy := newCutProxy(t, url[len("nats://"):])
	one, two := clipPath(t, "one_face"), clipPath(t, "two_faces")
	var streams []streamSpec
	for i := range 6 {
		clip := one
		if i%2 == 1 {
			clip = two
		}
		streams = append(streams, streamSpec{fmt.Sprintf("s%d", i+1), clip, true})
	}
	watch := watchFrames(t, url)
	node := func(name, natsURL string) *proc {
		extra := fmt.Sprintf("identity: off\nexpression_fer:\n  model: \"\"\ncluster:\n  nats: %s\n  node: %s\n  capacity: 6\n", natsURL, name)
		return startBinary(t, configYAML(t, p, extra, streams...))
	}
	a := node("a", url)
	b := node("b", proxy.URL())
	c := node("c", url)

	// All six flow, spread over the three nodes.
	waitFor(t, "six streams on three nodes", 60*time.Second, func() bool {
		o := watch.owners(time.Second)
		per := map[string]int{}
		for _, n := range o {
			per[n]++
		}
		return len(o) == 6 && per["a"] > 0 && per["b"] > 0 && per["c"] > 0
	})
	t.Logf("owners: %v", watch.owners(time.Second))
	var view clusterView
	getJSON(t, "http://"+a.addr+"/v1/cluster", &view)
	if len(view.Streams) != 6 || len(view.Nodes) != 3 {
		t.Errorf("GET /v1/cluster on a: %+v; want 6 streams and 3 nodes", view)
	}

	// A websocket client on a gets the frames of a stream c runs.
	var onC string
	for s, n := range watch.owners(time.Second) {
		if n == "c" {
			onC = s
		}
	}
	_, msgs := dialWS(t, a.addr, "?streams="+onC)
	got := 0
	for deadline := time.After(10 * time.Second); got < 10; {
		select {
		case m := <-msgs:
			if m.Type == "frame" && m.Stream == onC {
				got++
			}
		case <-deadline:
			t.Fatalf("websocket on a: %d frames of %s (run by c) in 10 s", got, onC)
		}
	}

	// kill -9 c: its streams resume elsewhere within 5 s.
	var cStreams []string
	for s, n := range watch.owners(time.Second) {
		if n == "c" {
			cStreams = append(cStreams, s)
		}
	}
	sort.Strings(cStreams)
	killed := time.Now()
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
	waitFor(t, "c's streams resumed", 15*time.Second, func() bool {
		for _, s := range cStreams {
			if watch.resumed(s, "c", killed).IsZero() {
				return false
			}
		}
		return true
	})
	for _, s := range cStreams {
		took := watch.resumed(s, "c", killed).Sub(killed)
		t.Logf("after kill -9 of c: %s flows again from %s after %v", s, watch.owners(time.Second)[s], took.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Errorf("%s resumed %v after the kill; want within 5 s", s, took)
		}
	}

	// Cut b off from NATS: it stops its own streams within the TTL, before
	// a takes them.
	var bStreams []string
	for s, n := range watch.owners(time.Second) {
		if n == "b" {
			bStreams = append(bStreams, s)
		}
	}
	if len(bStreams) == 0 {
		t.Fatalf("b runs nothing: %v", watch.owners(time.Second))
	}
	cut := time.Now()
	proxy.Cut()
	waitFor(t, "b stops its streams", 10*time.Second, func() bool { return len(listStreams(t, b.addr)) == 0 })
	stopped := time.Since(cut)
	t.Logf("b cut off: its streams %v stopped after %v", bStreams, stopped.Round(time.Millisecond))
	if stopped > 3*time.Second {
		t.Errorf("b stopped its streams %v after it was cut off; want within lease_ttl (3 s)", stopped)
	}
	waitFor(t, "b's streams resumed on a", 15*time.Second, func() bool {
		for _, s := range bStreams {
			if watch.resumed(s, "b", cut).IsZero() {
				return false
			}
		}
		return true
	})
	for _, s := range bStreams {
		if at := watch.resumed(s, "b", cut); at.Before(cut.Add(stopped)) {
			t.Errorf("%s resumed on a %v after the cut, before b had stopped it (%v)", s, at.Sub(cut), stopped)
		}
	}
	watch.mu.Lock()
	defer watch.mu.Unlock()
	t.Logf("%d frames watched on NATS", watch.frames)
	if len(watch.stale) > 0 {
		t.Errorf("%d frames of an older lease after a newer one (a stream run twice), first %+v", len(watch.stale), watch.stale[0])
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}
