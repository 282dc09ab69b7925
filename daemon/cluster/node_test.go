package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/affectd/affectd/config"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestEmbeddedCluster: three nodes with nats: embedded and routes form
// one NATS cluster (no separate server): the buckets are replicated on
// three servers, every node sees the stream list another node put, the
// leases spread the streams, and when one node (and its server) goes the
// other two still read and write the buckets and take its streams.
func TestEmbeddedCluster(t *testing.T) {
	routes := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	var urls []string
	for _, r := range routes {
		urls = append(urls, "nats-route://"+r)
	}
	nodes := make([]*Node, 3)
	errs := make(chan error, 3)
	for i := range nodes {
		go func() {
			c := config.Cluster{NATS: config.ClusterEmbedded, Node: fmt.Sprintf("n%d", i), LeaseTTL: config.Duration(3 * time.Second),
				Capacity: 2, ClusterListen: routes[i], Routes: urls, StoreDir: t.TempDir()}
			var err error
			nodes[i], err = Open(context.Background(), c, nil)
			errs <- err
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.Close()
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := nodes[0].streams.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := info.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas; r != 3 {
		t.Errorf("stream list replicas %d, want 3", r)
	}
	// The job queue: made with the node's default (3 here), set to 2 by
	// a worker that asks, and left at 2 by one at the default.
	for i, c := range []struct{ node, ask, want int }{{2, 0, 3}, {1, 2, 2}, {0, 0, 2}} {
		if _, err := nodes[c.node].Jobs(ctx, JobOptions{Replicas: c.ask}); err != nil {
			t.Fatal(err)
		}
		si, err := nodes[c.node].js.Stream(ctx, JobsStream)
		if err != nil || si.CachedInfo().Config.Replicas != c.want {
			t.Fatalf("job queue, step %d: %v, want %d replicas", i, err, c.want)
		}
	}
	var streams []config.Stream
	for i := range 6 {
		streams = append(streams, config.Stream{ID: fmt.Sprintf("s%d", i), URL: "/data/clip.mp4", Loop: true})
	}
	if err := nodes[1].PutStreams(ctx, streams); err != nil {
		t.Fatal(err)
	}
	// Another server's replica may serve the read a moment before it has
	// the writes (seen here under CPU load): the daemon reads the list
	// every round, so it sees them a round later. So does this test.
	put := time.Now()
	list, bad, err := nodes[2].Streams(ctx)
	for err == nil && len(list) < 6 && time.Since(put) < 10*time.Second {
		time.Sleep(50 * time.Millisecond)
		list, bad, err = nodes[2].Streams(ctx)
	}
	if err != nil || len(list) != 6 || len(bad) != 0 {
		t.Fatalf("node n2 reads %d streams (%v, %v) after %v, want the 6 n1 put", len(list), bad, err, time.Since(put))
	}
	t.Logf("n2 read the 6 streams n1 put after %v", time.Since(put).Round(time.Millisecond))
	runs := map[string]string{}
	tick := func(live []*Node) {
		for _, n := range live {
			start, stop := n.mgr.Tick(ctx, Sorted(list), time.Now(), nil)
			for _, s := range start {
				if o, ok := runs[s]; ok {
					t.Errorf("%s taken by %s while %s runs it", s, n.Name, o)
				}
				runs[s] = n.Name
			}
			for _, s := range stop {
				delete(runs, s)
			}
		}
	}
	tick(nodes)
	if len(runs) != 6 {
		t.Fatalf("3 nodes of capacity 2 run %v, want all 6", runs)
	}
	// n0 and its server go (no release: as a crash); the others renew
	// on the surviving servers and, with room, would take its streams.
	nodes[0].srv.Shutdown()
	nodes[0].srv.WaitForShutdown()
	gone := nodes[0]
	nodes[0] = nil
	for s, n := range runs {
		if n == gone.Name {
			delete(runs, s)
		}
	}
	for _, n := range nodes[1:] {
		n.mgr.o.Capacity = 3
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(runs) < 6 && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		tick(nodes[1:])
	}
	if len(runs) != 6 {
		t.Fatalf("after n0 went, n1 and n2 run %v, want all 6", runs)
	}
	t.Logf("after n0 went: %v", runs)
	gone.nc.Close()
}

// TestReplicasRefused: more replicas than the servers can keep is an
// error at once, naming the replicas, not 30 s of retries.
func TestReplicasRefused(t *testing.T) {
	start := time.Now()
	n, err := Open(context.Background(), config.Cluster{NATS: config.ClusterEmbedded, Node: "solo", LeaseTTL: config.Duration(3 * time.Second),
		Capacity: 1, Replicas: 3, StoreDir: t.TempDir()}, nil)
	if err == nil {
		n.Close()
		t.Fatal("3 replicas on one server: opened")
	}
	if took := time.Since(start); !strings.Contains(err.Error(), "3 replicas") || took > 10*time.Second {
		t.Errorf("after %v: %v", took, err)
	}
	t.Log(err)
}

// TestRetentionReplay: with retention set, the frames published on
// affectd.v1.frames.<stream> are kept in JetStream, and a client that
// comes later replays them in order from the stream.
func TestRetentionReplay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := Open(ctx, config.Cluster{NATS: config.ClusterEmbedded, Node: "r", LeaseTTL: config.Duration(3 * time.Second),
		Capacity: 1, Retention: config.Duration(time.Minute), StoreDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for i := 1; i <= 5; i++ {
		if err := n.Publish("cam.1", []byte(fmt.Sprintf(`{"type":"frame","seq":%d}`, i)), false); err != nil {
			t.Fatal(err)
		}
	}
	n.Publish("cam.1", []byte(`{"type":"status"}`), true) // status is not kept
	n.nc.Flush()
	c, err := n.js.OrderedConsumer(ctx, FramesStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{FramesPrefix + "cam.1"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("replay message %d: %v", i, err)
		}
		if want := fmt.Sprintf(`{"type":"frame","seq":%d}`, i); string(m.Data()) != want || m.Headers().Get(NodeHeader) != "r" {
			t.Errorf("replayed %q from %q, want %q from r", m.Data(), m.Headers().Get(NodeHeader), want)
		}
	}
	if _, err := c.Next(jetstream.FetchMaxWait(300 * time.Millisecond)); err == nil {
		t.Error("a sixth message replayed: only the five frames were published on the frames subject")
	}
}

// TestHostileStreamList: the shared list is written by other nodes, or by
// anyone who can reach the bucket: an entry that is not JSON, names a bad
// id, a WHIP stream, a URL the config would refuse, or sits under another
// stream's key is skipped and reported, and the good ones still count.
func TestHostileStreamList(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := Open(ctx, config.Cluster{NATS: config.ClusterEmbedded, Node: "h", LeaseTTL: config.Duration(3 * time.Second),
		Capacity: 1, StoreDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.PutStreams(ctx, []config.Stream{{ID: "good", URL: "rtsp://cam.local/1"}}); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"stream.notjson":  `{"ID":`,
		"stream.-bad":     `{"ID":"-bad","URL":"rtsp://cam/1"}`,
		"stream.pub":      `{"ID":"pub","URL":"whip://"}`,
		"stream.ftp":      `{"ID":"ftp","URL":"ftp://x/y"}`,
		"stream.elsewhat": `{"ID":"good","URL":"rtsp://evil/1"}`,
	} {
		if _, err := n.streams.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	list, bad, err := n.Streams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list["good"].URL != "rtsp://cam.local/1" {
		t.Errorf("list %v: want only the good stream, with its own URL", list)
	}
	if len(bad) != 5 {
		t.Errorf("%d entries reported bad, want 5: %v", len(bad), bad)
	}
}
