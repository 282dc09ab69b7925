package avdec_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/capture/webrtc/avdec"
	"github.com/affectd/affectd/tools/testmedia"
)

// The test clip: 150 frames, 25 fps, H.264 constrained baseline, GOP 25.
const (
	clipName   = "one_face"
	clipFrames = 150
	gop        = 25
	maxDiff    = 1.0 // mean absolute difference per channel value, against a reference decode
)

// workDir holds the streams made from the clips, for the whole test binary.
var workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "avdec-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// stream is one encoded test stream: its access units and where it came from.
type stream struct {
	codec  avdec.Codec
	w, h   int
	clip   testmedia.Clip
	scaled bool     // re-encoded from the clip at another size
	file   string   // the Annex-B or IVF file
	aus    [][]byte // access units (H.264) or frames (VP8), in order
	keys   []bool   // whether each is a key frame, parsed independently of avdec
}

var (
	streamsMu sync.Mutex
	streams   = map[string]*stream{}
)

// makeStream returns the clip at w x h as codec's access units, made once per
// test binary with ffmpeg. At a clip size (testmedia.Sizes), H.264 is the
// clip's own bitstream in Annex-B form with access unit delimiters, and VP8
// is the clip re-encoded with libvpx in WebRTC's style (realtime, no lag, no
// alt-ref frames, a key frame every gop). At another size the 640x360 clip
// is scaled and re-encoded (H.264 with libx264, constrained baseline).
func makeStream(tb testing.TB, codec avdec.Codec, w, h int) *stream {
	tb.Helper()
	key := fmt.Sprintf("%v_%dx%d", codec, w, h)
	streamsMu.Lock()
	defer streamsMu.Unlock()
	if s, ok := streams[key]; ok {
		return s
	}
	s := &stream{codec: codec, w: w, h: h}
	var scale []string
	if slices.Contains(testmedia.Sizes, [2]int{w, h}) {
		s.clip = testmedia.MustEnsure(tb, clipName, w, h)
	} else {
		s.clip = testmedia.MustEnsure(tb, clipName, 640, 360)
		s.scaled = true
		scale = []string{"-vf", fmt.Sprintf("scale=%d:%d", w, h)}
	}
	g := fmt.Sprint(gop)
	switch codec {
	case avdec.H264:
		s.file = filepath.Join(workDir, key+".h264")
		enc := []string{"-c:v", "copy"}
		if s.scaled {
			enc = append(scale, "-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-bf", "0",
				"-g", g, "-keyint_min", g, "-sc_threshold", "0", "-threads", "2")
		}
		ffmpeg(tb, append(append([]string{"-i", s.clip.Path}, enc...),
			"-bsf:v", "h264_mp4toannexb,h264_metadata=aud=insert", "-f", "h264", s.file)...)
		b, err := os.ReadFile(s.file)
		if err != nil {
			tb.Fatal(err)
		}
		s.aus = splitAnnexB(b)
		for _, au := range s.aus {
			s.keys = append(s.keys, hasNAL(au, 5))
		}
	case avdec.VP8:
		s.file = filepath.Join(workDir, key+".ivf")
		ffmpeg(tb, append(append([]string{"-i", s.clip.Path}, scale...), "-c:v", "libvpx", "-b:v", "2M",
			"-deadline", "realtime", "-cpu-used", "8", "-lag-in-frames", "0", "-auto-alt-ref", "0",
			"-g", g, "-keyint_min", g, "-threads", "2", "-f", "ivf", s.file)...)
		b, err := os.ReadFile(s.file)
		if err != nil {
			tb.Fatal(err)
		}
		var iw, ih int
		s.aus, iw, ih, err = parseIVF(b)
		if err != nil {
			tb.Fatalf("%s: %v", s.file, err)
		}
		if iw != w || ih != h {
			tb.Fatalf("%s: IVF header says %dx%d, want %dx%d", s.file, iw, ih, w, h)
		}
		for _, f := range s.aus {
			s.keys = append(s.keys, f[0]&1 == 0)
		}
	}
	if len(s.aus) != clipFrames {
		tb.Fatalf("%s: %d access units, want %d", s.file, len(s.aus), clipFrames)
	}
	for i, k := range s.keys {
		if k != (i%gop == 0) {
			tb.Fatalf("%s: access unit %d key frame %v, want key frames every %d", s.file, i, k, gop)
		}
	}
	streams[key] = s
	return s
}

// newDecoder opens a decoder that the test closes when it ends.
func newDecoder(t *testing.T, codec avdec.Codec, threads int) *avdec.Decoder {
	t.Helper()
	d, err := avdec.New(codec, threads)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func ffmpeg(tb testing.TB, args ...string) {
	tb.Helper()
	cmd := exec.Command("ffmpeg", append([]string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
}

// splitAnnexB splits an Annex-B stream into access units, each starting at
// the start code of an access unit delimiter (NAL unit type 9).
func splitAnnexB(b []byte) [][]byte {
	var aus [][]byte
	start := -1
	for i := 0; i+3 < len(b); {
		j := bytes.Index(b[i:], []byte{0, 0, 1})
		if j < 0 || i+j+3 >= len(b) {
			break
		}
		i += j
		if b[i+3]&0x1f == 9 {
			s := i
			if s > 0 && b[s-1] == 0 { // four-byte start code
				s--
			}
			if start >= 0 {
				aus = append(aus, b[start:s])
			}
			start = s
		}
		i += 3
	}
	if start >= 0 {
		aus = append(aus, b[start:])
	}
	return aus
}

// hasNAL reports whether the Annex-B access unit au has a NAL unit of type t.
func hasNAL(au []byte, t byte) bool {
	for i := 0; ; {
		j := bytes.Index(au[i:], []byte{0, 0, 1})
		if j < 0 || i+j+3 >= len(au) {
			return false
		}
		i += j + 3
		if au[i]&0x1f == t {
			return true
		}
	}
}

// parseIVF returns the frames of an IVF file (a 32-byte file header, then
// per frame a 12-byte header: little-endian size and timestamp) and the
// frame size its header gives.
func parseIVF(b []byte) (frames [][]byte, w, h int, err error) {
	if len(b) < 32 || string(b[:4]) != "DKIF" {
		return nil, 0, 0, errors.New("not an IVF file")
	}
	if hl := int(binary.LittleEndian.Uint16(b[6:])); hl != 32 {
		return nil, 0, 0, fmt.Errorf("IVF header length %d, want 32", hl)
	}
	if fcc := string(b[8:12]); fcc != "VP80" {
		return nil, 0, 0, fmt.Errorf("IVF codec %q, want VP80", fcc)
	}
	w, h = int(binary.LittleEndian.Uint16(b[12:])), int(binary.LittleEndian.Uint16(b[14:]))
	for p := 32; p < len(b); {
		if p+12 > len(b) {
			return nil, 0, 0, fmt.Errorf("truncated frame header at %d", p)
		}
		n := int(binary.LittleEndian.Uint32(b[p:]))
		p += 12
		if n == 0 || p+n > len(b) {
			return nil, 0, 0, fmt.Errorf("bad frame size %d at %d", n, p-12)
		}
		frames = append(frames, b[p:p+n])
		p += n
	}
	return frames, w, h, nil
}

// reference yields a reference decode of s, frame by frame, as BGR Mats:
// OpenCV's own decode of the clip's mp4 (FFmpeg backend) for H.264 at a
// clip size, else ffmpeg's decode of the stream's file to raw BGR. next returns false after the last
// frame; the Mat it returns is valid until the next call. Close with done.
func reference(t *testing.T, s *stream) (next func() (gocv.Mat, bool), done func()) {
	t.Helper()
	switch {
	case s.codec == avdec.H264 && !s.scaled:
		vc, err := gocv.OpenVideoCaptureWithAPI(s.clip.Path, gocv.VideoCaptureFFmpeg)
		if err != nil {
			t.Fatal(err)
		}
		m := gocv.NewMat()
		return func() (gocv.Mat, bool) { return m, vc.Read(&m) && !m.Empty() },
			func() { m.Close(); vc.Close() }
	default:
		cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-threads", "1",
			"-i", s.file, "-f", "rawvideo", "-pix_fmt", "bgr24", "-")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, s.w*s.h*3)
		var m gocv.Mat
		return func() (gocv.Mat, bool) {
				m.Close()
				if _, err := io.ReadFull(out, buf); err != nil {
					return m, false
				}
				m, err = gocv.NewMatFromBytes(s.h, s.w, gocv.MatTypeCV8UC3, buf) // over buf, not a copy
				if err != nil {
					t.Fatal(err)
				}
				return m, true
			}, func() {
				m.Close()
				io.Copy(io.Discard, out)
				if err := cmd.Wait(); err != nil {
					t.Errorf("ffmpeg decoding %s: %v\n%s", s.file, err, stderr.String())
				}
			}
	}
}

// meanAbsDiff is the mean absolute difference of a and b per channel value.
func meanAbsDiff(a, b gocv.Mat) float64 {
	d := gocv.NewMat()
	defer d.Close()
	gocv.AbsDiff(a, b, &d)
	m := d.Mean()
	return (m.Val1 + m.Val2 + m.Val3) / 3
}

// decodeAll decodes every access unit of s with a new decoder and returns
// copies of the pictures; each access unit must give one.
func decodeAll(t *testing.T, s *stream, threads int) [][]byte {
	t.Helper()
	d := newDecoder(t, s.codec, threads)
	dst := gocv.NewMat()
	defer dst.Close()
	var pics [][]byte
	for i, au := range s.aus {
		ok, err := d.Decode(au, &dst)
		if err != nil || !ok {
			t.Fatalf("access unit %d: Decode = %v, %v; want a picture", i, ok, err)
		}
		pics = append(pics, dst.ToBytes())
	}
	return pics
}

func TestCodecString(t *testing.T) {
	for _, tc := range []struct {
		c    avdec.Codec
		want string
	}{
		{avdec.H264, "H264"},
		{avdec.VP8, "VP8"},
		{avdec.Codec(7), "Codec(7)"},
		{avdec.Codec(-1), "Codec(-1)"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.c.String(); got != tc.want {
				t.Errorf("Codec(%d).String() = %q, want %q", int(tc.c), got, tc.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       avdec.Codec
		threads int
	}{
		{"unknown codec", avdec.Codec(2), 0},
		{"negative threads", avdec.H264, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d, err := avdec.New(tc.c, tc.threads); err == nil {
				d.Close()
				t.Fatalf("New(%v, %d) succeeded", tc.c, tc.threads)
			}
		})
	}
}

func TestCloseTwice(t *testing.T) {
	d, err := avdec.New(avdec.H264, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	dst := gocv.NewMat()
	defer dst.Close()
	s := makeStream(t, avdec.H264, 640, 360)
	if ok, err := d.Decode(s.aus[0], &dst); ok || err == nil {
		t.Fatalf("Decode after Close = %v, %v; want an error", ok, err)
	}
}

// TestDecode decodes every frame of each stream and compares each picture
// with a reference decode.
func TestDecode(t *testing.T) {
	// 650 is not a multiple of 8 or 16: SIMD colour conversion must still
	// fill the last pixels of each row, and write nothing past it.
	sizes := append(slices.Clone(testmedia.Sizes), [2]int{650, 362})
	for _, codec := range []avdec.Codec{avdec.H264, avdec.VP8} {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%v/%dx%d", codec, size[0], size[1]), func(t *testing.T) {
				testDecode(t, makeStream(t, codec, size[0], size[1]))
			})
		}
	}
}

func testDecode(t *testing.T, s *stream) {
	d := newDecoder(t, s.codec, 0)
	next, done := reference(t, s)
	defer done()
	dst := gocv.NewMat()
	defer dst.Close()
	var worst float64
	var data *uint8
	for i, au := range s.aus {
		ok, err := d.Decode(au, &dst)
		if err != nil || !ok {
			t.Fatalf("access unit %d: Decode = %v, %v; want a picture", i, ok, err)
		}
		if d.Width() != s.w || d.Height() != s.h || dst.Cols() != s.w || dst.Rows() != s.h || dst.Type() != gocv.MatTypeCV8UC3 {
			t.Fatalf("access unit %d: decoder says %dx%d, dst %dx%d type %v; want %dx%d CV_8UC3",
				i, d.Width(), d.Height(), dst.Cols(), dst.Rows(), dst.Type(), s.w, s.h)
		}
		if d.KeyFrame() != s.keys[i] {
			t.Errorf("access unit %d: KeyFrame() = %v, want %v", i, d.KeyFrame(), s.keys[i])
		}
		buf, err := dst.DataPtrUint8()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			data = &buf[0]
		} else if &buf[0] != data {
			t.Fatalf("access unit %d: dst was reallocated at the same size", i)
		}
		ref, ok := next()
		if !ok {
			t.Fatalf("reference decode ended after %d frames", i)
		}
		diff := meanAbsDiff(dst, ref)
		worst = max(worst, diff)
		if diff >= maxDiff {
			t.Errorf("access unit %d: mean absolute difference %.3f from the reference, want < %.1f", i, diff, maxDiff)
		}
	}
	if _, ok := next(); ok {
		t.Errorf("reference decode has more than %d frames", len(s.aus))
	}
	t.Logf("%d frames; worst mean absolute difference from the reference %.4f", len(s.aus), worst)
}

// TestThreads checks that more decoder threads give the same pictures.
func TestThreads(t *testing.T) {
	for _, codec := range []avdec.Codec{avdec.H264, avdec.VP8} {
		t.Run(codec.String(), func(t *testing.T) {
			s := makeStream(t, codec, 640, 360)
			one, two := decodeAll(t, s, 1), decodeAll(t, s, 2)
			for i := range one {
				if !bytes.Equal(one[i], two[i]) {
					t.Fatalf("access unit %d: 2 threads decode differently from 1", i)
				}
			}
		})
	}
}

// TestMidStream starts decoding at a delta frame: no pictures and no
// failures until the next key frame, then the same pictures as a decode
// from the start.
func TestMidStream(t *testing.T) {
	const from = 5
	for _, codec := range []avdec.Codec{avdec.H264, avdec.VP8} {
		t.Run(codec.String(), func(t *testing.T) {
			s := makeStream(t, codec, 640, 360)
			want := decodeAll(t, s, 0)
			d := newDecoder(t, codec, 0)
			dst := gocv.NewMat()
			defer dst.Close()
			for i := from; i < len(s.aus); i++ {
				ok, err := d.Decode(s.aus[i], &dst)
				if i < gop {
					if ok || (err != nil && !errors.Is(err, avdec.ErrCorrupt)) {
						t.Fatalf("access unit %d (before the first key frame): Decode = %v, %v; want (false, nil) or ErrCorrupt", i, ok, err)
					}
					if err != nil {
						t.Logf("access unit %d: %v", i, err)
					}
					continue
				}
				if !ok || err != nil {
					t.Fatalf("access unit %d: Decode = %v, %v; want a picture", i, ok, err)
				}
				if i == gop && !d.KeyFrame() {
					t.Errorf("access unit %d: first picture is not a key frame", i)
				}
				if !bytes.Equal(dst.ToBytes(), want[i]) {
					t.Fatalf("access unit %d: picture differs from a decode from the start", i)
				}
			}
		})
	}
}

// corruptCase is broken data fed to a decoder in place of access unit at,
// after the good ones before it.
type corruptCase struct {
	name string
	at   int
	bad  [][]byte // fed in order
	// undetected: libavcodec cannot tell the data is broken, so Decode may
	// return a (damaged) picture.
	undetected bool
	// nextKey, if set, rewrites the next key frame before it is fed.
	nextKey func(au []byte) []byte
}

// corruptCases returns the broken data for stream s.
func corruptCases(s *stream) []corruptCase {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	key, delta := s.aus[gop], s.aus[10]
	cases := []corruptCase{
		{name: "random bytes", at: 10, bad: [][]byte{random(100), random(5000), random(1)}},
		{name: "key frame missing its start", at: gop, bad: [][]byte{key[len(key)/2:]}},
	}
	switch s.codec {
	case avdec.H264:
		idr := bytes.Index(s.aus[0], []byte{0, 0, 1, 0x65}) + 4 // past the IDR slice's NAL header
		cases = append(cases,
			corruptCase{name: "random key frame", at: 10, bad: [][]byte{append(bytes.Clone(s.aus[0][:idr]), random(20000)...)}},
			corruptCase{name: "truncated delta frame", at: 10, bad: [][]byte{delta[:len(delta)/2]}},
			corruptCase{name: "truncated key frame", at: gop, bad: [][]byte{key[:len(key)/3]}},
			// The decoder is reopened after an error: it must still know
			// the parameter sets when the next key frame comes without them.
			corruptCase{name: "truncated delta frame, next key frame without SPS and PPS", at: 10,
				bad: [][]byte{delta[:len(delta)/2]}, nextKey: func(au []byte) []byte { return stripNAL(au, 7, 8) }},
		)
	case avdec.VP8:
		// The frame tag gives the size of the first partition (modes and
		// motion vectors); the last partition (DCT tokens) runs to the end
		// of the frame, so a cut within it cannot be seen.
		first := func(f []byte) int { return int(uint32(f[0])|uint32(f[1])<<8|uint32(f[2])<<16) >> 5 }
		cases = append(cases,
			corruptCase{name: "random key frame", at: 10, bad: [][]byte{append(bytes.Clone(s.aus[0][:10]), random(20000)...)}},
			corruptCase{name: "delta frame cut in its first partition", at: 10, bad: [][]byte{delta[:3+first(delta)/2]}},
			corruptCase{name: "key frame cut in its first partition", at: gop, bad: [][]byte{key[:10+first(key)/2]}},
			corruptCase{name: "delta frame cut in its last partition", at: 10, bad: [][]byte{delta[:len(delta)-len(delta)/4]}, undetected: true},
			corruptCase{name: "key frame cut in its last partition", at: gop, bad: [][]byte{key[:len(key)-len(key)/4]}, undetected: true},
		)
	}
	return cases
}

// stripNAL returns the Annex-B access unit au without its NAL units of the
// given types.
func stripNAL(au []byte, types ...byte) []byte {
	var out []byte
	for i := 0; ; {
		j := bytes.Index(au[i:], []byte{0, 0, 1})
		if j < 0 {
			return out
		}
		begin := i + j
		end := len(au)
		if k := bytes.Index(au[begin+3:], []byte{0, 0, 1}); k >= 0 {
			end = begin + 3 + k
		}
		if !bytes.Contains(types, []byte{au[begin+3] & 0x1f}) {
			out = append(out, 0)
			out = append(out, au[begin:end]...)
		}
		i = end
	}
}

// TestCorrupt feeds broken data after a few good frames: each gives
// ErrCorrupt or no picture (except where libavcodec cannot see the damage),
// never a crash, and the next key frame and the frames after it decode
// exactly as in a clean decode.
func TestCorrupt(t *testing.T) {
	for _, codec := range []avdec.Codec{avdec.H264, avdec.VP8} {
		s := makeStream(t, codec, 640, 360)
		want := decodeAll(t, s, 0)
		for _, tc := range corruptCases(s) {
			t.Run(codec.String()+"/"+tc.name, func(t *testing.T) {
				d := newDecoder(t, codec, 0)
				dst := gocv.NewMat()
				defer dst.Close()
				for i := 0; i < tc.at; i++ {
					if ok, err := d.Decode(s.aus[i], &dst); !ok || err != nil {
						t.Fatalf("access unit %d: Decode = %v, %v; want a picture", i, ok, err)
					}
				}
				for j, bad := range tc.bad {
					ok, err := d.Decode(bad, &dst)
					if err != nil && !errors.Is(err, avdec.ErrCorrupt) {
						t.Fatalf("bad data %d: Decode = %v, %v; want no error or ErrCorrupt", j, ok, err)
					}
					if ok && !tc.undetected {
						t.Fatalf("bad data %d: Decode = %v, %v; want (false, nil) or ErrCorrupt", j, ok, err)
					}
					t.Logf("bad data %d (%d bytes): (%v, %v)", j, len(bad), ok, err)
				}
				// Until the next key frame, anything but a crash or an error
				// that is not ErrCorrupt.
				nextKey := (tc.at/gop + 1) * gop
				for i := tc.at + 1; i < nextKey; i++ {
					if _, err := d.Decode(s.aus[i], &dst); err != nil && !errors.Is(err, avdec.ErrCorrupt) {
						t.Fatalf("access unit %d: %v, want nil or ErrCorrupt", i, err)
					}
				}
				for i := nextKey; i < nextKey+gop; i++ {
					au := s.aus[i]
					if i == nextKey && tc.nextKey != nil {
						au = tc.nextKey(au)
					}
					ok, err := d.Decode(au, &dst)
					if !ok || err != nil {
						t.Fatalf("access unit %d (after the next key frame): Decode = %v, %v; want a picture", i, ok, err)
					}
					if !bytes.Equal(dst.ToBytes(), want[i]) {
						t.Fatalf("access unit %d: picture differs from a clean decode", i)
					}
				}
			})
		}
	}
}

// TestSizeChange decodes a 640x360 stream then a 1280x720 one (key frame
// first) with one decoder: dst is reallocated at the new size, and the
// pictures match a fresh decoder's.
func TestSizeChange(t *testing.T) {
	for _, codec := range []avdec.Codec{avdec.H264, avdec.VP8} {
		t.Run(codec.String(), func(t *testing.T) {
			small, big := makeStream(t, codec, 640, 360), makeStream(t, codec, 1280, 720)
			want := decodeAll(t, big, 0)[:gop+1]
			d := newDecoder(t, codec, 0)
			dst := gocv.NewMat()
			defer dst.Close()
			for i, au := range small.aus[:gop+5] {
				if ok, err := d.Decode(au, &dst); !ok || err != nil {
					t.Fatalf("640x360 access unit %d: Decode = %v, %v", i, ok, err)
				}
			}
			if dst.Cols() != 640 || dst.Rows() != 360 {
				t.Fatalf("dst is %dx%d, want 640x360", dst.Cols(), dst.Rows())
			}
			for i, au := range big.aus[:len(want)] {
				if ok, err := d.Decode(au, &dst); !ok || err != nil {
					t.Fatalf("1280x720 access unit %d: Decode = %v, %v", i, ok, err)
				}
				if dst.Cols() != 1280 || dst.Rows() != 720 || d.Width() != 1280 || d.Height() != 720 {
					t.Fatalf("1280x720 access unit %d: dst %dx%d, decoder %dx%d", i, dst.Cols(), dst.Rows(), d.Width(), d.Height())
				}
				if !bytes.Equal(dst.ToBytes(), want[i]) {
					t.Fatalf("1280x720 access unit %d: picture differs from a fresh decoder's", i)
				}
			}
		})
	}
}

// TestDst checks how Decode treats the Mat it is given: a Mat of the right
// size and type is written in place; a zero Mat, a Mat of another type and a
// non-continuous region are replaced.
func TestDst(t *testing.T) {
	s := makeStream(t, avdec.H264, 640, 360)
	want := decodeAll(t, s, 0)[0]
	parent := gocv.NewMatWithSize(400, 700, gocv.MatTypeCV8UC3)
	defer parent.Close()
	for _, tc := range []struct {
		name    string
		dst     func() gocv.Mat
		inPlace bool
	}{
		{"right size", func() gocv.Mat { return gocv.NewMatWithSize(360, 640, gocv.MatTypeCV8UC3) }, true},
		{"zero Mat", func() gocv.Mat { return gocv.Mat{} }, false},
		{"empty Mat", gocv.NewMat, false},
		{"grey", func() gocv.Mat { return gocv.NewMatWithSize(360, 640, gocv.MatTypeCV8UC1) }, false},
		{"region", func() gocv.Mat { return parent.Region(image.Rect(10, 10, 650, 370)) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecoder(t, avdec.H264, 0)
			dst := tc.dst()
			defer dst.Close()
			var before *uint8
			if tc.inPlace {
				buf, _ := dst.DataPtrUint8()
				before = &buf[0]
			}
			if ok, err := d.Decode(s.aus[0], &dst); !ok || err != nil {
				t.Fatalf("Decode = %v, %v", ok, err)
			}
			buf, err := dst.DataPtrUint8()
			if err != nil {
				t.Fatal(err)
			}
			if tc.inPlace && &buf[0] != before {
				t.Error("dst was reallocated, want it written in place")
			}
			if !bytes.Equal(buf, want) {
				t.Error("picture differs")
			}
		})
	}
}

// TestNoWritePastDst decodes at a width that is not a multiple of 8 into a
// Mat that is the top of a bigger one: the rows below it must stay
// untouched (libswscale's SIMD converters write whole groups of pixels).
func TestNoWritePastDst(t *testing.T) {
	for _, codec := range []avdec.Codec{avdec.H264, avdec.VP8} {
		t.Run(codec.String(), func(t *testing.T) {
			s := makeStream(t, codec, 650, 362)
			d := newDecoder(t, codec, 0)
			parent := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(90, 90, 90, 0), s.h+4, s.w, gocv.MatTypeCV8UC3)
			defer parent.Close()
			dst := parent.Region(image.Rect(0, 0, s.w, s.h)) // full rows: continuous, so written in place
			defer dst.Close()
			if ok, err := d.Decode(s.aus[0], &dst); !ok || err != nil {
				t.Fatalf("Decode = %v, %v", ok, err)
			}
			all, err := parent.DataPtrUint8()
			if err != nil {
				t.Fatal(err)
			}
			n := s.w * s.h * 3
			for i, v := range all[n:] {
				if v != 90 {
					t.Fatalf("byte %d past the end of dst was written", i)
				}
			}
			// Only now decode into Mats of the exact size.
			if want := decodeAll(t, s, 0)[0]; !bytes.Equal(all[:n], want) {
				t.Fatal("picture not written in place, or differs")
			}
		})
	}
}

// BenchmarkDecode720p measures decoding plus conversion to BGR per frame at
// 1280x720 on one thread, looping over the clip's 150 frames.
func BenchmarkDecode720p(b *testing.B) {
	for _, codec := range []avdec.Codec{avdec.H264, avdec.VP8} {
		b.Run(codec.String(), func(b *testing.B) {
			s := makeStream(b, codec, 1280, 720)
			d, err := avdec.New(codec, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			dst := gocv.NewMat()
			defer dst.Close()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if ok, err := d.Decode(s.aus[i%len(s.aus)], &dst); !ok || err != nil {
					b.Fatalf("access unit %d: Decode = %v, %v", i%len(s.aus), ok, err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/frame")
		})
	}
}
