package mesh

import (
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/landmarks"
)

// place is where one landmark lies on the mesh (see map68).
type place struct {
	a, b   run
	at     float32 // fractional vertex position along a (and b)
	toward float32 // the fraction of the way from a's point to b's
}

// run names a documented run of mesh indices. "Right" is the subject's
// right (the image's left on a frontal face), as in landmarks.Shape.
type run uint8

const (
	runOval          run = iota // the face oval from the right temple over the chin (12) to the left temple
	runBrowUpperR               // right brow, upper edge, outer end to inner
	runBrowLowerR               // right brow, lower edge, outer end to inner
	runBrowUpperL               // left brow, upper edge, outer end to inner
	runBrowLowerL               // left brow, lower edge, outer end to inner
	runBridge                   // nose bridge: between the eyes (168) to the tip (1)
	runNostrils                 // under the nose: right nostril wing (98), under the tip (2), left wing (327)
	runLidUpperR                // right eye, upper lid: outer corner (33) to inner (133)
	runLidLowerR                // right eye, lower lid: outer corner to inner
	runRingUpperR               // the ring of points just outside the right eye's upper lid
	runRingLowerR               // … and outside its lower lid
	runLidUpperL                // left eye, upper lid: outer corner (263) to inner (362)
	runLidLowerL                // left eye, lower lid: outer corner to inner
	runRingUpperL               // the ring just outside the left eye's upper lid
	runRingLowerL               // … and outside its lower lid
	runLipUpperOuter            // upper lip, outer edge: right mouth corner (61) to left (291)
	runLipLowerOuter            // lower lip, outer edge: right corner to left
	runLipUpperInner            // upper lip, inner edge: right inner corner (78) to left (308)
	runLipLowerInner            // lower lip, inner edge: right inner corner to left
	numRuns
)

// runs are the mesh indices of each run: MediaPipe's silhouette (the oval
// from 162 to 389 over the chin), rightEyebrowUpper/Lower and
// leftEyebrowUpper/Lower (the brows' five paired vertices), the nose
// midline 168–6–197–195–5–4–1, noseRightCorner–noseBottom–noseLeftCorner
// with the vertices between, right/leftEyeUpper0 and Lower0 (the lids,
// with the eye corners at both ends), right/leftEyeUpper1 and Lower1 (the
// rings), and lipsUpperOuter, lipsLowerOuter, lipsUpperInner and
// lipsLowerInner (each with both corners).
var runs = [numRuns][]uint16{
	runOval:          {162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356, 389},
	runBrowUpperR:    {70, 63, 105, 66, 107},
	runBrowLowerR:    {46, 53, 52, 65, 55},
	runBrowUpperL:    {300, 293, 334, 296, 336},
	runBrowLowerL:    {276, 283, 282, 295, 285},
	runBridge:        {168, 6, 197, 195, 5, 4, 1},
	runNostrils:      {98, 97, 2, 326, 327},
	runLidUpperR:     {33, 246, 161, 160, 159, 158, 157, 173, 133},
	runLidLowerR:     {33, 7, 163, 144, 145, 153, 154, 155, 133},
	runRingUpperR:    {130, 247, 30, 29, 27, 28, 56, 190, 243},
	runRingLowerR:    {130, 25, 110, 24, 23, 22, 26, 112, 243},
	runLidUpperL:     {263, 466, 388, 387, 386, 385, 384, 398, 362},
	runLidLowerL:     {263, 249, 390, 373, 374, 380, 381, 382, 362},
	runRingUpperL:    {359, 467, 260, 259, 257, 258, 286, 414, 463},
	runRingLowerL:    {359, 255, 339, 254, 253, 252, 256, 341, 463},
	runLipUpperOuter: {61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291},
	runLipLowerOuter: {61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291},
	runLipUpperInner: {78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308},
	runLipLowerInner: {78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308},
}

// map68 is the documented mesh → 68 map: where each of the 68 iBUG 300-W
// landmarks (dlib's and OpenFace's, in the order of landmarks.Shape) lies
// on the 468-point mesh; landmark i is at map68[i].
//
// Each landmark is a fixed weighted combination of at most four mesh
// points, written as a place on the runs of mesh indices above: the point
// at fractional vertex position at along run a (2.25 is a quarter of the
// way from a's vertex 2 to its vertex 3; a position before the first
// vertex or after the last extends the end segment), moved the fraction
// toward of the way to the point at the same position along run b. So
// {a, b, 2.25, 0.4} is
//
//	0.6·(0.75·a[2] + 0.25·a[3]) + 0.4·(0.75·b[2] + 0.25·b[3]).
//
// Where it came from. Which runs a landmark may lie on follows from its
// meaning: the jaw 0–16 on the face oval; a brow point between the brow's
// upper and lower edge; an eye point between the lid line and the ring of
// points just outside it; an outer lip point between the outer and the
// inner lip line, an inner one the other way round; the nose bridge 27–30
// and the line under the nose 31–35 on one run each. The positions and
// weights were then fitted to dlib's fits on the astronaut's faces of the
// test media (TestMap68AgainstDlib: the photo, its mirror image, frames
// of six clips; fit68 there is the procedure): for each landmark and its
// left/right mirror together (one place, mirrored), at on a 0.05 grid
// from one vertex before the run to one after, toward on a 0.05 grid in
// [0, 1] (between the two runs, never beyond them), the place with the
// least mean distance from dlib's landmark.
//
// The table was fitted on upright crops (Fit); the daemon fits crops
// turned with the face's roll (FitRolled), as the test now measures.
// Measured against dlib on Grace Hopper's faces, which the fit never saw,
// the mean distance of the 68 points is 4.5% of the eye distance (the
// distance of dlib's eye centres): jaw 5.8%, brows 6.0%, nose 3.1%, eyes
// 4.2%, mouth 3.3% (2.7% on the astronaut's, where it was fitted). The
// same procedure fitted on Grace Hopper's faces measures 3.8% on the
// astronaut's, and places every jaw point within 0.25 vertices of this
// table. The jaw dominates: the two identities agree on the positions
// along the oval, but the oval and dlib's jaw line do not coincide (dlib's
// chin is 0.10 eye distances below the mesh's on the astronaut, 0.04
// above it on Grace Hopper). The jaw by vertex position measured better
// held out than by arc-length position along the oval (6.0% against 6.6%
// fitted on the astronaut, 5.8% against 6.8% fitted on Grace Hopper): the
// oval's vertices follow the anatomy, its arc length less so.
//
// On faces rolled by more than 15° the mapped points are 3.7% of the eye
// distance from dlib's with the crop turned (12%, jaw 18%, with an upright
// crop); on the expression clip's synthetic jaw drop, which the mesh
// follows only in part, 6.7% (jaw 16%).
//
// Each row's comment gives the mesh indices and weights it comes to.
var map68 = [landmarks.N]place{
	// 0–16 jaw, on the oval (its vertex 12 is the chin, 152; 2 is 234
	// by the right ear, 22 is 454 by the left).
	{runOval, runOval, 1.25, 0},  // 0: 0.75·127 + 0.25·234
	{runOval, runOval, 2.65, 0},  // 1: 0.35·234 + 0.65·93
	{runOval, runOval, 3.85, 0},  // 2: 0.15·93 + 0.85·132
	{runOval, runOval, 5, 0},     // 3: 58
	{runOval, runOval, 6.25, 0},  // 4: 0.75·172 + 0.25·136
	{runOval, runOval, 7.6, 0},   // 5: 0.4·136 + 0.6·150
	{runOval, runOval, 9.25, 0},  // 6: 0.75·149 + 0.25·176
	{runOval, runOval, 10.85, 0}, // 7: 0.15·176 + 0.85·148
	{runOval, runOval, 11.95, 0}, // 8: 0.05·148 + 0.95·152
	{runOval, runOval, 13.15, 0}, // 9: 0.85·377 + 0.15·400
	{runOval, runOval, 14.75, 0}, // 10: 0.25·400 + 0.75·378
	{runOval, runOval, 16.4, 0},  // 11: 0.6·379 + 0.4·365
	{runOval, runOval, 17.75, 0}, // 12: 0.25·365 + 0.75·397
	{runOval, runOval, 19, 0},    // 13: 288
	{runOval, runOval, 20.15, 0}, // 14: 0.85·361 + 0.15·323
	{runOval, runOval, 21.35, 0}, // 15: 0.65·323 + 0.35·454
	{runOval, runOval, 22.75, 0}, // 16: 0.25·454 + 0.75·356
	// 17–26 brows: outer end to inner, near the upper edge (iBUG's brow
	// line), the inner ends 21/22 lower.
	{runBrowUpperR, runBrowLowerR, -0.55, 0.4}, // 17: 0.93·70 − 0.33·63 + 0.62·46 − 0.22·53
	{runBrowUpperR, runBrowLowerR, 1.05, 0.15}, // 18: 0.8075·63 + 0.0425·105 + 0.1425·53 + 0.0075·52
	{runBrowUpperR, runBrowLowerR, 2.3, 0.15},  // 19: 0.595·105 + 0.255·66 + 0.105·52 + 0.045·65
	{runBrowUpperR, runBrowLowerR, 3.2, 0.25},  // 20: 0.6·66 + 0.15·107 + 0.2·65 + 0.05·55
	{runBrowUpperR, runBrowLowerR, 3.9, 0.65},  // 21: 0.035·66 + 0.315·107 + 0.065·65 + 0.585·55
	{runBrowUpperL, runBrowLowerL, 3.9, 0.65},  // 22: 0.035·296 + 0.315·336 + 0.065·295 + 0.585·285
	{runBrowUpperL, runBrowLowerL, 3.2, 0.25},  // 23: 0.6·296 + 0.15·336 + 0.2·295 + 0.05·285
	{runBrowUpperL, runBrowLowerL, 2.3, 0.15},  // 24: 0.595·334 + 0.255·296 + 0.105·282 + 0.045·295
	{runBrowUpperL, runBrowLowerL, 1.05, 0.15}, // 25: 0.8075·293 + 0.0425·334 + 0.1425·283 + 0.0075·282
	{runBrowUpperL, runBrowLowerL, -0.55, 0.4}, // 26: 0.93·300 − 0.33·293 + 0.62·276 − 0.22·283
	// 27–30 nose bridge, 31–35 under the nose.
	{runBridge, runBridge, 0.2, 0},     // 27: 0.8·168 + 0.2·6
	{runBridge, runBridge, 1.85, 0},    // 28: 0.15·6 + 0.85·197
	{runBridge, runBridge, 3.55, 0},    // 29: 0.45·195 + 0.55·5
	{runBridge, runBridge, 5.05, 0},    // 30: 0.95·4 + 0.05·1
	{runNostrils, runNostrils, 0.4, 0}, // 31: 0.6·98 + 0.4·97
	{runNostrils, runNostrils, 1.1, 0}, // 32: 0.9·97 + 0.1·2
	{runNostrils, runNostrils, 2.1, 0}, // 33: 0.9·2 + 0.1·326
	{runNostrils, runNostrils, 2.9, 0}, // 34: 0.1·2 + 0.9·326
	{runNostrils, runNostrils, 3.6, 0}, // 35: 0.4·326 + 0.6·327
	// 36–47 eyes: on the lids (36/39 and 42/45 at the corners), the
	// lower lid points a little towards the ring.
	{runLidUpperR, runRingUpperR, 0.2, 0},     // 36: 0.8·33 + 0.2·246
	{runLidUpperR, runRingUpperR, 3.5, 0},     // 37: 0.5·160 + 0.5·159
	{runLidUpperR, runRingUpperR, 5.3, 0},     // 38: 0.7·158 + 0.3·157
	{runLidUpperR, runRingUpperR, 7.85, 0},    // 39: 0.15·173 + 0.85·133
	{runLidLowerR, runRingLowerR, 4.6, 0.15},  // 40: 0.34·145 + 0.51·153 + 0.06·23 + 0.09·22
	{runLidLowerR, runRingLowerR, 2.85, 0.25}, // 41: 0.1125·163 + 0.6375·144 + 0.0375·110 + 0.2125·24
	{runLidUpperL, runRingUpperL, 7.85, 0},    // 42: 0.15·398 + 0.85·362
	{runLidUpperL, runRingUpperL, 5.3, 0},     // 43: 0.7·385 + 0.3·384
	{runLidUpperL, runRingUpperL, 3.5, 0},     // 44: 0.5·387 + 0.5·386
	{runLidUpperL, runRingUpperL, 0.2, 0},     // 45: 0.8·263 + 0.2·466
	{runLidLowerL, runRingLowerL, 2.85, 0.25}, // 46: 0.1125·390 + 0.6375·373 + 0.0375·339 + 0.2125·254
	{runLidLowerL, runRingLowerL, 4.6, 0.15},  // 47: 0.34·374 + 0.51·380 + 0.06·253 + 0.09·252
	// 48–59 outer lip line, 60–67 inner lip line: the inner corners
	// 60/64 are 40% of the way out to the outer line.
	{runLipLowerOuter, runLipLowerInner, -0.1, 0},   // 48: 1.1·61 − 0.1·146
	{runLipUpperOuter, runLipUpperInner, 2.5, 0.25}, // 49: 0.375·40 + 0.375·39 + 0.125·80 + 0.125·81
	{runLipUpperOuter, runLipUpperInner, 4.1, 0.1},  // 50: 0.81·37 + 0.09·0 + 0.09·82 + 0.01·13
	{runLipUpperOuter, runLipUpperInner, 5, 0.3},    // 51: 0.7·0 + 0.3·13
	{runLipUpperOuter, runLipUpperInner, 5.9, 0.1},  // 52: 0.09·0 + 0.81·267 + 0.01·13 + 0.09·312
	{runLipUpperOuter, runLipUpperInner, 7.5, 0.25}, // 53: 0.375·269 + 0.375·270 + 0.125·311 + 0.125·310
	{runLipLowerOuter, runLipLowerInner, 10.1, 0},   // 54: 1.1·291 − 0.1·375
	{runLipLowerOuter, runLipLowerInner, 7.5, 0},    // 55: 0.5·405 + 0.5·321
	{runLipLowerOuter, runLipLowerInner, 6, 0},      // 56: 314
	{runLipLowerOuter, runLipLowerInner, 4.95, 0},   // 57: 0.05·84 + 0.95·17
	{runLipLowerOuter, runLipLowerInner, 4, 0},      // 58: 84
	{runLipLowerOuter, runLipLowerInner, 2.5, 0},    // 59: 0.5·91 + 0.5·181
	{runLipLowerInner, runLipLowerOuter, 0.2, 0.4},  // 60: 0.48·78 + 0.12·95 + 0.32·61 + 0.08·146
	{runLipUpperInner, runLipUpperOuter, 3.95, 0},   // 61: 0.05·81 + 0.95·82
	{runLipUpperInner, runLipUpperOuter, 5, 0},      // 62: 13
	{runLipUpperInner, runLipUpperOuter, 6.05, 0},   // 63: 0.95·312 + 0.05·311
	{runLipLowerInner, runLipLowerOuter, 9.8, 0.4},  // 64: 0.12·324 + 0.48·308 + 0.08·375 + 0.32·291
	{runLipLowerInner, runLipLowerOuter, 6.1, 0.3},  // 65: 0.63·317 + 0.07·402 + 0.27·314 + 0.03·405
	{runLipLowerInner, runLipLowerOuter, 4.95, 0.3}, // 66: 0.035·87 + 0.665·14 + 0.015·84 + 0.285·17
	{runLipLowerInner, runLipLowerOuter, 3.9, 0.3},  // 67: 0.07·178 + 0.63·87 + 0.03·181 + 0.27·84
}

// along returns the point at fractional vertex position x along run r.
func (m *Mesh) along(r run, x float32) (float32, float32) {
	idx := runs[r]
	i := int(x)
	if x < 0 {
		i = 0
	}
	i = min(i, len(idx)-2)
	u := x - float32(i)
	p, q := m.Points[idx[i]], m.Points[idx[i+1]]
	return p.X + u*(q.X-p.X), p.Y + u*(q.Y-p.Y)
}

// at returns the frame point of place p on the mesh.
func (m *Mesh) at(p place) track.Point {
	ax, ay := m.along(p.a, p.at)
	if p.toward == 0 {
		return track.Point{X: ax, Y: ay}
	}
	bx, by := m.along(p.b, p.at)
	return track.Point{X: ax + p.toward*(bx-ax), Y: ay + p.toward*(by-ay)}
}

// Shape68 returns the 68 iBUG 300-W landmarks of the mesh (dlib's and
// OpenFace's points, in landmarks.Shape's order, frame pixels), each a
// fixed weighted combination of at most four mesh points by the
// documented map map68. On faces the map was not fitted on, the points
// are 4.5% of the eye distance from dlib's on average (TestMap68AgainstDlib).
// It does not allocate.
func (m *Mesh) Shape68() landmarks.Shape {
	var s landmarks.Shape
	for i := range s {
		s[i] = m.at(map68[i])
	}
	return s
}
