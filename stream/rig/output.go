package rig

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/affectd/affectd/capture/streamid"
	"github.com/affectd/affectd/infer/analysis"
)

// Kinds of output.
const (
	KindVMC      = "vmc"      // VMC protocol (OSC): VSeeFace, VNyan, Warudo, EVMC4U
	KindOSC      = "osc"      // plain OSC under /affectd/…
	KindLiveLink = "livelink" // Apple Live Link Face packets for Unreal's Live Link
)

// Face choices besides a track number.
const (
	FaceLargest = "largest" // the biggest box among faces with values
	FaceFirst   = "first"   // the lowest track number (the oldest track)
)

// Limits of Options.
const (
	MaxRate      = 1000 // packets per second
	MaxGain      = 10
	MaxSubject   = 64 // bytes of Subject and DeviceID
	MaxFPSNumber = 1000000
)

// Defaults of zero fields.
const (
	DefaultFPSNum = 30
	DefaultFPSDen = 1
)

// writeTimeout bounds one frame's sends: UDP writes do not wait for the
// receiver, only (rarely) for room in the socket's buffer.
const writeTimeout = 10 * time.Millisecond

// ErrInvalidOptions is wrapped by every error of Options.Validate.
var ErrInvalidOptions = errors.New("rig: invalid options")

// ErrNilFrame is WriteFrame's answer to a nil result (a programming
// error; send failures are never returned).
var ErrNilFrame = errors.New("rig: nil frame result")

// Options configure one Output. Fields that do not apply to the Kind are
// ignored.
type Options struct {
	// Name identifies the output in Stats (optional; a stream-id-like name).
	Name string
	// Kind is KindVMC, KindOSC or KindLiveLink.
	Kind string
	// Target is the receiver, host:port (resolved once, by New).
	Target string
	// Stream is the stream whose results are written (a valid stream id;
	// the OSC addresses carry it).
	Stream string
	// Face picks the face: FaceLargest, FaceFirst or a track number n
	// (the face "<stream>/<n>").
	Face string
	// Rate caps the frames sent per second, by the frames' capture times
	// (0: every frame; at most MaxRate). A frame is one datagram, or a
	// few for VMC and OSC.
	Rate float64
	// Bundle sends VMC frames as OSC bundles (split under MaxDatagram);
	// false sends one message per datagram. OSC frames are always
	// bundles.
	Bundle bool
	// Names are the VMC blend-shape names: NamesARKit or NamesVRM.
	Names string
	// Gain (0, MaxGain] and DeadZone [0, 1) shape every blend-shape weight
	// sent (Shaping).
	Gain, DeadZone float64
	// Subject is the Live Link subject name: 1 to MaxSubject bytes of
	// UTF-8 without control characters.
	Subject string
	// DeviceID is the Live Link device id (same rules; "" is
	// "affectd-<stream>").
	DeviceID string
	// FPSNum/FPSDen is the source's frame rate for Live Link (each 1 to
	// MaxFPSNumber; both 0: measured from the frames' times, and
	// DefaultFPSNum/DefaultFPSDen until measured).
	FPSNum, FPSDen int
}

// Validate checks every field that applies to the kind; the error joins
// one error per bad field, each wrapping ErrInvalidOptions and naming the
// field.
func (o *Options) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: "+format, append([]any{ErrInvalidOptions, field}, args...)...))
	}
	if o.Name != "" && !streamid.Valid(o.Name) {
		bad("name", "want %s, got %s", streamid.Rule, streamid.Quote(o.Name))
	}
	switch o.Kind {
	case KindVMC, KindOSC, KindLiveLink:
	case "":
		bad("kind", "required: vmc, osc or livelink")
	default:
		bad("kind", "want vmc, osc or livelink, got %s", streamid.Quote(o.Kind))
	}
	if host, port, err := net.SplitHostPort(o.Target); err != nil || host == "" {
		bad("target", `want host:port such as "127.0.0.1:39539", got %s`, streamid.Quote(o.Target))
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		bad("target", "port must be a number from 1 to 65535, got %s", streamid.Quote(port))
	}
	if err := streamid.Check(o.Stream); err != nil {
		bad("stream", "%v", err)
	}
	if _, _, err := parseFace(o.Face); err != nil {
		bad("face", "want largest, first or a track number (1 or more), got %s", streamid.Quote(o.Face))
	}
	if !(o.Rate >= 0 && o.Rate <= MaxRate) {
		bad("rate", "must be from 0 (every frame) to %d frames/s, got %v", MaxRate, o.Rate)
	}
	if !(o.Gain > 0 && o.Gain <= MaxGain) {
		bad("gain", "must be above 0 and at most %d, got %v", MaxGain, o.Gain)
	}
	if !(o.DeadZone >= 0 && o.DeadZone < 1) {
		bad("dead_zone", "must be from 0 up to (not including) 1, got %v", o.DeadZone)
	}
	switch o.Kind {
	case KindVMC:
		if o.Names != NamesARKit && o.Names != NamesVRM {
			bad("names", "want arkit or vrm, got %s", streamid.Quote(o.Names))
		}
	case KindLiveLink:
		if o.Subject == "" {
			bad("subject", "required for livelink")
		} else if !cleanText(o.Subject) {
			bad("subject", "want at most %d bytes of UTF-8 without control characters, got %s", MaxSubject, streamid.Quote(o.Subject))
		}
		if o.DeviceID != "" && !cleanText(o.DeviceID) {
			bad("device_id", "want at most %d bytes of UTF-8 without control characters, got %s", MaxSubject, streamid.Quote(o.DeviceID))
		}
		if !(o.FPSNum == 0 && o.FPSDen == 0) &&
			(o.FPSNum < 1 || o.FPSNum > MaxFPSNumber || o.FPSDen < 1 || o.FPSDen > MaxFPSNumber) {
			bad("fps", "want a rate numerator and denominator from 1 to %d (or both 0: %d/%d), got %d/%d",
				MaxFPSNumber, DefaultFPSNum, DefaultFPSDen, o.FPSNum, o.FPSDen)
		}
	}
	return errors.Join(errs...)
}

// cleanText reports whether s is valid UTF-8 of at most MaxSubject bytes
// without control characters.
func cleanText(s string) bool {
	if len(s) > MaxSubject || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// face choices
const (
	pickLargest = iota
	pickFirst
	pickNumber
)

func parseFace(s string) (pick int, n uint64, err error) {
	switch s {
	case FaceLargest:
		return pickLargest, 0, nil
	case FaceFirst:
		return pickFirst, 0, nil
	}
	n, err = strconv.ParseUint(s, 10, 64)
	if err != nil || n < 1 {
		return 0, 0, errors.New("bad face")
	}
	return pickNumber, n, nil
}

// faceNumber is n of a face id "<stream>/<n>".
func faceNumber(id string) (uint64, bool) {
	s := id[strings.LastIndexByte(id, '/')+1:]
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// Stats are an output's counts since New (for the API's outputs list).
type Stats struct {
	Name   string `json:"name,omitempty"`
	Kind   string `json:"kind"`
	Target string `json:"target"`
	Stream string `json:"stream"`
	Face   string `json:"face"`
	// Frames is the results written; Limited those not sent because of
	// Rate.
	Frames  uint64 `json:"frames"`
	Limited uint64 `json:"limited"`
	// Packets and Bytes are the datagrams sent; Errors the sends that
	// failed (such as "connection refused" after the receiver's host
	// said no one listens on the port), LastError the last one's message.
	Packets     uint64    `json:"packets"`
	Bytes       uint64    `json:"bytes"`
	Errors      uint64    `json:"errors"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Output sends one stream's chosen face to a rig over UDP: an
// analysis.Sink. WriteFrame belongs to the analyzer's goroutine; Stats and
// Close are safe from any goroutine.
//
// Face choice: FaceLargest takes the biggest box among the faces with
// values (Fail == ""); FaceFirst the lowest track number among all faces,
// and a number that track, so that a face that fails for a frame is not
// swapped for another. A chosen face with Fail != "" counts as no face.
//
// When the face that was being sent goes (no face, a failed one, or the
// end of the input), each kind says so once, whatever Rate:
// VMC sends one neutral frame (all weights 0, the head at Identity:
// receivers keep the last values, so the avatar would otherwise freeze
// mid-expression); OSC sends that face's "present F" (also when another
// face takes its place); Live Link sends nothing (the receiver sees the
// subject stop updating). Then nothing is sent until a face comes back.
type Output struct {
	opt      Options
	conn     *net.UDPConn
	pick     int
	num      uint64
	arkit    *ARKitMap
	shape    Shaping
	vmc      *VMC
	osc      *OSC
	llf      LiveLink
	interval int64 // ns between frames sent, 0: no cap
	start    time.Time

	// Owned by WriteFrame, under wmu: a stream's old and new pipelines
	// may both write while a reload swaps them.
	wmu    sync.Mutex
	d      Datagrams
	buf    []byte
	w      [NumARKit]float32
	shown  bool   // a face's values were sent and not yet retracted
	shownN uint64 // its track number
	timed  bool   // next and last are set
	next   int64  // when the next frame is due
	last   int64  // the last frame sent

	measure bool    // Live Link's rate comes from the frames' times
	prevT   int64   // the previous frame's time (ns), 0: none
	period  float64 // smoothed frame interval (ns), 0: none yet
	lastSeq uint64  // the previous frame's sequence number

	frames, limited, packets, bytes, errs atomic.Uint64
	mu                                    sync.Mutex
	lastErr                               string
	lastErrAt                             time.Time
	closed                                atomic.Bool
	closeOnce                             sync.Once
	closeErr                              error
}

// New validates o, resolves the target and opens a UDP socket connected to
// it; l is the stream's layout (blend-shape names and heads; nil: none).
func New(o Options, l *analysis.Layout) (*Output, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if l == nil {
		l = &analysis.Layout{}
	}
	pick, num, _ := parseFace(o.Face)
	out := &Output{
		opt: o, pick: pick, num: num,
		arkit: NewARKitMap(l.BlendShapes),
		shape: Shaping{Gain: float32(o.Gain), DeadZone: float32(o.DeadZone)},
		start: time.Now(),
	}
	if o.Rate > 0 {
		out.interval = int64(math.Round(float64(time.Second) / o.Rate))
	}
	switch o.Kind {
	case KindVMC:
		var err error
		if out.vmc, err = NewVMC(o.Names, o.Bundle); err != nil {
			return nil, err
		}
	case KindOSC:
		out.osc = NewOSC(o.Stream, l)
	case KindLiveLink:
		out.llf = LiveLink{DeviceID: o.DeviceID, Subject: o.Subject, FPSNum: int32(o.FPSNum), FPSDen: int32(o.FPSDen)}
		if out.llf.DeviceID == "" {
			out.llf.DeviceID = "affectd-" + o.Stream
		}
		if o.FPSNum == 0 {
			out.measure = true
			out.llf.FPSNum, out.llf.FPSDen = DefaultFPSNum, DefaultFPSDen
		}
	}
	addr, err := net.ResolveUDPAddr("udp", o.Target)
	if err != nil {
		return nil, fmt.Errorf("rig: target %s: resolve: %w", streamid.Quote(o.Target), err)
	}
	if out.conn, err = net.DialUDP("udp", nil, addr); err != nil {
		return nil, fmt.Errorf("rig: target %s: %w", streamid.Quote(o.Target), err)
	}
	return out, nil
}

// WriteFrame implements analysis.Sink: it sends the chosen face of r (or
// says once that it went), unless Rate holds it back. Sends do not wait
// for the receiver, and a failed send is counted in Stats, never
// returned: the error is ErrNilFrame or nil. After Close it does nothing.
// It is safe from several goroutines (calls take turns).
func (o *Output) WriteFrame(r *analysis.FrameResult) error {
	if r == nil {
		return ErrNilFrame
	}
	if o.closed.Load() {
		return nil
	}
	o.wmu.Lock()
	defer o.wmu.Unlock()
	o.frames.Add(1)
	f, n := o.choose(r)
	o.d.Reset(o.opt.Kind == KindOSC || o.opt.Bundle)
	o.buf = o.buf[:0]
	switch o.opt.Kind {
	case KindVMC:
		if f != nil {
			if o.allow(r) {
				o.arkit.Weights(&o.w, f.Blend, o.shape)
				o.vmc.Encode(&o.d, &o.w, UnityHead(f.Pose), o.clock())
				o.shown, o.shownN = true, n
			}
		} else if o.shown {
			o.w = [NumARKit]float32{}
			o.vmc.Encode(&o.d, &o.w, Identity, o.clock())
			o.shown = false
		}
	case KindOSC:
		if o.shown && (f == nil || n != o.shownN) {
			o.osc.EncodeAbsent(&o.d, o.shownN)
			o.shown = false
		}
		if f != nil && o.allow(r) {
			o.arkit.Weights(&o.w, f.Blend, o.shape)
			o.osc.Encode(&o.d, n, f, &o.w)
			o.shown, o.shownN = true, n
		}
		o.d.Finish()
		for _, id := range r.Ended {
			if k, ok := faceNumber(id); ok {
				o.osc.Forget(k)
			}
		}
	case KindLiveLink:
		if o.measure {
			o.measureRate(r)
		}
		if f != nil && o.allow(r) {
			o.arkit.Weights(&o.w, f.Blend, o.shape)
			yaw, pitch, roll := LiveLinkHead(f.Pose)
			o.buf = o.llf.Append(o.buf, r.Seq, &o.w, yaw, pitch, roll)
		}
	}
	o.send()
	return nil
}

// choose is the chosen face and its track number (nil: none, or one
// without values).
func (o *Output) choose(r *analysis.FrameResult) (*analysis.Face, uint64) {
	best, bestN, bestArea := -1, uint64(0), float32(0)
	for i := range r.Faces {
		f := &r.Faces[i]
		n, ok := faceNumber(f.ID)
		if !ok {
			continue
		}
		switch o.pick {
		case pickLargest:
			if a := f.Box[2] * f.Box[3]; f.Fail == "" && (best < 0 || a > bestArea) {
				best, bestN, bestArea = i, n, a
			}
		case pickFirst:
			if best < 0 || n < bestN {
				best, bestN = i, n
			}
		case pickNumber:
			if n == o.num {
				best, bestN = i, n
			}
		}
	}
	if best < 0 || r.Faces[best].Fail != "" {
		return nil, 0
	}
	return &r.Faces[best], bestN
}

// allow applies Rate by the frame's capture time (its PTS when it has
// none). Frames are due one interval apart, on a schedule that absorbs
// jitter (a frame up to a quarter interval early passes) and restarts
// after a gap or when time goes back.
func (o *Output) allow(r *analysis.FrameResult) bool {
	if o.interval <= 0 {
		return true
	}
	t := frameTime(r)
	if o.timed && t >= o.last && t < o.next-o.interval/4 {
		o.limited.Add(1)
		return false
	}
	next := o.next + o.interval
	if !o.timed || t < o.last || next <= t {
		next = t + o.interval
	}
	o.next, o.last, o.timed = next, t, true
	return true
}

// frameTime is r's time in ns: its capture time, else its PTS.
func frameTime(r *analysis.FrameResult) int64 {
	if !r.CapturedAt.IsZero() {
		return r.CapturedAt.UnixNano()
	}
	return int64(r.PTS)
}

// measureRate follows the source's frame rate for Live Link's packets:
// a smoothed interval between consecutive frames, by their PTS (else
// their capture times) and sequence numbers (so that frames dropped
// upstream do not halve the rate), written as n/1 when
// within 0.005 fps of a whole number, else n/1000.
func (o *Output) measureRate(r *analysis.FrameResult) {
	t := int64(r.PTS) // the source's own clock, when it has one
	if t <= 0 {
		t = frameTime(r)
	}
	if o.prevT != 0 && r.Seq > o.lastSeq && t > o.prevT {
		dt := float64(t-o.prevT) / float64(r.Seq-o.lastSeq)
		if o.period == 0 {
			o.period = dt
		} else {
			o.period += (dt - o.period) / 16
		}
		fps := 1e9 / o.period
		if n := math.Round(fps); math.Abs(fps-n) < 0.005 && n >= 1 {
			o.llf.FPSNum, o.llf.FPSDen = int32(n), 1
		} else if fps >= 0.001 && fps <= MaxFPSNumber/1000 {
			o.llf.FPSNum, o.llf.FPSDen = int32(math.Round(fps*1000)), 1000
		}
	}
	o.prevT, o.lastSeq = t, r.Seq
}

// clock is VMC's time: seconds since New.
func (o *Output) clock() float32 { return float32(time.Since(o.start).Seconds()) }

// send writes the frame's datagrams.
func (o *Output) send() {
	n := o.d.Len()
	if n == 0 && len(o.buf) == 0 {
		return
	}
	_ = o.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	for i := range n {
		o.write(o.d.At(i))
	}
	if len(o.buf) > 0 {
		o.write(o.buf)
	}
}

func (o *Output) write(p []byte) {
	if _, err := o.conn.Write(p); err != nil {
		if o.closed.Load() && errors.Is(err, net.ErrClosed) {
			return
		}
		o.errs.Add(1)
		o.mu.Lock()
		o.lastErr, o.lastErrAt = err.Error(), time.Now()
		o.mu.Unlock()
		return
	}
	o.packets.Add(1)
	o.bytes.Add(uint64(len(p)))
}

// Stats are the output's counts so far.
func (o *Output) Stats() Stats {
	s := Stats{
		Name: o.opt.Name, Kind: o.opt.Kind, Target: o.opt.Target, Stream: o.opt.Stream, Face: o.opt.Face,
		Frames: o.frames.Load(), Limited: o.limited.Load(),
		Packets: o.packets.Load(), Bytes: o.bytes.Load(), Errors: o.errs.Load(),
	}
	o.mu.Lock()
	s.LastError, s.LastErrorAt = o.lastErr, o.lastErrAt
	o.mu.Unlock()
	return s
}

// Close closes the socket; later WriteFrames do nothing. It may be called
// more than once, from any goroutine (it returns the first call's error).
func (o *Output) Close() error {
	o.closeOnce.Do(func() {
		o.closed.Store(true)
		o.closeErr = o.conn.Close()
	})
	return o.closeErr
}
