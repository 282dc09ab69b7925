package avdec

import "bytes"

// H.264 NAL unit types (ITU-T H.264 table 7-1) the decoder looks at.
const (
	nalSliceNonIDR = 1
	nalSliceIDR    = 5
	nalSPS         = 7
	nalPPS         = 8
)

var startCode = []byte{0, 0, 1}

// leadingNALs calls f (if not nil) with the type and the bytes (header
// included; start code and trailing zero bytes excluded) of each NAL unit
// of the Annex-B access unit au that comes before its first coded slice, in
// order, and returns the type of that slice (1 to 5), or 0 if there is
// none. It does not scan the slice data.
func leadingNALs(au []byte, f func(typ byte, nal []byte)) byte {
	i := bytes.Index(au, startCode)
	for i >= 0 && i+3 < len(au) {
		begin := i + 3
		typ := au[begin] & 0x1f
		if typ >= nalSliceNonIDR && typ <= nalSliceIDR {
			return typ
		}
		end, next := len(au), -1
		if j := bytes.Index(au[begin:], startCode); j >= 0 {
			end, next = begin+j, begin+j
		}
		if f != nil {
			nal := au[begin:end]
			for len(nal) > 1 && nal[len(nal)-1] == 0 {
				nal = nal[:len(nal)-1]
			}
			f(typ, nal)
		}
		i = next
	}
	return 0
}

// h264Key reports whether the access unit's first slice is an IDR slice.
func h264Key(au []byte) bool { return leadingNALs(au, nil) == nalSliceIDR }

// h264Params appends to buf the SPS and PPS NAL units that come before the
// access unit's first slice, each behind a four-byte start code, and
// reports whether there was an SPS.
func h264Params(buf, au []byte) ([]byte, bool) {
	sps := false
	leadingNALs(au, func(typ byte, nal []byte) {
		if typ == nalSPS || typ == nalPPS {
			sps = sps || typ == nalSPS
			buf = append(buf, 0, 0, 0, 1)
			buf = append(buf, nal...)
		}
	})
	return buf, sps
}

// vp8Key reports whether a VP8 frame is a key frame: its frame tag says so
// and it carries the key frame start code (RFC 6386 section 9.1).
func vp8Key(f []byte) bool {
	return len(f) >= 10 && f[0]&1 == 0 && f[3] == 0x9d && f[4] == 0x01 && f[5] == 0x2a
}

// vp8Size is the picture size a VP8 key frame announces (its 14-bit
// width and height; the 2 bits of scale above each do not change it).
func vp8Size(f []byte) (w, h int) {
	return int(f[6]) | int(f[7]&0x3f)<<8, int(f[8]) | int(f[9]&0x3f)<<8
}
