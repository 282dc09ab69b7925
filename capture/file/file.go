package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/capture"
)

// Options configure a file source.
type Options struct {
	Path string
	// Realtime paces frames at the file's frame rate, like a live camera.
	// Off, frames come as fast as they decode (offline analysis; pair it
	// with a lossless stream so that none is dropped).
	Realtime bool
	// Loop restarts the file at its end; PTS keeps counting.
	Loop bool
	// FPS is the frame rate of a folder of frames (default 25); a video
	// file has its own.
	FPS float64
}

// Source is a video file.
type Source struct{ o Options }

// New makes a file source. The file is opened by Run.
func New(o Options) *Source { return &Source{o: o} }

func (s *Source) String() string { return "file://" + s.o.Path }

// Run reads the file: a video, a still picture (one frame) or a folder of
// frames (its pictures in name order, FPS apart). A file that cannot be
// opened ends the stream (capture.ErrEnded): retrying would not help.
func (s *Source) Run(ctx context.Context, sink capture.Sink) error {
	st, err := os.Stat(s.o.Path)
	if err != nil {
		return fmt.Errorf("%w: %v", capture.ErrEnded, err)
	}
	switch {
	case st.IsDir():
		frames, err := Frames(s.o.Path)
		if err != nil || len(frames) == 0 {
			return fmt.Errorf("%w: %s: no pictures in the folder", capture.ErrEnded, s.o.Path)
		}
		return s.runStills(ctx, sink, frames)
	case IsImage(s.o.Path):
		return s.runStills(ctx, sink, []string{s.o.Path})
	}
	vc, err := gocv.OpenVideoCaptureWithAPI(s.o.Path, gocv.VideoCaptureFFmpeg)
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			vc.Close()
		}
		return fmt.Errorf("%w: %s: cannot open as video", capture.ErrEnded, s.o.Path)
	}
	defer func() { vc.Close() }()
	fps := vc.Get(gocv.VideoCaptureFPS)
	if !(fps > 0 && fps <= 1000) {
		fps = 25
	}
	frameDur := time.Duration(float64(time.Second) / fps)

	var (
		base   time.Duration // PTS offset of the current loop
		lastPT time.Duration // last PTS delivered
		index  int64         // frames read in this loop
		start  time.Time     // wall clock of PTS 0 (pacing)
		frames int
	)
	for {
		f := sink.Frame()
		if !vc.Read(&f.Mat) || f.Mat.Empty() {
			f.Release()
			if ctx.Err() != nil {
				return nil
			}
			if frames == 0 {
				return fmt.Errorf("%w: %s: no decodable frame", capture.ErrEnded, s.o.Path)
			}
			if !s.o.Loop {
				return fmt.Errorf("%w: end of %s", capture.ErrEnded, s.o.Path)
			}
			// Rewind; reopen if the container cannot seek.
			base, index = lastPT+frameDur, 0
			vc.Set(gocv.VideoCapturePosFrames, 0)
			if pos := vc.Get(gocv.VideoCapturePosFrames); pos != 0 {
				vc.Close()
				if vc, err = gocv.OpenVideoCaptureWithAPI(s.o.Path, gocv.VideoCaptureFFmpeg); err != nil {
					return fmt.Errorf("reopen %s to loop: %w", s.o.Path, err)
				}
			}
			continue
		}
		// The decoder's timestamp, or the frame count when it has none.
		pt := time.Duration(vc.Get(gocv.VideoCapturePosMsec) * float64(time.Millisecond))
		if pt <= 0 && index > 0 {
			pt = time.Duration(index) * frameDur
		}
		index++
		pts := base + pt
		if pts <= lastPT && frames > 0 {
			pts = lastPT + frameDur
		}
		if s.o.Realtime {
			now := time.Now()
			if start.IsZero() || now.Sub(start.Add(pts)) > time.Second {
				start = now.Add(-pts) // first frame, or far behind: resynchronise
			}
			if wait := time.Until(start.Add(pts)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					f.Release()
					return nil
				case <-t.C:
				}
			}
		}
		f.PTS, lastPT = pts, pts
		f.CapturedAt = time.Now()
		frames++
		sink.Up()
		sink.Deliver(f)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// ErrNotFile is returned by Probe for paths that are not readable videos.
var ErrNotFile = errors.New("not a readable video file")

// Info is what Probe learns about a file.
type Info struct {
	Width, Height int
	FPS           float64
	Frames        int
}

// Probe opens a file and reads its size, frame rate and frame count.
func Probe(path string) (Info, error) {
	if st, err := os.Stat(path); err == nil && (st.IsDir() || IsImage(path)) {
		frames := []string{path}
		if st.IsDir() {
			if frames, err = Frames(path); err != nil || len(frames) == 0 {
				return Info{}, fmt.Errorf("%w: %s: no pictures in the folder", ErrNotFile, path)
			}
		}
		m := gocv.IMRead(frames[0], gocv.IMReadUnchanged)
		defer m.Close()
		if m.Empty() {
			return Info{}, fmt.Errorf("%w: %s", ErrNotFile, frames[0])
		}
		return Info{Width: m.Cols(), Height: m.Rows(), FPS: 25, Frames: len(frames)}, nil
	}
	vc, err := gocv.OpenVideoCaptureWithAPI(path, gocv.VideoCaptureFFmpeg)
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			vc.Close()
		}
		return Info{}, fmt.Errorf("%w: %s", ErrNotFile, path)
	}
	defer vc.Close()
	return Info{
		Width:  int(vc.Get(gocv.VideoCaptureFrameWidth)),
		Height: int(vc.Get(gocv.VideoCaptureFrameHeight)),
		FPS:    vc.Get(gocv.VideoCaptureFPS),
		Frames: int(vc.Get(gocv.VideoCaptureFrameCount)),
	}, nil
}
