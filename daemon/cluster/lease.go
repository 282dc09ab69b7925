package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket is the KV bucket of the stream leases (key lease.<stream>,
// value the node's name).
const LeaseBucket = "affectd_leases"

// Options configure a node's leases.
type Options struct {
	// Node names this node (unique in the cluster).
	Node string
	// TTL is how long a lease lives without renewal (default 3 s): a node
	// that stops renewing loses its streams after it, and stops running
	// them itself before it (Fence).
	TTL time.Duration
	// Capacity is how many streams this node runs at most (default 8).
	Capacity int
	// Replicas is how many NATS servers keep the bucket (default 1).
	Replicas int
	// Renew is how often a held lease is renewed (default a third of the
	// TTL); Tick may run more often, to take free streams sooner.
	Renew time.Duration
}

// Manager is one node's view of the leases. Tick, Release and Held belong
// to one goroutine (the node's cluster loop).
type Manager struct {
	kv    jetstream.KeyValue
	o     Options
	held  map[string]lease
	avoid map[string]time.Time // streams handed over lately: not taken again until then
}

type lease struct {
	rev     uint64
	epoch   uint64    // the revision that took it
	renewed time.Time // when the last successful write was sent
}

// New binds to (or makes) the lease bucket. Its TTL is the leases': every
// key expires that long after its last write.
func New(ctx context.Context, js jetstream.JetStream, o Options) (*Manager, error) {
	if o.Node == "" || strings.ContainsAny(o.Node, " \t\n.*>") {
		return nil, fmt.Errorf("cluster: node name %q: want one token without spaces, dots or wildcards", o.Node)
	}
	if o.TTL <= 0 {
		o.TTL = 3 * time.Second
	}
	if o.Capacity <= 0 {
		o.Capacity = 8
	}
	if o.Renew <= 0 || o.Renew > o.TTL/3 {
		o.Renew = o.TTL / 3
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: LeaseBucket, TTL: o.TTL, History: 1,
		Storage: jetstream.MemoryStorage, Replicas: max(o.Replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("cluster: lease bucket: %w", err)
	}
	return &Manager{kv: kv, o: o, held: map[string]lease{}, avoid: map[string]time.Time{}}, nil
}

func key(stream string) string { return "lease." + stream }

// Tick is one round, at least every Renew: renew every held lease due (a
// renewal that fails means another node has it, or the bucket forgot it:
// stop), fence leases not renewed within the fence (this node may be cut
// off: stop before anyone can take them), and take free streams of want
// up to the capacity, except those it handed over lately and those may
// refuses (nil: none). start and stop are the streams to start and stop
// now.
//
// A renewal never waits past its lease's fence: whatever ctx allows, the
// stop is decided by then.
func (m *Manager) Tick(ctx context.Context, want []string, now time.Time, may func(stream string) bool) (start, stop []string) {
	wanted := map[string]bool{}
	for _, s := range want {
		wanted[s] = true
	}
	for _, s := range m.sortedHeld() {
		l := m.held[s]
		if !wanted[s] {
			m.Drop(s)
			stop = append(stop, s)
			continue
		}
		fence := l.renewed.Add(m.fence())
		if !time.Now().Before(fence) {
			delete(m.held, s)
			stop = append(stop, s)
			continue
		}
		if now.Sub(l.renewed) < m.o.Renew {
			continue
		}
		uctx, cancel := context.WithDeadline(ctx, fence)
		rev, err := m.kv.Update(uctx, key(s), []byte(m.o.Node), l.rev)
		cancel()
		switch {
		case err == nil:
			m.held[s] = lease{rev: rev, epoch: l.epoch, renewed: now}
		case isConflict(err) || !time.Now().Before(fence):
			delete(m.held, s)
			stop = append(stop, s)
		}
	}
	for _, s := range want {
		if len(m.held) >= m.o.Capacity {
			break
		}
		if _, ok := m.held[s]; ok || now.Before(m.avoid[s]) || (may != nil && !may(s)) {
			continue
		}
		delete(m.avoid, s)
		rev, err := m.kv.Create(ctx, key(s), []byte(m.o.Node))
		if err == nil {
			m.held[s] = lease{rev: rev, epoch: rev, renewed: now}
			start = append(start, s)
		}
	}
	return start, stop
}

// Shed hands over one stream when this node holds at least two more than
// the least loaded of the others (others: how many each other live node
// holds): the stream to stop, or "" when none. The last stream taken goes
// first, and this node leaves it alone for a while (Avoid) so that a less
// loaded node takes it. With a difference of two, a cluster that cannot
// be balanced exactly (7 streams on 3 nodes) never hands streams around.
func (m *Manager) Shed(others []int) string {
	if len(others) == 0 || len(m.held) < slices.Min(others)+2 {
		return ""
	}
	var last string
	var top uint64
	for s, l := range m.held {
		if l.epoch >= top {
			last, top = s, l.epoch
		}
	}
	m.Drop(last)
	m.Avoid(last, m.o.TTL)
	return last
}

// Avoid keeps this node from taking stream for d.
func (m *Manager) Avoid(stream string, d time.Duration) {
	m.avoid[stream] = time.Now().Add(d)
}

// Drop gives back the lease on one stream (this node could not start it,
// or hands it over). The delete has its own short deadline, so that a
// round whose time is spent still hands over at once rather than at the
// TTL.
func (m *Manager) Drop(stream string) {
	if l, ok := m.held[stream]; ok {
		ctx, cancel := context.WithTimeout(context.Background(), m.o.TTL/6)
		m.kv.Delete(ctx, key(stream), jetstream.LastRevision(l.rev))
		cancel()
		delete(m.held, stream)
	}
}

// fence is how long a lease may go unrenewed before this node stops its
// stream: a margin before the TTL, so that it has stopped before another
// node can take it.
func (m *Manager) fence() time.Duration { return m.o.TTL * 2 / 3 }

// isConflict: the key is another node's now (or gone).
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// Release gives every held lease back (draining: the other nodes take
// the streams at their next tick) and returns the streams to stop.
func (m *Manager) Release(ctx context.Context) []string {
	out := m.sortedHeld()
	for _, s := range out {
		m.kv.Delete(ctx, key(s), jetstream.LastRevision(m.held[s].rev))
		delete(m.held, s)
	}
	return out
}

// Epoch is the revision that took the lease on stream (0: not held): it
// grows with every new holder, so results stamped with it order the
// holders, and a result of an older epoch after a newer one would be a
// stream run twice.
func (m *Manager) Epoch(stream string) uint64 { return m.held[stream].epoch }

// Capacity is the most streams this node runs.
func (m *Manager) Capacity() int { return m.o.Capacity }

// TTL is the leases' lifetime.
func (m *Manager) TTL() time.Duration { return m.o.TTL }

// Held lists the streams this node holds.
func (m *Manager) Held() []string { return m.sortedHeld() }

func (m *Manager) sortedHeld() []string {
	out := make([]string, 0, len(m.held))
	for s := range m.held {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// NodeInfo is what a node says of itself each tick (key node.<name> of
// the lease bucket, gone a TTL after the node stops).
type NodeInfo struct {
	Capacity int       `json:"capacity"`
	Held     []string  `json:"streams"`
	Pinned   []string  `json:"pinned,omitempty"` // WHIP streams, which stay where their publisher is
	HTTP     string    `json:"http,omitempty"`
	At       time.Time `json:"at"`
}

// Announce writes this node's NodeInfo.
func (m *Manager) Announce(ctx context.Context, info NodeInfo) error {
	b, err := json.Marshal(info)
	if err == nil {
		_, err = m.kv.Put(ctx, "node."+m.o.Node, b)
	}
	return err
}

// View reads who holds each stream's lease and which nodes are alive.
func View(ctx context.Context, kv jetstream.KeyValue) (owners map[string]string, nodes map[string]NodeInfo, err error) {
	owners, nodes = map[string]string{}, map[string]NodeInfo{}
	lister, err := kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return owners, nodes, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for k := range lister.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // gone since the listing
		}
		if err != nil {
			return nil, nil, err
		}
		switch {
		case strings.HasPrefix(k, "lease."):
			owners[strings.TrimPrefix(k, "lease.")] = string(e.Value())
		case strings.HasPrefix(k, "node."):
			var info NodeInfo
			if json.Unmarshal(e.Value(), &info) == nil {
				nodes[strings.TrimPrefix(k, "node.")] = info
			}
		}
	}
	if err := ctx.Err(); err != nil { // the listing was cut short
		return nil, nil, err
	}
	return owners, nodes, nil
}
