// Package v4l2 reads Video4Linux2 cameras (by index or device path) through
// OpenCV. Run's goroutine owns the gocv.VideoCapture; a camera unplugged
// fails the read and the stream's supervisor reconnects with backoff.
package v4l2
