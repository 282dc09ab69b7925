// Package whip is a WHIP (RFC 9725) publisher: it sends an H.264 (Annex-B)
// or VP8 (IVF) file, paced in real time, to a WHIP endpoint over WebRTC
// with pion. It is used by tests and by tools/whippub.
package whip
