package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/affectd/affectd/tools/testenv"
)

// clusterFresh is how recent a stream's last frame must be for the
// stream to count as flowing (the clips run at 25 fps).
const clusterFresh = time.Second

// clusterResume is how long a stream may take to flow again (after a
// kill, or after the killed node's restart) before the bench fails.
const clusterResume = 30 * time.Second

// benchCluster runs the daemon's cluster mode for real: a nats-server
// with JetStream on loopback (built from the module go.mod pins), -nodes
// non-race affectd processes sharing -streams looping file streams (the
// one_face and two_faces clips at 640x360, paced in real time; identity
// and the expression model off), and one NATS subscriber on every frame.
// Once every stream flows, spread over the nodes, it kills -9 a node
// that runs streams (-kills times, the nodes in turn) and takes, for
// each of its streams, the time from the kill to the stream's first
// frame under a newer lease from another node (the failover); then it
// restarts that node on the same config and waits until every stream
// flows again and the node holds one at least (the others hand it
// streams, one a second) and the owners have settled. A stream that does
// not flow again within 30 s fails the bench (the work folder, with the
// nodes' and nats-server's logs, is then kept). Ctrl-C or SIGTERM stops
// every process it started.
//
// Throughout it counts duplicates: frames of a stream under a lower lease
// epoch than one already seen for it (the stream ran on two nodes at
// once), and frames whose seq does not grow within one (stream, lease).
// The publish latency of a frame is its arrival at the subscriber less
// the moment its node encoded it (captured_at + latency_ms; one clock).
//
// The last line is
//
//	cluster: nodes=N streams=N failover_p99_ms=N duplicates=N publish_p99_ms=N.N
//
// failover_p99_ms over every stream moved by a kill (integer ms),
// duplicates a count, publish_p99_ms over every frame (ms, one decimal).
func benchCluster(args []string) (err error) {
	fs := flag.NewFlagSet("cluster", flag.ExitOnError)
	nNodes := fs.Int("nodes", 3, "affectd nodes (2 to 26, named a, b, c…)")
	nStreams := fs.Int("streams", 6, "looping file streams shared by the nodes")
	kills := fs.Int("kills", 20, "kill -9 / restart rounds")
	ttl := fs.Duration("ttl", 3*time.Second, "cluster.lease_ttl")
	modelPath := fs.String("model", "", `ONNX model (default: a seeded random ViT-tiny, made if missing; "none": the landmark backend only)`)
	keep := fs.Bool("keep", false, "keep the work folder (configs, daemon and nats-server logs; kept anyway on a failure) and print its path")
	fs.Parse(args)
	if *nNodes < 2 || *nNodes > 26 || *nStreams < *nNodes || *kills < 0 || *ttl < time.Second || *ttl > time.Minute {
		return fmt.Errorf("want -nodes 2 to 26, -streams ≥ -nodes (a restarted node must get a stream), -kills ≥ 0, -ttl from 1s to 1m")
	}
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	raiseFileLimit()
	if *modelPath == "none" {
		*modelPath = ""
	} else if err := defaultModel(modelPath); err != nil {
		return err
	}
	var clips [2]string
	for i, name := range []string{"one_face", "two_faces"} {
		c, err := ensureClip(name, "640x360")
		if err != nil {
			return err
		}
		clips[i] = c.Path
	}
	dir, err := os.MkdirTemp("", "affectd-cluster-")
	if err != nil {
		return err
	}
	defer func() { // kept on a failure, for the logs
		if ctx.Err() != nil && err != nil {
			err = errors.New("interrupted")
		}
		if !*keep && (err == nil || ctx.Err() != nil) {
			os.RemoveAll(dir)
		}
	}()
	// Nothing is enrolled (identity: off), but keep the nodes off the
	// user's state directory all the same.
	os.Setenv("STATE_DIRECTORY", dir)
	bin, err := buildDaemon(dir)
	if err != nil {
		return err
	}
	natsBin, err := buildNATSServer(dir)
	if err != nil {
		return err
	}
	ns, url, err := startNATSServer(ctx, natsBin, dir)
	if err != nil {
		return err
	}
	defer ns.stop()
	w, err := watchCluster(url)
	if err != nil {
		return err
	}
	defer w.nc.Close()

	head, err := baseYAML(*modelPath)
	if err != nil {
		return err
	}
	var streams strings.Builder
	ids := make([]string, *nStreams)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%d", i+1)
		fmt.Fprintf(&streams, "  - id: %s\n    url: %s\n    realtime: true\n    loop: true\n", ids[i], clips[i%2])
	}
	nodes := make([]*clusterNode, *nNodes)
	defer func() { // every node still running, at once
		var wg sync.WaitGroup
		for _, n := range nodes {
			if n != nil && n.p != nil && n.p.alive() {
				wg.Add(1)
				go func() { defer wg.Done(); n.p.stop() }()
			}
		}
		wg.Wait()
	}()
	for i := range nodes {
		name := string(rune('a' + i))
		cfg := head + fmt.Sprintf("identity: off\nexpression_fer:\n  model: \"\"\ncluster:\n  nats: %s\n  node: %s\n  capacity: %d\n  lease_ttl: %s\nstreams:\n%s",
			url, name, *nStreams, *ttl, streams.String())
		n := &clusterNode{name: name, cfg: filepath.Join(dir, name+".yaml"), log: filepath.Join(dir, name+".log")}
		if err := os.WriteFile(n.cfg, []byte(cfg), 0o644); err != nil {
			return err
		}
		nodes[i] = n
		if n.p, err = startDaemon(bin, n.cfg, n.log); err != nil {
			return fmt.Errorf("node %s: %v", name, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	fmt.Printf("cluster: nats-server %s; %d nodes (%s); %d streams (realtime, looping); lease_ttl %v; %d kills\n",
		url, *nNodes, strings.Join(nodeNames(nodes), ", "), *nStreams, *ttl, *kills)
	spread := func() bool {
		per := perNode(w.owners())
		for _, n := range nodes {
			if per[n.name] == 0 {
				return false
			}
		}
		return len(w.owners()) == *nStreams
	}
	if err := waitUntil(ctx, 60*time.Second, spread); err != nil {
		return fmt.Errorf("streams spread over the nodes: %v (owners %v; logs in %s)", err, w.owners(), dir)
	}
	settle(ctx, w, *nStreams)
	fmt.Printf("all %d streams flow: %s\n", *nStreams, ownersLine(w.owners(), nodes))

	var failovers latencies
	next := 0
	for k := 1; k <= *kills; k++ {
		victim, moved := -1, []string(nil)
		for j := range nodes {
			i := (next + j) % len(nodes)
			if moved = streamsOf(w.owners(), nodes[i].name); len(moved) > 0 {
				victim = i
				break
			}
		}
		if victim < 0 {
			return fmt.Errorf("kill %d: no node runs a stream (owners %v)", k, w.owners())
		}
		next = victim + 1
		v := nodes[victim]
		from := map[string]uint64{}
		for _, s := range moved {
			from[s] = w.maxLease(s)
		}
		killed := time.Now()
		v.p.cmd.Process.Kill()
		<-v.p.exited
		resumed := func() bool {
			for _, s := range moved {
				if at, _ := w.resumed(s, from[s], v.name, killed); at.IsZero() {
					return false
				}
			}
			return true
		}
		if err := waitUntil(ctx, clusterResume, resumed); err != nil {
			var late []string
			for _, s := range moved {
				if at, _ := w.resumed(s, from[s], v.name, killed); at.IsZero() {
					late = append(late, s)
				}
			}
			return fmt.Errorf("kill %d of %s: %s did not resume: %v (logs in %s)", k, v.name, strings.Join(late, ", "), err, dir)
		}
		var parts []string
		for _, s := range moved {
			at, by := w.resumed(s, from[s], v.name, killed)
			took := at.Sub(killed)
			failovers = append(failovers, took)
			parts = append(parts, fmt.Sprintf("%s on %s after %d ms", s, by, took.Milliseconds()))
		}
		fmt.Printf("kill %d/%d: %s (%d streams) → %s\n", k, *kills, v.name, len(moved), strings.Join(parts, ", "))

		restarted := time.Now()
		p, err := startDaemon(bin, v.cfg, v.log)
		if err != nil {
			return fmt.Errorf("restart of %s: %v", v.name, err)
		}
		v.p = p
		ready := time.Since(restarted)
		back := func() bool {
			o := w.owners()
			return len(o) == *nStreams && perNode(o)[v.name] > 0
		}
		if err := waitUntil(ctx, clusterResume, back); err != nil {
			return fmt.Errorf("after the restart of %s: not every stream flowing with one on %s: %v (owners %v; logs in %s)", v.name, v.name, err, w.owners(), dir)
		}
		holds := time.Since(restarted)
		note := ""
		if !settle(ctx, w, *nStreams) {
			note = " (owners still moving after 15 s)"
		}
		fmt.Printf("  restart %s: ready in %.1f s, holds a stream after %.1f s; %s%s\n",
			v.name, ready.Seconds(), holds.Seconds(), ownersLine(w.owners(), nodes), note)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	w.mu.Lock()
	frames, stale, back, slow, badNode := w.frames, w.staleLease, w.seqBack, w.slow, w.badNode
	pub := append(latencies(nil), w.pub...)
	w.mu.Unlock()
	if len(failovers) > 0 {
		fmt.Printf("failover over %d streams moved: min %.0f ms, median %.0f ms, p90 %.0f ms, max %.0f ms\n",
			len(failovers), failovers.pct(0), failovers.pct(50), failovers.pct(90), failovers.pct(100))
	}
	fmt.Printf("frames %d: %d of an older lease after a newer one, %d with a seq not growing within its lease; publish latency median %.1f ms, p99 %.1f ms; slow-consumer errors %d; node ≠ header or no lease %d\n",
		frames, stale, back, pub.pct(50), pub.pct(99), slow, badNode)
	for _, n := range nodes {
		fmt.Printf("log %s: %s\n", n.name, logSummary(n.log))
	}
	if *keep {
		fmt.Printf("work folder kept: %s\n", dir)
	}
	fmt.Printf("cluster: nodes=%d streams=%d failover_p99_ms=%.0f duplicates=%d publish_p99_ms=%.1f\n",
		*nNodes, *nStreams, failovers.pct(99), stale+back, pub.pct(99))
	return nil
}

// clusterNode is one affectd node of the bench: its config and log stay
// the same across restarts.
type clusterNode struct {
	name, cfg, log string
	p              *daemonProc
}

func nodeNames(nodes []*clusterNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.name)
	}
	return out
}

// settle waits (15 s at most) until every stream has flowed from the same
// node for 2 s: the nodes have stopped handing streams over.
func settle(ctx context.Context, w *clusterWatch, streams int) bool {
	var prev string
	var since time.Time
	err := waitUntil(ctx, 15*time.Second, func() bool {
		o := w.owners()
		cur := fmt.Sprint(o)
		if len(o) != streams || cur != prev {
			prev, since = cur, time.Now()
			return false
		}
		return time.Since(since) >= 2*time.Second
	})
	return err == nil
}

func perNode(owners map[string]string) map[string]int {
	per := map[string]int{}
	for _, n := range owners {
		per[n]++
	}
	return per
}

func streamsOf(owners map[string]string, node string) []string {
	var out []string
	for s, n := range owners {
		if n == node {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// ownersLine is "a=s1,s4 b=s2,s5 c=s3,s6".
func ownersLine(owners map[string]string, nodes []*clusterNode) string {
	var parts []string
	for _, n := range nodes {
		parts = append(parts, n.name+"="+strings.Join(streamsOf(owners, n.name), ","))
	}
	return strings.Join(parts, " ")
}

// waitUntil polls ok every 20 ms until it holds, limit passes or ctx ends.
func waitUntil(ctx context.Context, limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// logSummary counts a daemon log's error and warning lines and quotes the
// first error.
func logSummary(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	errs, warns, first := 0, 0, ""
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(line, "level=ERROR"):
			if errs++; first == "" {
				first = line
			}
		case strings.Contains(line, "level=WARN"):
			warns++
		}
	}
	s := fmt.Sprintf("%d errors, %d warnings", errs, warns)
	if first != "" {
		s += "; first: " + first
	}
	return s
}

// clusterFrame is what the bench reads of a frame published on NATS.
type clusterFrame struct {
	Stream     string    `json:"stream"`
	Seq        uint64    `json:"seq"`
	Node       string    `json:"node"`
	Lease      uint64    `json:"lease"`
	CapturedAt time.Time `json:"captured_at"`
	LatencyMs  float64   `json:"latency_ms"`
}

type streamLease struct {
	stream string
	lease  uint64
}

// leaseStart is the first frame of a stream under a lease.
type leaseStart struct {
	lease uint64
	node  string
	at    time.Time
}

// clusterWatch follows every frame the cluster publishes.
type clusterWatch struct {
	nc     *nats.Conn
	mu     sync.Mutex
	last   map[string]clusterFrame // stream → its latest frame
	lastAt map[string]time.Time    // … and when it came
	maxL   map[string]uint64
	seq    map[streamLease]uint64
	starts map[string][]leaseStart
	pub    latencies
	// frames in all; of an older lease after a newer one; not after the
	// last seq of their lease; with a node other than the header's or no
	// lease; slow-consumer errors (frames this subscriber lost).
	frames, staleLease, seqBack, badNode, slow int
}

func watchCluster(url string) (*clusterWatch, error) {
	w := &clusterWatch{last: map[string]clusterFrame{}, lastAt: map[string]time.Time{}, maxL: map[string]uint64{},
		seq: map[streamLease]uint64{}, starts: map[string][]leaseStart{}}
	nc, err := nats.Connect(url, nats.Name("affectd bench cluster"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			w.mu.Lock()
			w.slow++
			w.mu.Unlock()
		}
	}))
	if err != nil {
		return nil, err
	}
	w.nc = nc
	sub, err := nc.Subscribe("affectd.v1.frames.>", w.frame)
	if err == nil {
		err = sub.SetPendingLimits(1<<20, 1<<30)
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return w, nil
}

func (w *clusterWatch) frame(m *nats.Msg) {
	now := time.Now()
	var f clusterFrame
	if err := json.Unmarshal(m.Data, &f); err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frames++
	if f.Node == "" || f.Lease == 0 || f.Node != m.Header.Get("Affectd-Node") {
		w.badNode++
	}
	if !f.CapturedAt.IsZero() {
		encoded := f.CapturedAt.Add(time.Duration(f.LatencyMs * float64(time.Millisecond)))
		w.pub = append(w.pub, now.Sub(encoded))
	}
	if f.Lease < w.maxL[f.Stream] {
		w.staleLease++
	} else if f.Lease > w.maxL[f.Stream] {
		w.maxL[f.Stream] = f.Lease
	}
	k := streamLease{f.Stream, f.Lease}
	switch s, seen := w.seq[k]; {
	case !seen:
		w.starts[f.Stream] = append(w.starts[f.Stream], leaseStart{lease: f.Lease, node: f.Node, at: now})
		w.seq[k] = f.Seq
	case f.Seq <= s:
		w.seqBack++
	default:
		w.seq[k] = f.Seq
	}
	w.last[f.Stream], w.lastAt[f.Stream] = f, now
}

// owners is who ran each stream's latest frame, among streams whose
// latest frame is fresh.
func (w *clusterWatch) owners() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]string{}
	for s, f := range w.last {
		if time.Since(w.lastAt[s]) < clusterFresh {
			out[s] = f.Node
		}
	}
	return out
}

func (w *clusterWatch) maxLease(stream string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxL[stream]
}

// resumed is when the first frame of stream under a lease above after,
// taken by a node other than dead, came after t, and that node (zero: not
// yet).
func (w *clusterWatch) resumed(stream string, after uint64, dead string, t time.Time) (time.Time, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.starts[stream] {
		if s.lease > after && s.node != dead && s.at.After(t) {
			return s.at, s.node
		}
	}
	return time.Time{}, ""
}

// buildNATSServer builds the real nats-server, the module go.mod pins.
func buildNATSServer(dir string) (string, error) {
	root, err := testenv.Root()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nats-server")
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build nats-server: %v\n%s", err, out)
	}
	return bin, nil
}

type natsServerProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startNATSServer runs nats-server with JetStream on loopback, its store
// and log in dir, until stop, and returns its client URL once healthy.
func startNATSServer(ctx context.Context, bin, dir string) (*natsServerProc, string, error) {
	port, mon, err := freePorts()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(mon),
		"-js", "-sd", filepath.Join(dir, "nats"), "-n", "bench-nats", "-l", filepath.Join(dir, "nats.log"))
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	s := &natsServerProc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	healthy := func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz?js-enabled-only=true", mon))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	if err := waitUntil(ctx, 20*time.Second, healthy); err != nil {
		s.stop()
		return nil, "", fmt.Errorf("nats-server not healthy: %v", err)
	}
	return s, fmt.Sprintf("nats://127.0.0.1:%d", port), nil
}

// stop ends nats-server: SIGTERM, then SIGKILL after 5 s.
func (s *natsServerProc) stop() { terminate(s.cmd, s.done, 5*time.Second) }

// freePorts are two TCP ports free on loopback a moment ago.
func freePorts() (int, int, error) {
	var ports [2]int
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], nil
}
