package capture

import (
	"sync"
	"time"

	"gocv.io/x/gocv"
)

// Frame is one decoded picture of a stream. Its Mat comes from a Pool and
// is reused: whoever holds the frame last calls Release exactly once.
type Frame struct {
	// Stream is the id of the stream the frame belongs to.
	Stream string
	// Seq numbers the stream's frames from 1, without gaps on the source
	// side (frames dropped later keep their numbers).
	Seq uint64
	// CapturedAt is the wall-clock time the frame was read.
	CapturedAt time.Time
	// PTS is the frame's presentation time: the position in a file, the
	// stream time of RTSP, the time since the camera opened. It never goes
	// backwards within one run of a stream (looping files keep counting).
	PTS time.Duration
	// Mat holds the picture: 8-bit BGR.
	Mat gocv.Mat
	// Restart is set on the first frame after the input ended and came
	// back (a new WebRTC session): whatever was tracked before is gone.
	Restart bool

	pool *Pool
}

// Release returns the frame and its Mat to the pool.
func (f *Frame) Release() {
	if f == nil || f.pool == nil {
		return
	}
	p := f.pool
	f.pool = nil
	p.put(f)
}

// Pool recycles frames and their Mats so that reading does not allocate
// image memory in steady state. Safe for concurrent use.
type Pool struct {
	mu     sync.Mutex
	free   []*Frame
	limit  int
	live   int  // frames handed out and not yet released
	closed bool // frames released from now on are closed
}

// NewPool keeps up to limit idle frames; more are closed on release.
func NewPool(limit int) *Pool {
	if limit <= 0 {
		limit = 8
	}
	return &Pool{limit: limit}
}

// Get returns a frame with a Mat that may hold an old picture.
func (p *Pool) Get() *Frame {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.live++
	if n := len(p.free); n > 0 {
		f := p.free[n-1]
		p.free = p.free[:n-1]
		f.pool = p
		return f
	}
	return &Frame{Mat: gocv.NewMat(), pool: p}
}

func (p *Pool) put(f *Frame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.live--
	f.Stream, f.Seq, f.CapturedAt, f.PTS, f.Restart = "", 0, time.Time{}, 0, false
	if p.closed || len(p.free) >= p.limit {
		f.Mat.Close()
		return
	}
	p.free = append(p.free, f)
}

// Live is the number of frames handed out and not released (a leak shows
// as a number that grows).
func (p *Pool) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live
}

// Close closes the idle frames' Mats, and every frame released from then
// on as it comes back: nothing the pool made outlives it. It is safe to
// call twice; Get after Close still works (the frame is closed when
// released).
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.free {
		f.Mat.Close()
	}
	p.free, p.closed = nil, true
}
