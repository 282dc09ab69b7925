package v4l2

import (
	"context"
	"fmt"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/capture"
)

// Options configure a camera.
type Options struct {
	// Device is a path such as /dev/video0; when empty, Index is used.
	Device string
	Index  int
	// Width, Height and FPS are requested from the driver when non-zero.
	Width, Height, FPS int
}

// Source is one camera.
type Source struct {
	o     Options
	epoch time.Time
}

// New makes a camera source; the device is opened by Run.
func New(o Options) *Source { return &Source{o: o, epoch: time.Now()} }

func (s *Source) String() string {
	if s.o.Device != "" {
		return "v4l2://" + s.o.Device
	}
	return fmt.Sprintf("v4l2://%d", s.o.Index)
}

// Run opens the camera and reads until it fails.
func (s *Source) Run(ctx context.Context, sink capture.Sink) error {
	var dev any = s.o.Index
	if s.o.Device != "" {
		dev = s.o.Device
	}
	vc, err := gocv.OpenVideoCaptureWithAPI(dev, gocv.VideoCaptureV4L2)
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			vc.Close()
		}
		return fmt.Errorf("open %s: no such camera or busy", s)
	}
	defer vc.Close()
	if s.o.Width > 0 && s.o.Height > 0 {
		vc.Set(gocv.VideoCaptureFrameWidth, float64(s.o.Width))
		vc.Set(gocv.VideoCaptureFrameHeight, float64(s.o.Height))
	}
	if s.o.FPS > 0 {
		vc.Set(gocv.VideoCaptureFPS, float64(s.o.FPS))
	}
	if err := capture.ReadLive(ctx, vc, sink, s.epoch); err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	return nil
}
