package whip

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// ---------------------------------------------------------------- inputs

// makeInput converts the one_face clip (H.264 baseline, 150 frames at 25
// fps, a key frame every 25) to an Annex-B (.h264, with AUDs unless noAUD)
// or VP8 IVF (.ivf) file in a temporary directory.
func makeInput(t *testing.T, codec string, noAUD bool) string {
	t.Helper()
	ff, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not installed")
	}
	clip, err := testmedia.Ensure("one_face", 640, 360)
	if err != nil {
		t.Fatalf("testmedia: %v", err)
	}
	dir := t.TempDir()
	var out string
	var args []string
	switch codec {
	case CodecH264:
		out = filepath.Join(dir, "clip.h264")
		bsf := "h264_mp4toannexb,h264_metadata=aud=insert"
		if noAUD {
			bsf = "h264_mp4toannexb,h264_metadata=aud=remove"
		}
		args = []string{"-c:v", "copy", "-bsf:v", bsf, "-f", "h264", out}
	case CodecVP8:
		out = filepath.Join(dir, "clip.ivf")
		args = []string{"-c:v", "libvpx", "-b:v", "1M", "-deadline", "realtime", "-g", "25", "-threads", "1", "-f", "ivf", out}
	}
	cmd := exec.Command(ff, append([]string{"-nostdin", "-v", "error", "-y", "-i", clip.Path, "-an"}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	return out
}

func checkKeyEvery25(t *testing.T, codec string, frames [][]byte) {
	t.Helper()
	for i, f := range frames {
		if got, want := IsKeyframe(codec, f), i%25 == 0; got != want {
			t.Errorf("frame %d: key frame %v, want %v", i, got, want)
		}
	}
}

func TestReadAnnexB(t *testing.T) {
	for _, noAUD := range []bool{false, true} {
		t.Run(fmt.Sprintf("noAUD=%v", noAUD), func(t *testing.T) {
			path := makeInput(t, CodecH264, noAUD)
			aus, err := ReadAnnexB(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(aus) != 150 {
				t.Fatalf("%d access units, want 150", len(aus))
			}
			checkKeyEvery25(t, CodecH264, aus)
			data, _ := os.ReadFile(path)
			if !bytes.Equal(bytes.Join(aus, nil), data) {
				t.Error("access units do not add up to the file")
			}
			hasAUD := false
			for i, au := range aus {
				if !bytes.HasPrefix(au, []byte{0, 0, 1}) && !bytes.HasPrefix(au, []byte{0, 0, 0, 1}) {
					t.Fatalf("access unit %d does not start with a start code", i)
				}
				nals, _ := splitAnnexB(au)
				vcl := 0
				for j, n := range nals {
					typ := n.payload[0] & 0x1f
					if typ == nalAUD {
						hasAUD = true
						if j != 0 {
							t.Errorf("access unit %d: AUD is NAL %d", i, j)
						}
					}
					if isVCL(typ) {
						vcl++
					} else if vcl > 0 && (typ == nalSPS || typ == nalPPS) {
						t.Errorf("access unit %d: SPS/PPS after its picture", i)
					}
				}
				if vcl == 0 {
					t.Errorf("access unit %d has no slice", i)
				}
			}
			if hasAUD == noAUD {
				t.Errorf("AUDs present: %v (noAUD %v)", hasAUD, noAUD)
			}
			// the SPS/PPS travel with the IDR frames
			nals, _ := splitAnnexB(aus[0])
			var types []byte
			for _, n := range nals {
				types = append(types, n.payload[0]&0x1f)
			}
			if !bytes.Contains(types, []byte{nalSPS}) || !bytes.Contains(types, []byte{nalPPS}) {
				t.Errorf("first access unit NAL types %v: no SPS/PPS", types)
			}
		})
	}
}

func TestReadIVF(t *testing.T) {
	path := makeInput(t, CodecVP8, false)
	frames, fps, err := ReadIVF(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 150 || fps != 25 {
		t.Fatalf("%d frames at %v fps, want 150 at 25", len(frames), fps)
	}
	checkKeyEvery25(t, CodecVP8, frames)
}

func TestIsKeyframe(t *testing.T) {
	idr := []byte{0, 0, 0, 1, 0x09, 0x10, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88}
	p := []byte{0, 0, 0, 1, 0x09, 0x30, 0, 0, 1, 0x41, 0x9a}
	if !IsKeyframe("h264", idr) || IsKeyframe("video/H264", p) || !IsKeyframe("VP8", []byte{0x10}) || IsKeyframe("vp8", []byte{0x11}) || IsKeyframe("vp8", nil) {
		t.Error("IsKeyframe is wrong")
	}
}

// ---------------------------------------------------------------- a WHIP server

const sessionPath = "/whip/x/session1"

// whipServer is a WHIP endpoint at /whip/x backed by a real pion answerer
// on loopback. It reassembles the received frames with pion's samplebuilder
// and sends one PLI after the 5th frame.
type whipServer struct {
	t        *testing.T
	srv      *httptest.Server
	codec    string
	loopback bool // ICE on 127.0.0.1 only (newWHIPServer sets it)

	mu           sync.Mutex
	pc           *webrtc.PeerConnection
	release      func()
	auth         string
	posts        int
	deletes      int
	frames       int
	keyframes    int
	pliAt        int // frames assembled when the PLI was sent (0: not sent)
	keyAfterPLI  int // frames assembled at the first key frame after the PLI (0: none)
	dropped      uint16
	readDone     chan struct{}
	readDoneOnce sync.Once
}

func newWHIPServer(t *testing.T, codec string) *whipServer {
	s := &whipServer{t: t, codec: codec, loopback: true, readDone: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *whipServer) URL() string { return s.srv.URL + "/whip/x" }

// Close stops the HTTP server and the PeerConnection.
func (s *whipServer) Close() {
	s.srv.Close()
	s.closePC()
}

func (s *whipServer) closePC() {
	s.mu.Lock()
	pc, release := s.pc, s.release
	s.pc, s.release = nil, nil
	s.mu.Unlock()
	if pc != nil {
		pc.Close()
	}
	if release != nil {
		release()
	}
}

func (s *whipServer) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/whip/x":
		s.post(w, r)
	case r.Method == http.MethodDelete && r.URL.Path == sessionPath:
		s.mu.Lock()
		s.deletes++
		s.mu.Unlock()
		s.closePC()
		w.WriteHeader(http.StatusOK)
	default:
		http.NotFound(w, r)
	}
}

func (s *whipServer) post(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/sdp" {
		http.Error(w, "want application/sdp, got "+ct, http.StatusUnsupportedMediaType)
		return
	}
	offer, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.posts++
	s.auth = r.Header.Get("Authorization")
	busy := s.pc != nil
	s.mu.Unlock()
	if busy {
		http.Error(w, "one session at a time", http.StatusConflict)
		return
	}
	fail := func(step string, err error) {
		s.t.Errorf("server: %s: %v", step, err)
		http.Error(w, step+": "+err.Error(), http.StatusInternalServerError)
	}
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		fail("codecs", err)
		return
	}
	api, release, err := newAPI(me, s.loopback)
	if err != nil {
		fail("api", err)
		return
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		release()
		fail("pc", err)
		return
	}
	s.mu.Lock()
	s.pc, s.release = pc, release
	s.mu.Unlock()
	pc.OnTrack(func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { s.receive(pc, track) })
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		s.closePC()
		http.Error(w, "bad offer: "+err.Error(), http.StatusBadRequest)
		return
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		s.closePC()
		fail("answer", err)
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		s.closePC()
		fail("set answer", err)
		return
	}
	<-gathered
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", sessionPath)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, pc.LocalDescription().SDP)
}

// receive reads the track until the PeerConnection closes, assembling frames.
func (s *whipServer) receive(pc *webrtc.PeerConnection, track *webrtc.TrackRemote) {
	defer s.readDoneOnce.Do(func() { close(s.readDone) })
	var dep rtp.Depacketizer
	switch strings.ToLower(track.Codec().MimeType) {
	case "video/h264":
		dep = &codecs.H264Packet{}
	case "video/vp8":
		dep = &codecs.VP8Packet{}
	default:
		s.t.Errorf("server: unexpected codec %s", track.Codec().MimeType)
		return
	}
	sb := samplebuilder.New(512, dep, track.Codec().ClockRate)
	count := func() {
		for smp := sb.Pop(); smp != nil; smp = sb.Pop() {
			key := IsKeyframe(track.Codec().MimeType, smp.Data)
			s.mu.Lock()
			s.frames++
			s.dropped += smp.PrevDroppedPackets
			if key {
				s.keyframes++
				if s.pliAt > 0 && s.keyAfterPLI == 0 {
					s.keyAfterPLI = s.frames
				}
			}
			sendPLI := s.frames == 5
			if sendPLI {
				s.pliAt = s.frames
			}
			s.mu.Unlock()
			if sendPLI {
				if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(track.SSRC())}}); err != nil {
					s.t.Errorf("server: PLI: %v", err)
				}
			}
		}
	}
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			sb.Flush()
			count()
			return
		}
		sb.Push(pkt)
		count()
	}
}

type serverCounts struct {
	posts, deletes, frames, keyframes, pliAt, keyAfterPLI int
	dropped                                               uint16
	auth                                                  string
}

func (s *whipServer) counts() serverCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return serverCounts{s.posts, s.deletes, s.frames, s.keyframes, s.pliAt, s.keyAfterPLI, s.dropped, s.auth}
}

// waitRead waits for the receiving goroutine to end (the PeerConnection
// closed by the DELETE).
func (s *whipServer) waitRead(t *testing.T) {
	t.Helper()
	select {
	case <-s.readDone:
	case <-time.After(5 * time.Second):
		t.Fatal("server: track reader did not end after the DELETE")
	}
}

// ---------------------------------------------------------------- Publish

func TestPublish(t *testing.T) {
	for _, codec := range []string{CodecH264, CodecVP8} {
		t.Run(codec, func(t *testing.T) {
			file := makeInput(t, codec, false)
			goroutines := testenv.SnapshotGoroutines()
			srv := newWHIPServer(t, codec)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			const n = 50
			t0 := time.Now()
			st, err := Publish(ctx, Options{URL: srv.URL(), File: file, Token: "s3cret", Frames: n, Loopback: true})
			elapsed := time.Since(t0)
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			srv.waitRead(t)
			c := srv.counts()
			t.Logf("%s: sent %d (%d key, %d PLIs) in %v (Publish %v); server assembled %d frames (%d key, %d packets dropped), PLI after frame %d, next key frame at %d",
				codec, st.Sent, st.Keyframes, st.PLIs, st.Duration.Round(time.Millisecond), elapsed.Round(time.Millisecond),
				c.frames, c.keyframes, c.dropped, c.pliAt, c.keyAfterPLI)
			if st.Sent != n {
				t.Errorf("sent %d frames, want %d", st.Sent, n)
			}
			if min := n * 95 / 100; c.frames < min || c.frames > n {
				t.Errorf("server assembled %d frames, want %d..%d", c.frames, min, n)
			}
			if st.PLIs < 1 || c.pliAt == 0 {
				t.Errorf("publisher saw %d PLIs (server sent one after frame %d)", st.PLIs, c.pliAt)
			}
			if c.posts != 1 || c.deletes != 1 {
				t.Errorf("server got %d POSTs and %d DELETEs, want 1 and 1", c.posts, c.deletes)
			}
			if c.auth != "Bearer s3cret" {
				t.Errorf("Authorization %q", c.auth)
			}
			if want := srv.srv.URL + sessionPath; st.Location != want {
				t.Errorf("Location %q, want %q", st.Location, want)
			}
			if st.Keyframes < 2 || c.keyframes < 2 {
				t.Errorf("key frames: sent %d, received %d; want ≥ 2", st.Keyframes, c.keyframes)
			}
			// 50 frames at 25 fps: 2 s of real time.
			if st.Duration < 1900*time.Millisecond || st.Duration > 3*time.Second {
				t.Errorf("streamed for %v, want ≈ 2s", st.Duration)
			}
			if codec == CodecH264 {
				// the PLI made the sender jump to the next IDR at once
				if c.keyAfterPLI == 0 || c.keyAfterPLI-c.pliAt > 5 {
					t.Errorf("after the PLI (frame %d) the next key frame came at frame %d", c.pliAt, c.keyAfterPLI)
				}
				if st.Keyframes < 3 {
					t.Errorf("sent %d key frames, want ≥ 3 (0, the IDR after the PLI, and one a second)", st.Keyframes)
				}
			}
			srv.Close()
			goroutines.Check(t)
		})
	}
}

// TestPublishLoop sends more frames than the file has, faster than its rate.
func TestPublishLoop(t *testing.T) {
	file := makeInput(t, CodecH264, false)
	srv := newWHIPServer(t, CodecH264)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 170 // the file has 150
	st, err := Publish(ctx, Options{URL: srv.URL(), File: file, FPS: 100, Loop: true, Frames: n, Loopback: true})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	srv.waitRead(t)
	c := srv.counts()
	t.Logf("sent %d (%d key, %d PLIs) in %v; server assembled %d frames (%d key, %d packets dropped)",
		st.Sent, st.Keyframes, st.PLIs, st.Duration.Round(time.Millisecond), c.frames, c.keyframes, c.dropped)
	if st.Sent != n {
		t.Errorf("sent %d frames, want %d", st.Sent, n)
	}
	if min := n * 95 / 100; c.frames < min || c.frames > n {
		t.Errorf("server assembled %d frames, want %d..%d", c.frames, min, n)
	}
	// 0, 25, 50, 75, 100, 125, then 0 again (looped); at 100 fps the PLI
	// comes within pliGrace of the first IDR and does not skip
	if st.Keyframes < 7 {
		t.Errorf("sent %d key frames, want ≥ 7", st.Keyframes)
	}
	if st.Duration < 1650*time.Millisecond || st.Duration > 2500*time.Millisecond {
		t.Errorf("streamed for %v, want ≈ 1.7s (170 frames at 100 fps)", st.Duration)
	}
}

func TestPublishHTTPErrors(t *testing.T) {
	file := makeInput(t, CodecH264, false)
	for _, tc := range []struct {
		status int
		body   string
	}{
		{http.StatusUnsupportedMediaType, "no such codec here"},
		{http.StatusNotFound, "no such stream"},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			goroutines := testenv.SnapshotGoroutines()
			deletes := 0
			var mu sync.Mutex
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodDelete {
					mu.Lock()
					deletes++
					mu.Unlock()
				}
				io.Copy(io.Discard, r.Body)
				http.Error(w, tc.body, tc.status)
			}))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			t0 := time.Now()
			st, err := Publish(ctx, Options{URL: srv.URL + "/whip/x", File: file, Loopback: true})
			if err == nil {
				t.Fatal("Publish succeeded")
			}
			t.Logf("error after %v: %v", time.Since(t0).Round(time.Millisecond), err)
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprint(tc.status)) || !strings.Contains(msg, tc.body) || !strings.Contains(msg, "POST") {
				t.Errorf("error %q does not name the POST, status %d and body %q", msg, tc.status, tc.body)
			}
			if st.Sent != 0 {
				t.Errorf("sent %d frames", st.Sent)
			}
			srv.Close()
			if deletes != 0 {
				t.Errorf("%d DELETEs without a session", deletes)
			}
			goroutines.Check(t)
		})
	}
}

func TestPublishUnreachable(t *testing.T) {
	file := makeInput(t, CodecH264, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Now()
	_, err = Publish(ctx, Options{URL: "http://" + addr + "/whip/x", File: file, Loopback: true})
	d := time.Since(t0)
	if err == nil {
		t.Fatal("Publish succeeded")
	}
	t.Logf("error after %v: %v", d.Round(time.Millisecond), err)
	if d > 5*time.Second {
		t.Errorf("took %v to fail", d)
	}
	if !strings.Contains(err.Error(), "POST") {
		t.Errorf("error %q does not name the POST", err)
	}
}

func TestPublishCancel(t *testing.T) {
	file := makeInput(t, CodecH264, false)

	t.Run("streaming", func(t *testing.T) {
		goroutines := testenv.SnapshotGoroutines()
		srv := newWHIPServer(t, CodecH264)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cancelledAt := make(chan time.Time, 1)
		go func() { // cancel once the server has 10 frames
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
				if srv.counts().frames >= 10 {
					break
				}
			}
			cancelledAt <- time.Now()
			cancel()
		}()
		st, err := Publish(ctx, Options{URL: srv.URL(), File: file, Loop: true, Loopback: true})
		stopped := time.Now()
		cancel()
		cancelled := <-cancelledAt
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if stopped.Before(cancelled) {
			t.Fatal("Publish ended before the cancel")
		}
		if d := stopped.Sub(cancelled); d > time.Second {
			t.Errorf("Publish returned %v after the cancel", d)
		}
		srv.waitRead(t)
		c := srv.counts()
		t.Logf("sent %d frames in %v, returned %v after the cancel; server assembled %d, DELETEs %d",
			st.Sent, st.Duration.Round(time.Millisecond), stopped.Sub(cancelled).Round(time.Millisecond), c.frames, c.deletes)
		if st.Sent < 10 || st.Sent > 30 || c.frames < 10 {
			t.Errorf("sent %d frames (server: %d) for a cancel after 10", st.Sent, c.frames)
		}
		if c.deletes != 1 {
			t.Errorf("%d DELETEs, want 1", c.deletes)
		}
		srv.Close()
		goroutines.Check(t)
	})

	t.Run("before", func(t *testing.T) {
		srv := newWHIPServer(t, CodecH264)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Publish(ctx, Options{URL: srv.URL(), File: file, Loopback: true})
		if err != context.Canceled {
			t.Errorf("Publish with a cancelled ctx: %v, want context.Canceled", err)
		}
		if c := srv.counts(); c.posts != 0 {
			t.Errorf("%d POSTs", c.posts)
		}
	})
}

func TestPublishBadInput(t *testing.T) {
	ctx := context.Background()
	if _, err := Publish(ctx, Options{URL: "http://127.0.0.1:1/whip/x", File: filepath.Join(t.TempDir(), "none.h264")}); err == nil || !strings.Contains(err.Error(), "read file") {
		t.Errorf("missing file: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.bin")
	os.WriteFile(junk, []byte("hello"), 0o644)
	if _, err := Publish(ctx, Options{URL: "http://127.0.0.1:1/whip/x", File: junk}); err == nil || !strings.Contains(err.Error(), "unknown file type") {
		t.Errorf("junk file: %v", err)
	}
	if _, err := Publish(ctx, Options{URL: "ftp://x/y", File: junk}); err == nil || !strings.Contains(err.Error(), "bad URL") {
		t.Errorf("bad URL: %v", err)
	}
}
