// Package osc encodes and decodes Open Sound Control 1.0 packets: messages
// with s, f, i, T and F arguments, and bundles with NTP time tags, built by
// appending to a caller's buffer (no allocation per message once it has
// grown). stream/rig sends them over UDP; Parse is for tests and tools.
package osc
