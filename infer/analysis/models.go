package analysis

import (
	"errors"
	"fmt"
	"slices"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/infer/lmau"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/emotion"
	"github.com/affectd/affectd/track/iris"
	"github.com/affectd/affectd/track/landmarks"
	"github.com/affectd/affectd/track/mesh"
	"github.com/affectd/affectd/track/reid"
)

// Models are the parts every analyzer shares, loaded once: the face
// detector, the landmark predictor, the model's engine and the aligner
// that crops faces for it. They are safe for concurrent use by any number
// of analyzers; their owner closes them after every analyzer has stopped.
type Models struct {
	Detector *track.Detector
	// Landmarks fits the 68 points with dlib (the dlib68 backend; nil: no
	// landmarks, pose, landmark AUs or blend shapes unless Mesh is set).
	Landmarks *landmarks.Predictor
	// Mesh is the mesh468 backend, used instead of Landmarks when set:
	// MediaPipe's face mesh gives the 68 points (mesh.Mesh.Shape68), the
	// pose and the landmark AUs, and its 468 points; Iris (optional) adds
	// the gaze and the eye blend shapes.
	Mesh *mesh.Mesher
	Iris *iris.Fitter
	// FER is the expression_fer head's classifier (AddFER; nil: none).
	FER *emotion.Classifier
	// Reid embeds faces for re-identification and enrolled names (nil:
	// off; Options.Identity says what to do with the embeddings).
	Reid *reid.Embedder
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
	eyeBlend   []int  // iris.BlendShapes' places in layout.BlendShapes
	ferHead    int    // expression_fer's index in layout (-1: none)
}

// NewModels checks the parts and works out the Layout: the model's heads,
// then, when there are landmarks and the model has no "au" head, the
// landmark backend's AUs.
func NewModels(det *track.Detector, lm *landmarks.Predictor, eng *infer.Engine, al *track.Aligner) (*Models, error) {
	return newModels(&Models{Detector: det, Landmarks: lm, Engine: eng, Aligner: al})
}

// NewMeshModels is NewModels with the mesh468 landmark backend: the face
// mesh, and the iris model for gaze and eye blend shapes (ir may be nil).
func NewMeshModels(det *track.Detector, me *mesh.Mesher, ir *iris.Fitter, eng *infer.Engine, al *track.Aligner) (*Models, error) {
	if me == nil {
		return nil, errors.New("analysis: the mesh backend without a face mesh")
	}
	return newModels(&Models{Detector: det, Mesh: me, Iris: ir, Engine: eng, Aligner: al})
}

// HasLandmarks says whether a landmark backend (dlib68 or mesh468) is on.
func (m *Models) HasLandmarks() bool { return m.Landmarks != nil || m.Mesh != nil }

// Backend names the landmark backend: "mesh468", "dlib68" or "" (none).
func (m *Models) Backend() string {
	switch {
	case m.Mesh != nil:
		return "mesh468"
	case m.Landmarks != nil:
		return "dlib68"
	}
	return ""
}

func newModels(m *Models) (*Models, error) {
	det, eng, al := m.Detector, m.Engine, m.Aligner
	if det == nil {
		return nil, errors.New("analysis: no face detector")
	}
	if eng != nil && al == nil {
		return nil, errors.New("analysis: a model without an aligner")
	}
	m.lmHead, m.ferHead = -1, -1
	m.layout.BlendShapes = lmau.BlendShapes
	if m.Mesh != nil && m.Iris != nil {
		// The eyes' shapes from the iris model replace the 68 points'
		// eyeBlink and eyeWide, and add the rest after lmau's.
		m.layout.BlendShapes = slices.Clone(lmau.BlendShapes)
		for _, name := range iris.BlendShapes {
			k := slices.Index(m.layout.BlendShapes, name)
			if k < 0 {
				k = len(m.layout.BlendShapes)
				m.layout.BlendShapes = append(m.layout.BlendShapes, name)
			}
			m.eyeBlend = append(m.eyeBlend, k)
		}
	}
	if len(m.layout.BlendShapes) > maxBlend {
		return nil, fmt.Errorf("analysis: %d blend shapes (at most %d)", len(m.layout.BlendShapes), maxBlend)
	}
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
	if m.HasLandmarks() && !hasAU {
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
	if !m.HasLandmarks() {
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
	s, err := m.fitShape(img, dets[best].Box, mesh.Roll(&dets[best].Keypoints))
	if err != nil {
		return lmau.Features{}, err
	}
	f, ok := lmau.Measure((*lmau.Shape)(&s))
	if !ok {
		return lmau.Features{}, errors.New("analysis: the neutral picture's face cannot be measured")
	}
	return f, nil
}

// MinMeshFace is the least face-mesh face flag (mesh.Mesh.Face) trusted
// as a fit: below it the mesh says its crop holds no face (measured 1.000
// on the test photos' faces and at most 0.002 on pictures with none).
const MinMeshFace = 0.5

// fitShape fits the 68 points with the backend in use.
func (m *Models) fitShape(img gocv.Mat, box track.Rect, roll float64) (landmarks.Shape, error) {
	if m.Mesh == nil {
		return m.Landmarks.Fit(img, box)
	}
	ms, err := m.fitMesh(img, box, roll)
	if err != nil {
		return landmarks.Shape{}, err
	}
	return ms.Shape68(), nil
}

// fitMesh fits the face mesh on the box's crop turned by roll; a mesh that
// sees no face there is an error: its points would be a guess.
func (m *Models) fitMesh(img gocv.Mat, box track.Rect, roll float64) (mesh.Mesh, error) {
	ms, err := m.Mesh.FitRolled(img, box, roll)
	if err == nil && ms.Face < MinMeshFace {
		err = fmt.Errorf("analysis: the face mesh sees no face (flag %.2f)", ms.Face)
	}
	return ms, err
}

// FERSource is the expression_fer head's HeadInfo.Source: its numbers come
// from track/emotion's FER-2013 classifier, not from MAE-Face.
const FERSource = "fer2013"

// AddFER adds the expression_fer head: track/emotion's seven FER-2013
// classes (softmax), computed on every face of every frame from the
// detector's box. Call it once, before any analyzer is made. A MAE-Face
// model's own expression head stays "expression" (or its name); both are
// there.
func (m *Models) AddFER(c *emotion.Classifier) error {
	if c == nil || m.FER != nil {
		return errors.New("analysis: AddFER wants one classifier, once")
	}
	for _, h := range m.layout.Heads {
		if h.Name == "expression_fer" {
			return errors.New("analysis: the model has a head named expression_fer already")
		}
	}
	m.FER = c
	m.ferHead = len(m.layout.Heads)
	m.layout.Heads = append(m.layout.Heads, HeadInfo{
		Name: "expression_fer", Labels: emotion.Labels, Activation: "softmax", Source: FERSource, Range: "0..1",
		Origin: emotion.Origin,
	})
	return nil
}
