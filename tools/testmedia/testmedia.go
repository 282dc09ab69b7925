// Package testmedia makes reproducible synthetic test clips with ground
// truth: faces cut out of the public-domain photos in <cache>/photos (fetched
// by tools/setup.sh), pasted with a soft elliptical mask onto a procedural
// background, moved along fixed paths and encoded to H.264 by ffmpeg.
//
// Every clip is defined in normalised frame coordinates, so a clip at
// 1280x720 is the same clip as at 640x360, scaled. Nothing depends on time
// or on unseeded randomness: a clip changes only when the generator, the
// face table or ffmpeg changes. Each clip has a JSON sidecar with, per
// frame, every face's box, eyes and visible fraction in clip pixels.
//
// Clips are made on demand under <cache>/media, once, under a cache-wide
// lock (testenv.Lock), so parallel test binaries share them:
//
//	clip, err := testmedia.Ensure("one_face", 640, 360)
//	truth, err := testmedia.ReadTruth(clip.TruthPath)
//
// `go run ./tools/testmedia/cmd/testmedia -all` makes every clip at both
// sizes. StartRTSP (rtsp.go) serves a clip over RTSP.
package testmedia

import (
	"bufio"
	"crypto/sha256"
	_ "embed" // selfSource
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // grace_hopper_512x512.jpg
	_ "image/png"  // astronaut.png
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/affectd/affectd/tools/testenv"
)

// GeneratorVersion is part of every clip's stamp, with FaceTable, the clip
// definitions and a hash of this file's source (embedded): any change to
// them remakes cached clips. Bump it for a change
// the stamp cannot see (e.g. to force a remake after an ffmpeg upgrade).
const GeneratorVersion = 1

// FPS is the frame rate of every clip.
const FPS = 25

// Sizes are the frame sizes the clips are made at (-all makes each).
var Sizes = [][2]int{{640, 360}, {1280, 720}}

// PhotoFace is one source photo and its face, in photo pixels.
type PhotoFace struct {
	Identity string     // name in the truth, e.g. "astronaut"
	File     string     // file name under <cache>/photos
	Box      [4]float64 // x, y, w, h: tight face box, eyebrows to chin, ear to ear (BlazeFace convention)
	RightEye [2]float64 // the subject's right eye centre (on the image's left)
	LeftEye  [2]float64 // the subject's left eye centre (on the image's right)
}

// FaceTable is THE table of source faces: every box, eye and crop in every
// clip and truth file derives from these numbers. Changing it changes the
// clips' stamps, so cached clips are remade.
//
// Boxes are BlazeFace's own (back 256 model) on the untouched photos, so the
// truth uses the detector's box convention; eye centres are the midpoints
// of the eye corners, annotated by hand at 10× zoom.
var FaceTable = []PhotoFace{
	{
		Identity: "astronaut",
		File:     "astronaut.png",
		Box:      [4]float64{173, 75, 103, 103},
		RightEye: [2]float64{202.6, 101.0},
		LeftEye:  [2]float64{247.3, 103.7},
	},
	{
		Identity: "grace_hopper",
		File:     "grace_hopper_512x512.jpg",
		Box:      [4]float64{175, 130, 186, 186},
		RightEye: [2]float64{224, 173},
		LeftEye:  [2]float64{305.5, 171},
	},
}

// The cut-out around a face: an ellipse CropScale times the face box,
// centred CropLift face heights above the box centre (more hair, less neck),
// opaque out to MaskInner of its radius and fading to nothing at its edge.
const (
	CropScale = 1.6
	CropLift  = 0.05
	MaskInner = 0.8
)

// Clip is a made clip: the H.264 mp4 and its ground-truth sidecar.
type Clip struct {
	Name      string
	Width     int
	Height    int
	Path      string // <cache>/media/<name>_<W>x<H>.mp4
	TruthPath string // <cache>/media/<name>_<W>x<H>.json
}

// Truth reads the clip's ground truth.
func (c Clip) Truth() (Truth, error) { return ReadTruth(c.TruthPath) }

// Truth is the ground-truth sidecar of a clip.
type Truth struct {
	Clip       string   `json:"clip"`
	Width      int      `json:"width"`
	Height     int      `json:"height"`
	FPS        float64  `json:"fps"`
	FrameCount int      `json:"frame_count"`
	Identities []string `json:"identities"` // every identity that appears
	// Gaps are the runs of frames, after an identity first appears, in which
	// it is not in the frame at all, and after which it comes back.
	Gaps      []Gap   `json:"gaps"`
	Frames    []Frame `json:"frames"` // one per frame, in order
	Generator int     `json:"generator"`
	Stamp     string  `json:"stamp"` // GeneratorVersion, FaceTable and clip definition hash
}

// Gap is a run of frames in which an identity is absent.
type Gap struct {
	Identity string  `json:"identity"`
	Start    int     `json:"start"`  // first frame without the face
	Frames   int     `json:"frames"` // how many frames without it
	Seconds  float64 `json:"seconds"`
}

// Frame is the truth of one frame.
type Frame struct {
	Index int     `json:"index"`
	Time  float64 `json:"t"`     // seconds: Index / FPS
	Faces []Face  `json:"faces"` // back to front; empty when no face is in the frame
}

// Face is one face in one frame, in clip pixels (x right, y down, the frame
// is [0,W]x[0,H]).
type Face struct {
	Identity string     `json:"identity"`
	Box      [4]float64 `json:"box"`      // x, y, w, h of FullBox clipped to the frame
	FullBox  [4]float64 `json:"full_box"` // x, y, w, h, may reach outside the frame
	// Eyes are the subject's right eye (image left) then left eye (image
	// right); they may lie outside the frame when the face is cut off.
	Eyes    [2][2]float64 `json:"eyes"`
	Visible float64       `json:"visible"` // fraction of FullBox inside the frame, 0..1
	// Occluded is the fraction of Box hidden by faces in front of this one
	// (their masks' mean opacity over it), 0..1.
	Occluded float64 `json:"occluded"`
}

// Face returns the face of identity in frame i, if it is there.
func (t Truth) Face(i int, identity string) (Face, bool) {
	if i < 0 || i >= len(t.Frames) {
		return Face{}, false
	}
	for _, f := range t.Frames[i].Faces {
		if f.Identity == identity {
			return f, true
		}
	}
	return Face{}, false
}

// ReadTruth reads a truth sidecar.
func ReadTruth(path string) (Truth, error) {
	var t Truth
	b, err := os.ReadFile(path)
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, fmt.Errorf("testmedia: %s: %v", path, err)
	}
	if len(t.Frames) != t.FrameCount {
		return t, fmt.Errorf("testmedia: %s: %d frames for frame_count %d", path, len(t.Frames), t.FrameCount)
	}
	return t, nil
}

// ---------------------------------------------------------------- clips

// pose is where a face is at a frame, in normalised frame coordinates:
// the face box centre (cx in frame widths, cy in frame heights) and the
// face box height h in frame heights. A face with shown false is not drawn.
type pose struct {
	cx, cy, h float64
	shown     bool
}

type faceTrack struct {
	identity string
	at       func(f int) pose
	// warp, when set, moves parts of the face at frame f: it maps a point
	// of the drawn face to the photo point shown there (photo pixels).
	warp func(f int, px, py float64) (float64, float64)
}

type clipDef struct {
	name   string
	frames int
	seed   uint64
	faces  []faceTrack // drawn in this order: later ones in front
	shapes bool        // moving non-face shapes
	doc    string
}

// Names lists the clips Ensure knows, in a fixed order.
func Names() []string {
	var n []string
	for _, d := range clipDefs {
		n = append(n, d.name)
	}
	return n
}

// Describe returns a one-line description of a clip.
func Describe(name string) string {
	if d, ok := findDef(name); ok {
		return d.doc
	}
	return ""
}

func findDef(name string) (clipDef, bool) {
	for _, d := range clipDefs {
		if d.name == name {
			return d, true
		}
	}
	return clipDef{}, false
}

func secs(f int) float64 { return float64(f) / FPS }

// boxHalfWidth is half the face box width of identity at height h (frame
// heights), in frame widths, at 16:9.
func boxHalfWidth(identity string, h float64) float64 {
	pf := faceByIdentity(identity)
	return h * pf.Box[2] / pf.Box[3] / 2 * 9 / 16
}

func lerp(a, b, u float64) float64 { return a + (b-a)*u }

// keyed returns the piecewise-linear interpolation through (frame, value)
// keys, constant outside them.
func keyed(keys [][2]float64) func(f int) float64 {
	return func(f int) float64 {
		x := float64(f)
		if x <= keys[0][0] {
			return keys[0][1]
		}
		for i := 1; i < len(keys); i++ {
			if x <= keys[i][0] {
				u := (x - keys[i-1][0]) / (keys[i][0] - keys[i-1][0])
				return lerp(keys[i-1][1], keys[i][1], u)
			}
		}
		return keys[len(keys)-1][1]
	}
}

// reenter's schedule, in frames: the face leaves to the right, is away for
// ShortGapFrames, comes back where it left, leaves again, is away for
// LongGapFrames and comes back once more.
const (
	reenterH         = 0.3
	reenterExit1     = 30                            // first frame fully out
	ShortGapFrames   = 10                            // 0.4 s
	reenterBack1     = reenterExit1 + ShortGapFrames // first frame back
	reenterExit2     = 95                            // first frame fully out again
	LongGapFrames    = 63                            // 2.5 s (62.5 frames, rounded up)
	reenterBack2     = reenterExit2 + LongGapFrames  // first frame back
	reenterFrames    = reenterBack2 + 52             // 8.4 s in all
	reenterOutMargin = 0.002                         // box this far (frame widths) past the edge when out
)

// jawDrop is the "expression" clip's warp of the astronaut photo: the
// lower lip and the chin move down by a pixels (photo pixels; the mouth
// opens and the jaw drops), the face above the mouth and the rest of the
// photo stay. Upper lip at y≈140, chin at y≈178, face centre x≈224.
func jawDrop(a float64) func(px, py float64) (float64, float64) {
	smooth := func(u float64) float64 {
		u = min(max(u, 0), 1)
		return u * u * (3 - 2*u)
	}
	return func(px, py float64) (float64, float64) {
		var dy float64
		switch {
		case py < 140:
		case py < 178:
			dy = a * smooth((py-140)/38)
		default:
			dy = a * (1 - smooth((py-178)/40))
		}
		dy *= 1 - smooth((math.Abs(px-224)-45)/25) // only across the face
		return px, py - dy
	}
}

var clipDefs = []clipDef{
	{
		name: "one_face", frames: 6 * FPS, seed: 101,
		doc: "astronaut moving on a Lissajous path over a panning texture, always fully in frame, 6 s",
		faces: []faceTrack{{identity: "astronaut", at: func(f int) pose {
			t := secs(f)
			return pose{
				cx:    0.5 + 0.3*math.Sin(2*math.Pi*t/6),
				cy:    0.5 + 0.18*math.Sin(2*math.Pi*2*t/6+math.Pi/4),
				h:     0.3,
				shown: true,
			}
		}}},
	},
	{
		name: "expression", frames: 8 * FPS, seed: 707,
		doc: "astronaut, still, 8 s: neutral for 2 s, then the mouth opens and the jaw drops (lower face warped 16 photo px down) over 0.5 s and stays so",
		faces: []faceTrack{{identity: "astronaut", at: func(f int) pose {
			return pose{cx: 0.5, cy: 0.5, h: 0.45, shown: true}
		}, warp: func(f int, px, py float64) (float64, float64) {
			u := min(max((secs(f)-2)/0.5, 0), 1)
			return jawDrop(16*u*u*(3-2*u))(px, py)
		}}},
	},
	{
		name: "two_faces", frames: 6 * FPS, seed: 202,
		doc: "astronaut left→right (upper) and grace_hopper right→left (lower, in front) crossing mid-clip, boxes overlapping partly, 6 s",
		faces: []faceTrack{
			{identity: "astronaut", at: func(f int) pose {
				u := float64(f) / float64(6*FPS-1)
				return pose{cx: lerp(0.15, 0.85, u), cy: 0.38, h: 0.3, shown: true}
			}},
			{identity: "grace_hopper", at: func(f int) pose {
				u := float64(f) / float64(6*FPS-1)
				return pose{cx: lerp(0.85, 0.15, u), cy: 0.60, h: 0.3, shown: true}
			}},
		},
	},
	{
		name: "reenter", frames: reenterFrames, seed: 303,
		doc: fmt.Sprintf("astronaut exits right, gone %d frames, re-enters there, exits again, gone %d frames, re-enters, %.1f s",
			ShortGapFrames, LongGapFrames, secs(reenterFrames)),
		faces: []faceTrack{{identity: "astronaut", at: func() func(int) pose {
			out := 1 + boxHalfWidth("astronaut", reenterH) + reenterOutMargin
			x := keyed([][2]float64{
				{0, 0.40},
				{reenterExit1, out},
				{reenterBack1 - 1, out},
				{reenterBack1 + 29, 0.55},
				{reenterExit2, out},
				{reenterBack2 - 1, out},
				{reenterBack2 + 30, 0.5},
			})
			return func(f int) pose {
				shown := !(f >= reenterExit1 && f < reenterBack1) && !(f >= reenterExit2 && f < reenterBack2)
				return pose{cx: x(f), cy: 0.5 + 0.03*math.Sin(2*math.Pi*secs(f)/3), h: reenterH, shown: shown}
			}
		}()}},
	},
	{
		name: "empty", frames: 4 * FPS, seed: 404,
		doc:    "no face: panning texture and moving non-face shapes (one skin-coloured ellipse), 4 s",
		shapes: true,
	},
	{
		name: "growing", frames: 6 * FPS, seed: 505,
		doc: "astronaut growing from a 40 px wide box (at 640x360) to 60% of the frame height, 6 s",
		faces: []faceTrack{{identity: "astronaut", at: func(f int) pose {
			pf := faceByIdentity("astronaut")
			h0 := 40.0 / (pf.Box[2] / pf.Box[3]) / 360 // 40 px wide at 640x360
			u := float64(f) / float64(6*FPS-1)
			u = u * u * (3 - 2*u) // ease in and out
			return pose{cx: 0.5 + 0.05*math.Sin(2*math.Pi*secs(f)/6), cy: 0.5, h: h0 * math.Pow(0.6/h0, u), shown: true}
		}}},
	},
}

func faceByIdentity(identity string) PhotoFace {
	for _, pf := range FaceTable {
		if pf.Identity == identity {
			return pf
		}
	}
	panic("testmedia: no face " + identity + " in FaceTable")
}

// stamp names everything that decides a clip's content.
func (d clipDef) stamp(w, h int) string {
	hs := sha256.New()
	fmt.Fprintf(hs, "generator %d\nclip %s %dx%d frames %d seed %d shapes %v\ncrop %g %g %g\n",
		GeneratorVersion, d.name, w, h, d.frames, d.seed, d.shapes, CropScale, CropLift, MaskInner)
	for _, pf := range FaceTable {
		fmt.Fprintf(hs, "face %+v\n", pf)
	}
	hs.Write(sourceHash())
	// The paths, sampled: a changed schedule changes the stamp too.
	for _, ft := range d.faces {
		for f := 0; f < d.frames; f++ {
			fmt.Fprintf(hs, "%s %d %+v\n", ft.identity, f, ft.at(f))
		}
	}
	return hex.EncodeToString(hs.Sum(nil))[:16]
}

// selfSource is this file, so that any edit to the generator changes the
// stamps and remakes the clips.
//
//go:embed testmedia.go
var selfSource []byte

var sourceHash = sync.OnceValue(func() []byte {
	h := sha256.Sum256(selfSource)
	return h[:]
})

// ---------------------------------------------------------------- Ensure

var memo sync.Map // stamp → struct{}: clips already checked by this process

// ParseSize reads a clip size written WxH ("1280x720").
func ParseSize(size string) (width, height int, err error) {
	if _, err := fmt.Sscanf(size, "%dx%d", &width, &height); err != nil {
		return 0, 0, fmt.Errorf("size %q: want WxH", size)
	}
	return width, height, nil
}

// Ensure returns the clip name at width x height, making it and its truth
// under <cache>/media if they are missing or stale (a few seconds; 30 ms
// when cached). The clips are laid out for 16:9 (see Sizes): positions
// are fractions of the frame and sizes fractions of its height, so other
// aspect ratios work but stretch the paths sideways.
func Ensure(name string, width, height int) (Clip, error) {
	d, ok := findDef(name)
	if !ok {
		return Clip{}, fmt.Errorf("testmedia: no clip %q (have %s)", name, strings.Join(Names(), ", "))
	}
	if width < 64 || height < 64 || width%2 != 0 || height%2 != 0 {
		return Clip{}, fmt.Errorf("testmedia: bad size %dx%d (even, at least 64)", width, height)
	}
	cache, err := testenv.Cache()
	if err != nil {
		return Clip{}, err
	}
	dir := filepath.Join(cache, "media")
	base := filepath.Join(dir, fmt.Sprintf("%s_%dx%d", name, width, height))
	c := Clip{Name: name, Width: width, Height: height, Path: base + ".mp4", TruthPath: base + ".json"}
	stamp := d.stamp(width, height)
	if _, ok := memo.Load(c.Path + stamp); ok {
		return c, nil
	}
	if fresh(c, stamp) {
		memo.Store(c.Path+stamp, struct{}{})
		return c, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return c, err
	}
	unlock, err := testenv.Lock("media")
	if err != nil {
		return c, err
	}
	defer unlock()
	if !fresh(c, stamp) { // not made by another process while we waited
		if err := generate(d, c, stamp); err != nil {
			return c, err
		}
	}
	memo.Store(c.Path+stamp, struct{}{})
	return c, nil
}

// fresh reports whether c's files exist and its truth carries stamp. The
// truth is written after the clip, so a fresh truth means a whole clip.
func fresh(c Clip, stamp string) bool {
	if _, err := os.Stat(c.Path); err != nil {
		return false
	}
	f, err := os.Open(c.TruthPath)
	if err != nil {
		return false
	}
	defer f.Close()
	var head struct {
		Stamp string `json:"stamp"`
	}
	// The stamp is near the end; decode the whole file (small enough).
	if err := json.NewDecoder(bufio.NewReader(f)).Decode(&head); err != nil {
		return false
	}
	return head.Stamp == stamp
}

// MustEnsure is Ensure for tests: it fails tb on error.
func MustEnsure(tb testing.TB, name string, width, height int) Clip {
	tb.Helper()
	c, err := Ensure(name, width, height)
	if err != nil {
		tb.Fatalf("making test clip %s %dx%d: %v", name, width, height, err)
	}
	return c
}

// Y4M returns clip converted to YUV4MPEG2 (yuv420p) next to it, as
// Chromium's --use-file-for-fake-video-capture wants, converting it if the
// .y4m is missing or older than the clip. 640x360 is ~52 MB, 1280x720 ~210 MB.
func Y4M(clip Clip) (string, error) {
	return derived(clip, ".y4m", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe")
}

// AnnexB returns the clip's H.264 as a raw Annex-B stream with an access
// unit delimiter before each picture (for WebRTC publishers), next to the
// clip, made on demand.
func AnnexB(clip Clip) (string, error) {
	return derived(clip, ".h264", "-c:v", "copy", "-bsf:v", "h264_mp4toannexb,h264_metadata=aud=insert", "-f", "h264")
}

// IVF returns the clip re-encoded as VP8 in an IVF file (key frame every
// second, as the H.264), next to the clip, made on demand.
func IVF(clip Clip) (string, error) {
	return derived(clip, ".ivf", "-c:v", "libvpx", "-b:v", "2M", "-deadline", "realtime", "-cpu-used", "8", "-g", "25", "-f", "ivf")
}

// derived converts the clip with ffmpeg (args go after the input) into
// the file with the clip's name and ext, unless it is already newer.
func derived(clip Clip, ext string, args ...string) (string, error) {
	out := strings.TrimSuffix(clip.Path, ".mp4") + ext
	if y4mFresh(clip.Path, out) {
		return out, nil
	}
	unlock, err := testenv.Lock("media")
	if err != nil {
		return "", err
	}
	defer unlock()
	if y4mFresh(clip.Path, out) {
		return out, nil
	}
	tmp := fmt.Sprintf("%s.tmp%d%s", strings.TrimSuffix(out, ext), os.Getpid(), ext)
	full := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", clip.Path}, args...)
	cmd := exec.Command("ffmpeg", append(full, tmp)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("testmedia: ffmpeg to %s: %v\n%s", ext, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return out, nil
}

func y4mFresh(mp4, y4m string) bool {
	a, err := os.Stat(mp4)
	if err != nil {
		return false
	}
	b, err := os.Stat(y4m)
	return err == nil && !b.ModTime().Before(a.ModTime())
}

// ---------------------------------------------------------------- generate

// GenerateLog, if set, is told how long each clip took to make.
var GenerateLog func(c Clip, took time.Duration)

func generate(d clipDef, c Clip, stamp string) error {
	start := time.Now()
	photos, err := loadPhotos()
	if err != nil {
		return err
	}
	r := newRenderer(d, c.Width, c.Height, photos)
	truth := Truth{
		Clip: d.name, Width: c.Width, Height: c.Height, FPS: FPS, FrameCount: d.frames,
		Identities: []string{}, Gaps: []Gap{}, Generator: GeneratorVersion, Stamp: stamp,
	}
	for _, ft := range d.faces {
		truth.Identities = append(truth.Identities, ft.identity)
	}

	tmp := fmt.Sprintf("%s.tmp%d", c.Path, os.Getpid())
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "rawvideo", "-pix_fmt", "bgr24", "-s", fmt.Sprintf("%dx%d", c.Width, c.Height), "-r", fmt.Sprint(FPS), "-i", "-",
		"-an", "-c:v", "libx264", "-profile:v", "baseline", "-bf", "0", "-g", fmt.Sprint(FPS),
		"-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "18",
		"-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
		"-f", "mp4", tmp)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testmedia: starting ffmpeg: %v", err)
	}
	fail := func(err error) error {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		os.Remove(tmp)
		return fmt.Errorf("testmedia: making %s: %v\n%s", c.Path, err, stderr.String())
	}
	w := bufio.NewWriterSize(stdin, 1<<20)
	for f := 0; f < d.frames; f++ {
		faces := r.frame(f)
		truth.Frames = append(truth.Frames, Frame{Index: f, Time: round(secs(f), 4), Faces: faces})
		if _, err := w.Write(r.buf); err != nil {
			return fail(err)
		}
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := stdin.Close(); err != nil {
		return fail(err)
	}
	if err := cmd.Wait(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("testmedia: ffmpeg making %s: %v\n%s", c.Path, err, stderr.String())
	}
	truth.Gaps = gaps(truth)

	js, err := json.MarshalIndent(truth, "", " ")
	if err != nil {
		os.Remove(tmp)
		return err
	}
	// Truth goes last: a truth with the right stamp vouches for the clip.
	os.Remove(c.TruthPath)
	if err := os.Rename(tmp, c.Path); err != nil {
		os.Remove(tmp)
		return err
	}
	tmpJS := fmt.Sprintf("%s.tmp%d", c.TruthPath, os.Getpid())
	if err := os.WriteFile(tmpJS, append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmpJS, c.TruthPath); err != nil {
		os.Remove(tmpJS)
		return err
	}
	if GenerateLog != nil {
		GenerateLog(c, time.Since(start))
	}
	return nil
}

// gaps finds, per identity, the runs of frames without it between frames
// with it.
func gaps(t Truth) []Gap {
	out := []Gap{}
	for _, id := range t.Identities {
		seen, start := false, -1
		for i := range t.Frames {
			_, here := t.Face(i, id)
			switch {
			case here && start >= 0:
				out = append(out, Gap{Identity: id, Start: start, Frames: i - start, Seconds: round(secs(i-start), 4)})
				start = -1
			case here:
				seen = true
			case !here && seen && start < 0:
				start = i
			}
		}
	}
	return out
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// ---------------------------------------------------------------- photos

// photo is a source photo as a mip pyramid of float RGB.
type photo struct {
	face PhotoFace
	mips []rgbImage // mips[k] is the photo halved k times
}

type rgbImage struct {
	w, h int
	pix  []float32 // r, g, b per pixel, 0..255
}

var (
	photosOnce sync.Once
	photosVal  map[string]*photo
	photosErr  error
)

func loadPhotos() (map[string]*photo, error) {
	photosOnce.Do(func() {
		cache, err := testenv.Cache()
		if err != nil {
			photosErr = err
			return
		}
		photosVal = map[string]*photo{}
		for _, pf := range FaceTable {
			p := filepath.Join(cache, "photos", pf.File)
			f, err := os.Open(p)
			if err != nil {
				photosErr = fmt.Errorf("testmedia: %v: run `make setup`", err)
				return
			}
			img, _, err := image.Decode(f)
			f.Close()
			if err != nil {
				photosErr = fmt.Errorf("testmedia: %s: %v", p, err)
				return
			}
			b := img.Bounds()
			m := rgbImage{w: b.Dx(), h: b.Dy(), pix: make([]float32, 3*b.Dx()*b.Dy())}
			for y := 0; y < m.h; y++ {
				for x := 0; x < m.w; x++ {
					r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
					i := 3 * (y*m.w + x)
					m.pix[i], m.pix[i+1], m.pix[i+2] = float32(r>>8), float32(g>>8), float32(bl>>8)
				}
			}
			ph := &photo{face: pf, mips: []rgbImage{m}}
			for m.w >= 16 && m.h >= 16 {
				m = halve(m)
				ph.mips = append(ph.mips, m)
			}
			photosVal[pf.Identity] = ph
		}
	})
	return photosVal, photosErr
}

func halve(m rgbImage) rgbImage {
	o := rgbImage{w: m.w / 2, h: m.h / 2}
	o.pix = make([]float32, 3*o.w*o.h)
	for y := 0; y < o.h; y++ {
		for x := 0; x < o.w; x++ {
			for c := 0; c < 3; c++ {
				s := m.pix[3*((2*y)*m.w+2*x)+c] + m.pix[3*((2*y)*m.w+2*x+1)+c] +
					m.pix[3*((2*y+1)*m.w+2*x)+c] + m.pix[3*((2*y+1)*m.w+2*x+1)+c]
				o.pix[3*(y*o.w+x)+c] = s / 4
			}
		}
	}
	return o
}

// sample returns the bilinear colour at continuous photo coordinates (x, y)
// (pixel i covers [i, i+1)) of mip level k.
func (p *photo) sample(k int, x, y float64) (r, g, b float64) {
	m := &p.mips[k]
	s := math.Ldexp(1, -k)
	fx, fy := x*s-0.5, y*s-0.5
	x0, y0 := int(math.Floor(fx)), int(math.Floor(fy))
	ax, ay := fx-float64(x0), fy-float64(y0)
	clampi := func(v, hi int) int { return max(0, min(v, hi-1)) }
	xa, xb := clampi(x0, m.w), clampi(x0+1, m.w)
	ya, yb := clampi(y0, m.h), clampi(y0+1, m.h)
	i00, i01 := 3*(ya*m.w+xa), 3*(ya*m.w+xb)
	i10, i11 := 3*(yb*m.w+xa), 3*(yb*m.w+xb)
	w00, w01, w10, w11 := (1-ax)*(1-ay), ax*(1-ay), (1-ax)*ay, ax*ay
	px := m.pix
	r = w00*float64(px[i00]) + w01*float64(px[i01]) + w10*float64(px[i10]) + w11*float64(px[i11])
	g = w00*float64(px[i00+1]) + w01*float64(px[i01+1]) + w10*float64(px[i10+1]) + w11*float64(px[i11+1])
	b = w00*float64(px[i00+2]) + w01*float64(px[i01+2]) + w10*float64(px[i10+2]) + w11*float64(px[i11+2])
	return
}

// ---------------------------------------------------------------- render

type renderer struct {
	d      clipDef
	w, h   int
	photos map[string]*photo
	tex    []uint8 // BGR background texture, texW x texH
	texW   int
	texH   int
	buf    []uint8 // the current frame, BGR
}

// panRange is how far (in frame heights) the background pans each way.
const panRange = 0.2

func newRenderer(d clipDef, w, h int, photos map[string]*photo) *renderer {
	r := &renderer{d: d, w: w, h: h, photos: photos, buf: make([]uint8, 3*w*h)}
	pad := int(math.Ceil(panRange*float64(h))) + 2
	r.texW, r.texH = w+pad, h+pad
	r.tex = texture(d.seed, r.texW, r.texH, h)
	return r
}

// texture makes a colourful multi-octave value-noise texture with a few
// soft diagonal bands, defined in units of the frame height (so it scales
// with the frame), as BGR.
func texture(seed uint64, tw, th, frameH int) []uint8 {
	type octave struct {
		cell   float64 // frame heights
		weight float64
	}
	octaves := []octave{{0.3, 0.45}, {0.12, 0.3}, {0.05, 0.17}, {0.02, 0.08}}
	out := make([]uint8, 3*tw*th)
	acc := make([]float64, 3*tw*th)
	for oi, o := range octaves {
		cellPx := o.cell * float64(frameH)
		lw, lh := int(float64(tw)/cellPx)+3, int(float64(th)/cellPx)+3
		lat := make([]float64, 3*lw*lh)
		rng := rand.New(rand.NewPCG(seed, uint64(oi+1)))
		for i := range lat {
			lat[i] = rng.Float64()
		}
		for y := 0; y < th; y++ {
			fy := (float64(y) + 0.5) / cellPx
			iy := int(fy)
			vy := smooth(fy - float64(iy))
			for x := 0; x < tw; x++ {
				fx := (float64(x) + 0.5) / cellPx
				ix := int(fx)
				vx := smooth(fx - float64(ix))
				for c := 0; c < 3; c++ {
					a := lat[3*(iy*lw+ix)+c]
					b := lat[3*(iy*lw+ix+1)+c]
					cc := lat[3*((iy+1)*lw+ix)+c]
					dd := lat[3*((iy+1)*lw+ix+1)+c]
					v := lerp(lerp(a, b, vx), lerp(cc, dd, vx), vy)
					acc[3*(y*tw+x)+c] += o.weight * v
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	angle := rng.Float64() * math.Pi
	period := (0.15 + 0.1*rng.Float64()) * float64(frameH)
	ca, sa := math.Cos(angle), math.Sin(angle)
	for y := 0; y < th; y++ {
		for x := 0; x < tw; x++ {
			band := 0.5 + 0.5*math.Sin(2*math.Pi*(float64(x)*ca+float64(y)*sa)/period)
			i := 3 * (y*tw + x)
			mean := (acc[i] + acc[i+1] + acc[i+2]) / 3
			for c := 0; c < 3; c++ {
				v := 0.55*acc[i+c] + 0.45*mean    // ~0..1, mostly 0.3..0.7; tamer colours
				v = 0.5 + (v-0.5)*2.4 + 0.12*band // stretch contrast
				// BGR: channel 0 of acc is used as blue.
				out[i+c] = uint8(max(0, min(255, math.Round(25+205*v))))
			}
		}
	}
	return out
}

func smooth(u float64) float64 { return u * u * (3 - 2*u) }

// frame renders frame f into r.buf and returns the faces in it.
func (r *renderer) frame(f int) []Face {
	t := secs(f)
	W, H := float64(r.w), float64(r.h)
	// Background: the texture panned along a slow Lissajous path.
	pan := panRange * H
	ox := int(math.Round(pan * (0.5 + 0.5*math.Sin(2*math.Pi*t/7.3))))
	oy := int(math.Round(pan * (0.5 + 0.5*math.Sin(2*math.Pi*t/5.1+1))))
	for y := 0; y < r.h; y++ {
		src := r.tex[3*((y+oy)*r.texW+ox):]
		copy(r.buf[3*y*r.w:3*(y+1)*r.w], src[:3*r.w])
	}
	if r.d.shapes {
		r.drawShapes(t)
	}

	type placed struct {
		ft faceTrack
		g  geom
	}
	var drawn []placed
	for _, ft := range r.d.faces {
		p := ft.at(f)
		if !p.shown {
			continue
		}
		ph := r.photos[ft.identity]
		g := place(ph.face, p, W, H)
		r.drawFace(ph, g, ft, f)
		drawn = append(drawn, placed{ft, g})
	}
	faces := []Face{}
	for i, pl := range drawn {
		g := pl.g
		full := g.box
		x0, y0 := max(0, full[0]), max(0, full[1])
		x1, y1 := min(W, full[0]+full[2]), min(H, full[1]+full[3])
		if x1 <= x0 || y1 <= y0 {
			continue // drawn, but no part of the face box is in the frame
		}
		vis := (x1 - x0) * (y1 - y0) / (full[2] * full[3])
		// Occlusion: the mean opacity of the faces in front over the
		// visible box, sampled on a grid.
		occ := 0.0
		if i < len(drawn)-1 {
			const n = 24
			for sy := 0; sy < n; sy++ {
				for sx := 0; sx < n; sx++ {
					x := x0 + (x1-x0)*(float64(sx)+0.5)/n
					y := y0 + (y1-y0)*(float64(sy)+0.5)/n
					cover := 0.0
					for _, fr := range drawn[i+1:] {
						a := fr.g.alpha(x, y)
						cover = cover + a - cover*a
					}
					occ += cover
				}
			}
			occ /= n * n
		}
		faces = append(faces, Face{
			Identity: pl.ft.identity,
			Box:      [4]float64{round(x0, 2), round(y0, 2), round(x1-x0, 2), round(y1-y0, 2)},
			FullBox:  [4]float64{round(full[0], 2), round(full[1], 2), round(full[2], 2), round(full[3], 2)},
			Eyes: [2][2]float64{
				{round(g.eyes[0][0], 2), round(g.eyes[0][1], 2)},
				{round(g.eyes[1][0], 2), round(g.eyes[1][1], 2)},
			},
			Visible:  round(vis, 4),
			Occluded: round(occ, 4),
		})
	}
	return faces
}

// geom is a face placed in the frame: photo → clip is
// clip = (photo - pc) * s + cc.
type geom struct {
	s          float64
	pcx, pcy   float64 // photo face box centre
	ccx, ccy   float64 // clip face box centre
	box        [4]float64
	eyes       [2][2]float64
	mcx, mcy   float64 // mask ellipse centre (clip pixels)
	mrx, mry   float64 // mask ellipse radii (clip pixels)
	maskBounds [4]int  // x0, y0, x1, y1 (exclusive), clipped to the frame
}

func place(pf PhotoFace, p pose, W, H float64) geom {
	bw, bh := pf.Box[2], pf.Box[3]
	g := geom{s: p.h * H / bh, pcx: pf.Box[0] + bw/2, pcy: pf.Box[1] + bh/2, ccx: p.cx * W, ccy: p.cy * H}
	toClip := func(x, y float64) (float64, float64) {
		return (x-g.pcx)*g.s + g.ccx, (y-g.pcy)*g.s + g.ccy
	}
	x, y := toClip(pf.Box[0], pf.Box[1])
	g.box = [4]float64{x, y, bw * g.s, bh * g.s}
	g.eyes[0][0], g.eyes[0][1] = toClip(pf.RightEye[0], pf.RightEye[1])
	g.eyes[1][0], g.eyes[1][1] = toClip(pf.LeftEye[0], pf.LeftEye[1])
	g.mcx, g.mcy = g.ccx, g.ccy-CropLift*bh*g.s
	g.mrx, g.mry = CropScale*bw*g.s/2, CropScale*bh*g.s/2
	g.maskBounds = [4]int{
		max(0, int(math.Floor(g.mcx-g.mrx))), max(0, int(math.Floor(g.mcy-g.mry))),
		min(int(W), int(math.Ceil(g.mcx+g.mrx))+1), min(int(H), int(math.Ceil(g.mcy+g.mry))+1),
	}
	return g
}

// alpha is the cut-out's opacity at clip point (x, y).
func (g geom) alpha(x, y float64) float64 {
	u, v := (x-g.mcx)/g.mrx, (y-g.mcy)/g.mry
	rr := math.Sqrt(u*u + v*v)
	switch {
	case rr <= MaskInner:
		return 1
	case rr >= 1:
		return 0
	}
	return 1 - smooth((rr-MaskInner)/(1-MaskInner))
}

func (r *renderer) drawFace(ph *photo, g geom, ft faceTrack, f int) {
	// Pick the mip level whose pixels are about one clip pixel or smaller.
	k := 0
	for k+1 < len(ph.mips) && math.Ldexp(1, k+1) <= 1/g.s {
		k++
	}
	b := g.maskBounds
	for y := b[1]; y < b[3]; y++ {
		cy := float64(y) + 0.5
		for x := b[0]; x < b[2]; x++ {
			cx := float64(x) + 0.5
			a := g.alpha(cx, cy)
			if a <= 0 {
				continue
			}
			px, py := (cx-g.ccx)/g.s+g.pcx, (cy-g.ccy)/g.s+g.pcy
			if ft.warp != nil {
				px, py = ft.warp(f, px, py)
			}
			rr, gg, bb := ph.sample(k, px, py)
			i := 3 * (y*r.w + x)
			o := r.buf[i : i+3 : i+3]
			o[0] = blend(o[0], bb, a)
			o[1] = blend(o[1], gg, a)
			o[2] = blend(o[2], rr, a)
		}
	}
}

func blend(dst uint8, src, a float64) uint8 {
	return uint8(max(0, min(255, math.Round(float64(dst)*(1-a)+src*a))))
}

// drawShapes draws moving non-face shapes (for "empty"): a disc, a
// rectangle, a ring and a featureless skin-coloured ellipse.
func (r *renderer) drawShapes(t float64) {
	W, H := float64(r.w), float64(r.h)
	type shape struct {
		kind         int // 0 disc, 1 rect, 2 ring, 3 ellipse
		bgr          [3]float64
		rx, ry       float64 // half sizes, frame heights
		ax, ay       float64 // path amplitudes, frames widths / heights
		fx, fy, phx  float64
		baseX, baseY float64
	}
	shapes := []shape{
		{0, [3]float64{40, 200, 230}, 0.09, 0.09, 0.3, 0.2, 0.25, 0.4, 0, 0.5, 0.5},
		{1, [3]float64{200, 60, 40}, 0.12, 0.07, 0.35, 0.25, 0.2, 0.3, 1.5, 0.5, 0.5},
		{2, [3]float64{30, 30, 30}, 0.1, 0.1, 0.25, 0.3, 0.3, 0.15, 3, 0.5, 0.5},
		{3, [3]float64{120, 150, 215}, 0.1, 0.13, 0.3, 0.15, 0.15, 0.35, 4.5, 0.5, 0.5},
	}
	for _, s := range shapes {
		cx := (s.baseX + s.ax*math.Sin(2*math.Pi*s.fx*t+s.phx)) * W
		cy := (s.baseY + s.ay*math.Sin(2*math.Pi*s.fy*t+s.phx*0.7)) * H
		rx, ry := s.rx*H, s.ry*H
		x0, x1 := max(0, int(cx-rx)-1), min(r.w, int(cx+rx)+2)
		y0, y1 := max(0, int(cy-ry)-1), min(r.h, int(cy+ry)+2)
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				px, py := float64(x)+0.5-cx, float64(y)+0.5-cy
				var a float64
				switch s.kind {
				case 1:
					a = clamp01(rx-math.Abs(px)+0.5) * clamp01(ry-math.Abs(py)+0.5)
				default:
					// Signed distance (in pixels, approximately) to the ellipse edge.
					d := (math.Sqrt(px*px/(rx*rx)+py*py/(ry*ry)) - 1) * math.Min(rx, ry)
					a = clamp01(0.5 - d)
					if s.kind == 2 {
						a *= clamp01(d + 0.35*math.Min(rx, ry) + 0.5)
					}
				}
				if a <= 0 {
					continue
				}
				i := 3 * (y*r.w + x)
				for c := 0; c < 3; c++ {
					r.buf[i+c] = blend(r.buf[i+c], s.bgr[c], a)
				}
			}
		}
	}
}

func clamp01(v float64) float64 { return max(0, min(1, v)) }

// ---------------------------------------------------------------- all

// EnsureAll makes every clip at every size in Sizes.
func EnsureAll() ([]Clip, error) {
	var out []Clip
	var errs []error
	for _, n := range Names() {
		for _, s := range Sizes {
			c, err := Ensure(n, s[0], s[1])
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, c)
		}
	}
	return out, errors.Join(errs...)
}
