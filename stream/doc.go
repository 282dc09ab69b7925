// Package stream delivers per-face results: the websocket hub (protocol v1
// of DESIGN.md: hello, frame, status, dropped), and the temporal smoothing
// applied before results go out.
//
// The Hub starts two goroutines per client (a reader for pongs and close
// frames, a writer that drains the client's own bounded queue). Publish,
// PublishStatus, ServeHTTP and Close are safe for concurrent use and never
// wait for a client: a slow client loses its oldest messages (counted in
// affectd_ws_dropped_total, and told with a "dropped" message) and is
// disconnected when it falls MaxDrops messages behind. A Smoother belongs
// to one goroutine.
package stream
