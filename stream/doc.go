// Package stream delivers results to websocket clients: the protocol v1
// encoding of DESIGN.md (hello, frame, status, dropped), the Hub that fans
// messages out, and FrameSink, the analysis.Sink that turns a stream's
// FrameResults into frame messages. Its subpackages are the other sinks:
// stream/preview (the live picture) and stream/record (CSV and JSON Lines
// files).
//
// The Hub starts two goroutines per client (a reader for pongs and close
// frames, a writer that drains the client's own bounded queue). Publish,
// PublishStatus, ServeHTTP and Close are safe for concurrent use and never
// wait for a client: a slow client loses its oldest messages (counted in
// affectd_ws_dropped_total, and told with a "dropped" message) and is
// disconnected when it falls MaxDrops messages behind. A FrameSink belongs
// to its analyzer's goroutine; its Rate is safe from any goroutine.
package stream
