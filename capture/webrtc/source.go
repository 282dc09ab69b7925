package webrtc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	pion "github.com/pion/webrtc/v4"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/webrtc/avdec"
)

// Source is a stream fed by WHIP publishers, one at a time. Its Run
// goroutine owns the session while it lasts: it reads the RTP packets,
// assembles frames by the marker bit, decodes them and delivers pictures;
// between sessions it waits. A session's end marks the stream ended (a
// later publisher brings it back up); a dynamic stream's Run returns then.
type Source struct {
	server  *Server
	stream  string
	token   string
	dynamic bool

	mu     sync.Mutex
	active *session      // the session being served or offered
	offers chan *session // to Run
	epoch  time.Time     // PTS zero: PTS grows across sessions

	gone     chan struct{} // closed when the stream is unregistered: Run ends
	goneOnce sync.Once
}

func newSource(s *Server, stream, token string) *Source {
	return &Source{server: s, stream: stream, token: token, offers: make(chan *session, 1), epoch: time.Now(), gone: make(chan struct{})}
}

// NewDynamicSource makes the Source of a stream created for a publisher
// (Options.Dynamic): its Run returns when the session ends.
func (s *Server) NewDynamicSource(stream string) (*Source, error) {
	src, err := s.Register(stream, "")
	if err != nil {
		return nil, err
	}
	src.dynamic = true
	return src, nil
}

// String names the stream's input.
func (src *Source) String() string { return "whip://" + src.stream }

// offer gives a new session to the source unless one is active.
// busy reports whether the stream has a publisher already.
func (src *Source) busy() bool {
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.active != nil
}

func (src *Source) offer(x *session) bool {
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.active != nil {
		return false
	}
	select {
	case src.offers <- x:
		src.active = x
		return true
	default:
		return false
	}
}

// Run serves sessions until ctx ends.
func (src *Source) Run(ctx context.Context, sink capture.Sink) error {
	defer src.server.unregister(src)
	for {
		var x *session
		select {
		case <-ctx.Done():
			return nil
		case <-src.gone:
			return fmt.Errorf("%w: stream %s removed", capture.ErrEnded, src.stream)
		case x = <-src.offers:
		}
		err := src.serve(ctx, x, sink)
		x.end(err)
		<-x.done
		src.mu.Lock()
		src.active = nil
		src.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = x.reason()
		}
		if src.dynamic {
			return fmt.Errorf("%w: publisher gone: %v", capture.ErrEnded, err)
		}
		sink.Ended(err)
	}
}

// serve reads one session's video until it ends.
func (src *Source) serve(ctx context.Context, x *session, sink capture.Sink) error {
	var track *pion.TrackRemote
	select {
	case <-ctx.Done():
		return nil
	case <-x.ended:
		return x.reason()
	case track = <-x.tracks:
	case <-time.After(10 * time.Second):
		return errors.New("no video arrived within 10 s of the answer")
	}
	var codec avdec.Codec
	var dep rtp.Depacketizer
	switch mt := strings.ToLower(track.Codec().MimeType); mt {
	case strings.ToLower(pion.MimeTypeH264):
		codec, dep = avdec.H264, &codecs.H264Packet{}
	case strings.ToLower(pion.MimeTypeVP8):
		codec, dep = avdec.VP8, &codecs.VP8Packet{}
	default:
		return fmt.Errorf("unsupported codec %s", mt)
	}
	dec, err := avdec.New(codec, 1)
	if err != nil {
		return fmt.Errorf("decoder: %w", err)
	}
	defer dec.Close()

	// ReadRTP blocks: ending the session (or ctx) closes the connection,
	// which unblocks it.
	stop := context.AfterFunc(ctx, func() { x.end(errors.New("stream stopping")) })
	defer stop()

	dec.SetMaxPixels(src.server.o.MaxPixels)
	plis := src.server.m.plis.WithLabelValues(src.stream)
	ssrc := uint32(track.SSRC())
	var lastPLI time.Time
	pli := func(force bool) {
		if !force && time.Since(lastPLI) < src.server.o.PLIInterval {
			return
		}
		lastPLI = time.Now()
		if x.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}) == nil {
			plis.Inc()
		}
	}
	pli(true) // start from a key frame

	asm := newAssembler(dep, src.server.o.MaxFrameBytes)
	var units []unit
	var clock ptsClock
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return x.reason()
		}
		units = asm.push(pkt, units[:0])
		for _, u := range units {
			src.decode(u, dec, sink, pli, &clock)
		}
	}
}

// decode decodes one assembled frame and delivers its picture.
func (src *Source) decode(u unit, dec *avdec.Decoder, sink capture.Sink, pli func(bool), clock *ptsClock) {
	m := src.server.m
	m.framesRecv.WithLabelValues(src.stream).Inc()
	switch u.fault {
	case frameTooLarge:
		m.framesDropped.WithLabelValues(src.stream, "frame_too_large").Inc()
		fallthrough
	case frameLoss:
		m.decodeErrors.WithLabelValues(src.stream).Inc()
		pli(false)
		return
	}
	pts := clock.pts(u.ts, src.epoch)
	f := sink.Frame()
	start := time.Now()
	ok, err := dec.Decode(u.data, &f.Mat)
	m.decodeSeconds.Observe(time.Since(start).Seconds())
	if err != nil || !ok {
		f.Release()
		if errors.Is(err, avdec.ErrTooLarge) {
			m.framesDropped.WithLabelValues(src.stream, "picture_too_large").Inc()
		}
		if err != nil {
			m.decodeErrors.WithLabelValues(src.stream).Inc()
		}
		pli(false) // a broken picture, or no key frame yet
		return
	}
	m.framesDecoded.WithLabelValues(src.stream).Inc()
	f.CapturedAt = time.Now()
	f.PTS = pts
	sink.Up()
	sink.Deliver(f)
}

// ptsClock turns a session's unwrapped 90 kHz RTP timestamps into PTS:
// the session's start on the source's clock, then the publisher's clock,
// so that PTS grows across sessions and across a publisher's restart.
type ptsClock struct {
	first, last int64
	have        bool
	offset      time.Duration
}

func (c *ptsClock) pts(ts int64, epoch time.Time) time.Duration {
	switch {
	case !c.have:
		c.first, c.have = ts, true
		c.offset = time.Since(epoch)
	case ts-c.last < -90000*10:
		// The publisher's clock went backwards (a new encoder): keep PTS
		// increasing.
		c.offset += time.Duration(c.last-c.first) * time.Second / 90000
		c.first = ts
	}
	c.last = ts
	return c.offset + time.Duration(ts-c.first)*time.Second/90000
}
