package record

import (
	"strconv"
	"strings"

	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/infer/lmau"
)

// CSVOptions choose the CSV's optional columns.
type CSVOptions struct {
	// Landmarks: the results carry landmarks (pose_*, AUxx_r and, without
	// a model AU head, AUxx_c from the landmark backend).
	Landmarks bool
	// Points adds the 68 landmarks (x_0…x_67, y_0…y_67).
	Points bool
	// Gaze adds OpenFace's gaze columns (gaze_0_x … gaze_angle_y: the
	// mesh468 backend with the iris model).
	Gaze bool
	// FeatureDim adds the model's feature vector (f_0…); 0: none.
	FeatureDim int
}

// CSV is OpenFace 2 FeatureExtraction's layout: its column names, in its
// order, where the value is the same kind, then affectd's own; OpenFace's
// ", " separator (pandas: skipinitialspace=True). A face whose landmarks
// or model result (of this very frame) are missing has success 0 and zeros
// in their columns.
type CSV struct {
	cols      []string
	gaze      bool  // gaze_*
	pose      bool  // pose_T*, pose_R*
	points    bool  // x_*, y_*
	lmR       bool  // AUxx_r from the landmark backend
	lmC       bool  // AUxx_c from the landmark backend (no model AU head)
	auHead    int   // the model's AU head (-1: none): AUxx_c and AUxx_prob
	heads     []int // the other model heads, in order
	fer       []int // expression_fer heads (every frame's own values)
	lens      []int // labels per head
	model     bool  // the layout has model heads
	featDim   int
	threshold float32
}

// NewCSV lays out the columns for results of the layout l.
func NewCSV(l *analysis.Layout, o CSVOptions) *CSV {
	c := &CSV{auHead: -1, threshold: 0.5, featDim: o.FeatureDim}
	c.cols = []string{"frame", "face_id", "timestamp", "confidence", "success"}
	if o.Gaze { // OpenFace's place: before the pose
		c.gaze = true
		c.cols = append(c.cols, "gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y")
	}
	if o.Landmarks {
		c.pose = true
		c.cols = append(c.cols, "pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz")
		if o.Points {
			c.points = true
			for _, axis := range []string{"x", "y"} {
				for i := 0; i < 68; i++ {
					c.cols = append(c.cols, axis+"_"+strconv.Itoa(i))
				}
			}
		}
	}
	var model []int
	for i, h := range l.Heads {
		c.lens = append(c.lens, len(h.Labels))
		if h.Source != "model" {
			continue
		}
		model = append(model, i)
		if h.Name == "au" {
			c.auHead = i
			if h.Threshold != nil {
				c.threshold = *h.Threshold
			}
		}
	}
	c.model = len(model) > 0
	if o.Landmarks {
		c.lmR = true
		for _, au := range lmau.AUs {
			c.cols = append(c.cols, openFaceAU(au)+"_r")
		}
	}
	if c.auHead >= 0 {
		labels := l.Heads[c.auHead].Labels
		for _, au := range labels {
			c.cols = append(c.cols, openFaceAU(au)+"_c")
		}
		for _, au := range labels {
			c.cols = append(c.cols, openFaceAU(au)+"_prob")
		}
	} else if o.Landmarks {
		c.lmC = true
		for _, au := range lmau.AUs {
			c.cols = append(c.cols, openFaceAU(au)+"_c")
		}
	}
	for i, h := range l.Heads {
		if h.Source == analysis.FERSource { // this frame's, like the landmarks'
			c.fer = append(c.fer, i)
			for _, lb := range h.Labels {
				c.cols = append(c.cols, h.Name+"_"+lb)
			}
		}
	}
	for _, i := range model {
		if i == c.auHead {
			continue
		}
		h := l.Heads[i]
		c.heads = append(c.heads, i)
		for _, lb := range h.Labels {
			if h.Name == "va" {
				c.cols = append(c.cols, lb)
			} else {
				c.cols = append(c.cols, h.Name+"_"+lb)
			}
		}
	}
	for i := 0; i < o.FeatureDim; i++ {
		c.cols = append(c.cols, "f_"+strconv.Itoa(i))
	}
	return c
}

// Columns are the column names, in order.
func (c *CSV) Columns() []string { return c.cols }

// openFaceAU spells an AU label as OpenFace does: AU1 → AU01.
func openFaceAU(label string) string {
	if n, err := strconv.Atoi(strings.TrimPrefix(label, "AU")); err == nil && strings.HasPrefix(label, "AU") && n >= 0 && n < 10 {
		return "AU0" + strconv.Itoa(n)
	}
	return label
}

const sep = ", "

// Header implements Format.
func (c *CSV) Header(buf []byte) []byte {
	for i, col := range c.cols {
		if i > 0 {
			buf = append(buf, sep...)
		}
		buf = append(buf, col...)
	}
	return append(buf, '\n')
}

// Frame implements Format: one row per face.
func (c *CSV) Frame(buf []byte, r *analysis.FrameResult) []byte {
	for i := range r.Faces {
		buf = c.row(buf, r, &r.Faces[i])
	}
	return buf
}

// Confidence is OpenFace's confidence column: how much the landmarks are
// to be trusted, 0 to 1, from the fit's distance to the detector's
// keypoints (1 − Fit/(2 × the default threshold): 0.5 at the threshold,
// where success turns 0), or without landmarks the detector's score.
func Confidence(f *analysis.Face) float32 {
	if f.Fit < 0 {
		if f.Landmarks == nil && f.Fail == analysis.FailNoFit {
			return 0
		}
		return f.Score
	}
	return min(max(1-f.Fit/(2*analysis.DefaultFitThreshold), 0), 1)
}

// FaceNumber is the number of a face id ("cam/7" → "7").
func FaceNumber(id string) string {
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		return id[i+1:]
	}
	return id
}

func (c *CSV) row(buf []byte, r *analysis.FrameResult, f *analysis.Face) []byte {
	analysed := f.EstimateSeq == r.Seq // the model's values are this frame's
	success := f.Fail == "" && (analysed || !c.model) && (f.Landmarks != nil || !c.pose)
	num := func(v float32, prec int) {
		buf = append(buf, sep...)
		buf = strconv.AppendFloat(buf, float64(v), 'f', prec, 64)
	}
	flag := func(on bool) {
		buf = append(buf, sep...)
		if on {
			buf = append(buf, '1')
		} else {
			buf = append(buf, '0')
		}
	}
	buf = strconv.AppendUint(buf, r.Seq, 10)
	buf = append(buf, sep...)
	buf = append(buf, FaceNumber(f.ID)...)
	num(float32(r.PTS.Seconds()), 3)
	num(Confidence(f), 3)
	flag(success)
	if c.gaze {
		var g analysis.Gaze
		if f.Gaze != nil {
			g = *f.Gaze
		}
		for _, v := range [...]float32{g.Eye0[0], g.Eye0[1], g.Eye0[2], g.Eye1[0], g.Eye1[1], g.Eye1[2], g.AngleX, g.AngleY} {
			num(v, 3)
		}
	}
	if c.pose {
		var p analysis.Pose
		if f.Pose != nil {
			p = *f.Pose
		}
		num(p.T[0], 1)
		num(p.T[1], 1)
		num(p.T[2], 1)
		num(p.R[0], 3) // OpenFace's convention (landmarks.Pose.R)
		num(p.R[1], 3)
		num(p.R[2], 3)
	}
	if c.points {
		for axis := 0; axis < 2; axis++ {
			for k := 0; k < 68; k++ {
				var v float32
				if f.Landmarks != nil {
					v = f.Landmarks[k][axis]
				}
				num(v, 1)
			}
		}
	}
	if c.lmR {
		for k := range lmau.AUs {
			var v float32
			if f.LandmarkAU != nil {
				v = f.LandmarkAU[k]
			}
			num(v, 2)
		}
	}
	if c.lmC {
		for k := range lmau.AUs {
			flag(f.LandmarkAU != nil && f.LandmarkAU[k] >= lmau.Occurrence)
		}
	}
	values := func(h int) []float32 {
		if !analysed || h >= len(f.Values) {
			return nil
		}
		return f.Values[h]
	}
	if c.auHead >= 0 {
		vals := values(c.auHead)
		n := c.lens[c.auHead]
		for k := 0; k < n; k++ {
			flag(vals != nil && vals[k] >= c.threshold)
		}
		for k := 0; k < n; k++ {
			var v float32
			if vals != nil {
				v = vals[k]
			}
			num(v, 4)
		}
	}
	for _, h := range c.fer {
		var vals []float32
		if h < len(f.Values) {
			vals = f.Values[h]
		}
		for k := 0; k < c.lens[h]; k++ {
			var v float32
			if vals != nil {
				v = vals[k]
			}
			num(v, 4)
		}
	}
	for _, h := range c.heads {
		vals := values(h)
		for k := 0; k < c.lens[h]; k++ {
			var v float32
			if vals != nil {
				v = vals[k]
			}
			num(v, 4)
		}
	}
	for k := 0; k < c.featDim; k++ {
		var v float32
		if k < len(f.Features) {
			v = f.Features[k]
		}
		buf = append(buf, sep...)
		buf = strconv.AppendFloat(buf, float64(v), 'g', 6, 32)
	}
	return append(buf, '\n')
}
