// Package capture turns video inputs into numbered, timestamped frames.
//
// A Stream owns one Source (capture/file, capture/rtsp, capture/v4l2; see
// capture/open for URLs) and runs it on the goroutine that calls
// Stream.Run: that goroutine alone touches the source's gocv.VideoCapture.
// When the source fails the stream reconnects with exponential backoff and
// jitter and reports up / reconnecting / ended through OnStatus; consumers
// stay attached to the one Frames channel across reconnects.
//
// Frames come from a Pool and their Mats are reused; the consumer releases
// each frame it takes. The hand-off is a bounded Queue where the newest
// frame wins: a slow consumer never blocks the source, and every frame
// dropped is counted (affectd_frames_dropped_total{stream,reason}).
//
// Stream.Stats, Stream.State and the Metrics methods are safe from any
// goroutine.
package capture
