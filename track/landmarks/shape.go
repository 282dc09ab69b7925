package landmarks

import "github.com/affectd/affectd/track"

// N is the number of landmarks.
const N = 68

// Shape is the 68 landmarks of one face in frame pixels, in iBUG 300-W
// order. "Right" is the subject's right (the image's left on a frontal
// face):
//
//	 0–16  jaw line, from the right ear's side (0) over the chin (8) to the left (16)
//	17–21  right eyebrow, outer end (17) to inner (21)
//	22–26  left eyebrow, inner end (22) to outer (26)
//	27–30  nose bridge, top (27, between the eyes) to nose tip (30)
//	31–35  lower nose, right nostril wing (31) to left (35), 33 under the tip
//	36–41  right eye: outer corner 36, upper lid 37–38, inner corner 39, lower lid 40–41
//	42–47  left eye: inner corner 42, upper lid 43–44, outer corner 45, lower lid 46–47
//	48–59  outer lip line: right mouth corner 48, upper lip to the left corner 54, lower lip back
//	60–67  inner lip line: right corner 60, upper 61–63, left corner 64, lower 65–67
type Shape [N]track.Point

// Landmark indices used by the package.
const (
	JawRight      = 0
	Chin          = 8
	JawLeft       = 16
	NoseBridgeTop = 27
	NoseTip       = 30
	RightEyeOuter = 36
	RightEyeInner = 39
	LeftEyeInner  = 42
	LeftEyeOuter  = 45
	MouthRight    = 48
	UpperLip      = 51
	MouthLeft     = 54
	LowerLip      = 57
)

func mean(s *Shape, from, to int) track.Point {
	var x, y float32
	for i := from; i <= to; i++ {
		x += s[i].X
		y += s[i].Y
	}
	n := float32(to - from + 1)
	return track.Point{X: x / n, Y: y / n}
}

func mid(a, b track.Point) track.Point { return track.Point{X: (a.X + b.X) / 2, Y: (a.Y + b.Y) / 2} }

// RightEye is the centre of the subject's right eye: the mean of 36–41.
func (s Shape) RightEye() track.Point { return mean(&s, 36, 41) }

// LeftEye is the centre of the subject's left eye: the mean of 42–47.
func (s Shape) LeftEye() track.Point { return mean(&s, 42, 47) }

// Mouth is the centre of the mouth: the midpoint of the corners 48 and 54.
func (s Shape) Mouth() track.Point { return mid(s[MouthRight], s[MouthLeft]) }

// LipCentre is the mean of the outer lip line (48–59): the mouth point
// alignment uses (see Align4).
func (s Shape) LipCentre() track.Point { return mean(&s, 48, 59) }

// Align4 returns the four points track.Aligner fits its template to, in its
// order (track.KeyRightEye, KeyLeftEye, KeyNose, KeyMouth): the subject's
// right eye centre, left eye centre, nose tip (30) and lip centre.
//
// The lip centre, not the midpoint of the corners (Mouth): the corners
// rise with a smile, and on the smiling astronaut of the test clips their
// midpoint is 0.86 eye distances below the eyes where BlazeFace's mouth
// keypoint is 1.09 and the aligner's template 1.02, which framed the face
// about 7% tighter; the lip centre is 0.99 there, and its crops jitter
// least (TestAlignmentJitter logs all three ways).
func (s Shape) Align4() [4]track.Point {
	return [4]track.Point{s.RightEye(), s.LeftEye(), s[NoseTip], s.LipCentre()}
}

// Keypoints fills BlazeFace's six-keypoint layout from the landmarks, so a
// landmark fit can stand in for the detector's keypoints (track.Aligner,
// track.Detector.Refine): the Align4 points, and for the ears (tragions)
// the jaw line's ends, 0 (right) and 16 (left), which lie just in front of
// them.
func (s Shape) Keypoints() [track.NumKeypoints]track.Point {
	var k [track.NumKeypoints]track.Point
	a := s.Align4()
	k[track.KeyRightEye] = a[0]
	k[track.KeyLeftEye] = a[1]
	k[track.KeyNose] = a[2]
	k[track.KeyMouth] = a[3]
	k[track.KeyRightEar] = s[JawRight]
	k[track.KeyLeftEar] = s[JawLeft]
	return k
}

// Box transform from a BlazeFace box to the predictor's box.
//
// dlib's predictor starts every fit from its mean shape laid into the box it
// is given, so it fits best from boxes placed on the face as its training
// boxes were (dlib's HOG face detector's on iBUG 300-W). Where that is for
// a given face can be measured without the HOG detector (whose boxes come
// in image-pyramid steps of about 20%, and measured 0.85 and 1.16 times
// BlazeFace's on the two test photos): fit, find the box in which the
// predictor's mean shape best matches the fit (a 68-point similarity fit),
// fit again from that box, to the fixed point.
// TestPredictorBoxMeasured does this on 57 BlazeFace (back 256) detections
// of the two test faces (astronaut, Grace Hopper: the photos, mirrored, and
// clip frames with faces 60 to 430 px wide): the predictor's box has the
// same size as BlazeFace's (ratio 1.00 ± 0.05) and its centre 0.062 ±
// 0.013 box heights higher (no horizontal shift). So the predictor's boxes
// are not tighter or lower than BlazeFace's here: they reach further up the
// forehead and stop higher under the chin. The fit is not very sensitive to
// the box: the eye centres from BlazeFace's box and from the fixed-point box
// are, on average, equally far (1.9 px) from the truth.
const (
	// BoxScale is the predictor's box side over BlazeFace's.
	BoxScale = 1.0
	// BoxShiftX and BoxShiftY move the box centre, in BlazeFace box widths
	// and heights (+: right, down).
	BoxShiftX = 0.0
	BoxShiftY = -0.06
)

// PredictorBox maps a BlazeFace (or tracker) face box to the box dlib's
// predictor expects for the same face: the same centre moved by
// (BoxShiftX·W, BoxShiftY·H), the sides scaled by BoxScale.
func PredictorBox(b track.Rect) track.Rect {
	cx := b.X + b.W/2 + BoxShiftX*b.W
	cy := b.Y + b.H/2 + BoxShiftY*b.H
	w, h := BoxScale*b.W, BoxScale*b.H
	return track.Rect{X: cx - w/2, Y: cy - h/2, W: w, H: h}
}
