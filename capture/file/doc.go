// Package file reads video files, still pictures and folders of frames as
// affectd streams: paced at the file's frame rate (a stand-in for a live
// camera), or as fast as decoding goes (offline analysis), optionally
// looping. A still is a one-frame stream. Run's goroutine owns the
// gocv.VideoCapture.
package file
