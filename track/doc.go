// Package track turns frames into tracked, aligned faces: BlazeFace
// detection through ONNX Runtime, per-stream tracking with stable ids, and
// the similarity warp that writes each face straight into the model's input
// tensor.
package track
