// Package file reads video files as affectd streams: paced at the file's
// frame rate (a stand-in for a live camera), or as fast as decoding goes
// (offline analysis), optionally looping. Run's goroutine owns the
// gocv.VideoCapture.
package file
