package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	share int
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
	return &Manager{kv: kv, o: o, held: map[string]lease{}}, nil
}

func key(stream string) string { return "lease." + stream }

// Tick is one round, at least every Renew: renew every held lease due (a renewal
// that fails means another node has it, or the bucket forgot it: stop),
// fence leases not renewed within the TTL (this node may be cut off: stop
// before anyone can take them), and take free streams of want up to the
// capacity. start and stop are the streams to start and stop now.
func (m *Manager) Tick(ctx context.Context, want []string, now time.Time) (start, stop []string) {
	wanted := map[string]bool{}
	for _, s := range want {
		wanted[s] = true
	}
	for _, s := range m.sortedHeld() {
		l := m.held[s]
		if !wanted[s] {
			m.kv.Delete(ctx, key(s), jetstream.LastRevision(l.rev))
			delete(m.held, s)
			stop = append(stop, s)
			continue
		}
		if now.Sub(l.renewed) < m.o.Renew {
			continue
		}
		rev, err := m.kv.Update(ctx, key(s), []byte(m.o.Node), l.rev)
		switch {
		case err == nil:
			m.held[s] = lease{rev: rev, epoch: l.epoch, renewed: now}
		case isConflict(err) || time.Since(l.renewed) >= m.fence():
			// time.Since, not now: a round whose writes time out one
			// after the other must not fence late.
			delete(m.held, s)
			stop = append(stop, s)
		}
	}
	for _, s := range want {
		if len(m.held) >= m.limit() {
			break
		}
		if _, ok := m.held[s]; ok {
			continue
		}
		rev, err := m.kv.Create(ctx, key(s), []byte(m.o.Node))
		if err == nil {
			m.held[s] = lease{rev: rev, epoch: rev, renewed: now}
			start = append(start, s)
		}
	}
	return start, stop
}

// SetShare caps the streams this node takes below its capacity: its fair
// share of the cluster's streams (0: no cap but the capacity).
func (m *Manager) SetShare(n int) { m.share = n }

func (m *Manager) limit() int {
	if m.share > 0 {
		return min(m.share, m.o.Capacity)
	}
	return m.o.Capacity
}

// Shed gives back one lease when this node holds more than its share
// (a node joined): the stream to stop, or "" when none. The last stream
// taken goes first.
func (m *Manager) Shed(ctx context.Context) string {
	if len(m.held) <= m.limit() {
		return ""
	}
	var last string
	var top uint64
	for s, l := range m.held {
		if l.epoch >= top {
			last, top = s, l.epoch
		}
	}
	m.Drop(ctx, last)
	return last
}

// Drop gives back the lease on one stream (this node could not start it,
// or hands it over).
func (m *Manager) Drop(ctx context.Context, stream string) {
	if l, ok := m.held[stream]; ok {
		m.kv.Delete(ctx, key(stream), jetstream.LastRevision(l.rev))
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
		if err != nil {
			continue
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
	return owners, nodes, nil
}
