package testmedia

import (
	"fmt"
	"math"
)

// ---------------------------------------------------------------- clips

// pose is where a face is at a frame, in normalised frame coordinates:
// the face box centre (cx in frame widths, cy in frame heights) and the
// face box height h in frame heights. A face with shown false is not drawn.
type pose struct {
	cx, cy, h float64
	shown     bool
	// roll turns the face in the image plane about its box centre, in
	// degrees, clockwise (the top of the head towards the image's right:
	// + roll in OpenFace's convention, pose_Rz).
	roll float64
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
	cutAt  int         // >0: a hard cut to another background at this frame
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

// swap's schedule, in frames: astronaut (left) and grace_hopper (right)
// stand still for 2 s, leave by the nearer edge (astronaut left,
// grace_hopper right), are both away for SwapGapFrames, then come back by
// the other edge (astronaut from the right, grace_hopper from the left) and
// settle in each other's places. The two move in mirror image, so each
// frame number holds for both.
const (
	swapH         = 0.3
	swapLeft      = 0.3                     // cx of the left place
	swapRight     = 0.7                     // cx of the right place
	swapMove      = 2 * FPS                 // first frame of the move out
	SwapExit      = 59                      // first frame with the boxes cut by the frame edges on the way out (58: last fully inside)
	SwapOut       = 65                      // first frame with both not shown (fully out): the gap starts
	SwapGapFrames = LongGapFrames           // 2.5 s (62.5 frames, rounded up)
	SwapBack      = SwapOut + SwapGapFrames // first frame back: both partly in, at the opposite edges
	SwapInside    = 134                     // first frame with both boxes fully inside again
	SwapSettled   = 142                     // first frame at the swapped places (astronaut right, grace_hopper left)
	swapFrames    = SwapSettled + 2*FPS     // 7.7 s in all
)

// swapTrack is one of swap's faces: it starts at cx from and ends at cx
// to, leaving by the from side's edge and coming back by the other.
func swapTrack(identity string, from, to float64, phase float64) faceTrack {
	hw := boxHalfWidth(identity, swapH)
	side := func(x float64) (edge, out float64) { // just inside, fully out, on x's side
		if x < 0.5 {
			return hw + reenterOutMargin, -hw - reenterOutMargin
		}
		return 1 - hw - reenterOutMargin, 1 + hw + reenterOutMargin
	}
	exitEdge, exitOut := side(from)
	backEdge, backOut := side(to)
	x := keyed([][2]float64{
		{swapMove, from},
		{SwapExit - 1, exitEdge},
		{SwapOut, exitOut},
		{SwapBack - 1, backOut},
		{SwapInside, backEdge},
		{SwapSettled, to},
	})
	return faceTrack{identity: identity, at: func(f int) pose {
		shown := f < SwapOut || f >= SwapBack
		return pose{cx: x(f), cy: 0.5 + 0.03*math.Sin(2*math.Pi*secs(f)/3+phase), h: swapH, shown: shown}
	}}
}

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
		name: "swap", frames: swapFrames, seed: 909,
		doc: fmt.Sprintf("astronaut (left) and grace_hopper (right) side by side, both leave by the nearer edge, gone %d frames, "+
			"astronaut re-enters from the right and grace_hopper from the left, swapped places, boxes never overlapping, %.2f s",
			SwapGapFrames, secs(swapFrames)),
		faces: []faceTrack{
			swapTrack("astronaut", swapLeft, swapRight, 0),
			swapTrack("grace_hopper", swapRight, swapLeft, math.Pi),
		},
	},
	{
		name: "cut", frames: 6 * FPS, seed: 606, cutAt: 3 * FPS,
		doc: "astronaut for 3 s, then a hard cut (another background) to grace_hopper at the same place and size, 6 s",
		faces: []faceTrack{
			{identity: "astronaut", at: func(f int) pose {
				return pose{cx: 0.5 + 0.05*math.Sin(2*math.Pi*secs(f)/3), cy: 0.5, h: 0.4, shown: f < 3*FPS}
			}},
			{identity: "grace_hopper", at: func(f int) pose {
				return pose{cx: 0.5 + 0.05*math.Sin(2*math.Pi*secs(f)/3), cy: 0.5, h: 0.4, shown: f >= 3*FPS}
			}},
		},
	},
	{
		name: "roll", frames: 4 * FPS, seed: 808,
		doc: "astronaut, still, rolled from 30° anticlockwise to 30° clockwise and back, 4 s",
		faces: []faceTrack{{identity: "astronaut", at: func(f int) pose {
			return pose{cx: 0.5, cy: 0.5, h: 0.4, shown: true, roll: 30 * math.Sin(2*math.Pi*secs(f)/4)}
		}}},
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
