package rig

import (
	"strconv"
	"strings"

	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/stream/osc"
)

// maxFaceCache bounds the faces whose addresses OSC keeps: faces whose
// tracks ended are dropped as results say so (Forget), and past this many
// the cache is emptied and rebuilt as faces come back.
const maxFaceCache = 32

// OSC encodes one face for plain OSC receivers (TouchDesigner, Max, Pure
// Data, Resolume), under /affectd/<stream>/<face>/ where <face> is the
// track number n of the face id "<stream>/<n>":
//
//	present       T while the face is sent, F once when it goes
//	au/<AU>       f  landmark AU intensity, 0..5 (lmau.AUs: AU1 … AU45)
//	va            ff valence, arousal (only with a valence/arousal head)
//	expr/<label>  f  the "expr" head's value of each label
//	blend/<name>  f  the 52 ARKit weights (after shaping), 0..1
//	pose          fff OpenFace's pose_Rx, pose_Ry, pose_Rz (analysis.Pose.R:
//	              radians; + looking down, + turned to the subject's right,
//	              + tilted clockwise in the image)
//
// A face's messages go out as bundles split under MaxDatagram. Characters
// that OSC reserves in addresses (space # * , / ? [ ] { }) and any other
// outside letters, digits, '.', '_' and '-' become '_' in the stream and
// labels. The addresses of each face are made once and cached, so that
// encoding a known face allocates nothing. It belongs to one goroutine.
type OSC struct {
	prefix   string // "/affectd/<stream>/"
	vaHead   int    // index in the layout's heads, -1: none
	vaIdx    [2]int // valence and arousal label indices
	exprHead int    // -1: none
	expr     []string
	faces    map[uint64]*oscFace
}

// oscFace are one face's addresses.
type oscFace struct {
	present, va, pose string
	au, expr          []string
	blend             [NumARKit]string
}

// NewOSC makes the encoder of a stream's faces with the layout l (nil: no
// heads).
func NewOSC(stream string, l *analysis.Layout) *OSC {
	e := &OSC{prefix: "/affectd/" + oscSafe(stream) + "/", vaHead: -1, exprHead: -1, faces: map[uint64]*oscFace{}}
	if l == nil {
		return e
	}
	for i, h := range l.Heads {
		if e.vaHead < 0 {
			if v, a := labelIndex(h.Labels, "valence"), labelIndex(h.Labels, "arousal"); v >= 0 && a >= 0 {
				e.vaHead, e.vaIdx = i, [2]int{v, a}
			} else if h.Name == "va" && len(h.Labels) >= 2 {
				e.vaHead, e.vaIdx = i, [2]int{0, 1}
			}
		}
		if h.Name == "expr" && e.exprHead < 0 {
			e.exprHead = i
			for _, lb := range h.Labels {
				e.expr = append(e.expr, oscSafe(lb))
			}
		}
	}
	return e
}

func labelIndex(labels []string, want string) int {
	for i, lb := range labels {
		if strings.EqualFold(lb, want) {
			return i
		}
	}
	return -1
}

// oscSafe keeps letters, digits, '.', '_' and '-'; anything else becomes
// '_' (an empty name is "_").
func oscSafe(s string) string {
	if s == "" {
		return "_"
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// addresses are face n's addresses, made on first use.
func (e *OSC) addresses(n uint64) *oscFace {
	if a, ok := e.faces[n]; ok {
		return a
	}
	if len(e.faces) >= maxFaceCache {
		clear(e.faces)
	}
	p := e.prefix + strconv.FormatUint(n, 10) + "/"
	a := &oscFace{present: p + "present", va: p + "va", pose: p + "pose"}
	for _, au := range lmau.AUs {
		a.au = append(a.au, p+"au/"+oscSafe(au))
	}
	for _, lb := range e.expr {
		a.expr = append(a.expr, p+"expr/"+lb)
	}
	for i, name := range ARKit {
		a.blend[i] = p + "blend/" + name
	}
	e.faces[n] = a
	return a
}

// Forget drops face n's addresses (its track ended).
func (e *OSC) Forget(n uint64) { delete(e.faces, n) }

// Cached is the number of faces whose addresses are kept.
func (e *OSC) Cached() int { return len(e.faces) }

// Encode appends face n's messages to d (bundles; d is not reset, so
// that a "present F" of another face can come first): present T, its
// landmark AUs, valence/arousal, expressions, the ARKit weights w and its
// pose, each where the face has them.
func (e *OSC) Encode(d *Datagrams, n uint64, f *analysis.Face, w *[NumARKit]float32) {
	a := e.addresses(n)
	d.begin(a.present, "T")
	d.end()
	for i, v := range f.LandmarkAU {
		if i >= len(a.au) {
			break
		}
		oscFloat(d, a.au[i], v)
	}
	if vals := headValues(f, e.vaHead); vals != nil && len(vals) > max(e.vaIdx[0], e.vaIdx[1]) {
		d.begin(a.va, "ff")
		d.buf = osc.Float(d.buf, vals[e.vaIdx[0]])
		d.buf = osc.Float(d.buf, vals[e.vaIdx[1]])
		d.end()
	}
	if vals := headValues(f, e.exprHead); vals != nil {
		for i, v := range vals {
			if i >= len(a.expr) {
				break
			}
			oscFloat(d, a.expr[i], v)
		}
	}
	for i, v := range w {
		oscFloat(d, a.blend[i], v)
	}
	if p := f.Pose; p != nil {
		d.begin(a.pose, "fff")
		for _, v := range p.R {
			d.buf = osc.Float(d.buf, v)
		}
		d.end()
	}
}

// EncodeAbsent appends face n's "present F" to d.
func (e *OSC) EncodeAbsent(d *Datagrams, n uint64) {
	d.begin(e.addresses(n).present, "F")
	d.end()
}

func headValues(f *analysis.Face, head int) []float32 {
	if head < 0 || head >= len(f.Values) {
		return nil
	}
	return f.Values[head]
}

func oscFloat(d *Datagrams, address string, v float32) {
	d.begin(address, "f")
	d.buf = osc.Float(d.buf, v)
	d.end()
}
