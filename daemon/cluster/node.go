package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/affectd/affectd/capture/streamid"
	"github.com/affectd/affectd/config"
)

// The subjects and buckets of protocol v1. A stream id may hold dots; it
// is the rest of the subject after the prefix.
const (
	FramesPrefix = "affectd.v1.frames."
	StatusPrefix = "affectd.v1.status."
	// StreamBucket is the shared stream list: key stream.<id>, value the
	// stream's settings (JSON of config.Stream).
	StreamBucket = "affectd_streams"
	// FramesStream keeps the frames for replay when retention is set.
	FramesStream = "AFFECTD_FRAMES"
	// NodeHeader names the node that published a message.
	NodeHeader = "Affectd-Node"
)

// Node is one affectd node's link to the cluster: its NATS connection
// (and, with nats: embedded, the NATS server it runs), the shared stream
// list and its leases. Publish and Subscribe are safe from any goroutine;
// the Manager (Leases) belongs to the node's cluster loop.
type Node struct {
	Name    string
	nc      *nats.Conn
	js      jetstream.JetStream
	srv     *server.Server
	streams jetstream.KeyValue
	leases  jetstream.KeyValue
	mgr     *Manager
	log     *slog.Logger
	// replicas is how many servers keep each bucket and stream this node
	// makes, and set the count the config asks for (0: the default, which
	// never changes the count of one that exists).
	replicas, set int
}

// Open connects this node (starting the embedded server first when the
// config says so) and binds the buckets.
func Open(ctx context.Context, c config.Cluster, log *slog.Logger) (*Node, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{Name: c.NodeName(), log: log, replicas: c.ReplicaCount(), set: c.Replicas}
	opts := []nats.Option{
		nats.Name("affectd " + n.Name),
		// Never buffer while disconnected: a result held back and sent
		// after the stream has moved would arrive after the new node's.
		nats.ReconnectBufSize(-1),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(2 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: Close
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	url := c.NATS
	if c.NATS == config.ClusterEmbedded {
		srv, err := embed(c, n.Name)
		if err != nil {
			return nil, err
		}
		n.srv = srv
		opts = append(opts, nats.InProcessServer(srv))
		url = ""
	} else {
		if c.Credentials != "" {
			opts = append(opts, nats.UserCredentials(c.Credentials))
		}
		if c.CA != "" {
			opts = append(opts, nats.RootCAs(c.CA))
		}
		if c.Cert != "" || c.Key != "" {
			opts = append(opts, nats.ClientCert(c.Cert, c.Key))
		}
	}
	var err error
	if n.nc, err = nats.Connect(url, opts...); err != nil {
		n.Close()
		return nil, fmt.Errorf("cluster: connect %s: %w", redact(c.NATS), err)
	}
	if n.js, err = jetstream.New(n.nc); err != nil {
		n.Close()
		return nil, err
	}
	// A new JetStream cluster elects its meta leader after the routes
	// connect, and has too few servers for the replicas until they have
	// all joined: retry those for a while, and nothing else.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err = n.bind(ctx, c)
		if err == nil || !transient(err) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("%w (%d replicas)", err, n.replicas)
	}
	return n, nil
}

// transient says whether a JetStream error at start-up may go away: the
// system unavailable (no meta leader yet) or too few servers (not all
// joined yet), or no answer at all.
func transient(err error) bool {
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return true
	}
	return api.ErrorCode == 10008 || api.ErrorCode == 10023 // unavailable; insufficient resources
}

// replicasOf is how many servers are to keep the JetStream stream name
// (a KV bucket's is KV_<bucket>): want when set; otherwise as many as it
// has (a node left at the default never undoes another's setting), or
// the node's default for a new one.
func (n *Node) replicasOf(ctx context.Context, name string, want int) int {
	if want > 0 {
		return want
	}
	if s, err := n.js.Stream(ctx, name); err == nil {
		return s.CachedInfo().Config.Replicas
	}
	return n.replicas
}

func (n *Node) bind(ctx context.Context, c config.Cluster) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var err error
	n.streams, err = n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: StreamBucket, History: 1, Storage: jetstream.FileStorage, Replicas: n.replicasOf(ctx, "KV_"+StreamBucket, n.set),
		Description: "affectd's shared stream list", MaxValueSize: 64 << 10,
	})
	if err != nil {
		return fmt.Errorf("cluster: stream list: %w", err)
	}
	if n.mgr, err = New(ctx, n.js, Options{Node: n.Name, TTL: c.LeaseTTL.D(), Capacity: c.Capacity,
		Replicas: n.replicasOf(ctx, "KV_"+LeaseBucket, n.set)}); err != nil {
		return err
	}
	if n.leases, err = n.js.KeyValue(ctx, LeaseBucket); err != nil {
		return err
	}
	if r := c.Retention.D(); r > 0 {
		_, err = n.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: FramesStream, Subjects: []string{FramesPrefix + ">"}, MaxAge: r, Storage: jetstream.FileStorage,
			Replicas: n.replicasOf(ctx, FramesStream, n.set), Discard: jetstream.DiscardOld, MaxBytes: 4 << 30, Description: "affectd frames, for replay",
		})
		if err != nil {
			return fmt.Errorf("cluster: frames stream: %w", err)
		}
	}
	return nil
}

// embed starts the in-process NATS server.
func embed(c config.Cluster, name string) (*server.Server, error) {
	o := &server.Options{ServerName: name, JetStream: true, StoreDir: c.Store(), NoSigs: true, NoLog: true, MaxPayload: 1 << 20}
	switch {
	case c.Listen == "" && c.ClusterListen == "":
		o.DontListen = true
	case c.Listen == "":
		// Seen here with nats-server 2.15.2: a clustered server with no
		// client listener (DontListen) did not finish starting within
		// 10 s. So it gets a loopback one, on a port the system picks.
		o.Host, o.Port = "127.0.0.1", -1
	default:
		host, port, err := splitHostPort(c.Listen)
		if err != nil {
			return nil, err
		}
		o.Host, o.Port = host, port
	}
	if c.ClusterListen != "" {
		host, port, err := splitHostPort(c.ClusterListen)
		if err != nil {
			return nil, err
		}
		o.Cluster = server.ClusterOpts{Name: "affectd", Host: host, Port: port}
		o.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	}
	if err := os.MkdirAll(o.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: store_dir: %w", err)
	}
	srv, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded NATS server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("cluster: embedded NATS server not ready after 10s")
	}
	return srv, nil
}

func splitHostPort(a string) (string, int, error) {
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return host, port, err
}

func redact(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "…" + u[i:]
		}
	}
	return u
}

// Leases is the node's lease manager (for its cluster loop only).
func (n *Node) Leases() *Manager { return n.mgr }

// ClientURL is the embedded server's client address ("" without one).
func (n *Node) ClientURL() string {
	if n.srv == nil || n.srv.Addr() == nil {
		return ""
	}
	return n.srv.ClientURL()
}

// Publish sends a frame (status false) or status message of stream on its
// subject, stamped with this node's name. It never waits for the network:
// while disconnected it fails at once.
func (n *Node) Publish(stream string, msg []byte, status bool) error {
	subj := FramesPrefix + stream
	if status {
		subj = StatusPrefix + stream
	}
	m := &nats.Msg{Subject: subj, Data: msg, Header: nats.Header{NodeHeader: []string{n.Name}}}
	return n.nc.PublishMsg(m)
}

// Subscribe calls fn with every frame and status message published by
// the other nodes, on one goroutine of the connection, in order. A
// subscriber that falls behind loses messages (counted by NATS as a slow
// consumer) rather than holding them.
func (n *Node) Subscribe(fn func(stream, node string, msg []byte, status bool)) error {
	for _, p := range []string{FramesPrefix, StatusPrefix} {
		status := p == StatusPrefix
		sub, err := n.nc.Subscribe(p+">", func(m *nats.Msg) {
			from := m.Header.Get(NodeHeader)
			if from == n.Name {
				return
			}
			id := strings.TrimPrefix(m.Subject, p)
			if !streamid.Valid(id) {
				return
			}
			fn(id, from, m.Data, status)
		})
		if err != nil {
			return err
		}
		if err := sub.SetPendingLimits(4096, 64<<20); err != nil {
			return err
		}
	}
	return nil
}

// Connected says whether the NATS connection is up.
func (n *Node) Connected() bool { return n.nc != nil && n.nc.IsConnected() }

// Disconnect closes this node's NATS connection for good (tests use it
// to cut a node off): its leases then lapse.
func (n *Node) Disconnect() { n.nc.Close() }

func streamKey(id string) string { return "stream." + id }

// PutStreams adds or replaces streams in the shared list.
func (n *Node) PutStreams(ctx context.Context, ss []config.Stream) error {
	var errs []error
	for _, s := range ss {
		b, err := json.Marshal(s)
		if err == nil {
			_, err = n.streams.Put(ctx, streamKey(s.ID), b)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", s.ID, err))
		}
	}
	return errors.Join(errs...)
}

// DeleteStream removes a stream from the shared list (every node stops
// it).
func (n *Node) DeleteStream(ctx context.Context, id string) error {
	return n.streams.Delete(ctx, streamKey(id))
}

// Streams reads the shared list. An entry that does not decode or
// validate is skipped and reported in bad (it is written by other nodes,
// or by anyone with access to the bucket).
func (n *Node) Streams(ctx context.Context) (list map[string]config.Stream, bad []error, err error) {
	lister, err := n.streams.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return map[string]config.Stream{}, nil, nil
		}
		return nil, nil, err
	}
	list = map[string]config.Stream{}
	for k := range lister.Keys() {
		e, err := n.streams.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, nil, fmt.Errorf("stream list: %s: %w", k, err)
		}
		var s config.Stream
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			bad = append(bad, fmt.Errorf("%s: %w", k, err))
			continue
		}
		if err := config.CheckStream(s); err != nil || streamKey(s.ID) != k || s.Kind() == "whip" {
			bad = append(bad, fmt.Errorf("%s: not a stream a node can take: %v", k, err))
			continue
		}
		list[s.ID] = s
	}
	// The key channel closes, without an error, when ctx ends: a list
	// cut short is not the list.
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("stream list: %w", err)
	}
	return list, bad, nil
}

// View is who holds each stream now, and the live nodes.
func (n *Node) View(ctx context.Context) (map[string]string, map[string]NodeInfo, error) {
	return View(ctx, n.leases)
}

// Close gives the leases back, closes the connection and stops the
// embedded server.
func (n *Node) Close() {
	if n.mgr != nil && n.Connected() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n.mgr.Release(ctx)
		cancel()
	}
	if n.nc != nil {
		n.nc.Drain()
		n.nc.Close()
	}
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	}
}

// Sorted returns the keys of m in order.
func Sorted[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
