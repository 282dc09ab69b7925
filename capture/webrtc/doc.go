// Package webrtc ingests WebRTC video published over WHIP (RFC 9725): a
// browser, OBS, GStreamer's whipsink or tools/whippub POSTs an SDP offer
// to /v1/whip/{stream} and gets an answer; H.264 (packetization-mode 1) or
// VP8 arrives over one muxed UDP port, is reassembled into frames by the
// RTP marker bit, decoded (capture/webrtc/avdec) into the same pooled
// frames every other source produces, and delivered to the stream.
//
// The Server (an http.Handler) is safe for concurrent use. pion runs its
// callbacks on goroutines of its own: they only forward events. Each
// Source's Run goroutine owns the session of its stream while it lasts:
// it reads the packets, decodes, asks for key frames (RTCP PLI, rate
// limited) at the start and after losses, and marks the stream up or
// ended with the session.
package webrtc
