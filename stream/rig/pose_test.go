package rig

import (
	"fmt"
	"math"
	"testing"

	"github.com/affectd/affectd/infer/analysis"
)

// matrix is q's rotation matrix (q need not be normalised exactly).
func matrix(q Quat) [3][3]float64 {
	x, y, z, w := float64(q.X), float64(q.Y), float64(q.Z), float64(q.W)
	return [3][3]float64{
		{1 - 2*(y*y+z*z), 2 * (x*y - w*z), 2 * (x*z + w*y)},
		{2 * (x*y + w*z), 1 - 2*(x*x+z*z), 2 * (y*z - w*x)},
		{2 * (x*z - w*y), 2 * (y*z + w*x), 1 - 2*(x*x+y*y)},
	}
}

// rotate applies q to v.
func rotate(q Quat, v [3]float64) [3]float64 {
	m := matrix(q)
	var out [3]float64
	for i := range 3 {
		out[i] = m[i][0]*v[0] + m[i][1]*v[1] + m[i][2]*v[2]
	}
	return out
}

// unityAngles inverts UnityHead: the pose angles (degrees) of a Head
// rotation. M = Rz(a)·Ry(b)·Rx(c) has M20 = −sin b, M21 = cos b·sin c,
// M22 = cos b·cos c, M00 = cos a·cos b, M10 = sin a·cos b, with
// a = Roll, b = −Yaw, c = −Pitch.
func unityAngles(q Quat) (yaw, pitch, roll float64) {
	m := matrix(q)
	const deg = 180 / math.Pi
	b := math.Asin(math.Max(-1, math.Min(1, -m[2][0])))
	a := math.Atan2(m[1][0], m[0][0])
	c := math.Atan2(m[2][1], m[2][2])
	return -b * deg, -c * deg, a * deg
}

// liveLinkAngles inverts LiveLinkHead: the pose angles (degrees).
func liveLinkAngles(yaw, pitch, roll float32) (float64, float64, float64) {
	const deg = 180 / math.Pi
	return float64(yaw) * deg, float64(pitch) * deg, float64(roll) * deg
}

// TestUnityHeadAxes checks that a pure yaw, pitch or roll is a rotation
// about Unity's Y, X or Z alone, with the documented sign, and moves the
// avatar's face as the subject's: forward is +Z, up +Y, the avatar's
// right +X.
func TestUnityHeadAxes(t *testing.T) {
	for _, deg := range []float32{10, -10, 30, -30} {
		half := float64(deg) * math.Pi / 360
		for _, c := range []struct {
			name string
			pose analysis.Pose
			want Quat
			// check tells, for a positive angle, where a vector goes.
			check func(q Quat) bool
		}{
			// + yaw: the subject turns to their left; the avatar's face
			// turns to its left (−X): a rotation of −yaw about Y.
			{"yaw", analysis.Pose{Yaw: deg}, Quat{0, float32(-math.Sin(half)), 0, float32(math.Cos(half))},
				func(q Quat) bool { return rotate(q, [3]float64{0, 0, 1})[0] < 0 }},
			// + pitch: looking up; the face goes up (+Y): −pitch about X.
			{"pitch", analysis.Pose{Pitch: deg}, Quat{float32(-math.Sin(half)), 0, 0, float32(math.Cos(half))},
				func(q Quat) bool { return rotate(q, [3]float64{0, 0, 1})[1] > 0 }},
			// + roll: tilted to the subject's left; the top of the head
			// goes to the avatar's left (−X): +roll about Z.
			{"roll", analysis.Pose{Roll: deg}, Quat{0, 0, float32(math.Sin(half)), float32(math.Cos(half))},
				func(q Quat) bool { return rotate(q, [3]float64{0, 1, 0})[0] < 0 }},
		} {
			t.Run(fmt.Sprintf("%s%+g", c.name, deg), func(t *testing.T) {
				q := UnityHead(&c.pose)
				if !quatNear(q, c.want, 1e-6) {
					t.Errorf("q = %+v, want %+v", q, c.want)
				}
				if moved := c.check(q); moved != (deg > 0) {
					t.Errorf("q = %+v moves the wrong way", q)
				}
			})
		}
	}
	if q := UnityHead(nil); q != Identity {
		t.Errorf("nil pose: %+v", q)
	}
	if q := UnityHead(&analysis.Pose{Yaw: float32(math.NaN())}); q != Identity {
		t.Errorf("NaN pose: %+v", q)
	}
}

func quatNear(a, b Quat, tol float64) bool {
	return math.Abs(float64(a.X-b.X)) < tol && math.Abs(float64(a.Y-b.Y)) < tol &&
		math.Abs(float64(a.Z-b.Z)) < tol && math.Abs(float64(a.W-b.W)) < tol
}

// poses are synthetic rotations about each axis, both signs, and
// combined.
var poses = []analysis.Pose{
	{}, {Yaw: 10}, {Yaw: -10}, {Yaw: 30}, {Yaw: -30},
	{Pitch: 10}, {Pitch: -10}, {Pitch: 30}, {Pitch: -30},
	{Roll: 10}, {Roll: -10}, {Roll: 30}, {Roll: -30},
	{Yaw: 25, Pitch: -15, Roll: 10}, {Yaw: -40, Pitch: 20, Roll: -30},
	{Yaw: 60, Pitch: 35, Roll: -45}, {Yaw: -75, Pitch: -40, Roll: 60}, {Yaw: 5, Pitch: 80, Roll: 170},
}

// TestUnityHeadRoundTrip takes each pose to a quaternion and back.
func TestUnityHeadRoundTrip(t *testing.T) {
	for _, p := range poses {
		q := UnityHead(&p)
		n := math.Sqrt(float64(q.X*q.X + q.Y*q.Y + q.Z*q.Z + q.W*q.W))
		if math.Abs(n-1) > 1e-6 || q.W < 0 {
			t.Errorf("%+v: q = %+v, norm %v", p, q, n)
		}
		yaw, pitch, roll := unityAngles(q)
		if !near3(yaw, pitch, roll, p, 1e-3) {
			t.Errorf("%+v: back as yaw %.5f pitch %.5f roll %.5f", p, yaw, pitch, roll)
		}
	}
}

// TestLiveLinkHead takes each pose to Live Link's radians and back.
func TestLiveLinkHead(t *testing.T) {
	for _, p := range poses {
		y, pi, r := LiveLinkHead(&p)
		yaw, pitch, roll := liveLinkAngles(y, pi, r)
		if !near3(yaw, pitch, roll, p, 1e-3) {
			t.Errorf("%+v: back as yaw %.5f pitch %.5f roll %.5f", p, yaw, pitch, roll)
		}
	}
	// The signs: + yaw to the subject's left, + pitch up, + roll to the
	// subject's left.
	if y, p, r := LiveLinkHead(&analysis.Pose{Yaw: 30, Pitch: 10, Roll: -5}); !(y > 0.52 && y < 0.53 && p > 0.17 && p < 0.18 && r < -0.08 && r > -0.09) {
		t.Errorf("yaw %v pitch %v roll %v", y, p, r)
	}
	if y, p, r := LiveLinkHead(nil); y != 0 || p != 0 || r != 0 {
		t.Error("nil pose")
	}
}

func near3(yaw, pitch, roll float64, p analysis.Pose, tol float64) bool {
	return math.Abs(yaw-float64(p.Yaw)) < tol && math.Abs(pitch-float64(p.Pitch)) < tol && math.Abs(roll-float64(p.Roll)) < tol
}
