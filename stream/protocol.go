package stream

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/affectd/affectd/infer/analysis"
)

// Version is the wire protocol version ("v" in every message). Field
// names change only with it.
const Version = 1

// Hello is the first message on every connection.
type Hello struct {
	Type    string       `json:"type"` // "hello"
	V       int          `json:"v"`
	Server  string       `json:"server"`
	Model   ModelInfo    `json:"model"`
	Streams []StreamInfo `json:"streams"`
	// Notice explains caveats, e.g. that a demo model's values mean nothing.
	Notice string `json:"notice,omitempty"`
	// BlendShapes are ARKit's 52 blend shapes in Live Link Face's order
	// (what rig outputs send) and, of those, the ones estimated: frames
	// carry the estimated ones (streams with blendshapes: true); the
	// others are 0.
	BlendShapes *BlendShapeInfo `json:"blendshapes,omitempty"`
}

// BlendShapeInfo lists the blend shapes in Hello.
type BlendShapeInfo struct {
	Names     []string `json:"names"`
	Estimated []string `json:"estimated"`
}

// ModelInfo describes the model whose heads appear in frames.
type ModelInfo struct {
	Name     string `json:"name"`
	Backbone string `json:"backbone,omitempty"`
	// Demo is true for a random demo model: its values are not affect
	// estimates.
	Demo      bool                `json:"demo"`
	Precision string              `json:"precision,omitempty"`
	Provider  string              `json:"provider,omitempty"`
	Heads     []analysis.HeadInfo `json:"heads"`
}

// StreamInfo is a stream as clients see it.
type StreamInfo struct {
	ID    string `json:"id"`
	URL   string `json:"url"`
	Kind  string `json:"kind"`
	State string `json:"state"`
	// Node runs the stream (cluster mode only).
	Node string `json:"node,omitempty"`
}

// Status reports a stream's state change.
type Status struct {
	Type    string    `json:"type"` // "status"
	V       int       `json:"v"`
	Stream  string    `json:"stream"`
	State   string    `json:"state"` // starting, up, reconnecting, failed, ended, stopped, removed
	Error   string    `json:"error,omitempty"`
	RetryMs int64     `json:"retry_ms,omitempty"`
	At      time.Time `json:"at"`
}

// Encoding chooses what a frame message carries beyond boxes, ids, heads
// and pose.
type Encoding struct {
	// Blendshapes and Landmarks add the blend shapes and the 68 points
	// (per stream: blendshapes and landmarks in its config).
	Blendshapes, Landmarks bool
	// Mesh adds the face mesh's 468 points (per stream: mesh).
	Mesh bool
	// Offline leaves captured_at and latency_ms out (offline analysis of
	// a file): the frame's time is pts_ms.
	Offline bool
	// Node and Lease (cluster mode) name the node that ran the frame and
	// the lease epoch it held the stream under: epochs grow with each new
	// holder, so a frame of a lower epoch after a higher one would show a
	// stream run twice.
	Node  string
	Lease uint64
}

// AppendFrame encodes a frame message; latency is capture → now.
func AppendFrame(buf []byte, f *analysis.FrameResult, l *analysis.Layout, enc Encoding, now time.Time) []byte {
	live := !enc.Offline && !f.CapturedAt.IsZero()
	buf = append(buf, `{"type":"frame","v":`...)
	buf = strconv.AppendInt(buf, Version, 10)
	buf = append(buf, `,"stream":`...)
	buf = appendString(buf, f.Stream)
	buf = append(buf, `,"seq":`...)
	buf = strconv.AppendUint(buf, f.Seq, 10)
	if enc.Node != "" {
		buf = append(buf, `,"node":`...)
		buf = appendString(buf, enc.Node)
		buf = append(buf, `,"lease":`...)
		buf = strconv.AppendUint(buf, enc.Lease, 10)
	}
	if live {
		buf = append(buf, `,"captured_at":"`...)
		buf = f.CapturedAt.UTC().AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, '"')
	}
	buf = append(buf, `,"pts_ms":`...)
	buf = appendFloat(buf, float64(f.PTS)/float64(time.Millisecond), 1)
	if live {
		buf = append(buf, `,"latency_ms":`...)
		buf = appendFloat(buf, float64(now.Sub(f.CapturedAt))/float64(time.Millisecond), 1)
	}
	buf = append(buf, `,"faces":[`...)
	for i := range f.Faces {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendFace(buf, &f.Faces[i], l, enc)
	}
	return append(buf, "]}"...)
}

func appendFace(buf []byte, fc *analysis.Face, l *analysis.Layout, enc Encoding) []byte {
	buf = append(buf, `{"id":`...)
	buf = appendString(buf, fc.ID)
	if fc.Identity != "" {
		buf = append(buf, `,"identity":`...)
		buf = appendString(buf, fc.Identity)
	}
	buf = append(buf, `,"box":[`...)
	for i, v := range fc.Box {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendFloat(buf, float64(v), 1)
	}
	buf = append(buf, `],"score":`...)
	buf = appendFloat(buf, float64(fc.Score), 3)
	if fc.Fit >= 0 {
		buf = append(buf, `,"fit":`...)
		buf = appendFloat(buf, float64(fc.Fit), 3)
	}
	if fc.Fail != "" {
		buf = append(buf, `,"fail":`...)
		buf = appendString(buf, fc.Fail)
	}
	var sources []byte
	for hi, h := range l.Heads {
		if hi >= len(fc.Values) || fc.Values[hi] == nil {
			continue
		}
		vals := fc.Values[hi]
		buf = append(buf, ',')
		buf = appendString(buf, h.Name)
		buf = append(buf, ":{"...)
		for li, lb := range h.Labels {
			if li >= len(vals) {
				break
			}
			if li > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, lb)
			buf = append(buf, ':')
			buf = appendFloat(buf, float64(vals[li]), 4)
		}
		buf = append(buf, '}')
		if h.Threshold != nil {
			buf = append(buf, ',')
			buf = appendString(buf, h.Name+"_active")
			buf = append(buf, ":["...)
			first := true
			for li, lb := range h.Labels {
				if li < len(vals) && vals[li] >= *h.Threshold {
					if !first {
						buf = append(buf, ',')
					}
					first = false
					buf = appendString(buf, lb)
				}
			}
			buf = append(buf, ']')
		}
		if len(sources) > 0 {
			sources = append(sources, ',')
		}
		sources = appendString(sources, h.Name)
		sources = append(sources, ':')
		sources = appendString(sources, h.Source)
	}
	if len(sources) > 0 {
		buf = append(buf, `,"source":{`...)
		buf = append(buf, sources...)
		buf = append(buf, '}')
	}
	if fc.EstimateSeq > 0 {
		buf = append(buf, `,"estimate_seq":`...)
		buf = strconv.AppendUint(buf, fc.EstimateSeq, 10)
	}
	if p := fc.Pose; p != nil {
		buf = append(buf, `,"pose":{"yaw":`...)
		buf = appendFloat(buf, float64(p.Yaw), 2)
		buf = append(buf, `,"pitch":`...)
		buf = appendFloat(buf, float64(p.Pitch), 2)
		buf = append(buf, `,"roll":`...)
		buf = appendFloat(buf, float64(p.Roll), 2)
		buf = append(buf, `,"t":[`...)
		for i, v := range p.T {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendFloat(buf, float64(v), 1)
		}
		buf = append(buf, `],"r":[`...)
		for i, v := range p.R {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendFloat(buf, float64(v), 4)
		}
		buf = append(buf, "]}"...)
	}
	if g := fc.Gaze; g != nil {
		buf = append(buf, `,"gaze":{"eye0":`...)
		buf = appendVec(buf, g.Eye0[:], 4)
		buf = append(buf, `,"eye1":`...)
		buf = appendVec(buf, g.Eye1[:], 4)
		buf = append(buf, `,"angle_x":`...)
		buf = appendFloat(buf, float64(g.AngleX), 4)
		buf = append(buf, `,"angle_y":`...)
		buf = appendFloat(buf, float64(g.AngleY), 4)
		buf = append(buf, `,"at0":`...)
		buf = appendVec(buf, g.At0[:], 1)
		buf = append(buf, `,"at1":`...)
		buf = appendVec(buf, g.At1[:], 1)
		buf = append(buf, '}')
	}
	if enc.Blendshapes && fc.Blend != nil {
		buf = append(buf, `,"blendshapes":{`...)
		for i, name := range l.BlendShapes {
			if i >= len(fc.Blend) {
				break
			}
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, name)
			buf = append(buf, ':')
			buf = appendFloat(buf, float64(fc.Blend[i]), 3)
		}
		buf = append(buf, '}')
	}
	if lm := fc.Landmarks; enc.Landmarks && lm != nil {
		buf = append(buf, `,"landmarks":[`...)
		for i, q := range lm {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '[')
			buf = appendFloat(buf, float64(q[0]), 1)
			buf = append(buf, ',')
			buf = appendFloat(buf, float64(q[1]), 1)
			buf = append(buf, ']')
		}
		buf = append(buf, ']')
	}
	if ms := fc.Mesh; enc.Mesh && ms != nil {
		buf = append(buf, `,"mesh":[`...)
		for i := range ms {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendVec(buf, ms[i][:], 1)
		}
		buf = append(buf, ']')
	}
	return append(buf, '}')
}

// appendVec writes a JSON array of numbers.
func appendVec(buf []byte, v []float32, prec int) []byte {
	buf = append(buf, '[')
	for i, x := range v {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendFloat(buf, float64(x), prec)
	}
	return append(buf, ']')
}

func appendFloat(buf []byte, v float64, prec int) []byte {
	if v != v || v > 1e300 || v < -1e300 { // NaN and infinities are not JSON
		return append(buf, "null"...)
	}
	return strconv.AppendFloat(buf, v, 'f', prec, 64)
}

// appendString writes a JSON string (quotes and escapes).
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			b, _ := json.Marshal(s)
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// Dropped tells a client how many messages it lost by reading too slowly.
type Dropped struct {
	Type  string `json:"type"` // "dropped"
	V     int    `json:"v"`
	Count int    `json:"count"` // since the last notice
	Total int    `json:"total"` // since the connection began
}
