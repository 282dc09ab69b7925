// Package cluster shares streams between affectd nodes through NATS
// JetStream: which node runs which stream is a lease in a KV bucket, taken
// with compare-and-set and kept by renewing it; a lease not renewed for
// the bucket's TTL vanishes and another node takes the stream, and a node
// that cannot renew stops its streams before that (lease.go). The
// daemon's wiring (config, the loop that starts and stops pipelines,
// results on NATS subjects) is issue 19's next step.
package cluster
