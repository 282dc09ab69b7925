package testmedia

import (
	"bufio"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	_ "image/jpeg" // grace_hopper_512x512.jpg
	_ "image/png"  // astronaut.png
	"math"
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
	Gaps   []Gap   `json:"gaps"`
	Frames []Frame `json:"frames"` // one per frame, in order
	// Cuts are the frames that begin a new shot (hard cuts).
	Cuts      []int  `json:"cuts"`
	Generator int    `json:"generator"`
	Stamp     string `json:"stamp"` // GeneratorVersion, FaceTable and clip definition hash
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
	// Roll is how far the face is turned in the image plane, degrees,
	// clockwise (OpenFace's pose_Rz sign).
	Roll float64 `json:"roll"`
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

// generatorSource is the generator's own source, so that any edit to it
// changes the stamps and remakes the clips.
//
//go:embed testmedia.go clips.go render.go
var generatorSource embed.FS

var sourceHash = sync.OnceValue(func() []byte {
	h := sha256.New()
	for _, name := range []string{"testmedia.go", "clips.go", "render.go"} {
		b, _ := generatorSource.ReadFile(name)
		h.Write(b)
	}
	return h.Sum(nil)
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
		Identities: []string{}, Gaps: []Gap{}, Generator: GeneratorVersion, Stamp: stamp, Cuts: []int{},
	}
	if d.cutAt > 0 {
		truth.Cuts = append(truth.Cuts, d.cutAt)
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
