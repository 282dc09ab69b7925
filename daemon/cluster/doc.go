// Package cluster shares streams and offline work between affectd nodes
// through NATS JetStream. node.go connects a node (running an embedded
// NATS server when configured), keeps the shared stream list (KV bucket
// affectd_streams) and publishes results on affectd.v1.frames.<stream>
// and affectd.v1.status.<stream>. lease.go is who runs which stream: a
// lease in the KV bucket affectd_leases, taken with compare-and-set and
// kept by renewing it; a lease not renewed for the TTL vanishes and
// another node takes the stream, and a node that cannot renew stops its
// streams before that. jobs.go is analyze -cluster's work queue
// (AFFECTD_JOBS, KV affectd_jobs), jobstatus.go a job's progress. The
// daemon's loop that starts and stops pipelines is daemon/cluster.go.
package cluster
