package emotion

import (
	"image"
	"image/color"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/track"
)

// TestCropMatchesMesh192: human feeds the model track/mesh's 192 × 192 crop
// resized to 64 × 64 by tf.image.resizeBilinear (alignCorners false,
// halfPixelCenters false), which takes the 192 crop's pixel 3j for output
// pixel j. Classify warps straight to 64 × 64; this checks that both give
// the same pixels: the 192 crop decimated by 3 against the 64 crop, upright
// and rolled, in the frame and over its edge. Measured: identical, 0 of
// 12,288 values differ in each case (1 level is allowed, for OpenCV's
// fixed-point source coordinates); the control, the 192 crop's pixels
// 3j + 1 (a one-pixel slip at 192), differs by 158–235 levels.
func TestCropMatchesMesh192(t *testing.T) {
	cache, err := testenv.Cache()
	if err != nil {
		t.Fatal(err)
	}
	img := gocv.IMRead(filepath.Join(cache, "photos", "grace_hopper_512x512.jpg"), gocv.IMReadColor)
	defer img.Close()
	if img.Empty() {
		t.Fatal("no photo")
	}
	M := gocv.Zeros(2, 3, gocv.MatTypeCV64F)
	defer M.Close()
	big, small := gocv.NewMat(), gocv.NewMat()
	defer big.Close()
	defer small.Close()
	for _, tc := range []struct{ cx, cy, side, roll float64 }{
		{250, 225, 350, 0}, {250, 225, 350, 0.3}, {100, 80, 300, -0.5}, {256.5, 300.25, 123.7, 2},
	} {
		track.SetRollCrop(M, tc.cx, tc.cy, tc.side, tc.roll, 192)
		gocv.WarpAffineWithParams(img, &big, M, image.Pt(192, 192), gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
		track.SetRollCrop(M, tc.cx, tc.cy, tc.side, tc.roll, Size)
		gocv.WarpAffineWithParams(img, &small, M, image.Pt(Size, Size), gocv.InterpolationLinear, gocv.BorderConstant, color.RGBA{})
		b, _ := big.DataPtrUint8()
		s, _ := small.DataPtrUint8()
		// diff compares the 64 crop with the 192 crop's pixels 3j + off.
		diff := func(off int) (worst, n int) {
			for y := range Size {
				for x := range Size {
					for ch := range 3 {
						d := int(s[3*(y*Size+x)+ch]) - int(b[3*((3*y+off)*192+3*x+off)+ch])
						d = max(d, -d)
						worst = max(worst, d)
						if d > 0 {
							n++
						}
					}
				}
			}
			return worst, n
		}
		worst, n := diff(0)
		shifted, _ := diff(1)
		t.Logf("%+v: largest difference %d levels, %d of %d values differ; %d levels against pixels 3j+1", tc, worst, n, 3*Size*Size, shifted)
		if worst > 1 {
			t.Errorf("%+v: the 64 crop is %d levels from the 192 crop's pixels 3j", tc, worst)
		}
		if shifted < 20 {
			t.Errorf("%+v: control: the 64 crop is only %d levels from the 192 crop's pixels 3j+1", tc, shifted)
		}
	}
}
