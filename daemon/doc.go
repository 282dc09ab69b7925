// Package daemon wires affectd together, and does nothing else: it reads
// the configuration (the only package that imports config/), loads the
// models once (LoadModels), builds one pipeline per stream (a
// capture.Stream feeding an infer/analysis Analyzer with the Live
// admission, whose sinks are the websocket hub and the preview), serves
// HTTP, maps signals to cancellation and reloads, and runs the command
// line, `affectd analyze` included (the same Analyzer with the Offline
// admission and a stream/record writer). No per-frame work happens here.
//
// Goroutines: Daemon.Run owns the streams map, reloads and dynamic WHIP
// streams; each pipeline's Run (capture and analyzer) runs on a goroutine
// Run starts and stops. The running config is an immutable snapshot behind
// an atomic pointer: a reload stores a new one, and pipelines keep the one
// they were made with. HTTP handlers only read snapshots and atomics.
package daemon
