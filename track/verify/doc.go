// Package verify checks that a detection is a face before it becomes a
// track: a second, independent detector of another kind (dlib's HOG +
// linear SVM frontal face detector, in verify.cpp through cgo) run on a
// crop around BlazeFace's box. BlazeFace fires on large letters, cat
// faces and face-like textures; the two rarely agree on those.
//
// A Verifier is safe for concurrent use; its calls are serialised.
package verify
