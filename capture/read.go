package capture

import (
	"context"
	"errors"
	"time"

	"gocv.io/x/gocv"
)

// Reader is what a live source reads from: a gocv.VideoCapture.
type Reader interface {
	Read(m *gocv.Mat) bool
}

// ErrReadFailed is returned by ReadLive when the input stops giving frames.
var ErrReadFailed = errors.New("read failed (input lost)")

// ReadLive reads a live input (RTSP, camera) into sink until ctx ends
// (nil) or a read fails (ErrReadFailed). PTS is the time since epoch on the
// monotonic clock, so it keeps growing across reconnects.
func ReadLive(ctx context.Context, r Reader, sink Sink, epoch time.Time) error {
	for {
		f := sink.Frame()
		if !r.Read(&f.Mat) || f.Mat.Empty() {
			f.Release()
			if ctx.Err() != nil {
				return nil
			}
			return ErrReadFailed
		}
		now := time.Now()
		f.CapturedAt = now
		f.PTS = now.Sub(epoch)
		sink.Up()
		sink.Deliver(f)
		if ctx.Err() != nil {
			return nil
		}
	}
}
