// Package analysis is affectd's one per-frame path: it turns a source's
// decoded frames into FrameResults, for live streams, offline files and
// benchmarks alike.
//
// An Analyzer takes one source's frames (capture.Frame) and, per frame:
// detects and tracks the faces (track), fits the 68 landmarks and the
// head pose (track/landmarks), measures the landmark AUs and blend shapes
// against each face's neutral (infer/lmau), aligns the faces its
// Admission chooses straight into the engine's batch tensor (infer), and
// once their results are back (or their deadline has passed) smooths them
// and writes one FrameResult to each of its Sinks, in frame order.
//
// Live and offline analysis differ only by the Admission: Live shares the
// model fairly among every face of every stream (infer.Pacer) and holds
// latency to a deadline; Offline analyses every face of every frame in a
// reproducible order. Outputs (websocket, preview, CSV, JSON Lines, …) are
// Sinks: they read results and never reach back.
//
// # Goroutines
//
// Run is the analyzer's one goroutine: it owns every piece of per-face
// state (tracks, neutrals, filters, estimates, requests in flight) and
// calls the sinks. It waits in one select for a frame, a result
// (infer.Request.Notify) or the oldest frame's deadline. Calibrate and
// Stats are safe from any goroutine. Models are shared by every analyzer
// and safe for concurrent use.
package analysis
