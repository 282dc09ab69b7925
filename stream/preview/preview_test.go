package preview

import (
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/infer/analysis"
)

func TestScaledSize(t *testing.T) {
	for _, c := range []struct{ w, h, max, ww, wh int }{
		{1280, 720, 640, 640, 360}, {640, 360, 640, 640, 360}, {320, 240, 640, 320, 240},
		{2000, 2, 640, 640, 1}, {100000, 1, 640, 640, 1}, {1, 100000, 640, 1, 100000},
	} {
		if w, h := ScaledSize(c.w, c.h, c.max); w != c.ww || h != c.wh {
			t.Errorf("ScaledSize(%d, %d, %d) = %d×%d, want %d×%d", c.w, c.h, c.max, w, h, c.ww, c.wh)
		}
	}
}

// TestOddShapes: frames of any shape, 2000×2 among them (whose scaled
// height rounded to 0 and made OpenCV abort the process), become pictures.
func TestOddShapes(t *testing.T) {
	p := New(Options{FPS: 1000, MaxWidth: 640})
	defer p.Close()
	p.Want(time.Minute)
	for i, sz := range [][2]int{{2000, 2}, {2, 2000}, {1, 1}, {641, 1}, {1280, 720}} {
		m := gocv.NewMatWithSize(sz[1], sz[0], gocv.MatTypeCV8UC3)
		time.Sleep(2 * time.Millisecond)
		if !p.WantImage() {
			t.Fatalf("%v: no picture wanted", sz)
		}
		if err := p.WriteFrame(&analysis.FrameResult{Seq: uint64(i + 1), Width: sz[0], Height: sz[1], Image: &m}); err != nil {
			t.Fatal(err)
		}
		m.Close()
		if pic := p.Latest(); pic == nil || pic.Seq != uint64(i+1) || len(pic.JPEG) == 0 {
			t.Errorf("%v: no picture", sz)
		}
	}
}
