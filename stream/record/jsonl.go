package record

import (
	"time"

	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/stream"
)

// JSONL writes each frame as the websocket protocol's frame object, one
// per line, timed by pts_ms (no captured_at or latency_ms).
type JSONL struct {
	Layout *analysis.Layout
	// Points adds the 68 landmarks; Mesh the face mesh's 468 points.
	Points, Mesh bool
}

// Header implements Format: none.
func (j *JSONL) Header(buf []byte) []byte { return buf }

// Frame implements Format.
func (j *JSONL) Frame(buf []byte, r *analysis.FrameResult) []byte {
	buf = stream.AppendFrame(buf, r, j.Layout, stream.Encoding{Landmarks: j.Points, Mesh: j.Mesh, Offline: true}, time.Time{})
	return append(buf, '\n')
}
