// Package rtsp reads RTSP streams through OpenCV's FFmpeg backend, over TCP
// by default, with bounded socket timeouts so that a dead server is noticed
// within seconds. Run's goroutine owns the gocv.VideoCapture; the stream's
// supervisor (capture.Stream) reconnects with backoff.
package rtsp
