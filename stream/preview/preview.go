package preview

import (
	"image"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/infer/analysis"
)

// Options configure a preview.
type Options struct {
	// FPS is the most pictures per second (default 5).
	FPS float64
	// MaxWidth scales wider frames down (default 640).
	MaxWidth int
	// Quality is the JPEG quality, 1..100 (default 70).
	Quality int
}

// Picture is one encoded preview frame.
type Picture struct {
	JPEG []byte
	Seq  uint64
	// Width and Height are the source frame's size (boxes are in its
	// pixels), not the picture's.
	Width, Height int
}

// Preview is one stream's live picture.
type Preview struct {
	o      Options
	latest atomic.Pointer[Picture]
	wanted atomic.Int64 // unix nanoseconds until which pictures are wanted

	next   time.Time // the analyzer's: the earliest next picture
	scaled gocv.Mat
}

// New makes a preview.
func New(o Options) *Preview {
	if o.FPS <= 0 {
		o.FPS = 5
	}
	if o.MaxWidth <= 0 {
		o.MaxWidth = 640
	}
	if o.Quality <= 0 || o.Quality > 100 {
		o.Quality = 70
	}
	return &Preview{o: o}
}

// Interval is the least time between two pictures.
func (p *Preview) Interval() time.Duration { return time.Duration(float64(time.Second) / p.o.FPS) }

// Want asks for pictures for the next d (a watcher calls it while it
// watches).
func (p *Preview) Want(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		old := p.wanted.Load()
		if old >= until || p.wanted.CompareAndSwap(old, until) {
			return
		}
	}
}

// Latest is the newest picture (nil before the first).
func (p *Preview) Latest() *Picture { return p.latest.Load() }

// WantImage implements analysis.ImageSink: a picture is due and somebody
// watches.
func (p *Preview) WantImage() bool {
	now := time.Now()
	if now.UnixNano() > p.wanted.Load() || now.Before(p.next) {
		return false
	}
	p.next = now.Add(p.Interval())
	return true
}

// WriteFrame implements analysis.Sink: it encodes the frame's picture when
// there is one.
func (p *Preview) WriteFrame(r *analysis.FrameResult) error {
	if r.Image == nil || r.Image.Empty() {
		return nil
	}
	src := *r.Image
	if w, h := ScaledSize(src.Cols(), src.Rows(), p.o.MaxWidth); w != src.Cols() {
		if p.scaled.Ptr() == nil {
			p.scaled = gocv.NewMat()
		}
		gocv.Resize(src, &p.scaled, image.Pt(w, h), 0, 0, gocv.InterpolationArea)
		src = p.scaled
	}
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, src, []int{gocv.IMWriteJpegQuality, p.o.Quality})
	if err != nil {
		return nil // a picture we could not encode: the next one will do
	}
	pic := &Picture{JPEG: append([]byte(nil), buf.GetBytes()...), Seq: r.Seq, Width: r.Width, Height: r.Height}
	buf.Close()
	p.latest.Store(pic)
	return nil
}

// Close frees the scaling buffer; call it after the analyzer has stopped.
func (p *Preview) Close() error {
	if p.scaled.Ptr() != nil {
		return p.scaled.Close()
	}
	return nil
}

// ScaledSize is the size a w×h frame is shown at: at most maxWidth wide,
// the aspect kept, and never less than one pixel either way (a 2000×2
// frame scaled to 640 wide would be 0 rows high, which OpenCV's resize
// rejects by aborting the process).
func ScaledSize(w, h, maxWidth int) (int, int) {
	if w <= maxWidth || w <= 0 {
		return w, h
	}
	return maxWidth, max(1, int(int64(h)*int64(maxWidth)/int64(w)))
}
