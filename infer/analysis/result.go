package analysis

import (
	"time"

	"gocv.io/x/gocv"
)

// FrameResult is what the analyzer made of one frame: every tracked face
// with its box, landmarks, pose, landmark AUs, blend shapes and the
// model's heads. Sinks receive it on the analyzer's goroutine; it and
// everything it points to are reused once WriteFrame returns, so a sink
// copies (or encodes) what it keeps.
type FrameResult struct {
	Stream string
	// Seq numbers the source's frames from 1 (frames dropped before the
	// analyzer keep their numbers). 0 marks the final result of a source
	// whose input ended: no picture, no faces, only Ended.
	Seq uint64
	// CapturedAt is when the frame was read; PTS its presentation time.
	CapturedAt time.Time
	PTS        time.Duration
	// Width and Height are the frame's size (boxes and points are in its
	// pixels).
	Width, Height int
	Faces         []Face
	// Ended lists faces whose tracks ended before this frame: they appear
	// in no later result, and per-face state kept for them can go.
	Ended []string
	// Image is the frame's picture, set only when an ImageSink asked for
	// it (WantImage) as the frame arrived; nil otherwise.
	Image *gocv.Mat
	Stats FrameStats
}

// FrameStats count what the analyzer did with the frame.
type FrameStats struct {
	// Detected is true when the detector ran on this frame, and
	// Detections is how many faces it found.
	Detected   bool
	Detections int
	// Analysed is how many faces were sent to the model (or, dry, aligned).
	Analysed int
	// LandmarkErrors counts faces whose landmarks could not be fitted,
	// or fitted poorly.
	LandmarkErrors int
	// Rejected is how many detections the verifier turned down as not
	// faces (no track started).
	Rejected int
	// Cut is true when the frame starts a new shot: every earlier track
	// ended before it.
	Cut bool
	// Landmarks is the time spent fitting landmarks, head pose and the
	// landmark AUs of every face of the frame.
	Landmarks time.Duration
	// Identity is the time spent embedding faces for re-identification.
	Identity time.Duration
}

// Face is one tracked face in a frame.
type Face struct {
	// ID is "<stream>/<n>": the same while the face is tracked, never
	// given to another face. With re-identification a face that comes
	// back takes its old id again (in global mode, perhaps on another
	// stream than the one it names).
	ID string
	// Identity is the enrolled person the face matches ("": none).
	Identity string
	// Box is x, y, w, h in frame pixels.
	Box   [4]float32
	Score float32
	// EstimateSeq is the frame the model's estimate comes from (0: none
	// yet). It trails Seq when the model analyses the face less often
	// than every frame; landmark values are always this frame's.
	EstimateSeq uint64
	// Values holds one slice per head of the Layout, aligned with the
	// head's labels; nil where the face has no value for the head.
	Values [][]float32
	// LandmarkAU are the landmark backend's AU intensities (0–5, in
	// lmau.AUs order), nil without a fit. They are also the Layout's
	// landmark "au" head when the model has none.
	LandmarkAU []float32
	// Features is the model's feature vector, when this very frame was
	// analysed and the engine keeps features (nil otherwise).
	Features []float32
	// Pose is the head pose (nil without landmarks, or when no pose fits).
	Pose *Pose
	// Blend holds the blend-shape weights, in Layout.BlendShapes order (nil
	// without landmarks).
	Blend []float32
	// Landmarks are the 68 fitted points (nil without a fit). With the
	// mesh468 backend they are the mesh's points through its documented
	// 68-point map (track/mesh.Shape68).
	Landmarks *[68][2]float32
	// Mesh are the face mesh's 468 points (x, y in frame pixels, z depth
	// in the same units, negative towards the camera), with the mesh468
	// backend; nil otherwise.
	Mesh *[468][3]float32
	// Gaze is where the eyes look (mesh468 with the iris model; nil
	// otherwise or when the eyes could not be fitted).
	Gaze *Gaze
	// Fit says how far the landmark fit strays from the detector's eyes,
	// nose and mouth (the mean distance over the box width; 0 is perfect,
	// FitThreshold the most trusted); -1 without a fit.
	Fit float32
	// Fail says why the face has no values in this frame ("" when it
	// has): "no_fit" (the landmarks could not be fitted) or "poor_fit"
	// (Fit above the threshold: the fit has slipped off the face, as on a
	// face turned far from the camera). A failed face keeps its box, id
	// and points but carries no pose, AUs, blend shapes or model heads.
	Fail string
}

// Gaze is OpenFace 2's gaze (its CSV's gaze_* columns): per-eye unit
// vectors in camera coordinates (x right, y down, z away from the camera:
// looking into the camera is about (0, 0, −1)) and the mean direction's
// angles in radians (track/iris).
type Gaze struct {
	// Eye0 is the subject's right eye (the image's left, OpenFace's
	// gaze_0), Eye1 the left (gaze_1).
	Eye0, Eye1 [3]float32
	// AngleX is + when the eyes look to the image's right (the subject's
	// left), AngleY + when they look down (OpenFace's gaze_angle_x/y).
	AngleX, AngleY float32
	// At0 and At1 are the irises' centres in frame pixels (Eye0's, Eye1's).
	At0, At1 [2]float32
}

// Reasons of Face.Fail.
const (
	FailNoFit   = "no_fit"
	FailPoorFit = "poor_fit"
)

// Pose is a head pose (track/landmarks.Pose): Yaw, Pitch and Roll in
// degrees (+ turned to the subject's left, looking up, tilted clockwise),
// T in millimetres in camera coordinates (x right, y down, z forward), and
// R the same rotation in OpenFace's convention, in radians (pose_Rx,
// pose_Ry, pose_Rz: R = Rx·Ry·Rz; + looking down, turned to the subject's
// right, tilted clockwise).
type Pose struct {
	Yaw, Pitch, Roll float32
	T                [3]float32
	R                [3]float32
}

// HeadInfo describes one head: frames carry it as label → value under
// the head's name.
type HeadInfo struct {
	Name       string   `json:"name"`
	Labels     []string `json:"labels"`
	Activation string   `json:"activation"`
	Threshold  *float32 `json:"threshold,omitempty"`
	// Source is "model" (the MAE-Face model's head), "landmarks" (the
	// landmark backend: computed on every frame) or "fer2013"
	// (expression_fer: track/emotion, on every frame).
	Source string `json:"source"`
	// Range is the values' range: "0..1", "-1..1", "logits" or "0..5"
	// (OpenFace's AU intensity scale).
	Range string `json:"range"`
	// Origin says where a head that is not MAE-Face's comes from (its
	// model and training set); "" for the model's and the landmarks'.
	Origin string `json:"origin,omitempty"`
}

// Layout is what results carry beyond boxes and ids: the heads (the
// model's, in its order, then the landmark backend's) and the names of the
// blend shapes.
type Layout struct {
	Heads       []HeadInfo
	BlendShapes []string
}

// Sink consumes a source's results. WriteFrame is called for every frame,
// in order, on the analyzer's goroutine: it must not block for long (live
// sinks queue or drop on their own), and it never reaches back into the
// analyzer. An error stops the analyzer's Run with that error.
type Sink interface {
	WriteFrame(r *FrameResult) error
}

// ImageSink is a Sink that also wants pictures. WantImage is asked as each
// frame arrives; when it says yes the frame's picture is kept until its
// result is written (FrameResult.Image). Ask rarely: held pictures are
// memory.
type ImageSink interface {
	Sink
	WantImage() bool
}
