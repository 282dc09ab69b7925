package rig

import (
	"math"

	"github.com/affectd/affectd/infer/analysis"
)

// Quat is a rotation quaternion, x, y, z the vector part and W the
// scalar part, in the order VMC sends them.
type Quat struct {
	X, Y, Z, W float32
}

// Identity is the rotation that leaves everything in place: the head
// looking straight ahead.
var Identity = Quat{W: 1}

// UnityHead is the local rotation of a VMC avatar's Head bone for a head
// pose (Identity for nil): the avatar turns as the subject does, the
// subject's left being the avatar's left (mirroring, if wanted, is the
// receiver's option).
//
// Unity is left-handed with X right, Y up and Z forward (out of the
// avatar's face); a rotation by +θ about an axis turns Z towards X about
// Y, Y towards Z about X and X towards Y about Z. Our pose's
// Q = Rz(Roll)·Ry(−Yaw)·Rx(−Pitch) is in camera axes (x right, y down, z
// away from the camera) with the head frame's x the subject's left. The
// avatar's axes, as the camera sees the subject square-on, are exactly
// the camera's axes negated (X the subject's right = −x, Y up = −y, Z
// towards the camera = −z); negating all three axes leaves a rotation's
// matrix unchanged, so the avatar's rotation is Q itself, read in Unity's
// axes:
//
//	Yaw   +θ (subject turns to their left)  rotation of −θ about Y: the
//	                                         face turns to the avatar's left
//	Pitch +θ (subject looks up)              rotation of −θ about X: the
//	                                         face turns up
//	Roll  +θ (head tilts to the subject's    rotation of +θ about Z: the
//	         left, clockwise in the image)   top of the head goes to the
//	                                         avatar's left
//
// composed as q = qZ(Roll)·qY(−Yaw)·qX(−Pitch) (pitch first, then yaw,
// then roll, about the parent's fixed axes). W is kept ≥ 0.
func UnityHead(p *analysis.Pose) Quat {
	if p == nil {
		return Identity
	}
	const rad = math.Pi / 180
	yaw, pitch, roll := float64(p.Yaw)*rad, float64(p.Pitch)*rad, float64(p.Roll)*rad
	if !finite(yaw) || !finite(pitch) || !finite(roll) {
		return Identity
	}
	q := mul(mul(axis(2, roll), axis(1, -yaw)), axis(0, -pitch))
	if q[3] < 0 {
		q = [4]float64{-q[0], -q[1], -q[2], -q[3]}
	}
	return Quat{float32(q[0]), float32(q[1]), float32(q[2]), float32(q[3])}
}

// LiveLinkHead is a head pose as Live Link Face's head yaw, pitch and
// roll (radians; zeros for nil or a pose that is not finite).
//
// The convention is our pose's, in radians: yaw + when the subject turns
// to their own left, pitch + when they look up, roll + when the head
// tilts to their own left (clockwise as the camera sees it), composed as
// Rz(roll)·Ry(−yaw)·Rx(−pitch) about the camera's axes. Live Link Face's
// own signs were not checked against a phone here; a receiver that moves
// an axis the wrong way negates it in its Live Link remap.
func LiveLinkHead(p *analysis.Pose) (yaw, pitch, roll float32) {
	if p == nil {
		return 0, 0, 0
	}
	const rad = math.Pi / 180
	yaw, pitch, roll = p.Yaw*rad, p.Pitch*rad, p.Roll*rad
	if !finite(float64(yaw)) || !finite(float64(pitch)) || !finite(float64(roll)) {
		return 0, 0, 0
	}
	return yaw, pitch, roll
}

// axis is the quaternion (x, y, z, w) of a rotation by a radians about
// the axis i (0 x, 1 y, 2 z).
func axis(i int, a float64) [4]float64 {
	var q [4]float64
	s, c := math.Sincos(a / 2)
	q[i], q[3] = s, c
	return q
}

// mul is the Hamilton product a·b (b applied first).
func mul(a, b [4]float64) [4]float64 {
	return [4]float64{
		a[3]*b[0] + a[0]*b[3] + a[1]*b[2] - a[2]*b[1],
		a[3]*b[1] - a[0]*b[2] + a[1]*b[3] + a[2]*b[0],
		a[3]*b[2] + a[0]*b[1] - a[1]*b[0] + a[2]*b[3],
		a[3]*b[3] - a[0]*b[0] - a[1]*b[1] - a[2]*b[2],
	}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
