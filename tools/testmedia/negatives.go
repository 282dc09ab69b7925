package testmedia

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affectd/affectd/tools/testenv"
)

// Negatives are public-domain pictures without a face from
// python3-skimage (tools/setup.sh fetches them into the cache), on some of
// which BlazeFace fires (the cat, the coffee cup, the horse).
var Negatives = []string{"text.png", "page.png", "coffee.png", "chelsea.png", "horse.png", "rocket.jpg"}

// Cameraman is python3-skimage's camera.png: a face, in profile (a
// man behind a camera on a tripod).
const Cameraman = "camera.png"

// Skimage returns the path of one of the pictures above in the cache.
func Skimage(name string) (string, error) {
	cache, err := testenv.Cache()
	if err != nil {
		return "", err
	}
	p := filepath.Join(cache, "photos", "skimage", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("testmedia: %v: run `make setup`", err)
	}
	return p, nil
}

// MustSkimage is Skimage for tests.
func MustSkimage(tb testing.TB, name string) string {
	tb.Helper()
	p, err := Skimage(name)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TitleFont is the font of title cards (Debian's fonts-dejavu-core).
const TitleFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

// TitleCard makes, once, a title card: text in large white letters (size
// pixels high) on black, w×h, drawn by ffmpeg's drawtext; as a PNG, or
// with seconds > 0 as an H.264 video of that many seconds at FPS. On such
// cards BlazeFace fires on letters (round ones, digits).
func TitleCard(text string, size, w, h int, seconds float64) (string, error) {
	cache, err := testenv.Cache()
	if err != nil {
		return "", err
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, text)
	ext := ".png"
	if seconds > 0 {
		ext = fmt.Sprintf("_%gs.mp4", seconds)
	}
	out := filepath.Join(cache, "media", fmt.Sprintf("title_%s_%d_%dx%d%s", name, size, w, h, ext))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	esc := strings.NewReplacer(`\`, `\\`, `'`, `\'`, `:`, `\:`, `%`, `\%`).Replace(text)
	draw := fmt.Sprintf("drawtext=fontfile=%s:text='%s':fontsize=%d:fontcolor=white:x=(w-text_w)/2:y=(h-text_h)/2", TitleFont, esc, size)
	args := []string{"-v", "error", "-y", "-f", "lavfi", "-i", fmt.Sprintf("color=c=black:s=%dx%d:r=%d", w, h, FPS), "-vf", draw}
	if seconds > 0 {
		args = append(args, "-t", fmt.Sprint(seconds), "-c:v", "libx264", "-profile:v", "baseline", "-bf", "0", "-pix_fmt", "yuv420p")
	} else {
		args = append(args, "-frames:v", "1")
	}
	tmp := out + fmt.Sprintf(".tmp%d", os.Getpid()) + filepath.Ext(out)
	if b, err := exec.Command("ffmpeg", append(args, tmp)...).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("testmedia: title card: ffmpeg: %v: %s", err, b)
	}
	return out, os.Rename(tmp, out)
}

// MustTitleCard is TitleCard for tests.
func MustTitleCard(tb testing.TB, text string, size, w, h int, seconds float64) string {
	tb.Helper()
	p, err := TitleCard(text, size, w, h, seconds)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
