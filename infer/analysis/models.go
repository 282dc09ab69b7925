package analysis

import (
	"errors"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/landmarks"
)

// Models are the parts every analyzer shares, loaded once: the face
// detector, the landmark predictor, the model's engine and the aligner
// that crops faces for it. They are safe for concurrent use by any number
// of analyzers; their owner closes them after every analyzer has stopped.
type Models struct {
	Detector *track.Detector
	// Landmarks fits the 68 points (nil: no landmarks, pose, landmark AUs
	// or blend shapes).
	Landmarks *landmarks.Predictor
	// Engine runs the MAE-Face model (nil: no model).
	Engine *infer.Engine
	// Aligner crops faces for the model (required with Engine, and for a
	// dry run).
	Aligner *track.Aligner
	// Verifier checks a detection before it starts a track (nil: none;
	// tracks then wait for tracker confirmation).
	Verifier track.Verifier

	layout     Layout
	modelHeads int    // the engine's heads, first in layout
	lmHead     int    // the landmark AU head's index in layout (-1: none)
	softmax    []bool // per model head
}

// NewModels checks the parts and works out the Layout: the model's heads,
// then, when there are landmarks and the model has no "au" head, the
// landmark backend's AUs.
func NewModels(det *track.Detector, lm *landmarks.Predictor, eng *infer.Engine, al *track.Aligner) (*Models, error) {
	if det == nil {
		return nil, errors.New("analysis: no face detector")
	}
	if eng != nil && al == nil {
		return nil, errors.New("analysis: a model without an aligner")
	}
	m := &Models{Detector: det, Landmarks: lm, Engine: eng, Aligner: al, lmHead: -1}
	m.layout.BlendShapes = lmau.BlendShapes
	hasAU := false
	if eng != nil {
		for _, h := range eng.Metadata().Heads {
			rng := "0..1"
			switch h.Activation {
			case infer.ActivationTanh:
				rng = "-1..1"
			case infer.ActivationNone:
				rng = "logits"
			}
			m.layout.Heads = append(m.layout.Heads, HeadInfo{Name: h.Name, Labels: h.Labels, Activation: h.Activation.String(),
				Threshold: h.Threshold, Source: "model", Range: rng})
			m.softmax = append(m.softmax, h.Activation == infer.ActivationSoftmax)
			hasAU = hasAU || h.Name == "au"
		}
		m.modelHeads = len(m.layout.Heads)
	}
	if lm != nil && !hasAU {
		m.lmHead = len(m.layout.Heads)
		th := float32(lmau.Occurrence)
		m.layout.Heads = append(m.layout.Heads, HeadInfo{
			Name: "au", Labels: lmau.AUs, Activation: "intensity", Threshold: &th, Source: "landmarks", Range: "0..5",
		})
	}
	return m, nil
}

// Layout is what the results carry: read only.
func (m *Models) Layout() *Layout { return &m.layout }

// MeasureNeutral measures the largest face of a picture, for a fixed
// neutral (Options.NeutralFeatures): a picture of the subject's neutral
// face taken beforehand.
func (m *Models) MeasureNeutral(img gocv.Mat) (lmau.Features, error) {
	if m.Landmarks == nil {
		return lmau.Features{}, errors.New("analysis: a neutral picture needs landmarks")
	}
	dets, err := m.Detector.Detect(img, nil)
	if err != nil {
		return lmau.Features{}, err
	}
	best := -1
	for i, d := range dets {
		if best < 0 || d.Box.W*d.Box.H > dets[best].Box.W*dets[best].Box.H {
			best = i
		}
	}
	if best < 0 {
		return lmau.Features{}, errors.New("analysis: no face in the neutral picture")
	}
	s, err := m.Landmarks.Fit(img, dets[best].Box)
	if err != nil {
		return lmau.Features{}, err
	}
	f, ok := lmau.Measure((*lmau.Shape)(&s))
	if !ok {
		return lmau.Features{}, errors.New("analysis: the neutral picture's face cannot be measured")
	}
	return f, nil
}
