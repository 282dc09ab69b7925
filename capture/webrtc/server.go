package webrtc

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/affectd/affectd/capture/streamid"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	pion "github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure the WHIP server.
type Options struct {
	// UDPPort is the one UDP port every session's ICE traffic shares (a
	// muxed socket, easy to open in a firewall); 0 picks a free port.
	// PortMin/PortMax, when set, use a range of ports instead.
	UDPPort          int
	PortMin, PortMax uint16
	// NAT1To1IPs are the public addresses to announce when the server sits
	// behind a 1:1 NAT.
	NAT1To1IPs []string
	// ReceiveBuffer is the muxed socket's receive buffer (default 4 MiB: a
	// bursty sender's key frame otherwise overflows the kernel default).
	ReceiveBuffer int
	// Loopback offers 127.0.0.1 candidates only (tests, one machine).
	Loopback bool
	// Token is the bearer token publishers need ("": none) unless their
	// stream has its own.
	Token string
	// AllowDynamic accepts publishers for stream ids nobody configured;
	// Dynamic makes the stream. MaxSessions bounds concurrent sessions.
	AllowDynamic bool
	Dynamic      func(ctx context.Context, stream string) (*Source, error)
	MaxSessions  int
	// CORSOrigin is sent as Access-Control-Allow-Origin: one origin, "*"
	// for any, or "" (the default) for no CORS at all: pages of other
	// origins cannot publish.
	CORSOrigin string
	// PLIInterval is the least time between two key-frame requests to a
	// publisher (default 500ms).
	PLIInterval time.Duration
	// Prefix is the URL path the server is mounted at (default /v1/whip/).
	Prefix string
	// MaxFrameBytes bounds one assembled frame (default 8 MiB): a larger
	// one is dropped (frames_dropped{reason="frame_too_large"}) and what is
	// buffered for a frame never grows past it.
	MaxFrameBytes int
	// MaxPixels bounds a decoded picture's width × height (default
	// 4096×2304): a stream announcing larger pictures is refused before
	// they are allocated (frames_dropped{reason="picture_too_large"}).
	MaxPixels int
	// Registerer receives the WebRTC metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// Server answers WHIP (RFC 9725) publishers and hands their video to the
// Source of the stream they publish to. ServeHTTP and the registration
// methods are safe for concurrent use; pion's callbacks only forward
// events to the session's owner, the Source's Run goroutine.
type Server struct {
	o   Options
	api *pion.API
	mux ice.UDPMux
	udp net.PacketConn
	m   *metrics

	mu       sync.Mutex
	sources  map[string]*Source
	sessions map[string]*session
	closed   bool
}

// Errors of the WHIP endpoint, each with its HTTP status.
var (
	errNoStream     = errors.New("no such stream")
	errBusy         = errors.New("the stream already has a publisher")
	errTooMany      = errors.New("too many WebRTC sessions")
	errNoVideoCodec = errors.New("the offer has no video in a supported codec (H.264 packetization-mode=1, or VP8)")
)

// NewServer opens the ICE socket and prepares the WebRTC stack.
func NewServer(o Options) (*Server, error) {
	if o.ReceiveBuffer <= 0 {
		o.ReceiveBuffer = 4 << 20
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 8
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = 8 << 20
	}
	if o.MaxPixels <= 0 {
		o.MaxPixels = 4096 * 2304
	}
	if o.PLIInterval <= 0 {
		o.PLIInterval = 500 * time.Millisecond
	}
	if o.Prefix == "" {
		o.Prefix = "/v1/whip/"
	}
	s := &Server{o: o, sources: map[string]*Source{}, sessions: map[string]*session{}}
	var err error
	if s.m, err = newMetrics(o.Registerer); err != nil {
		return nil, err
	}

	me := &pion.MediaEngine{}
	fb := []pion.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	for _, c := range []pion.RTPCodecParameters{
		{RTPCodecCapability: pion.RTPCodecCapability{MimeType: pion.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: fb}, PayloadType: 102},
		{RTPCodecCapability: pion.RTPCodecCapability{MimeType: pion.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", RTCPFeedback: fb}, PayloadType: 108},
		{RTPCodecCapability: pion.RTPCodecCapability{MimeType: pion.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032", RTCPFeedback: fb}, PayloadType: 112},
		{RTPCodecCapability: pion.RTPCodecCapability{MimeType: pion.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 96},
	} {
		if err := me.RegisterCodec(c, pion.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("webrtc: codec %s: %w", c.MimeType, err)
		}
	}
	ir := &interceptor.Registry{}
	if err := pion.RegisterDefaultInterceptors(me, ir); err != nil { // NACK, RTCP reports
		return nil, fmt.Errorf("webrtc: interceptors: %w", err)
	}

	se := pion.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4, pion.NetworkTypeUDP6})
	if len(o.NAT1To1IPs) > 0 { // host candidates carry the public addresses instead
		err := se.SetICEAddressRewriteRules(pion.ICEAddressRewriteRule{
			External: o.NAT1To1IPs, AsCandidateType: pion.ICECandidateTypeHost, Mode: pion.ICEAddressRewriteReplace,
		})
		if err != nil {
			return nil, fmt.Errorf("webrtc: nat_1to1_ips: %w", err)
		}
	}
	if o.Loopback {
		se.SetIncludeLoopbackCandidate(true)
		se.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4})
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	switch {
	case o.PortMin > 0 && o.PortMax >= o.PortMin:
		if err := se.SetEphemeralUDPPortRange(o.PortMin, o.PortMax); err != nil {
			return nil, fmt.Errorf("webrtc: port range: %w", err)
		}
	default:
		host := ""
		if o.Loopback {
			host = "127.0.0.1"
		}
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host), Port: o.UDPPort})
		if err != nil {
			return nil, fmt.Errorf("webrtc: ICE UDP port %d: %w", o.UDPPort, err)
		}
		if err := udp.SetReadBuffer(o.ReceiveBuffer); err != nil {
			udp.Close()
			return nil, fmt.Errorf("webrtc: receive buffer: %w", err)
		}
		s.udp = udp
		s.mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: udp})
		se.SetICEUDPMux(s.mux)
	}
	s.api = pion.NewAPI(pion.WithMediaEngine(me), pion.WithInterceptorRegistry(ir), pion.WithSettingEngine(se))
	return s, nil
}

// UDPAddr is the muxed ICE socket's address (nil with a port range).
func (s *Server) UDPAddr() net.Addr {
	if s.udp == nil {
		return nil
	}
	return s.udp.LocalAddr()
}

// Register makes a stream publishable: its Source is what the daemon
// runs. token, when set, replaces the server's token for this stream.
func (s *Server) Register(stream, token string) (*Source, error) {
	if err := streamid.Check(stream); err != nil {
		return nil, fmt.Errorf("webrtc: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sources[stream]; ok {
		return nil, fmt.Errorf("webrtc: stream %q registered twice", stream)
	}
	src := newSource(s, stream, token)
	s.sources[stream] = src
	return src, nil
}

// Unregister removes a stream and ends its session, if any.
func (s *Server) Unregister(stream string) {
	s.mu.Lock()
	src := s.sources[stream]
	s.mu.Unlock()
	if src != nil {
		s.unregister(src)
	}
}

// unregister removes src if it is still the stream's source.
func (s *Server) unregister(src *Source) {
	src.goneOnce.Do(func() { close(src.gone) })
	s.mu.Lock()
	if s.sources[src.stream] == src {
		delete(s.sources, src.stream)
	}
	var sess *session
	for _, x := range s.sessions {
		if x.src == src {
			sess = x
		}
	}
	s.mu.Unlock()
	if sess != nil {
		sess.end(errors.New("stream removed"))
	}
}

// Close ends every session and frees the ICE socket. Safe to call twice.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var ss []*session
	for _, x := range s.sessions {
		ss = append(ss, x)
	}
	s.mu.Unlock()
	for _, x := range ss {
		x.end(errors.New("server closing"))
		<-x.done
	}
	var err error
	if s.mux != nil {
		err = s.mux.Close()
	}
	return err
}

// ServeHTTP is the WHIP endpoint, mounted at Prefix:
//
//	POST    {prefix}{stream}            application/sdp offer → 201, Location, answer
//	DELETE  {prefix}{stream}/{session}  ends the session
//	PATCH   {prefix}{stream}/{session}  405: no trickle ICE (the answer holds every candidate)
//	OPTIONS …                           CORS pre-flight, Accept-Post
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if o := s.o.CORSOrigin; o != "" { // CORS only for the configured origin
		h.Set("Access-Control-Allow-Origin", o)
		h.Set("Access-Control-Expose-Headers", "Location, Accept-Post, Link")
		if o != "*" {
			h.Add("Vary", "Origin")
		}
	}
	rest, ok := strings.CutPrefix(r.URL.Path, s.o.Prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	parts := strings.Split(rest, "/")
	if len(parts) == 0 || parts[0] == "" || len(parts) > 2 {
		http.Error(w, "want "+s.o.Prefix+"{stream} or "+s.o.Prefix+"{stream}/{session}", http.StatusNotFound)
		return
	}
	stream := parts[0]
	if err := streamid.Check(stream); err != nil { // before it reaches a map, a label or a log
		s.m.refused.WithLabelValues("bad_id").Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "POST, DELETE, PATCH, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
		h.Set("Access-Control-Max-Age", "600")
		if len(parts) == 1 {
			h.Set("Accept-Post", "application/sdp")
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !s.authorized(r, stream) {
		h.Set("WWW-Authenticate", `Bearer realm="affectd"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch {
	case len(parts) == 1 && r.Method == http.MethodPost:
		s.publish(w, r, stream)
	case len(parts) == 2 && r.Method == http.MethodDelete:
		s.mu.Lock()
		sess := s.sessions[parts[1]]
		s.mu.Unlock()
		if sess == nil || sess.src.stream != stream {
			http.Error(w, "no such session", http.StatusNotFound)
			return
		}
		sess.end(errors.New("publisher ended the session (DELETE)"))
		w.WriteHeader(http.StatusOK)
	case len(parts) == 2 && r.Method == http.MethodPatch:
		h.Set("Allow", "DELETE, OPTIONS")
		http.Error(w, "trickle ICE is not supported: send every candidate in the offer", http.StatusMethodNotAllowed)
	default:
		if len(parts) == 1 {
			h.Set("Allow", "POST, OPTIONS")
		} else {
			h.Set("Allow", "DELETE, PATCH, OPTIONS")
		}
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) authorized(r *http.Request, stream string) bool {
	s.mu.Lock()
	want := s.o.Token
	if src := s.sources[stream]; src != nil && src.token != "" {
		want = src.token
	}
	s.mu.Unlock()
	if want == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// publish answers one offer.
func (s *Server) publish(w http.ResponseWriter, r *http.Request, stream string) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/sdp" {
		w.Header().Set("Accept-Post", "application/sdp")
		http.Error(w, "want Content-Type: application/sdp", http.StatusUnsupportedMediaType)
		s.m.refused.WithLabelValues("content_type").Inc()
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil {
		http.Error(w, "reading the offer: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > 64<<10 {
		http.Error(w, "offer larger than 64 KiB", http.StatusRequestEntityTooLarge)
		s.m.refused.WithLabelValues("bad_offer").Inc()
		return
	}
	answer, sess, err := s.answer(r.Context(), stream, string(body))
	if err != nil {
		code := http.StatusBadRequest
		reason := "bad_offer"
		switch {
		case errors.Is(err, errNoStream):
			code, reason = http.StatusNotFound, "no_stream"
		case errors.Is(err, errBusy):
			code, reason = http.StatusConflict, "busy"
		case errors.Is(err, errTooMany):
			code, reason = http.StatusServiceUnavailable, "too_many"
			w.Header().Set("Retry-After", "5") // a session may end by then
		}
		s.m.refused.WithLabelValues(reason).Inc()
		http.Error(w, err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", s.o.Prefix+stream+"/"+sess.id)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
}

// answer checks the offer, creates the session and hands it to the
// stream's Source.
func (s *Server) answer(ctx context.Context, stream, offer string) (string, *session, error) {
	if err := checkOffer(offer); err != nil {
		return "", nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", nil, errTooMany
	}
	src := s.sources[stream]
	n := len(s.sessions)
	s.mu.Unlock()
	if src != nil && src.busy() { // the accurate answer first: 409, not 503
		return "", nil, fmt.Errorf("%w %q", errBusy, stream)
	}
	if n >= s.o.MaxSessions {
		return "", nil, fmt.Errorf("%w (%d)", errTooMany, s.o.MaxSessions)
	}
	created := false
	if src == nil {
		if !s.o.AllowDynamic || s.o.Dynamic == nil {
			return "", nil, fmt.Errorf("%w %q (not configured as a whip stream)", errNoStream, stream)
		}
		var err error
		if src, err = s.o.Dynamic(ctx, stream); err != nil {
			return "", nil, fmt.Errorf("%w %q: %v", errNoStream, stream, err)
		}
		created = true
	}
	fail := func(err error) (string, *session, error) {
		if created { // a dynamic stream exists only with a negotiated session
			s.unregister(src)
		}
		return "", nil, err
	}
	sess, err := s.newSession(src)
	if err != nil {
		return fail(err)
	}
	answer, err := sess.negotiate(offer)
	if err != nil {
		sess.end(err)
		return fail(err)
	}
	if !src.offer(sess) {
		sess.end(errBusy)
		return fail(fmt.Errorf("%w %q", errBusy, stream))
	}
	return answer, sess, nil
}

// checkOffer parses the SDP: an offer with at least one video section.
func checkOffer(offer string) error {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return fmt.Errorf("not an SDP offer: %v", err)
	}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media == "video" {
			return nil
		}
	}
	return errNoVideoCodec
}
