package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// embedded runs a real NATS server with JetStream in the test process.
func embedded(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// node is one affectd node's connection and leases.
type node struct {
	name string
	nc   *nats.Conn
	m    *Manager
	runs map[string]bool // what it runs: started and not stopped
}

func newNode(t *testing.T, ns *server.Server, name string, capacity int) *node {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(context.Background(), js, Options{Node: name, TTL: 3 * time.Second, Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	return &node{name: name, nc: nc, m: m, runs: map[string]bool{}}
}

func (n *node) tick(want []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start, stop := n.m.Tick(ctx, want, time.Now(), nil)
	for _, s := range start {
		n.runs[s] = true
	}
	for _, s := range stop {
		delete(n.runs, s)
	}
}

// TestLeases: three nodes of capacity 3 share six streams, each run by
// exactly one node at every tick; a node that dies (its connection closed,
// no more renewals) fences itself within the TTL and its streams move to
// the others right after; a node that drains hands its streams over at
// once.
func TestLeases(t *testing.T) {
	ns := embedded(t)
	want := []string{"s1", "s2", "s3", "s4", "s5", "s6"}
	nodes := []*node{newNode(t, ns, "a", 3), newNode(t, ns, "b", 3), newNode(t, ns, "c", 3)}
	check := func(live []*node, when string) int {
		t.Helper()
		owner := map[string]string{}
		for _, n := range live {
			for s := range n.runs {
				if o, dup := owner[s]; dup {
					t.Fatalf("%s: %s runs on %s and %s", when, s, o, n.name)
				}
				owner[s] = n.name
			}
		}
		return len(owner)
	}
	for range 3 {
		for _, n := range nodes {
			n.tick(want)
		}
		check(nodes, "start")
		time.Sleep(200 * time.Millisecond)
	}
	if got := check(nodes, "settled"); got != 6 {
		t.Fatalf("%d of 6 streams run after three rounds", got)
	}

	// a dies: it can no longer renew.
	a := nodes[0]
	lost := len(a.runs)
	a.nc.Close()
	died := time.Now()
	var fenced, moved time.Duration
	for time.Since(died) < 8*time.Second && (fenced == 0 || moved == 0) {
		a.tick(want)
		if fenced == 0 && len(a.runs) == 0 {
			fenced = time.Since(died)
		}
		for _, n := range nodes[1:] {
			n.tick(want)
		}
		// a, cut off, still counts until it has fenced itself.
		check(nodes, fmt.Sprintf("%v after a died", time.Since(died).Round(time.Millisecond)))
		if moved == 0 && check(nodes[1:], "") == 6 {
			moved = time.Since(died)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("a held %d streams: fenced itself after %v, the others ran all six after %v", lost, fenced, moved)
	if fenced == 0 || fenced > 3*time.Second || moved == 0 || moved > 5*time.Second || moved < fenced {
		t.Errorf("fenced after %v (want within the 3 s TTL), moved after %v (want after the fence, within 5 s)", fenced, moved)
	}

	// b drains: c takes its streams at its next tick, up to its capacity.
	b, c := nodes[1], nodes[2]
	for _, s := range b.m.Release(context.Background()) {
		delete(b.runs, s)
	}
	c2 := newNode(t, ns, "d", 3)
	for range 2 {
		c.tick(want)
		c2.tick(want)
		check([]*node{b, c, c2}, "after b drained")
	}
	if got := check([]*node{c, c2}, ""); got != 6 {
		t.Errorf("after b drained, c and d run %d of 6", got)
	}
	owners, _, err := View(context.Background(), c.m.kv)
	if err != nil || len(owners) != 6 {
		t.Errorf("Owners: %v %v", owners, err)
	}
}
