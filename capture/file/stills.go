package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/capture"
)

// ImageExtensions are the still-picture file name endings (lower case).
var ImageExtensions = []string{".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}

// IsImage reports whether a path names a still picture (by its extension).
func IsImage(path string) bool {
	return slices.Contains(ImageExtensions, strings.ToLower(filepath.Ext(path)))
}

// Frames lists the still pictures directly in dir, in name order: a folder
// of a video's frames (ABAW's cropped_aligned/<video>/00001.jpg, …).
func Frames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && IsImage(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out, nil
}

// maxPixels bounds a still's size before it is decoded into memory.
const maxPixels = 100 << 20

// runStills reads a still picture (one frame) or a folder of frames (one
// frame each, FPS apart) into sink, then ends the stream.
func (s *Source) runStills(ctx context.Context, sink capture.Sink, paths []string) error {
	fps := s.o.FPS
	if fps <= 0 {
		fps = 25
	}
	dur := time.Duration(float64(time.Second) / fps)
	start := time.Now()
	// A looping still is decoded once.
	var once gocv.Mat
	kept := false
	defer func() {
		if kept {
			once.Close()
		}
	}()
	for i := 0; i < len(paths) || s.o.Loop; i++ {
		p := paths[i%len(paths)]
		f := sink.Frame()
		var m gocv.Mat
		if kept {
			m = once
		} else {
			m = gocv.IMRead(p, gocv.IMReadColor)
			if m.Empty() {
				m.Close()
				f.Release()
				return fmt.Errorf("%w: %s: cannot read as a picture", capture.ErrEnded, p)
			}
			if m.Cols()*m.Rows() > maxPixels {
				m.Close()
				f.Release()
				return fmt.Errorf("%w: %s: %dx%d is too large a picture", capture.ErrEnded, p, m.Cols(), m.Rows())
			}
		}
		m.CopyTo(&f.Mat)
		if len(paths) == 1 && s.o.Loop {
			once, kept = m, true
		} else {
			m.Close()
		}
		f.PTS = time.Duration(i) * dur
		if s.o.Realtime {
			if wait := time.Until(start.Add(f.PTS)); wait > 0 {
				select {
				case <-ctx.Done():
					f.Release()
					return nil
				case <-time.After(wait):
				}
			}
		}
		f.CapturedAt = time.Now()
		sink.Up()
		sink.Deliver(f)
		if ctx.Err() != nil {
			return nil
		}
	}
	return fmt.Errorf("%w: end of %s", capture.ErrEnded, s.o.Path)
}
