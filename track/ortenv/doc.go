// Package ortenv owns the process-wide ONNX Runtime environment. ONNX
// Runtime keeps one environment per process, bound to the shared library it
// was first loaded from; the face detector (track/) and the MAE-Face engine
// (infer/) both run sessions in it. Init is safe to call from any goroutine
// and any number of times with the same path. Pool shares n runners of one
// model (sessions with their buffers) between goroutines, for the models of
// track/mesh, track/iris, track/emotion and track/reid.
package ortenv
