package landmarks

/*
#include "landmarks.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
)

// Point3 is a point of the head model, in millimetres.
type Point3 struct{ X, Y, Z float32 }

// ModelPoint is one landmark of the 3-D mean face.
type ModelPoint struct {
	Index int // landmark index in Shape
	P     Point3
}

// MeanFace3D is the 3-D mean face the pose is solved against: 18 of the 68
// landmarks of an average adult face, in millimetres, in the head frame:
//
//	origin  midway between the inner eye corners (39 and 42)
//	x       towards the subject's left (the image's right on a frontal face)
//	y       up (towards the top of the head)
//	z       forward, out of the face through the nose (towards a camera
//	        the face looks into)
//
// The numbers are this package's own: typical adult values (roughly the
// means over men and women) of published anthropometric norms (L. G.
// Farkas, "Anthropometry of the Head and Face", 2nd ed., 1994, and the
// soft-tissue profile literature), rounded to the millimetre and placed
// where the iBUG annotation puts each point: intercanthal width en–en ≈
// 33 mm, biocular width ex–ex ≈ 88 mm (so the eye centres are ≈ 61 mm
// apart, a typical interpupillary distance), the outer canthi ≈ 2 mm above
// the inner ones (canthal tilt) and ≈ 10 mm behind them; the iBUG bridge
// point 27 (not the nasion, which is higher) at the upper-lid line;
// subnasale 45 mm below the inner canthi (nasion–subnasale ≈ 50 mm), the
// nasal tip projecting ≈ 18 mm ahead of it; 31/35 at the bottom of the
// nostril wings, inside the alar width al–al ≈ 35 mm; subnasale–stomion ≈
// 21 mm, upper and lower vermilion ≈ 8 and 11 mm high; mouth width ch–ch ≈
// 52 mm, the corners 8–12 mm behind the lip centres; subnasale–gnathion ≈
// 66 mm. Cross-check: scaled to the same 60.5 mm between eye centres, the x
// and y of every point lie within about 2 mm of the frontal mean shape of
// dlib's 68-point predictor (its starting shape; TestMeanFaceMatchesPredictor,
// which also finds that shape's pose within 1.3° of square-on). Depths (z)
// cannot be checked from 2-D data and are the least certain (±5 mm): an
// error there scales the yaw and pitch estimates by a few per cent.
var MeanFace3D = [...]ModelPoint{
	{8, Point3{0, -111, 2}},    // chin (gnathion)
	{17, Point3{-54, 14, -13}}, // right brow, outer end
	{21, Point3{-12, 17, 10}},  // right brow, inner end
	{22, Point3{12, 17, 10}},   // left brow, inner end
	{26, Point3{54, 14, -13}},  // left brow, outer end
	{27, Point3{0, 3, 12}},     // nose bridge between the eyes
	{30, Point3{0, -33, 32}},   // nose tip (pronasale)
	{31, Point3{-14, -41, 7}},  // right nostril wing, lower end
	{33, Point3{0, -45, 14}},   // subnasale
	{35, Point3{14, -41, 7}},   // left nostril wing, lower end
	{36, Point3{-44, 2, -10}},  // right eye, outer corner
	{39, Point3{-16.5, 0, 0}},  // right eye, inner corner
	{42, Point3{16.5, 0, 0}},   // left eye, inner corner
	{45, Point3{44, 2, -10}},   // left eye, outer corner
	{48, Point3{-26, -63, 0}},  // right mouth corner
	{51, Point3{0, -58, 12}},   // upper lip, top of the vermilion
	{54, Point3{26, -63, 0}},   // left mouth corner
	{57, Point3{0, -77, 8}},    // lower lip, bottom of the vermilion
}

// Pose is a head pose relative to the camera.
//
// Angles are in degrees, zero for a face square-on to the camera, upright,
// and looking into it:
//
//	Yaw    + when the face turns to its own left (its nose towards the image's right)
//	Pitch  + when it looks up (its nose towards the image's top)
//	Roll   + when the head tilts to its own left: clockwise in the image
//	       (the top of the head towards the image's right)
//
// They compose, in camera axes (x right, y down, z forward from the
// camera), as Q = Rz(Roll)·Ry(−Yaw)·Rx(−Pitch), with Rx, Ry, Rz the
// right-handed rotations about those axes: the face, first square-on, turns
// up or down by Pitch, then sideways by Yaw, then rolls in the image plane
// by Roll, each about the camera's fixed axes. Q maps the head frame of
// MeanFace3D, its y and z negated (x subject's left, y down, z into the
// head), to camera axes: the rotation solvePnP returns is Q·diag(1,−1,−1).
// Yaw is in [−90°, 90°], pitch and roll in (−180°, 180°] (a head seen
// from the front never gets near the ends).
//
// The angles are relative to the camera's axes, not to the line of sight:
// a face that looks straight into the camera from off the optical axis has
// yaw = −atan2(T[0], T[2]) and pitch = atan2(T[1], hypot(T[0], T[2])) (a
// face high in the frame looking into the camera looks down, pitch < 0).
// Subtract those for the pose relative to the line of sight.
type Pose struct {
	Yaw, Pitch, Roll float32
	// T is the head frame's origin (midway between the inner eye corners)
	// in camera coordinates, mm: x right, y down, z forward (distance along
	// the optical axis). It scales with the focal length: with
	// DefaultCamera, multiply it by the true focal length over the frame
	// width.
	T [3]float32
	// R is the same rotation in OpenFace's convention, in radians: R =
	// Rx(R[0])·Ry(R[1])·Rz(R[2]) maps the head frame (x the subject's
	// left, y down, z into the head) to the camera's (x right, y down, z
	// away from the camera); R[0] is OpenFace's pitch (pose_Rx, + looking
	// down), R[1] its yaw (pose_Ry, + turned to the subject's right), R[2]
	// its roll (pose_Rz, + the top of the head towards the image's right).
	R [3]float32
}

// Camera is a pinhole camera without lens distortion, in pixels.
type Camera struct {
	Fx, Fy float32 // focal lengths
	Cx, Cy float32 // principal point
}

// DefaultCamera is the camera assumed for a source of unknown intrinsics:
// focal length equal to the frame width (a horizontal field of view of
// 2·atan(1/2) ≈ 53°, typical of webcams and phones in their main camera),
// square pixels, the principal point at the frame centre, no distortion.
// A wrong focal length mostly shows in T (scaled with it) and, for faces
// far from the image centre, in yaw and pitch by a few degrees.
func DefaultCamera(frameW, frameH int) Camera {
	f := float32(frameW)
	return Camera{Fx: f, Fy: f, Cx: float32(frameW) / 2, Cy: float32(frameH) / 2}
}

// EstimatePose solves the head pose of a landmark shape found in a frame of
// frameW×frameH pixels, with DefaultCamera.
func EstimatePose(s Shape, frameW, frameH int) (Pose, error) {
	if frameW <= 0 || frameH <= 0 {
		return Pose{}, fmt.Errorf("landmarks: pose: frame size %dx%d", frameW, frameH)
	}
	return DefaultCamera(frameW, frameH).EstimatePose(s)
}

// ErrPose is returned when no pose fits the landmarks.
var ErrPose = errors.New("landmarks: no head pose")

// EstimatePose fits MeanFace3D to the shape's landmarks through the camera
// (cv::solvePnP: EPnP and a square-on start, each refined by
// Levenberg–Marquardt on the reprojection error; the better one wins).
func (c Camera) EstimatePose(s Shape) (Pose, error) {
	if !(c.Fx > 0 && c.Fy > 0) || !finite(c.Cx, c.Cy) {
		return Pose{}, fmt.Errorf("landmarks: pose: invalid camera %+v", c)
	}
	const n = len(MeanFace3D)
	var obj [3 * n]C.double
	var img [2 * n]C.double
	for i, mp := range MeanFace3D {
		p := s[mp.Index]
		if !finite(p.X, p.Y) {
			return Pose{}, fmt.Errorf("%w: landmark %d is not finite", ErrPose, mp.Index)
		}
		obj[3*i], obj[3*i+1], obj[3*i+2] = C.double(mp.P.X), C.double(mp.P.Y), C.double(mp.P.Z)
		img[2*i], img[2*i+1] = C.double(p.X), C.double(p.Y)
	}
	var r [9]C.double
	var t [3]C.double
	var rms C.double
	var cerr [errLen]C.char
	if C.lm_pose(&obj[0], &img[0], C.int(n), C.double(c.Fx), C.double(c.Fy), C.double(c.Cx), C.double(c.Cy),
		&r[0], &t[0], &rms, &cerr[0], errLen) != 0 {
		return Pose{}, fmt.Errorf("%w: %s", ErrPose, C.GoString(&cerr[0]))
	}
	var R [3][3]float64
	for i := range 3 {
		for j := range 3 {
			R[i][j] = float64(r[3*i+j])
		}
	}
	yaw, pitch, roll := eulerFromHead(R)
	return Pose{
		Yaw: float32(yaw), Pitch: float32(pitch), Roll: float32(roll),
		T: [3]float32{float32(t[0]), float32(t[1]), float32(t[2])},
		R: openFaceAngles(R),
	}, nil
}

// openFaceAngles takes solvePnP's rotation (head frame → camera) to
// OpenFace's Euler angles: Q = R·diag(1,−1,−1) (the head frame with y
// down and z into the head, OpenFace's) = Rx(a)·Ry(b)·Rz(c), whose
// entries give Q02 = sin b, Q12 = −cos b·sin a, Q22 = cos b·cos a,
// Q01 = −cos b·sin c, Q00 = cos b·cos c.
func openFaceAngles(R [3][3]float64) [3]float32 {
	q := func(i, j int) float64 { // Q's entry: R with columns 1 and 2 negated
		if j == 0 {
			return R[i][j]
		}
		return -R[i][j]
	}
	b := math.Asin(math.Max(-1, math.Min(1, q(0, 2))))
	var a, c float64
	if math.Cos(b) > 1e-6 {
		a = math.Atan2(-q(1, 2), q(2, 2))
		c = math.Atan2(-q(0, 1), q(0, 0))
	} else { // gimbal lock (yaw ±90°): all in roll
		c = math.Atan2(q(1, 0), q(1, 1))
	}
	return [3]float32{float32(a), float32(b), float32(c)}
}

// eulerFromHead takes solvePnP's rotation (head frame → camera) to the
// pose angles in degrees.
func eulerFromHead(R [3][3]float64) (yaw, pitch, roll float64) {
	// Q = R·diag(1,−1,−1): negate the second and third columns.
	var Q [3][3]float64
	for i := range 3 {
		Q[i] = [3]float64{R[i][0], -R[i][1], -R[i][2]}
	}
	// Q = Rz(a)·Ry(b)·Rx(c) has Q20 = −sin b, Q21 = cos b·sin c,
	// Q22 = cos b·cos c, Q00 = cos a·cos b, Q10 = sin a·cos b; with
	// a = roll, b = −yaw, c = −pitch.
	const deg = 180 / math.Pi
	b := math.Asin(math.Max(-1, math.Min(1, -Q[2][0])))
	var a, c float64
	if math.Cos(b) > 1e-6 {
		a = math.Atan2(Q[1][0], Q[0][0])
		c = math.Atan2(Q[2][1], Q[2][2])
	} else {
		// Gimbal lock (yaw ±90°): only roll − pitch·sign is defined; put it
		// all in roll.
		a = math.Atan2(-Q[0][1], Q[1][1])
	}
	return -b * deg, -c * deg, a * deg
}

// CameraFOV is the pinhole camera of a frameW×frameH source with a
// horizontal field of view of fovDeg degrees (sources do not report their
// intrinsics; 53° is DefaultCamera).
func CameraFOV(frameW, frameH int, fovDeg float64) Camera {
	f := float32(float64(frameW) / 2 / math.Tan(fovDeg*math.Pi/360))
	return Camera{Fx: f, Fy: f, Cx: float32(frameW) / 2, Cy: float32(frameH) / 2}
}
