package config

import (
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Cluster shares the streams between affectd nodes through NATS
// JetStream (daemon/cluster). Off by default: the single-node daemon is
// unchanged. `cluster: embedded` is short for `cluster: {nats: embedded}`.
type Cluster struct {
	// NATS is "" (off), "embedded" (a NATS server inside this daemon), or
	// the comma-separated nats:// URLs of an existing NATS cluster.
	NATS string `yaml:"nats"`
	// Node names this node in the cluster; "" is the host name.
	Node string `yaml:"node"`
	// LeaseTTL is how long a node's hold on a stream lasts without
	// renewal: a dead node's streams move after it.
	LeaseTTL Duration `yaml:"lease_ttl"`
	// Capacity is how many streams this node runs at most.
	Capacity int `yaml:"capacity"`
	// Retention keeps every stream's frames in a JetStream stream for
	// this long, for replay (0: frames are only published, not kept).
	Retention Duration `yaml:"retention"`
	// Listen (embedded) is the address other nodes' clients and tools
	// reach this server on ("": in-process only, no port).
	Listen string `yaml:"listen"`
	// ClusterListen and Routes (embedded; unused with an external cluster) join the embedded servers into
	// one NATS cluster: this server's route address and the others'
	// (nats-route://host:port). Three nodes are JetStream's quorum.
	ClusterListen string   `yaml:"cluster_listen"`
	Routes        []string `yaml:"routes"`
	// Replicas is how many NATS servers keep each bucket and stream
	// (1 to 5; 0: one more than the routes, at most 3, for embedded
	// servers, and 1 for an external cluster). Every node should say the
	// same.
	Replicas int `yaml:"replicas"`
	// StoreDir (embedded) keeps JetStream's data; "" is nats/ in the state
	// directory.
	StoreDir string `yaml:"store_dir"`
	// Credentials, CA, Cert and Key are how this node connects to an
	// external NATS cluster: a .creds file and TLS files (unused with
	// embedded, whose nodes connect in-process).
	Credentials string `yaml:"credentials"`
	CA          string `yaml:"ca"`
	Cert        string `yaml:"cert"`
	Key         string `yaml:"key"`
}

// ClusterEmbedded is the NATS setting that runs the server in-process.
const ClusterEmbedded = "embedded"

func defaultCluster() Cluster {
	return Cluster{LeaseTTL: Duration(3 * time.Second), Capacity: 8, Routes: []string{}}
}

// shorthand takes `cluster: embedded` or `cluster: nats://…`.
func (c *Cluster) shorthand(s string) { c.NATS = s }

// On says whether the daemon joins a cluster.
func (c Cluster) On() bool { return c.NATS != "" }

// NodeName is Node, or the host name.
func (c Cluster) NodeName() string {
	if c.Node != "" {
		return c.Node
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "affectd"
	}
	return strings.ReplaceAll(h, ".", "-")
}

// ReplicaCount is Replicas, or its default.
func (c Cluster) ReplicaCount() int {
	switch {
	case c.Replicas > 0:
		return c.Replicas
	case c.NATS == ClusterEmbedded:
		return min(1+len(c.Routes), 3)
	}
	return 1
}

// Store is StoreDir, or nats/ in the state directory.
func (c Cluster) Store() string {
	if c.StoreDir != "" {
		return c.StoreDir
	}
	return StateDir() + "/nats"
}

func (c *Cluster) resolvePaths(dir string) {
	for _, p := range []*string{&c.StoreDir, &c.Credentials, &c.CA, &c.Cert, &c.Key} {
		*p = resolvePath(dir, *p)
	}
}

func (c Cluster) validate(p *problems) {
	if !c.On() {
		return
	}
	if c.NATS != ClusterEmbedded {
		for _, u := range strings.Split(c.NATS, ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			if err != nil || (pu.Scheme != "nats" && pu.Scheme != "tls") || pu.Host == "" {
				p.add("cluster.nats", `must be "embedded" or nats://host:port URLs separated by commas, got %s`, quote(u))
			}
		}
	}
	if n := c.NodeName(); strings.ContainsAny(n, " \t\n.*>/") || len(n) > 64 {
		p.add("cluster.node", "must be one word of at most 64 characters without dots, slashes or wildcards, got %s", quote(n))
	}
	if c.LeaseTTL.D() < time.Second || c.LeaseTTL.D() > time.Minute {
		p.add("cluster.lease_ttl", "must be between 1s and 1m, got %s", c.LeaseTTL)
	}
	if c.Capacity < 1 || c.Capacity > 1024 {
		p.add("cluster.capacity", "must be from 1 to 1024 streams, got %d", c.Capacity)
	}
	switch {
	case c.Replicas < 0 || c.Replicas > 5:
		p.add("cluster.replicas", "must be from 1 to 5 (JetStream's limit), or 0 for the default, got %d", c.Replicas)
	case c.Replicas > 1 && c.NATS == ClusterEmbedded && len(c.Routes) == 0:
		p.add("cluster.replicas", "a single embedded server keeps one copy: %d replicas need routes to other servers", c.Replicas)
	}
	if c.Retention.D() < 0 || c.Retention.D() > 7*24*time.Hour {
		p.add("cluster.retention", "must be between 0 and 168h, got %s", c.Retention)
	}
	for _, a := range []string{c.Listen, c.ClusterListen} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			p.add("cluster.listen", "want host:port, got %s", quote(a))
		}
	}
	for _, r := range c.Routes {
		if u, err := url.Parse(r); err != nil || u.Scheme != "nats-route" || u.Host == "" {
			p.add("cluster.routes", "want nats-route://host:port, got %s", quote(r))
		}
	}
	if len(c.Routes) > 0 && c.ClusterListen == "" {
		p.add("cluster.cluster_listen", "routes need this server's own route address")
	}
}

// CheckStream validates one stream definition that came from outside a
// config file (the cluster's shared stream list).
func CheckStream(s Stream) error {
	p := &problems{}
	s.validate(p, "stream")
	return p.err()
}
