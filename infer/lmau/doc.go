// Package lmau is the landmark AU backend: action-unit intensities on
// OpenFace's 0–5 scale, occurrence flags, and ARKit-named blend shapes,
// computed from a face's 68 landmarks (iBUG 300-W order) relative to that
// face's own neutral.
//
// Geometry carries only some AUs: AU1, AU2, AU4, AU5, AU12, AU15, AU20,
// AU25, AU26 and AU45 here. Every measurement is taken in the face's own
// frame (eye centres on a horizontal line one unit apart), so in-plane
// rotation, scale and position do not change it. Intensities come from how
// far each measurement is from the face's neutral baseline, learnt online
// (a slow running median per track, as OpenFace normalises per person) and
// reset on demand (Calibrate). It gives no valence or arousal.
//
// A Face holds one face's neutral and belongs to one goroutine (the
// stream's analyzer, infer/analysis).
package lmau
