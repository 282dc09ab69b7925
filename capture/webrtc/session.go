package webrtc

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/sdp/v3"
	pion "github.com/pion/webrtc/v4"
)

func (s *Server) newSession(src *Source) (*session, error) {
	pc, err := s.api.NewPeerConnection(pion.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("peer connection: %w", err)
	}
	id := make([]byte, 12)
	rand.Read(id)
	sess := &session{
		id: hex.EncodeToString(id), src: src, pc: pc, server: s,
		tracks: make(chan *pion.TrackRemote, 1),
		ended:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	// Callbacks run on pion's goroutines: they only forward.
	pc.OnTrack(func(t *pion.TrackRemote, _ *pion.RTPReceiver) {
		if t.Kind() != pion.RTPCodecTypeVideo {
			return
		}
		select {
		case sess.tracks <- t:
		default: // one video track per session
		}
	})
	pc.OnConnectionStateChange(func(st pion.PeerConnectionState) {
		switch st {
		case pion.PeerConnectionStateFailed, pion.PeerConnectionStateClosed, pion.PeerConnectionStateDisconnected:
			sess.end(fmt.Errorf("connection %s", st))
		}
	})
	s.mu.Lock()
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	s.m.sessions.Inc()
	return sess, nil
}

// session is one publisher's PeerConnection.
type session struct {
	id     string
	src    *Source
	pc     *pion.PeerConnection
	server *Server
	tracks chan *pion.TrackRemote

	endOnce sync.Once
	ended   chan struct{} // closed by end
	done    chan struct{} // closed once the PeerConnection is closed
	mu      sync.Mutex
	why     error
}

func (x *session) negotiate(offer string) (string, error) {
	if err := x.pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("offer: %v", err)
	}
	answer, err := x.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("answer: %v", err)
	}
	if !acceptsVideo(answer.SDP) {
		return "", errNoVideoCodec
	}
	gathered := pion.GatheringCompletePromise(x.pc)
	if err := x.pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("answer: %v", err)
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		return "", errors.New("ICE gathering did not complete within 5 s")
	}
	return x.pc.LocalDescription().SDP, nil
}

// acceptsVideo reports whether an answer keeps a video section open (a
// rejected section has port 0).
func acceptsVideo(answer string) bool {
	var d sdp.SessionDescription
	if d.UnmarshalString(answer) != nil {
		return false
	}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media == "video" && m.MediaName.Port.Value != 0 {
			for _, a := range m.Attributes {
				if a.Key == "recvonly" || a.Key == "sendrecv" {
					return true
				}
			}
		}
	}
	return false
}

// end closes the session (idempotent): the PeerConnection is closed on a
// goroutine of its own, as pion's callbacks may be calling in.
func (x *session) end(why error) {
	x.endOnce.Do(func() {
		x.mu.Lock()
		x.why = why
		x.mu.Unlock()
		close(x.ended)
		go func() {
			x.pc.Close()
			s := x.server
			s.mu.Lock()
			if s.sessions[x.id] == x {
				delete(s.sessions, x.id)
				s.m.sessions.Dec()
			}
			s.mu.Unlock()
			close(x.done)
		}()
	})
}

func (x *session) reason() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.why
}
