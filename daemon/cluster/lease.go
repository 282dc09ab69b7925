package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket of the stream leases.
const Bucket = "affectd_streams"

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
}

// Manager is one node's view of the leases. Tick, Release and Held belong
// to one goroutine (the node's cluster loop).
type Manager struct {
	kv   jetstream.KeyValue
	o    Options
	held map[string]lease
}

type lease struct {
	rev     uint64
	renewed time.Time // last successful write
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
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket, TTL: o.TTL, History: 1, Storage: jetstream.MemoryStorage})
	if err != nil {
		return nil, fmt.Errorf("cluster: lease bucket: %w", err)
	}
	return &Manager{kv: kv, o: o, held: map[string]lease{}}, nil
}

func key(stream string) string { return "lease." + stream }

// Tick is one round, once a second: renew every held lease (a renewal
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
		rev, err := m.kv.Update(ctx, key(s), []byte(m.o.Node), l.rev)
		switch {
		case err == nil:
			m.held[s] = lease{rev: rev, renewed: now}
		case isConflict(err) || now.Sub(l.renewed) >= m.fence():
			delete(m.held, s)
			stop = append(stop, s)
		}
	}
	for _, s := range want {
		if len(m.held) >= m.o.Capacity {
			break
		}
		if _, ok := m.held[s]; ok {
			continue
		}
		rev, err := m.kv.Create(ctx, key(s), []byte(m.o.Node))
		if err == nil {
			m.held[s] = lease{rev: rev, renewed: now}
			start = append(start, s)
		}
	}
	return start, stop
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

// Owners reads who holds each stream's lease (for GET /v1/cluster).
func Owners(ctx context.Context, kv jetstream.KeyValue) (map[string]string, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for k := range lister.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		out[strings.TrimPrefix(k, "lease.")] = string(e.Value())
	}
	return out, nil
}
