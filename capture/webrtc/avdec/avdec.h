// avdec.h: a small C wrapper over libavcodec and libswscale that decodes
// H.264 and VP8 access units and converts each picture to packed BGR24.
// Used only by avdec.go (package avdec); see doc.go for the contract.

#ifndef AFFECTD_AVDEC_H
#define AFFECTD_AVDEC_H

#include <stddef.h>
#include <stdint.h>

// Codec identifiers: the values of avdec.Codec.
enum { AVDEC_H264 = 0, AVDEC_VP8 = 1 };

// avdec is one decoder: codec context, packet, frames, swscale contexts.
// It holds no pointer into Go memory.
typedef struct avdec avdec;

// avdec_open_result is avdec_open's answer: d on success, else err < 0 (an
// AVERROR code) and d == NULL.
typedef struct {
	avdec *d;
	int err;
} avdec_open_result;

// avdec_result is avdec_decode's answer.
typedef struct {
	int err;     // < 0: an AVERROR code; no picture
	int got;     // 1: a new picture is held (width, height, key, corrupt are set)
	int width;   // picture size in pixels (on an error: as announced, 0 if unknown)
	int height;
	int key;     // 1: the picture is a key frame
	int corrupt; // 1: libavcodec flagged the picture as damaged (concealed errors)
} avdec_result;

// avdec_open opens a decoder for codec (AVDEC_H264 or AVDEC_VP8) with
// threads libavcodec slice threads (>= 1).
avdec_open_result avdec_open(int codec, int threads);

// avdec_decode copies size bytes at data (one access unit; size > 0) into a
// padded packet, sends it and receives every picture it yields, keeping the
// last one. data is not retained.
avdec_result avdec_decode(avdec *d, const uint8_t *data, int size);

// avdec_reset frees the codec context and the held picture; the next
// avdec_decode opens a new context. avcodec_flush_buffers is not enough:
// after a damaged H.264 picture, libavcodec 59's h264 decoder keeps state
// that spoils the luma of the next IDR picture even after a flush.
void avdec_reset(avdec *d);

// avdec_convert converts the held picture to BGR24 at dst: height rows of
// width*3 bytes, stride bytes apart (stride >= width*3). It may write to
// the bytes between rows, but never past the last row's width*3 bytes (see
// AVDEC_SLACK in avdec.c). 0 or an AVERROR code.
int avdec_convert(avdec *d, uint8_t *dst, int stride);

// avdec_set_max_pixels bounds a picture's width × height: a larger one
// fails to decode (AVERROR(EINVAL)) before any memory is allocated for it.
void avdec_set_max_pixels(avdec *d, int64_t n);

// avdec_close frees everything d holds, and d. d may be NULL.
void avdec_close(avdec *d);

// avdec_strerror writes av_strerror's text for err into buf (NUL-terminated).
void avdec_strerror(int err, char *buf, size_t size);

// avdec_enomem is AVERROR(ENOMEM), for Go (a function-like macro cgo cannot use).
int avdec_enomem(void);

#endif
