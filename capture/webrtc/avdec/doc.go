// Package avdec decodes H.264 and VP8 video into BGR gocv Mats with a small
// cgo wrapper over Debian's FFmpeg libraries (libavcodec for decoding,
// libswscale for the colour conversion; pkg-config libavcodec libavutil
// libswscale).
//
// It owns the libavcodec decoder and swscale context of each Decoder (C
// memory, freed by Close) and nothing else: the caller owns the Mats it
// passes in. A Decoder holds no pointer into Go memory.
//
// A Decoder is not safe for concurrent use: one goroutine owns it, feeds it
// access units in order and closes it. Different Decoders are independent
// and may be used from different goroutines. The package starts no
// goroutines; with threads > 1, libavcodec runs its own worker threads for
// the Decoder's lifetime.
//
// libavcodec reports problems in the data on stderr through FFmpeg's global
// av_log; this package leaves that process-wide setting alone.
package avdec
