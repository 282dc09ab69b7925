package whip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Codec names used by IsKeyframe and the file loader.
const (
	CodecH264 = "h264"
	CodecVP8  = "vp8"
)

// H.264 NAL unit types used here.
const (
	nalSliceNonIDR = 1
	nalSlicePartA  = 2
	nalSliceIDR    = 5
	nalSEI         = 6
	nalSPS         = 7
	nalPPS         = 8
	nalAUD         = 9
)

// nalUnit is one NAL unit of an Annex-B stream: start is where its start
// code (with any leading zero bytes) begins, payload is the NAL unit itself
// (header byte first) without the start code.
type nalUnit struct {
	start   int
	payload []byte
}

// splitAnnexB finds the NAL units of an Annex-B byte stream.
func splitAnnexB(data []byte) ([]nalUnit, error) {
	var nals []nalUnit
	var prevPayload = -1 // payload offset of the previous NAL
	i := 0
	for {
		j := bytes.Index(data[i:], []byte{0, 0, 1})
		if j < 0 {
			break
		}
		sc := i + j // the 00 00 01
		begin := sc
		for begin > 0 && data[begin-1] == 0 && (prevPayload < 0 || begin-1 > prevPayload) {
			begin--
		}
		if prevPayload < 0 && begin != 0 {
			return nil, errors.New("not an Annex-B stream (data before the first start code)")
		}
		if prevPayload >= 0 {
			nals[len(nals)-1].payload = data[prevPayload:begin]
		}
		prevPayload = sc + 3
		nals = append(nals, nalUnit{start: begin})
		i = sc + 3
	}
	if prevPayload < 0 {
		return nil, errors.New("not an Annex-B stream (no start code)")
	}
	nals[len(nals)-1].payload = data[prevPayload:]
	// Drop empty NAL units (e.g. "00 00 01 00 00 01"), they carry nothing.
	out := nals[:0]
	for _, n := range nals {
		if len(n.payload) > 0 {
			out = append(out, n)
		}
	}
	return out, nil
}

func isVCL(t byte) bool { return t >= nalSliceNonIDR && t <= nalSliceIDR }

// firstMBZero reports whether a slice NAL (type 1, 2 or 5) has
// first_mb_in_slice == 0, i.e. starts a new picture: the slice header
// begins with first_mb_in_slice as ue(v), whose code for 0 is a single 1 bit.
func firstMBZero(nal []byte) bool {
	return len(nal) >= 2 && nal[1]&0x80 != 0
}

// ReadAnnexB reads an H.264 Annex-B file and returns its access units, each
// with its start codes. Access units are split at access unit delimiters
// (NAL type 9) when the stream has them; otherwise a new access unit starts
// at each slice with first_mb_in_slice == 0, and the SPS/PPS/SEI (and other
// non-VCL NAL units) before a picture are kept with it.
func ReadAnnexB(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	aus, err := splitAccessUnits(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return aus, nil
}

func splitAccessUnits(data []byte) ([][]byte, error) {
	nals, err := splitAnnexB(data)
	if err != nil {
		return nil, err
	}
	hasAUD := false
	for _, n := range nals {
		if n.payload[0]&0x1f == nalAUD {
			hasAUD = true
			break
		}
	}
	var aus [][]byte
	auStart := 0       // byte offset where the current AU begins
	auHasVCL := false  // the current AU has a slice
	pendingStart := -1 // non-AUD mode: where the non-VCL NALs after the last slice begin
	for _, n := range nals {
		t := n.payload[0] & 0x1f
		newAU := -1 // offset where a new AU begins, if one does
		if hasAUD {
			if t == nalAUD && auHasVCL {
				newAU = n.start
			}
		} else {
			switch {
			case isVCL(t):
				if auHasVCL && t != 3 && t != 4 && firstMBZero(n.payload) {
					newAU = n.start
					if pendingStart >= 0 {
						newAU = pendingStart // SPS/PPS/SEI go with this picture
					}
				}
				pendingStart = -1
			case t == nalAUD || t == nalSEI || t == nalSPS || t == nalPPS || (t >= 14 && t <= 18):
				if auHasVCL && pendingStart < 0 {
					pendingStart = n.start
				}
			}
		}
		if newAU >= 0 {
			aus = append(aus, data[auStart:newAU])
			auStart = newAU
			auHasVCL = false
		}
		if isVCL(t) {
			auHasVCL = true
		}
	}
	if auHasVCL {
		aus = append(aus, data[auStart:])
	} else if len(aus) > 0 {
		// trailing non-VCL NAL units (e.g. end of stream): keep them with the last picture
		last := len(aus) - 1
		aus[last] = data[auStart-len(aus[last]):]
	}
	if len(aus) == 0 {
		return nil, errors.New("no pictures in the H.264 stream")
	}
	return aus, nil
}

// ReadIVF reads a VP8 IVF file: its frames and frame rate (from the header's
// time base and the frames' timestamps; 0 when it cannot tell).
func ReadIVF(path string) (frames [][]byte, fps float64, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	frames, fps, err = parseIVF(data)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	return frames, fps, nil
}

func parseIVF(data []byte) ([][]byte, float64, error) {
	if len(data) < 32 || string(data[0:4]) != "DKIF" {
		return nil, 0, errors.New("not an IVF file")
	}
	hdrLen := int(binary.LittleEndian.Uint16(data[6:8]))
	if hdrLen < 32 || hdrLen > len(data) {
		return nil, 0, fmt.Errorf("bad IVF header length %d", hdrLen)
	}
	if fourcc := string(data[8:12]); fourcc != "VP80" {
		return nil, 0, fmt.Errorf("unsupported IVF codec %q (only VP80)", fourcc)
	}
	rate := binary.LittleEndian.Uint32(data[16:20])
	scale := binary.LittleEndian.Uint32(data[20:24])
	var frames [][]byte
	var pts []uint64
	for off := hdrLen; off < len(data); {
		if len(data)-off < 12 {
			return nil, 0, io.ErrUnexpectedEOF
		}
		size := int(binary.LittleEndian.Uint32(data[off : off+4]))
		ts := binary.LittleEndian.Uint64(data[off+4 : off+12])
		off += 12
		if size > len(data)-off {
			return nil, 0, fmt.Errorf("IVF frame %d: %w", len(frames), io.ErrUnexpectedEOF)
		}
		frames = append(frames, data[off:off+size:off+size])
		pts = append(pts, ts)
		off += size
	}
	if len(frames) == 0 {
		return nil, 0, errors.New("no frames in the IVF file")
	}
	fps := 0.0
	if rate > 0 && scale > 0 {
		tb := float64(rate) / float64(scale) // time base units per second
		// The frames' pts are in time base units: use the median step.
		var steps []uint64
		for i := 1; i < len(pts); i++ {
			if pts[i] > pts[i-1] {
				steps = append(steps, pts[i]-pts[i-1])
			}
		}
		if len(steps) > 0 {
			sort.Slice(steps, func(a, b int) bool { return steps[a] < steps[b] })
			fps = tb / float64(steps[len(steps)/2])
		} else if tb <= 240 {
			fps = tb
		}
	}
	return frames, fps, nil
}

// IsKeyframe reports whether an access unit (H.264, Annex-B) or frame (VP8)
// is a key frame: for H.264 it contains an IDR slice (NAL type 5), for VP8
// bit 0 of its first byte is 0. codec is "h264" or "vp8" (case-insensitive;
// MIME types such as "video/H264" also work).
func IsKeyframe(codec string, au []byte) bool {
	switch normCodec(codec) {
	case CodecH264:
		nals, err := splitAnnexB(au)
		if err != nil {
			return false
		}
		for _, n := range nals {
			if n.payload[0]&0x1f == nalSliceIDR {
				return true
			}
		}
		return false
	case CodecVP8:
		return len(au) > 0 && au[0]&1 == 0
	}
	return false
}

func normCodec(c string) string {
	c = strings.ToLower(c)
	c = strings.TrimPrefix(c, "video/")
	switch c {
	case "h264", "h.264", "avc":
		return CodecH264
	case "vp8":
		return CodecVP8
	}
	return c
}

// loadFile reads a media file for Publish: its frames, codec and the frame
// rate it declares (0 if none).
func loadFile(path string) (frames [][]byte, codec string, fps float64, err error) {
	ext := strings.ToLower(filepath.Ext(path))
	switch ext {
	case ".h264", ".264", ".avc", ".annexb":
		frames, err = ReadAnnexB(path)
		return frames, CodecH264, 0, err
	case ".ivf":
		frames, fps, err = ReadIVF(path)
		return frames, CodecVP8, fps, err
	}
	// Unknown extension: look at the content.
	f, err := os.Open(path)
	if err != nil {
		return nil, "", 0, err
	}
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	f.Close()
	head = head[:n]
	switch {
	case bytes.Equal(head, []byte("DKIF")):
		frames, fps, err = ReadIVF(path)
		return frames, CodecVP8, fps, err
	case bytes.HasPrefix(head, []byte{0, 0, 1}) || bytes.HasPrefix(head, []byte{0, 0, 0, 1}):
		frames, err = ReadAnnexB(path)
		return frames, CodecH264, 0, err
	}
	return nil, "", 0, fmt.Errorf("%s: unknown file type (want .h264/.264 Annex-B or .ivf VP8)", path)
}
