package verify

/*
#cgo pkg-config: opencv4 dlib-1
#cgo CXXFLAGS: -std=c++17 -O2
#include "verify.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/track"
)

// DefaultThreshold is the least score of a face (see Score).
const DefaultThreshold = -0.5

// Size is how wide the box is scaled for the detector, in pixels: dlib's
// windows are 80×80 and the box holds a little more than the face.
const Size = 100

const errLen = 256

// ErrClosed is returned after Close.
var ErrClosed = errors.New("verify: closed")

// Verifier checks BlazeFace's detections with dlib's HOG frontal face
// detector. Its calls are serialised (dlib's detector is not safe for
// concurrent use); it runs only when a detection would start a new track.
type Verifier struct {
	mu        sync.Mutex
	h         unsafe.Pointer
	threshold float64
}

// New makes a verifier that accepts scores at or above threshold.
func New(threshold float64) (*Verifier, error) {
	var cerr [errLen]C.char
	h := C.fv_new(&cerr[0], errLen)
	if h == nil {
		return nil, fmt.Errorf("verify: %s", C.GoString(&cerr[0]))
	}
	return &Verifier{h: h, threshold: threshold}, nil
}

// Score is the HOG detector's best score for a face in the box (above 0:
// it would report a face; down to −1 it is still a face-like window; −10:
// nothing face-like at all).
func (v *Verifier) Score(frame gocv.Mat, box track.Rect) (float64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.h == nil {
		return 0, ErrClosed
	}
	var score C.double
	var cerr [errLen]C.char
	if C.fv_score(v.h, unsafe.Pointer(frame.Ptr()), C.float(box.X), C.float(box.Y), C.float(box.W), C.float(box.H),
		C.int(Size), &score, &cerr[0], errLen) != 0 {
		return 0, fmt.Errorf("verify: %s", C.GoString(&cerr[0]))
	}
	return float64(score), nil
}

// Verify implements track.Verifier: the box holds a face.
func (v *Verifier) Verify(frame gocv.Mat, box track.Rect) bool {
	s, err := v.Score(frame, box)
	return err == nil && s >= v.threshold
}

// Close frees the detector; it is safe to call twice.
func (v *Verifier) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.h != nil {
		C.fv_free(v.h)
		v.h = nil
	}
	return nil
}
