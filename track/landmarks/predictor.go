package landmarks

/*
#cgo pkg-config: opencv4 dlib-1
#cgo CXXFLAGS: -std=c++17 -O2
#include <stdlib.h>
#include "landmarks.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/track"
)

// DefaultModelPath is where Debian's libdlib-data puts the 68-point model.
const DefaultModelPath = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat"

// ErrModel wraps every failure to load the model: the file is missing,
// unreadable, or not a 68-point dlib shape predictor.
var ErrModel = errors.New("landmarks model")

// ErrClosed is returned by Fit after Close.
var ErrClosed = errors.New("landmarks: predictor closed")

const errLen = 256

// Predictor fits the 68 iBUG 300-W landmarks to a face. It is safe for
// concurrent use: the model is read-only once loaded (the cascade state of a
// fit lives on the calling thread's stack and heap, as in dlib's const
// shape_predictor::operator()), so any number of goroutines may call Fit at
// once; Close waits for fits in flight.
type Predictor struct {
	mu      sync.RWMutex // Fit holds it shared, Close exclusively
	h       *C.LmPredictor
	path    string
	cleanup runtime.Cleanup
}

// Load reads a dlib 68-point shape predictor (about 0.6 s and 65 MB of
// memory for DefaultModelPath). Errors wrap ErrModel.
func Load(path string) (*Predictor, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (install it with `apt-get install libdlib-data`)", ErrModel, path, err)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cerr [errLen]C.char
	h := C.lm_load(cpath, &cerr[0], errLen)
	if h == nil {
		return nil, fmt.Errorf("%w: %s: %s (want dlib's shape_predictor_68_face_landmarks.dat: `apt-get install libdlib-data`)",
			ErrModel, path, C.GoString(&cerr[0]))
	}
	p := &Predictor{h: h, path: path}
	// A Predictor dropped without Close still frees its memory.
	p.cleanup = runtime.AddCleanup(p, func(h *C.LmPredictor) { C.lm_free(h) }, h)
	return p, nil
}

// Path is the model file the predictor was loaded from.
func (p *Predictor) Path() string { return p.path }

// Fit places the 68 landmarks on the face in box (frame pixels, the
// BlazeFace detector's or the tracker's box) of a BGR frame. The frame is
// read in place, not copied. The box is first mapped to the box the
// predictor was trained with (PredictorBox).
func (p *Predictor) Fit(frame gocv.Mat, box track.Rect) (Shape, error) {
	return p.FitPredictorBox(frame, PredictorBox(box))
}

// FitPredictorBox is Fit from a box already in the predictor's convention
// (see PredictorBox). The predictor's unit square maps onto (X, Y)–(X+W,
// Y+H): dlib's rectangle(left, top, right, bottom) is Rect{left, top,
// right−left, bottom−top}.
func (p *Predictor) FitPredictorBox(frame gocv.Mat, box track.Rect) (Shape, error) {
	var s Shape
	if frame.Empty() || frame.Type() != gocv.MatTypeCV8UC3 {
		return s, fmt.Errorf("landmarks: want a non-empty 8-bit BGR frame, got type %v %dx%d", frame.Type(), frame.Cols(), frame.Rows())
	}
	if !finite(box.X, box.Y, box.W, box.H) || box.W < 1 || box.H < 1 {
		return s, fmt.Errorf("landmarks: invalid face box %+v", box)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.h == nil {
		return s, ErrClosed
	}
	var out [2 * N]C.float
	var cerr [errLen]C.char
	rc := C.lm_fit(p.h, unsafe.Pointer(frame.Ptr()), C.float(box.X), C.float(box.Y),
		C.float(box.X+box.W), C.float(box.Y+box.H), &out[0], &cerr[0], errLen)
	runtime.KeepAlive(frame)
	if rc != 0 {
		return s, fmt.Errorf("landmarks: fit: %s", C.GoString(&cerr[0]))
	}
	return toShape(&out), nil
}

// MeanShape is the predictor's starting shape: the mean of its training
// shapes in its box, in unit-box coordinates ((0,0) the box's top-left
// corner, (1,1) its bottom-right).
func (p *Predictor) MeanShape() (Shape, error) {
	var s Shape
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.h == nil {
		return s, ErrClosed
	}
	var out [2 * N]C.float
	C.lm_mean_shape(p.h, &out[0])
	return toShape(&out), nil
}

// toShape reads the C side's interleaved x, y coordinates.
func toShape(out *[2 * N]C.float) Shape {
	var s Shape
	for i := range s {
		s[i] = track.Point{X: float32(out[2*i]), Y: float32(out[2*i+1])}
	}
	return s
}

// Close frees the model. It waits for fits in flight, and is idempotent.
func (p *Predictor) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h != nil {
		p.cleanup.Stop()
		C.lm_free(p.h)
		p.h = nil
	}
	return nil
}

func finite(v ...float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}

// refPredictor is dlib's own shape_predictor, for the tests to check that
// Fit runs the same cascade.
type refPredictor struct{ h unsafe.Pointer }

func loadRef(path string) (*refPredictor, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cerr [errLen]C.char
	h := C.lm_ref_load(cpath, &cerr[0], errLen)
	if h == nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrModel, path, C.GoString(&cerr[0]))
	}
	return &refPredictor{h}, nil
}

func (r *refPredictor) close() { C.lm_ref_free(r.h) }

// fit runs dlib's shape_predictor on dlib::rectangle(l, t, r, b).
func (r *refPredictor) fit(frame gocv.Mat, l, t, rt, b int) (Shape, error) {
	var s Shape
	var out [2 * N]C.float
	var cerr [errLen]C.char
	rc := C.lm_ref_fit(r.h, unsafe.Pointer(frame.Ptr()), C.long(l), C.long(t), C.long(rt), C.long(b), &out[0], &cerr[0], errLen)
	runtime.KeepAlive(frame)
	if rc != 0 {
		return s, fmt.Errorf("landmarks: reference fit: %s", C.GoString(&cerr[0]))
	}
	return toShape(&out), nil
}
