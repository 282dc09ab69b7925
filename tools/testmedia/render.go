package testmedia

import (
	"errors"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"

	"github.com/affectd/affectd/tools/testenv"
)

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
	tex2   []uint8 // the background after a cut
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
	if d.cutAt > 0 {
		r.tex2 = texture(d.seed+1, r.texW, r.texH, h)
	}
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
	tex := r.tex
	if r.d.cutAt > 0 && f >= r.d.cutAt {
		tex = r.tex2 // another shot
	}
	for y := 0; y < r.h; y++ {
		src := tex[3*((y+oy)*r.texW+ox):]
		copy(r.buf[3*y*r.w:3*(y+1)*r.w], src[:3*r.w])
	}
	if r.d.shapes {
		r.drawShapes(t)
	}

	type placed struct {
		ft   faceTrack
		g    geom
		roll float64
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
		drawn = append(drawn, placed{ft, g, p.roll})
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
			Roll:     pl.roll,
			Occluded: round(occ, 4),
		})
	}
	return faces
}

// geom is a face placed in the frame: photo → clip is
// clip = (photo - pc) * s + cc.
type geom struct {
	s          float64
	cos, sin   float64 // the roll
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
	g.cos, g.sin = math.Cos(p.roll*math.Pi/180), math.Sin(p.roll*math.Pi/180)
	toClip := func(x, y float64) (float64, float64) {
		dx, dy := (x-g.pcx)*g.s, (y-g.pcy)*g.s
		return g.cos*dx - g.sin*dy + g.ccx, g.sin*dx + g.cos*dy + g.ccy
	}
	// The box: the photo's face box, upright, about the face's centre
	// (a rolled face's upright box, as detectors give it).
	g.box = [4]float64{g.ccx - bw*g.s/2, g.ccy - bh*g.s/2, bw * g.s, bh * g.s}
	g.eyes[0][0], g.eyes[0][1] = toClip(pf.RightEye[0], pf.RightEye[1])
	g.eyes[1][0], g.eyes[1][1] = toClip(pf.LeftEye[0], pf.LeftEye[1])
	g.mcx, g.mcy = toClip(g.pcx, g.pcy-CropLift*bh)
	g.mrx, g.mry = CropScale*bw*g.s/2, CropScale*bh*g.s/2
	r := max(g.mrx, g.mry) // bounds of the ellipse, whatever its roll
	if p.roll == 0 {
		r = 0
	}
	g.maskBounds = [4]int{
		max(0, int(math.Floor(g.mcx-max(g.mrx, r)))), max(0, int(math.Floor(g.mcy-max(g.mry, r)))),
		min(int(W), int(math.Ceil(g.mcx+max(g.mrx, r)))+1), min(int(H), int(math.Ceil(g.mcy+max(g.mry, r)))+1),
	}
	return g
}

// alpha is the cut-out's opacity at clip point (x, y).
func (g geom) alpha(x, y float64) float64 {
	dx, dy := x-g.mcx, y-g.mcy
	u, v := (g.cos*dx+g.sin*dy)/g.mrx, (-g.sin*dx+g.cos*dy)/g.mry
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
			dx, dy := cx-g.ccx, cy-g.ccy // back to the photo, unrolled
			px, py := (g.cos*dx+g.sin*dy)/g.s+g.pcx, (-g.sin*dx+g.cos*dy)/g.s+g.pcy
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
