package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/daemon/cluster"
	"github.com/affectd/affectd/stream"
)

// clusterState is the daemon's side of cluster mode: its node, the loop
// that keeps its leases and tells Run which streams to start and stop,
// and what the last round saw (for GET /v1/cluster and the hello).
type clusterState struct {
	node   *cluster.Node
	ttl    time.Duration
	ops    chan *clusterOp             // the loop → Run
	epochs map[string]uint64           // Run's: the lease epoch of each stream it runs for the cluster
	view   atomic.Pointer[clusterView] // the last round's picture
	done   chan struct{}               // closed when the loop has returned
	m      clusterMetrics
}

// clusterOp is one round's changes, applied by Run; done is closed after.
type clusterOp struct {
	stop   []string
	start  []config.Stream
	epochs []uint64
	failed []string // set by Run: streams that did not start here
	done   chan struct{}
}

// retryAfter is how long a node leaves alone a stream it could not start
// (its file missing on this node, its camera unreachable from here), so
// that another node gets it.
const retryAfter = 30 * time.Second

// clusterView is GET /v1/cluster.
type clusterView struct {
	Node      string                      `json:"node"`
	Connected bool                        `json:"connected"`
	Capacity  int                         `json:"capacity"`
	LeaseTTL  float64                     `json:"lease_ttl_s"`
	Streams   []clusterStream             `json:"streams"`
	Nodes     map[string]cluster.NodeInfo `json:"nodes"`
	At        time.Time                   `json:"at"`
}

type clusterStream struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Node string `json:"node,omitempty"` // "" while nobody holds it
}

type clusterMetrics struct {
	held       prometheus.Gauge
	changes    *prometheus.CounterVec
	failovers  prometheus.Counter
	publishErr prometheus.Counter
	relayed    prometheus.Counter
}

func newClusterMetrics(reg prometheus.Registerer) (clusterMetrics, error) {
	m := clusterMetrics{
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "affectd_cluster_streams_held", Help: "Streams this node holds a lease on."}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "affectd_cluster_lease_changes_total", Help: "Leases taken and lost by this node (lost: another node has it, or this node could not renew in time and stopped the stream).",
		}, []string{"change"}),
		failovers:  prometheus.NewCounter(prometheus.CounterOpts{Name: "affectd_cluster_failovers_total", Help: "Streams this node took over from another node whose lease lapsed or was released."}),
		publishErr: prometheus.NewCounter(prometheus.CounterOpts{Name: "affectd_cluster_publish_errors_total", Help: "Frame and status messages not published to NATS (disconnected)."}),
		relayed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "affectd_cluster_relayed_total", Help: "Messages of other nodes' streams relayed to this node's websocket clients."}),
	}
	for _, c := range []prometheus.Collector{m.held, m.changes, m.failovers, m.publishErr, m.relayed} {
		if err := reg.Register(c); err != nil {
			return m, err
		}
	}
	return m, nil
}

// mirror sends a local stream's message on to the cluster (the hub's
// Mirror): never waits, counts what it could not send.
func (d *Daemon) mirror(id string, msg []byte, status bool) {
	c := d.cluster.Load()
	if c == nil {
		return
	}
	if err := c.node.Publish(id, msg, status); err != nil {
		c.m.publishErr.Inc()
	}
}

// joinCluster connects the node (Run, before starting streams), relays
// the other nodes' messages to the local websocket clients, shares the
// configured streams, and starts the lease loop.
func (d *Daemon) joinCluster(ctx context.Context, cfg *config.Config) error {
	node, err := cluster.Open(ctx, cfg.Cluster, d.log.With("component", "cluster"))
	if err != nil {
		return err
	}
	c := &clusterState{node: node, ttl: cfg.Cluster.LeaseTTL.D(), ops: make(chan *clusterOp), epochs: map[string]uint64{}, done: make(chan struct{}), m: d.clusterMetrics}
	if err := node.Subscribe(func(id, _ string, msg []byte, _ bool) {
		c.m.relayed.Inc()
		d.hub.Relay(id, msg)
	}); err != nil {
		node.Close()
		return err
	}
	put, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = node.PutStreams(put, shared(cfg.Streams))
	cancel()
	if err != nil {
		d.log.Error("cluster: streams not shared", "err", err)
	}
	d.cluster.Store(c)
	d.log.Info("joined the cluster", "node", node.Name, "nats", cfg.Cluster.NATS, "capacity", cfg.Cluster.Capacity, "lease_ttl", c.ttl)
	return nil
}

// shared are the streams the cluster runs: all but WHIP, which stay with
// the node their publisher reached.
func shared(ss []config.Stream) []config.Stream {
	var out []config.Stream
	for _, s := range ss {
		if s.Kind() != "whip" {
			out = append(out, s)
		}
	}
	return out
}

// whipOnly keeps the WHIP streams of ss.
func whipOnly(ss []config.Stream) []config.Stream {
	var out []config.Stream
	for _, s := range ss {
		if s.Kind() == "whip" {
			out = append(out, s)
		}
	}
	return out
}

// clusterLoop keeps this node's leases, a round every twelfth of the TTL
// (250 ms for 3 s), so that a lapsed lease is taken soon after it lapses:
// it reads the shared list, renews leases (every third of the TTL), takes
// free ones up to the capacity (cluster.Manager), hands one over a second
// while it holds two more than the least loaded node (one joined), and
// hands the streams to start and stop to Run, waiting until they are.
// The listing and the renewals each have a deadline of a sixth of the
// TTL, and a renewal never waits past its fence, so a node cut off still
// stops its streams in time. It owns the node's Manager.
func (d *Daemon) clusterLoop(ctx context.Context, c *clusterState) {
	defer close(c.done)
	mgr := c.node.Leases()
	reported := map[string]bool{}
	var owners map[string]string
	var nodes map[string]cluster.NodeInfo
	freeBefore := map[string]bool{} // streams nobody held at the last look
	tick := time.NewTicker(c.ttl / 12)
	defer tick.Stop()
	for round := 0; ; round++ {
		if round > 0 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		rctx, cancel := context.WithTimeout(ctx, c.ttl/6)
		list, bad, err := c.node.Streams(rctx)
		for _, e := range bad {
			if !reported[e.Error()] {
				reported[e.Error()] = true
				d.log.Warn("cluster: stream list entry skipped", "err", e)
			}
		}
		var want []string
		if err != nil {
			want = mgr.Held() // keep what runs; take nothing new
		} else {
			want = cluster.Sorted(list)
		}
		cancel()
		// The renewals get a deadline of their own: a listing that
		// took the round's time must not cost the renewals theirs.
		rctx, cancel = context.WithTimeout(ctx, c.ttl/6)
		// Free streams go to the least loaded nodes first; one left free
		// since the last look (a second) goes to anyone with room.
		least := true
		for name, info := range nodes {
			if name != c.node.Name && len(info.Held) < len(mgr.Held()) {
				least = false
			}
		}
		start, stop := mgr.Tick(rctx, want, time.Now(), func(s string) bool { return least || freeBefore[s] })
		if round%4 == 0 && len(start) == 0 { // balance: one stream a second
			var others []int
			for name, info := range nodes {
				if name != c.node.Name {
					others = append(others, len(info.Held))
				}
			}
			if s := mgr.Shed(others); s != "" {
				stop = append(stop, s)
			}
		}
		op := &clusterOp{stop: stop, done: make(chan struct{})}
		for _, s := range start {
			op.start = append(op.start, list[s])
			op.epochs = append(op.epochs, mgr.Epoch(s))
			if o := owners[s]; o != "" && o != c.node.Name {
				c.m.failovers.Inc()
			}
		}
		c.m.changes.WithLabelValues("taken").Add(float64(len(start)))
		c.m.changes.WithLabelValues("lost").Add(float64(len(stop)))
		c.m.held.Set(float64(len(mgr.Held())))
		if len(start)+len(stop) > 0 {
			select {
			case c.ops <- op:
				<-op.done
			case <-ctx.Done():
				cancel()
				return
			}
			for _, id := range op.failed {
				mgr.Drop(id)
				mgr.Avoid(id, retryAfter)
			}
		}
		if round%4 != 0 && len(start)+len(stop) == 0 {
			cancel()
			continue // announce and look around once a second
		}
		cancel()
		rctx, cancel = context.WithTimeout(ctx, c.ttl/6)
		mgr.Announce(rctx, cluster.NodeInfo{Capacity: mgr.Capacity(), Held: mgr.Held(), Pinned: d.pinned(), HTTP: d.Addr(), At: time.Now()})
		o, n, err := c.node.View(rctx)
		cancel()
		if err == nil {
			owners, nodes = o, n
			clear(freeBefore)
			for _, id := range want {
				if owners[id] == "" {
					freeBefore[id] = true
				}
			}
		}
		v := &clusterView{Node: c.node.Name, Connected: c.node.Connected(), Capacity: mgr.Capacity(), LeaseTTL: c.ttl.Seconds(), Nodes: nodes, At: time.Now()}
		for _, id := range want {
			v.Streams = append(v.Streams, clusterStream{ID: id, Kind: list[id].Kind(), Node: owners[id]})
		}
		if v.Nodes == nil {
			v.Nodes = map[string]cluster.NodeInfo{}
		}
		c.view.Store(v)
	}
}

// pinned lists the WHIP streams this node runs.
func (d *Daemon) pinned() []string {
	var out []string
	for _, p := range d.pipelines() {
		if p.cfg.Kind() == "whip" {
			out = append(out, p.cfg.ID)
		}
	}
	return out
}

// applyCluster runs on Run's goroutine: stop first, then start with the
// lease epochs the frames will carry.
func (d *Daemon) applyCluster(c *clusterState, op *clusterOp) {
	defer close(op.done)
	for _, id := range op.stop {
		d.stopStream(id)
		delete(c.epochs, id)
		d.hub.PublishStatus(stream.Status{Stream: id, State: "moved", At: time.Now()})
		d.log.Info("cluster: stream handed over", "stream", id)
	}
	cfg := d.cfg.Load()
	for i, sc := range op.start {
		c.epochs[sc.ID] = op.epochs[i]
		if err := d.startStream(cfg, sc); err != nil {
			delete(c.epochs, sc.ID)
			op.failed = append(op.failed, sc.ID)
			d.log.Error("cluster: stream not started here: leaving it to the other nodes", "stream", sc.ID, "retry", retryAfter, "err", err)
		}
	}
}

// leaveCluster stops the loop, then the streams, then gives the leases
// back (Node.Close), so that the others take them at once and never
// while this node still runs them.
func (d *Daemon) leaveCluster(cancelLoop context.CancelFunc) {
	c := d.cluster.Load()
	if c == nil {
		return
	}
	cancelLoop()
	<-c.done
	d.stopStreams()
	c.node.Close()
}

// clusterReload updates the shared list from a reloaded config (Run's
// goroutine): removed streams leave it (every node stops them), added and
// changed ones are put; a changed stream this node runs restarts here.
func (d *Daemon) clusterReload(c *clusterState, cfg *config.Config, added, removed, changed []config.Stream) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range shared(removed) {
		if err := c.node.DeleteStream(ctx, s.ID); err != nil {
			d.log.Error("cluster: stream not removed from the list", "stream", s.ID, "err", err)
		}
	}
	if err := c.node.PutStreams(ctx, shared(slices.Concat(added, changed))); err != nil {
		d.log.Error("cluster: streams not shared", "err", err)
	}
	for _, s := range shared(changed) {
		if _, runs := c.epochs[s.ID]; runs {
			d.stopStream(s.ID)
			if err := d.startStream(cfg, s); err != nil {
				d.log.Error("reload: stream not restarted", "stream", s.ID, "err", err)
			}
		}
	}
}

// clusterHandler is GET /v1/cluster.
func (d *Daemon) clusterHandler(w http.ResponseWriter, r *http.Request) {
	c := d.cluster.Load()
	w.Header().Set("Content-Type", "application/json")
	if c == nil {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": "cluster mode is off (config: cluster)"})
		return
	}
	v := c.view.Load()
	if v == nil {
		v = &clusterView{Node: c.node.Name, Nodes: map[string]cluster.NodeInfo{}}
	}
	json.NewEncoder(w).Encode(v)
}

// remoteStreams are the cluster's streams run by other nodes, for the
// hello.
func (d *Daemon) remoteStreams() []stream.StreamInfo {
	c := d.cluster.Load()
	if c == nil {
		return nil
	}
	v := c.view.Load()
	if v == nil {
		return nil
	}
	var out []stream.StreamInfo
	for _, s := range v.Streams {
		if s.Node != c.node.Name {
			state := "remote"
			if s.Node == "" {
				state = "unassigned"
			}
			out = append(out, stream.StreamInfo{ID: s.ID, Kind: s.Kind, State: state, Node: s.Node})
		}
	}
	return out
}
