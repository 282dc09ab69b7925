package train

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Plot draws the validation results as a PNG, for those who would rather
// look: per-label F1 bars of an AU head on the left (nil: none), and the
// predicted against the true valence (red) and arousal (blue) of the
// validation frames on the right (none without points).
func Plot(w io.Writer, au *Head, auScore Score, va [][2][2]float32) error {
	const W, H, pad = 960, 420, 40
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	ink := color.RGBA{40, 40, 40, 255}
	text := func(x, y int, s string, c color.Color) {
		d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
		d.DrawString(s)
	}
	rect := func(x0, y0, x1, y1 int, c color.Color) {
		draw.Draw(img, image.Rect(x0, y0, x1, y1), image.NewUniform(c), image.Point{}, draw.Src)
	}
	// Left: F1 per AU, 0..1.
	lx0, lx1, y0, y1 := pad, W/2-pad/2, pad, H-pad
	rect(lx0, y1, lx1, y1+1, ink)
	rect(lx0, y0, lx0+1, y1, ink)
	if au != nil {
		text(lx0, y0-14, fmt.Sprintf("AU F1 on the validation videos (mean %.3f)", auScore.Mean), ink)
		n := len(au.Labels)
		bw := (lx1 - lx0) / max(n, 1)
		for i, l := range au.Labels {
			f, ok := auScore.PerLabel[l]
			x := lx0 + i*bw + bw/6
			if ok {
				top := y1 - int(float64(y1-y0)*math.Max(0, math.Min(1, f)))
				rect(x, top, x+bw*2/3, y1, color.RGBA{70, 130, 180, 255})
				text(x, top-3, fmt.Sprintf("%.2f", f), ink)
			}
			text(x, y1+14, l, ink)
		}
	}
	// Right: predicted (y) against true (x), both in [−1, 1].
	rx0, rx1 := W/2+pad/2, W-pad
	side := min(rx1-rx0, y1-y0)
	rx1 = rx0 + side
	ry0 := y1 - side
	rect(rx0, y1, rx1, y1+1, ink)
	rect(rx0, ry0, rx0+1, y1, ink)
	for i := 0; i < side; i += 3 { // the diagonal
		img.Set(rx0+i, y1-i, color.RGBA{180, 180, 180, 255})
	}
	if len(va) > 0 {
		text(rx0, ry0-14, "valence (red), arousal (blue): predicted vs true", ink)
		at := func(v float32) float64 { return (math.Max(-1, math.Min(1, float64(v))) + 1) / 2 * float64(side-1) }
		for _, p := range va {
			for k, c := range []color.RGBA{{200, 40, 40, 255}, {40, 70, 200, 255}} {
				x, y := rx0+int(at(p[k][0])), y1-int(at(p[k][1]))
				rect(x-1, y-1, x+2, y+2, c)
			}
		}
		text(rx0+side/2-20, y1+14, "true", ink)
		text(rx0-36, ry0+side/2, "pred", ink)
	}
	return png.Encode(w, img)
}
