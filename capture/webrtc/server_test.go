package webrtc

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	pion "github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/tools/testenv"
)

// offerSDP makes a real offer from a pion peer sending one video track.
func offerSDP(t testing.TB, mime string) (string, *pion.PeerConnection) {
	t.Helper()
	se := pion.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	me := &pion.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	api := pion.NewAPI(pion.WithSettingEngine(se), pion.WithMediaEngine(me))
	pc, err := api.NewPeerConnection(pion.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := pion.NewTrackLocalStaticSample(pion.RTPCodecCapability{MimeType: mime}, "video", "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(tr, pion.RTPTransceiverInit{Direction: pion.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := pion.GatheringCompletePromise(pc)
	pc.SetLocalDescription(offer)
	<-done
	return pc.LocalDescription().SDP, pc
}

// sink is a capture.Sink that only counts.
type sink struct {
	pool   *capture.Pool
	frames int
	ups    int
	ends   int
}

func (s *sink) Frame() *capture.Frame              { return s.pool.Get() }
func (s *sink) Deliver(f *capture.Frame)           { s.frames++; f.Release() }
func (s *sink) Discard(f *capture.Frame, _ string) { f.Release() }
func (s *sink) Up()                                { s.ups++ }
func (s *sink) Ended(error)                        { s.ends++ }

// newTestServer starts a loopback WHIP server; stop closes it.
func newTestServer(t testing.TB, o Options) (s *Server, hs *httptest.Server, stop func()) {
	t.Helper()
	o.Loopback = true
	o.Registerer = prometheus.NewRegistry()
	s, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	hs = httptest.NewServer(s)
	return s, hs, func() {
		hs.Close()
		s.Close()
	}
}

func do(t testing.TB, method, url, ctype, token, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v (body %q)", method, url, err, body)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestWHIPStatusCodes sends each kind of bad request and checks the answer
// RFC 9725 asks for, then that no goroutine is left behind.
func TestWHIPStatusCodes(t *testing.T) {
	goroutines := testenv.SnapshotGoroutines()
	func() {
		s, hs, stop := newTestServer(t, Options{Token: "tok", CORSOrigin: "https://app.example.com"})
		defer stop()
		src, err := s.Register("cam", "")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		runDone := make(chan struct{})
		go func() {
			src.Run(ctx, &sink{pool: capture.NewPool(2)})
			close(runDone)
		}()
		defer func() { cancel(); <-runDone }()

		offer, client := offerSDP(t, pion.MimeTypeH264)
		defer client.Close()
		audioOnly := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
		base := hs.URL + "/v1/whip/"
		for _, tc := range []struct {
			name, method, path, ctype, token, body string
			want                                   int
		}{
			{"wrong content type", "POST", "cam", "application/json", "tok", offer, 415},
			{"no token", "POST", "cam", "application/sdp", "", offer, 401},
			{"wrong token", "POST", "cam", "application/sdp", "nope", offer, 401},
			{"not SDP", "POST", "cam", "application/sdp", "tok", "hello", 400},
			{"no video", "POST", "cam", "application/sdp", "tok", audioOnly, 400},
			{"unknown stream", "POST", "nope", "application/sdp", "tok", offer, 404},
			{"unknown session", "DELETE", "cam/0123", "", "tok", "", 404},
			{"trickle", "PATCH", "cam/0123", "application/trickle-ice-sdpfrag", "tok", "a=x", 405},
			{"GET", "GET", "cam", "", "tok", "", 405},
			{"pre-flight", "OPTIONS", "cam", "", "", "", 204},
			{"invalid id", "POST", "%ff", "application/sdp", "tok", offer, 400},
			{"long id", "POST", strings.Repeat("x", 10000), "application/sdp", "tok", offer, 400},
			{"dot-dot id", "POST", "a..b", "application/sdp", "tok", offer, 400},
			{"id with a newline", "POST", "a%0Ab", "application/sdp", "tok", offer, 400},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := do(t, tc.method, base+tc.path, tc.ctype, tc.token, tc.body)
				if resp.StatusCode != tc.want {
					t.Fatalf("%s %s: %d %q, want %d", tc.method, tc.path, resp.StatusCode, body, tc.want)
				}
				if tc.want == 415 && resp.Header.Get("Accept-Post") != "application/sdp" {
					t.Error("415 without Accept-Post")
				}
				if tc.method == "OPTIONS" && (resp.Header.Get("Accept-Post") != "application/sdp" || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com") {
					t.Errorf("OPTIONS headers %v", resp.Header)
				}
			})
		}
		// A good offer: 201 with Location and an answer; a second: 409.
		resp, answer := do(t, "POST", base+"cam", "application/sdp", "tok", offer)
		if resp.StatusCode != 201 || !strings.HasPrefix(resp.Header.Get("Location"), "/v1/whip/cam/") || !strings.Contains(answer, "m=video") {
			t.Fatalf("good offer: %d %v %q", resp.StatusCode, resp.Header, answer)
		}
		offer2, client2 := offerSDP(t, pion.MimeTypeVP8)
		defer client2.Close()
		if resp2, body := do(t, "POST", base+"cam", "application/sdp", "tok", offer2); resp2.StatusCode != 409 {
			t.Fatalf("second publisher: %d %q, want 409", resp2.StatusCode, body)
		}
		if resp3, _ := do(t, "DELETE", hs.URL+resp.Header.Get("Location"), "", "tok", ""); resp3.StatusCode != 200 {
			t.Fatalf("DELETE: %d", resp3.StatusCode)
		}
		// The stream takes a publisher again once the session is gone.
		deadline := time.Now().Add(5 * time.Second)
		for {
			offer3, client3 := offerSDP(t, pion.MimeTypeVP8)
			r, _ := do(t, "POST", base+"cam", "application/sdp", "tok", offer3)
			client3.Close()
			if r.StatusCode == 201 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after DELETE, a new publisher still gets %d", r.StatusCode)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	goroutines.Check(t)
}

// FuzzWHIPOffer posts arbitrary bodies to the offer endpoint: it answers
// with a defined status, never panics, and leaves no session behind.
func FuzzWHIPOffer(f *testing.F) {
	offer, client := offerSDP(f, pion.MimeTypeH264)
	client.Close()
	for _, seed := range []string{offer, "", "v=0\r\n", "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 RTP/AVP 96\r\n",
		strings.Replace(offer, "H264", "AV1X", -1), strings.Repeat("a=x\r\n", 1000)} {
		f.Add(seed)
	}
	s, hs, stop := newTestServer(f, Options{})
	f.Cleanup(stop)
	src, _ := s.Register("cam", "")
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	go src.Run(ctx, &sink{pool: capture.NewPool(2)})
	f.Fuzz(func(t *testing.T, body string) {
		resp, _ := do(t, "POST", hs.URL+"/v1/whip/cam", "application/sdp", "", body)
		switch resp.StatusCode {
		case 201:
			do(t, "DELETE", hs.URL+resp.Header.Get("Location"), "", "", "")
		case 400, 409, 413, 503:
		default:
			t.Fatalf("status %d for %q", resp.StatusCode, body)
		}
	})
}

// TestDynamicFailedOfferLeavesNothing: with dynamic streams on, an offer
// that fails to negotiate (no ICE credentials, no DTLS fingerprint) leaves no
// stream behind (before, each left a stream "starting" forever, outside
// max_sessions), and an id that is no valid stream id never reaches the
// stream factory.
func TestDynamicFailedOfferLeavesNothing(t *testing.T) {
	goroutines := testenv.SnapshotGoroutines()
	var s *Server
	made := map[string]bool{}
	runs := make(chan error, 10)
	var mu sync.Mutex
	s, hs, stop := newTestServer(t, Options{AllowDynamic: true, Dynamic: func(ctx context.Context, id string) (*Source, error) {
		src, err := s.NewDynamicSource(id)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		made[id] = true
		mu.Unlock()
		go func() { runs <- src.Run(context.Background(), &sink{pool: capture.NewPool(2)}) }()
		return src, nil
	}})
	broken := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n"
	resp, body := do(t, "POST", hs.URL+"/v1/whip/dyn1", "application/sdp", "", broken)
	if resp.StatusCode != 400 {
		t.Fatalf("an offer that cannot be negotiated: %d %q, want 400", resp.StatusCode, body)
	}
	select {
	case err := <-runs:
		if !errors.Is(err, capture.ErrEnded) {
			t.Errorf("the failed stream's Run returned %v, want ErrEnded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dynamic stream of a failed offer is still running")
	}
	s.mu.Lock()
	left := len(s.sources)
	s.mu.Unlock()
	if left != 0 {
		t.Errorf("%d streams registered after a failed offer", left)
	}
	offer, client := offerSDP(t, pion.MimeTypeVP8)
	for _, bad := range []string{"%ff", strings.Repeat("y", 10000), "a..b"} {
		if resp, _ := do(t, "POST", hs.URL+"/v1/whip/"+bad, "application/sdp", "", offer); resp.StatusCode != 400 {
			t.Errorf("id %q: %d, want 400", bad, resp.StatusCode)
		}
	}
	mu.Lock()
	if len(made) != 1 {
		t.Errorf("streams made: %v, want only dyn1", made)
	}
	mu.Unlock()
	client.Close()
	stop()
	goroutines.Check(t)
}

// TestTooManySessions: past webrtc.max_sessions an offer gets 503 with
// Retry-After and is counted as too_many; a second offer for a stream
// that has its publisher gets 409.
func TestTooManySessions(t *testing.T) {
	s, hs, stop := newTestServer(t, Options{MaxSessions: 1})
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	var runs sync.WaitGroup
	defer func() { cancel(); runs.Wait() }()
	for _, id := range []string{"a", "b"} {
		src, err := s.Register(id, "")
		if err != nil {
			t.Fatal(err)
		}
		runs.Add(1)
		go func() { defer runs.Done(); src.Run(ctx, &sink{pool: capture.NewPool(2)}) }()
	}
	offer, client := offerSDP(t, pion.MimeTypeVP8)
	defer client.Close()
	if resp, body := do(t, "POST", hs.URL+"/v1/whip/a", "application/sdp", "", offer); resp.StatusCode != 201 {
		t.Fatalf("the first offer: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, "POST", hs.URL+"/v1/whip/a", "application/sdp", "", offer); resp.StatusCode != 409 {
		t.Errorf("a second publisher of a: %d, want 409", resp.StatusCode)
	}
	resp, _ := do(t, "POST", hs.URL+"/v1/whip/b", "application/sdp", "", offer)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("an offer past max_sessions: %d %v, want 503 with Retry-After", resp.StatusCode, resp.Header)
	}
	if n := testutil.ToFloat64(s.m.refused.WithLabelValues("too_many")); n != 1 {
		t.Errorf("refused{too_many} = %v, want 1", n)
	}
}
