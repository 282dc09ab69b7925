package avdec_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/capture/webrtc/avdec"
)

// TestMaxPixels: a picture over the decoder's limit is refused with
// ErrTooLarge before it is allocated (dst stays as it was), and a picture
// within it still decodes. Before, nothing bounded it: one 16000×16000
// VP8 frame took 4.2 s and 1.3 GB.
func TestMaxPixels(t *testing.T) {
	for _, codec := range []avdec.Codec{avdec.H264, avdec.VP8} {
		t.Run(codec.String(), func(t *testing.T) {
			s := makeStream(t, codec, 640, 360)
			d := newDecoder(t, codec, 0)
			d.SetMaxPixels(320 * 180)
			dst := gocv.NewMat()
			defer dst.Close()
			ok, err := d.Decode(s.aus[0], &dst)
			if ok || !errors.Is(err, avdec.ErrTooLarge) {
				t.Fatalf("640x360 under a 320x180 limit: %v %v, want ErrTooLarge", ok, err)
			}
			if !dst.Empty() {
				t.Errorf("dst allocated for a refused picture: %dx%d", dst.Cols(), dst.Rows())
			}
			d.SetMaxPixels(640 * 360)
			if ok, err := d.Decode(s.aus[0], &dst); !ok || err != nil || dst.Cols() != 640 {
				t.Errorf("within the limit: %v %v (%dx%d)", ok, err, dst.Cols(), dst.Rows())
			}
		})
	}
}

// FuzzDecode: random bitstreams, and real key frames with their picture
// size rewritten (VP8) or their bits mutated (H.264, whose SPS carries
// the size), never crash the decoder, never yield a picture over the
// limit or one whose Mat disagrees with itself, and leave the decoder able
// to decode a good key frame afterwards.
func FuzzDecode(f *testing.F) {
	h264, vp8 := makeStream(f, avdec.H264, 320, 180), makeStream(f, avdec.VP8, 320, 180)
	f.Add(false, uint16(320), uint16(180), h264.aus[0])
	f.Add(true, uint16(320), uint16(180), vp8.aus[0])
	f.Add(true, uint16(16000), uint16(16000), vp8.aus[0])
	f.Add(true, uint16(2000), uint16(2), vp8.aus[0])
	f.Add(true, uint16(0), uint16(0), vp8.aus[0])
	f.Add(false, uint16(0), uint16(0), []byte{0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xff, 0xff})
	const limit = 640 * 360
	f.Fuzz(func(t *testing.T, isVP8 bool, w, h uint16, data []byte) {
		codec, good := avdec.H264, h264.aus[0]
		if isVP8 {
			codec, good = avdec.VP8, vp8.aus[0]
			// A VP8 key frame: 3-byte tag, start code, 14-bit width and
			// height (2 bits of scale each above them).
			if len(data) >= 10 && data[0]&1 == 0 {
				data = append([]byte(nil), data...)
				binary.LittleEndian.PutUint16(data[6:], w)
				binary.LittleEndian.PutUint16(data[8:], h)
			}
		}
		d, err := avdec.New(codec, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		d.SetMaxPixels(limit)
		dst := gocv.NewMat()
		defer dst.Close()
		if ok, _ := d.Decode(data, &dst); ok {
			if dst.Cols()*dst.Rows() > limit || dst.Cols() <= 0 || dst.Rows() <= 0 || dst.Channels() != 3 {
				t.Fatalf("a picture of %dx%dx%d (limit %d pixels)", dst.Cols(), dst.Rows(), dst.Channels(), limit)
			}
		}
		if ok, err := d.Decode(good, &dst); !ok || err != nil {
			t.Fatalf("a good key frame after the input: %v %v", ok, err)
		}
	})
}
