package whip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// Options configure Publish.
type Options struct {
	URL      string  // WHIP endpoint, e.g. http://127.0.0.1:8686/v1/whip/cam1
	File     string  // .h264/.264 (Annex-B) or .ivf (VP8); codec from the extension or the IVF header
	Token    string  // bearer token ("" none)
	FPS      float64 // pacing (default: the IVF header's rate, else 25)
	Loop     bool    // repeat the file until ctx ends
	Frames   int     // stop after this many frames (0: the whole file / forever with Loop)
	Loopback bool    // ICE on 127.0.0.1 only (tests); default: all interfaces, host candidates
	// OnSent, when set, is called after each frame is handed to the
	// connection: its index among the frames sent, and when (latency).
	OnSent func(i int, at time.Time)
	// NoMarker makes a hostile publisher, for tests of a receiver's bounds:
	// the frames are packetized as usual but every packet goes out
	// without the RTP marker bit and with one timestamp, so that no frame
	// ever ends.
	NoMarker bool
}

// Stats describe a finished session.
type Stats struct {
	Sent      int           // frames sent
	Keyframes int           // key frames among them
	PLIs      int           // PLIs (and FIRs) received over RTCP
	Duration  time.Duration // from the first frame sent to the end of sending
	Location  string        // the session URL (absolute) from the 201's Location
}

// Timeouts of the steps of Publish.
const (
	GatherTimeout  = 10 * time.Second // ICE gathering (local)
	HTTPTimeout    = 10 * time.Second // the POST (connect, send, answer)
	ConnectTimeout = 10 * time.Second // ICE + DTLS after the answer
	DeleteTimeout  = 3 * time.Second  // the DELETE at the end
	dialTimeout    = 5 * time.Second

	// pliGrace: a PLI this soon after a key frame was sent does not make
	// the H.264 sender skip ahead (it probably crossed that key frame).
	pliGrace = 100 * time.Millisecond
)

// UDPReadBuffer is the read buffer given to the loopback ICE socket.
const UDPReadBuffer = 4 << 20

// Payload types offered (one codec per session).
const (
	ptVP8  = 96
	ptH264 = 102
)

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"},
}

func codecParams(codec string) (webrtc.RTPCodecParameters, error) {
	switch codec {
	case CodecH264:
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType:     webrtc.MimeTypeH264,
				ClockRate:    90000,
				SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
				RTCPFeedback: videoFeedback,
			},
			PayloadType: ptH264,
		}, nil
	case CodecVP8:
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType:     webrtc.MimeTypeVP8,
				ClockRate:    90000,
				RTCPFeedback: videoFeedback,
			},
			PayloadType: ptVP8,
		}, nil
	}
	return webrtc.RTPCodecParameters{}, fmt.Errorf("unsupported codec %q", codec)
}

// newAPI builds a pion API over me with the default interceptors (NACK,
// RTCP reports, TWCC, ...). With loopback, ICE uses only 127.0.0.1 over
// UDP4 through a UDP mux whose socket has a UDPReadBuffer read buffer;
// release closes that socket and must be called after the PeerConnection
// is closed.
func newAPI(me *webrtc.MediaEngine, loopback bool) (api *webrtc.API, release func(), err error) {
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, nil, fmt.Errorf("interceptors: %w", err)
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	release = func() {}
	if loopback {
		se.SetIncludeLoopbackCandidate(true)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, nil, fmt.Errorf("loopback UDP socket: %w", err)
		}
		if err := conn.SetReadBuffer(UDPReadBuffer); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("loopback UDP socket: read buffer: %w", err)
		}
		mux := webrtc.NewICEUDPMux(nil, conn)
		se.SetICEUDPMux(mux)
		release = func() { mux.Close() } // closes conn too
	}
	api = webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return api, release, nil
}

// Publish runs one WHIP session: it offers one sendonly video track (ICE
// gathering completed, no trickle), POSTs the offer as application/sdp
// (with "Authorization: Bearer" when o.Token is set), expects 201 Created
// with a Location and the SDP answer, waits up to ConnectTimeout for the
// connection, then sends o.File's frames paced at o.FPS. PLIs and FIRs
// received are counted; for H.264 a PLI makes the sender skip ahead to the
// file's next IDR frame. At the end (file done, o.Frames sent, or ctx
// cancelled) it sends DELETE to the session URL and closes the
// PeerConnection.
//
// Cancelling ctx while frames are being sent is a normal end (nil error);
// cancelling it earlier returns ctx's error. Errors name the step that
// failed; a non-201 answer's error has the HTTP status and body. The
// returned Stats are valid with an error too.
func Publish(ctx context.Context, o Options) (Stats, error) {
	var st Stats
	if o.URL == "" {
		return st, errors.New("whip: no URL")
	}
	endpoint, err := url.Parse(o.URL)
	if err != nil || (endpoint.Scheme != "http" && endpoint.Scheme != "https") || endpoint.Host == "" {
		return st, fmt.Errorf("whip: bad URL %q (want http(s)://host/path)", o.URL)
	}
	frames, codec, fileFPS, err := loadFile(o.File)
	if err != nil {
		return st, fmt.Errorf("whip: read file: %w", err)
	}
	fps := o.FPS
	if fps <= 0 {
		fps = fileFPS
	}
	if fps <= 0 || fps > 1000 {
		fps = 25
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}

	s := &session{o: o, endpoint: endpoint, codec: codec, frames: frames, fps: fps}
	s.client = &http.Client{Transport: &http.Transport{
		Proxy:             http.ProxyFromEnvironment,
		DialContext:       (&net.Dialer{Timeout: dialTimeout}).DialContext,
		DisableKeepAlives: true, // two requests per session: no idle connections left behind
		ForceAttemptHTTP2: false,
	}}
	err = s.run(ctx)
	st = s.stats
	st.PLIs = int(s.plis.Load())
	return st, err
}

type session struct {
	o        Options
	endpoint *url.URL
	codec    string
	frames   [][]byte
	fps      float64
	client   *http.Client

	stats Stats
	plis  atomic.Int64
	kfReq chan struct{} // a PLI/FIR arrived (buffered 1)
}

func (s *session) run(ctx context.Context) (err error) {
	params, err := codecParams(s.codec)
	if err != nil {
		return fmt.Errorf("whip: %w", err)
	}
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(params, webrtc.RTPCodecTypeVideo); err != nil {
		return fmt.Errorf("whip: register codec: %w", err)
	}
	api, release, err := newAPI(me, s.o.Loopback)
	if err != nil {
		return fmt.Errorf("whip: %w", err)
	}
	defer release()

	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fmt.Errorf("whip: new PeerConnection: %w", err)
	}
	var rtcpDone sync.WaitGroup
	defer func() {
		if cerr := pc.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("whip: close PeerConnection: %w", cerr)
		}
		rtcpDone.Wait()
	}()

	// Connection state, as channels closed once.
	connected, failed := make(chan struct{}), make(chan struct{})
	var connectedOnce, failedOnce sync.Once
	var lastState atomic.Value
	lastState.Store(webrtc.PeerConnectionStateNew)
	pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		lastState.Store(state)
		switch state {
		case webrtc.PeerConnectionStateConnected:
			connectedOnce.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			failedOnce.Do(func() { close(failed) })
		}
	})

	var track webrtc.TrackLocal
	var write func(frame []byte, dur time.Duration) error
	if s.o.NoMarker {
		t, err := webrtc.NewTrackLocalStaticRTP(params.RTPCodecCapability, "video", "whippub")
		if err != nil {
			return fmt.Errorf("whip: new track: %w", err)
		}
		var pay rtp.Payloader = &codecs.VP8Payloader{}
		if s.codec == CodecH264 {
			pay = &codecs.H264Payloader{}
		}
		pk := rtp.NewPacketizer(1200, uint8(params.PayloadType), 0, pay, rtp.NewRandomSequencer(), 90000)
		track, write = t, func(frame []byte, _ time.Duration) error {
			for _, p := range pk.Packetize(frame, 0) { // 0 samples: the timestamp never moves
				p.Marker = false
				if err := t.WriteRTP(p); err != nil {
					return err
				}
			}
			return nil
		}
	} else {
		t, err := webrtc.NewTrackLocalStaticSample(params.RTPCodecCapability, "video", "whippub")
		if err != nil {
			return fmt.Errorf("whip: new track: %w", err)
		}
		track, write = t, func(frame []byte, dur time.Duration) error {
			return t.WriteSample(media.Sample{Data: frame, Duration: dur})
		}
	}
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return fmt.Errorf("whip: add track: %w", err)
	}
	sender := tr.Sender()
	s.kfReq = make(chan struct{}, 1)
	rtcpDone.Add(1)
	go func() { // read RTCP: this also drives the interceptors (NACK responses, reports)
		defer rtcpDone.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := sender.Read(buf)
			if err != nil {
				return // sender stopped (PeerConnection closed)
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					s.plis.Add(1)
					select {
					case s.kfReq <- struct{}{}:
					default:
					}
				}
			}
		}
	}()

	// Offer, with all candidates (WHIP without trickle).
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("whip: create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("whip: set offer: %w", err)
	}
	gatherTimer := time.NewTimer(GatherTimeout)
	defer gatherTimer.Stop()
	select {
	case <-gathered:
	case <-ctx.Done():
		return ctx.Err()
	case <-gatherTimer.C:
		return fmt.Errorf("whip: ICE gathering not complete after %v", GatherTimeout)
	}
	local := pc.LocalDescription()
	if local == nil {
		return errors.New("whip: no local description after gathering")
	}

	// POST the offer.
	answer, err := s.post(ctx, local.SDP)
	if err != nil {
		return err
	}
	// From here on the server has a session: always DELETE it.
	defer func() {
		if derr := s.delete(ctx); derr != nil {
			err = errors.Join(err, derr)
		}
	}()

	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("whip: set answer: %w", err)
	}
	connTimer := time.NewTimer(ConnectTimeout)
	defer connTimer.Stop()
	select {
	case <-connected:
	case <-failed:
		return fmt.Errorf("whip: connect: connection %s", lastState.Load())
	case <-ctx.Done():
		return ctx.Err()
	case <-connTimer.C:
		return fmt.Errorf("whip: connect: not connected after %v (state %s)", ConnectTimeout, lastState.Load())
	}

	return s.stream(ctx, write, failed, &lastState)
}

// post sends the offer and returns the answer SDP; it sets s.stats.Location.
func (s *session) post(ctx context.Context, offer string) (string, error) {
	pctx, cancel := context.WithTimeout(ctx, HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodPost, s.endpoint.String(), strings.NewReader(offer))
	if err != nil {
		return "", fmt.Errorf("whip: POST: %w", err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Accept", "application/sdp")
	if s.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.o.Token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("whip: POST %s: %w", s.endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("whip: POST %s: reading the answer: %w", s.endpoint, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("whip: POST %s: %s (want 201 Created): %s", s.endpoint, resp.Status, bodySnippet(body))
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("whip: POST %s: 201 without a Location header", s.endpoint)
	}
	locURL, err := resp.Request.URL.Parse(loc) // relative to the (final) request URL
	if err != nil {
		return "", fmt.Errorf("whip: POST %s: bad Location %q: %w", s.endpoint, loc, err)
	}
	s.stats.Location = locURL.String()
	if len(body) == 0 {
		return "", fmt.Errorf("whip: POST %s: 201 with an empty body (want an SDP answer)", s.endpoint)
	}
	return string(body), nil
}

// delete ends the session on the server; it runs even when ctx is done.
func (s *session) delete(ctx context.Context) error {
	if s.stats.Location == "" {
		return nil
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DeleteTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(dctx, http.MethodDelete, s.stats.Location, nil)
	if err != nil {
		return fmt.Errorf("whip: DELETE: %w", err)
	}
	if s.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.o.Token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("whip: DELETE %s: %w", s.stats.Location, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("whip: DELETE %s: %s: %s", s.stats.Location, resp.Status, bodySnippet(body))
	}
	return nil
}

func bodySnippet(b []byte) string {
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "(empty body)"
	}
	if len(t) > 512 {
		t = t[:512] + "..."
	}
	return fmt.Sprintf("%q", t)
}

// stream sends the frames paced at s.fps until the file ends (without
// Loop), Frames are sent, ctx is done or the connection fails.
func (s *session) stream(ctx context.Context, write func([]byte, time.Duration) error, failed <-chan struct{}, state *atomic.Value) error {
	n := len(s.frames)
	key := make([]bool, n)
	for i, f := range s.frames {
		key[i] = IsKeyframe(s.codec, f)
	}
	interval := time.Duration(float64(time.Second) / s.fps)
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := time.Now()
	var lastKey time.Time
	defer func() {
		if s.stats.Sent > 0 {
			s.stats.Duration = time.Since(start)
		}
	}()
	idx := 0
	for {
		select {
		case <-ctx.Done():
			return nil // a normal end while streaming
		case <-failed:
			return fmt.Errorf("whip: send: connection %s after %d frames", state.Load(), s.stats.Sent)
		case <-s.kfReq:
			// H.264: a PLI means the receiver cannot decode until the next
			// IDR: skip ahead to the file's next one (unless one was sent
			// within pliGrace: the request probably crossed it).
			if s.codec == CodecH264 && idx < n && !key[idx] && time.Since(lastKey) > pliGrace {
				if j := nextKey(key, idx, s.o.Loop); j >= 0 {
					idx = j
				}
			}
			continue
		case <-timer.C:
		}
		// The previous frame has had its time: stop here if it was the last.
		if s.o.Frames > 0 && s.stats.Sent >= s.o.Frames {
			return nil
		}
		if idx >= n {
			if !s.o.Loop {
				return nil
			}
			idx = 0
		}
		if err := write(s.frames[idx], interval); err != nil {
			return fmt.Errorf("whip: send frame %d: %w", s.stats.Sent, err)
		}
		if s.o.OnSent != nil {
			s.o.OnSent(s.stats.Sent, time.Now())
		}
		if key[idx] {
			s.stats.Keyframes++
			lastKey = time.Now()
		}
		s.stats.Sent++
		idx++
		// Pace on an absolute schedule so rounding does not drift.
		timer.Reset(time.Until(start.Add(time.Duration(float64(s.stats.Sent) * float64(time.Second) / s.fps))))
	}
}

// nextKey finds the first key frame at or after i (wrapping when loop); -1
// if none.
func nextKey(key []bool, i int, loop bool) int {
	for j := i; j < len(key); j++ {
		if key[j] {
			return j
		}
	}
	if loop {
		for j := 0; j < i; j++ {
			if key[j] {
				return j
			}
		}
	}
	return -1
}
