// Package preview keeps a stream's live picture for the dashboard and
// GET /v1/streams/{stream}/preview: a JPEG of the latest frame, scaled
// down, at most a few times a second, and only while somebody watches.
//
// A Preview is an analysis.ImageSink of one stream: WantImage and
// WriteFrame run on the stream's analyzer goroutine, which alone touches
// the scaling buffer; Want and Latest are safe from any goroutine.
package preview
