// Package rig drives animation rigs from one stream's results: it sends
// the chosen face's blend shapes and head pose over UDP as VMC (OSC; for
// VSeeFace, VNyan, Warudo, EVMC4U), as plain OSC (TouchDesigner, Max, Pure
// Data, Resolume) or as Apple Live Link Face packets (Unreal Engine's Live
// Link). An Output is one such target: an analysis.Sink of per-frame
// results that never reaches back into the analyzer.
//
// The parts can be used on their own: ARKit, ARKitMap and Shaping put a
// layout's blend shapes in ARKit's 52-name order with a target's gain and
// dead zone; VRMWeights derives the VRM 0.x presets; UnityHead and
// LiveLinkHead turn a head pose into each protocol's rotation; VMC, OSC
// and LiveLink encode datagrams into reused buffers (Datagrams), so that
// once warm they allocate nothing per frame.
//
// Head pose: this package builds on analysis.Pose's Yaw, Pitch and Roll
// (degrees; + turned to the subject's own left, + looking up, + tilted
// clockwise as the camera sees it, that is to the subject's own left),
// composed as track/landmarks documents and computes them (checked there
// against its code): Q = Rz(Roll)·Ry(−Yaw)·Rx(−Pitch) about the camera's
// axes (x right, y down, z forward), mapping the head frame (x the
// subject's left, y down, z into the head) to the camera's. Pose.R (OpenFace's pose_Rx, pose_Ry, pose_Rz) is the
// same rotation in another Euler order; it is only passed through, as is,
// by the OSC profile's /pose message.
//
// Concurrency: the package starts no goroutines. An Output belongs to
// its analyzer's goroutine (WriteFrame); Stats and Close are safe from
// any goroutine, and Close may be called more than once. Sends are
// non-blocking UDP writes bounded by a short deadline: a slow or absent
// receiver costs counted errors, never a stalled analyzer. The encoders
// (VMC, OSC, LiveLink) and Datagrams belong to one goroutine each.
package rig
