// Package landmarks fits the 68 iBUG 300-W facial landmarks to a detected
// face, estimates the head pose from them, and gives the aligner its
// points.
//
// It owns three things, and nothing of detection or tracking (package track
// finds and follows the faces; this package takes their boxes):
//
//   - Predictor: dlib's 68-point shape predictor (an ensemble of regression
//     trees, Kazemi & Sullivan, CVPR 2014), run through a small C++ wrapper
//     in this package (predictor.cpp, cgo). Fit takes a BGR gocv.Mat, read
//     in place through dlib::cv_image (no copy), and a face box from
//     BlazeFace or the tracker, adapted to the box convention the predictor
//     was trained with (PredictorBox, measured: see BoxScale). The wrapper
//     runs dlib's own cascade (same trees, same feature pixels, same
//     sampling) but keeps the box and the landmarks in floating point:
//     dlib's shape_predictor takes an integer rectangle and returns integer
//     points, which adds up to half a pixel of rounding to every landmark
//     and makes the fit jump whole pixels as the box moves. The tests check
//     the fit against dlib's own class (within its 0.5 px rounding).
//   - Pose: head yaw, pitch and roll (and translation) from the landmarks
//     against MeanFace3D, a 3-D mean face written from anthropometric norms,
//     with cv::solvePnP (pose.cpp) through a pinhole Camera (DefaultCamera
//     when the intrinsics are unknown: focal length = frame width, ≈ 53°
//     horizontal field of view). The angles are in camera axes, not
//     relative to the line of sight: a face that looks straight into the
//     camera from off the optical axis has the angle it is seen at as its
//     yaw and pitch (see Pose).
//   - Alignment points: Shape.Align4 and Shape.Keypoints give the eye
//     centres, nose tip and lip centre (and ears) in BlazeFace's keypoint
//     layout, so track.Aligner can align from the landmarks instead of the
//     detector's keypoints. On the one_face test clip, the true eye centres
//     move 0.15 px (std) in the 224 px crop aligned from landmark keypoints
//     against 0.41 px from BlazeFace's refined keypoints
//     (TestAlignmentJitter).
//
// # Concurrency
//
// A Predictor is safe for concurrent use: once loaded, the model is only
// read. dlib's shape_predictor::operator() is a const member whose working
// state (the current shape, the feature pixel values) is local to the call;
// the wrapper's fit is the same algorithm over its own read-only copy of
// the trees (repacked for speed: predictor.cpp), with its buffers local to
// the call. Fits on one Predictor run in parallel (TestConcurrentFit, under
// -race, checks them bit for bit against sequential fits); Close waits for
// those in flight and is idempotent. EstimatePose and Camera.EstimatePose
// are pure functions.
//
// # The model, and its licence
//
// The model is Debian's libdlib-data (19.24), installed at DefaultModelPath,
// /usr/share/dlib/shape_predictor_68_face_landmarks.dat (99.7 MB; loading
// takes about 0.6 s and holds about 65 MB of memory, freed by Close). It
// was trained by dlib's author on the iBUG 300-W data set, whose licence
// excludes commercial use: the model is for non-commercial research use
// only. dlib's code is under the Boost Software License, but that does not
// cover the model: a commercial deployment needs a landmark model trained
// on data licensed for it (any dlib-format 68-point shape predictor
// loads).
//
// # Building
//
// cgo, C++17, `pkg-config opencv4 dlib-1`: Debian's libdlib-dev,
// libblas-dev and liblapack-dev (tools/setup.sh installs them with
// libdlib-data). The C++ side includes dlib's headers and takes about 15 s
// to compile; it is in this package so that only its importers pay it.
//
// # Cost
//
// Fit takes 1.5–2 ms per face on one core (BenchmarkFit: 640×360 frame, a
// 110 px face; the cost hardly depends on the frame or the face size)
// where dlib's own class takes 2.7–3.3 ms on the same face
// (BenchmarkFitDlib); EstimatePose takes 0.15–0.2 ms (BenchmarkPose). All
// on a shared 2-core virtual machine, so the ranges.
package landmarks
