package avdec

/*
#cgo pkg-config: libavcodec libavutil libswscale
#include "avdec.h"
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"unsafe"

	"gocv.io/x/gocv"
)

// Codec is a video codec a Decoder decodes.
type Codec int

const (
	// H264 is H.264/AVC, fed as Annex-B access units.
	H264 Codec = iota
	// VP8 is VP8 (RFC 6386), fed one frame at a time.
	VP8
)

// String returns the codec's name: "H264" or "VP8" ("Codec(n)" for others).
func (c Codec) String() string {
	switch c {
	case H264:
		return "H264"
	case VP8:
		return "VP8"
	default:
		return fmt.Sprintf("Codec(%d)", int(c))
	}
}

// ErrCorrupt means the data could not be decoded: a frame is lost, and the
// caller should ask the sender for a key frame (RTCP PLI). Decode wraps it;
// test with errors.Is.
var ErrCorrupt = errors.New("avdec: corrupt data")

// ErrTooLarge means a picture is larger than the decoder's MaxPixels: it
// was refused before memory was allocated for it.
var ErrTooLarge = errors.New("avdec: picture larger than the limit")

// errClosed is returned by Decode after Close.
var errClosed = errors.New("avdec: decoder closed")

// Decoder decodes one video stream of one codec into BGR Mats. It is not
// safe for concurrent use: one goroutine owns it (see the package doc).
type Decoder struct {
	codec         Codec
	p             *C.avdec // C memory; nil once closed
	width, height int
	key           bool
	// needKey: delta frames are dropped until a key frame decodes. It is
	// set at the start and after every decode error; lost tells the two
	// apart (a drop after an error is itself reported as ErrCorrupt).
	needKey, lost bool
	// H.264 only. params: the last SPS and PPS seen, in Annex-B form;
	// reopened: the codec context was reopened after an error and has seen
	// no parameter sets since, so a key frame without them gets params
	// put in front; scratch, joined: buffers reused for both.
	params, scratch, joined []byte
	reopened                bool
	maxPixels               int
}

// SetMaxPixels bounds a picture's width × height (0: libavcodec's own
// limit, which allows up to INT_MAX bytes): a stream announcing a larger
// picture gets ErrTooLarge from Decode, before the picture is allocated.
func (d *Decoder) SetMaxPixels(n int) {
	d.maxPixels = max(n, 0)
	if d.p != nil {
		C.avdec_set_max_pixels(d.p, C.int64_t(d.maxPixels))
	}
}

// New opens a decoder for codec c. threads is the number of libavcodec
// threads (0 means 1: lowest latency). Only slice threading is used, never
// frame threading, which would delay every picture by a frame per thread;
// H.264 is decoded in low-delay mode (AV_CODEC_FLAG_LOW_DELAY), so one
// access unit in gives its picture out at once.
func New(c Codec, threads int) (*Decoder, error) {
	if c != H264 && c != VP8 {
		return nil, fmt.Errorf("avdec: unknown codec %v", c)
	}
	if threads < 0 {
		return nil, fmt.Errorf("avdec: threads %d: must be 0 or more", threads)
	}
	if threads == 0 {
		threads = 1
	}
	r := C.avdec_open(C.int(c), C.int(threads))
	if r.err < 0 {
		return nil, fmt.Errorf("avdec: open %v decoder: %s", c, strerror(r.err))
	}
	return &Decoder{codec: c, p: r.d, needKey: true}, nil
}

// Decode feeds one access unit and, when it yields a picture, converts the
// picture with libswscale straight into dst as 8-bit BGR (CV_8UC3), using
// the colour matrix and range the stream signals (BT.601 limited range when
// it signals none). dst is closed and reallocated with gocv.NewMatWithSize
// only when its size or type differs (or it is a zero Mat or not
// continuous); otherwise the picture is written in place, with no
// intermediate Go buffer. The caller owns dst and closes it.
//
// An access unit is, for H264, one picture in Annex-B form: start codes and
// all its NAL units, with SPS and PPS when present; for VP8, one frame as
// carried in RTP or IVF. data is copied and not retained.
//
// Decode returns (true, nil) when dst holds a new picture, and (false, nil)
// when the decoder needs more data: before the first key frame (delta
// frames are skipped without being decoded), for a frame that shows no
// picture, or for empty data. It returns (false, err) with err wrapping
// ErrCorrupt when the data is broken, including a picture libavcodec
// decoded only by concealing errors. After such an error the decoder skips
// delta frames, each returning an error wrapping ErrCorrupt, until a key
// frame decodes: a picture predicted from a damaged one would be damaged
// too. Other errors (out of memory, a pixel format libswscale cannot
// convert) do not wrap ErrCorrupt. The decoder stays usable after errors.
//
// Not all damage can be seen. In particular a VP8 frame cut short within
// its last partition (the DCT tokens, which run to the end of the frame)
// decodes without error into a damaged picture: the RTP depacketizer must
// pass on only complete frames.
func (d *Decoder) Decode(data []byte, dst *gocv.Mat) (bool, error) {
	if d.p == nil {
		return false, errClosed
	}
	if dst == nil {
		return false, errors.New("avdec: decode: nil dst")
	}
	if len(data) == 0 {
		return false, nil
	}
	if d.needKey && !isKey(d.codec, data) {
		if d.lost {
			return false, fmt.Errorf("%w: %v delta frame dropped: waiting for a key frame", ErrCorrupt, d.codec)
		}
		return false, nil
	}
	if d.codec == VP8 && d.maxPixels > 0 && vp8Key(data) {
		// libavcodec's VP8 decoder refuses a picture over max_pixels but
		// does not say its size: check the header here.
		if w, h := vp8Size(data); w*h > d.maxPixels {
			d.lose()
			return false, fmt.Errorf("%w: %v %dx%d, the limit is %d pixels", ErrTooLarge, d.codec, w, h, d.maxPixels)
		}
	}
	au := data
	if d.codec == H264 {
		data = d.h264Params(au)
	}
	// data is Go memory: C copies it into a packet and keeps no pointer.
	r := C.avdec_decode(d.p, (*C.uint8_t)(unsafe.Pointer(&data[0])), C.int(len(data)))
	if r.err >= 0 && (r.got == 0 || r.corrupt != 0) && isKey(d.codec, au) {
		// A key frame that gives no picture, or a damaged one: earlier input
		// left the context holding pictures back (a hostile SPS can ask for
		// reordering, and WebRTC streams have none) or half a picture the
		// key frame's slices were taken to continue. Decode it once more on
		// a fresh context.
		C.avdec_reset(d.p)
		if d.codec == H264 {
			d.reopened = true
			data = d.h264Params(au)
		}
		r = C.avdec_decode(d.p, (*C.uint8_t)(unsafe.Pointer(&data[0])), C.int(len(data)))
	}
	if r.err < 0 {
		d.lose()
		if r.err == C.avdec_enomem() {
			return false, fmt.Errorf("avdec: %v decode: %s", d.codec, strerror(r.err))
		}
		if d.maxPixels > 0 && int(r.width)*int(r.height) > d.maxPixels {
			return false, fmt.Errorf("%w: %v %dx%d, the limit is %d pixels", ErrTooLarge, d.codec, r.width, r.height, d.maxPixels)
		}
		return false, fmt.Errorf("%w: %v decode: %s", ErrCorrupt, d.codec, strerror(r.err))
	}
	if r.got == 0 {
		return false, nil
	}
	if r.corrupt != 0 {
		d.lose()
		return false, fmt.Errorf("%w: %v picture decoded with concealed errors", ErrCorrupt, d.codec)
	}
	d.needKey, d.lost, d.reopened = false, false, false
	w, h := int(r.width), int(r.height)
	if d.maxPixels > 0 && w*h > d.maxPixels { // libavcodec's check, once more
		d.lose()
		return false, fmt.Errorf("%w: %v %dx%d, the limit is %d pixels", ErrTooLarge, d.codec, w, h, d.maxPixels)
	}
	fit(dst, w, h)
	buf, err := dst.DataPtrUint8()
	if err != nil {
		return false, fmt.Errorf("avdec: %v convert: %w", d.codec, err)
	}
	step := dst.Step()
	if step < 3*w || len(buf) < step*h {
		return false, fmt.Errorf("avdec: %v convert: dst holds %d bytes with step %d, need %dx%d BGR", d.codec, len(buf), step, w, h)
	}
	// buf is OpenCV's (C) memory, so C may write to it.
	if e := C.avdec_convert(d.p, (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.int(step)); e < 0 {
		return false, fmt.Errorf("avdec: %v convert: %s", d.codec, strerror(e))
	}
	d.width, d.height, d.key = w, h, r.key != 0
	return true, nil
}

// lose records that a frame was lost: the codec context is reopened on the
// next Decode (libavcodec's state after a damaged picture can spoil even the
// next key frame, see avdec_reset) and delta frames are dropped until a key
// frame decodes.
func (d *Decoder) lose() {
	C.avdec_reset(d.p)
	d.needKey, d.lost = true, true
	d.reopened = d.codec == H264
}

// h264Params remembers the parameter sets of the access unit au and returns
// the access unit to decode: au, or, if the codec context was reopened and
// au is a key frame without an SPS, au behind the last parameter sets seen
// (senders may send them only now and then, and a reopened context has
// forgotten them).
func (d *Decoder) h264Params(au []byte) []byte {
	var sps bool
	d.scratch, sps = h264Params(d.scratch[:0], au)
	if sps {
		if !bytes.Equal(d.scratch, d.params) {
			d.params = append(d.params[:0], d.scratch...)
		}
		return au
	}
	if !d.reopened || len(d.params) == 0 || !h264Key(au) {
		return au
	}
	d.joined = append(append(d.joined[:0], d.params...), au...)
	return d.joined
}

// Width returns the width in pixels of the last picture (0 before the first).
func (d *Decoder) Width() int { return d.width }

// Height returns the height in pixels of the last picture (0 before the first).
func (d *Decoder) Height() int { return d.height }

// KeyFrame reports whether the last picture was a key frame (an H.264 IDR
// picture or a VP8 key frame).
func (d *Decoder) KeyFrame() bool { return d.key }

// Close frees the decoder's C memory: the codec context, packet, frames,
// swscale contexts and conversion rows. It can be called more than once;
// Decode fails after it. It does not touch the caller's Mats.
func (d *Decoder) Close() error {
	if d.p != nil {
		C.avdec_close(d.p)
		d.p = nil
	}
	return nil
}

// fit makes m an h x w CV_8UC3 continuous Mat, closing and reallocating it
// only when it is not one already.
func fit(m *gocv.Mat, w, h int) {
	if m.Ptr() != nil {
		if !m.Empty() && m.Cols() == w && m.Rows() == h && m.Type() == gocv.MatTypeCV8UC3 && m.IsContinuous() {
			return
		}
		m.Close()
	}
	*m = gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
}

// isKey reports whether data is a key frame of codec c.
func isKey(c Codec, data []byte) bool {
	if c == H264 {
		return h264Key(data)
	}
	return vp8Key(data)
}

// strerror is av_strerror's text for an AVERROR code.
func strerror(code C.int) string {
	var buf [128]C.char
	C.avdec_strerror(code, &buf[0], C.size_t(len(buf)))
	return C.GoString(&buf[0])
}
