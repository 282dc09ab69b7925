package track

import (
	"image"
	"math"
	"slices"

	"gocv.io/x/gocv"
)

// Cuts finds hard cuts between shots from frame-difference statistics: each
// frame is shrunk to a 32×18 grey thumbnail and compared with the last
// one; a cut is a frame whose thumbnail differs from the last by more than
// CutMAD grey levels on average (mean absolute difference) and by more
// than CutRatio times the median difference of the frames before it.
// Motion within a shot (faces, a moving camera) changes the thumbnail a
// little, and steadily; a cut to another scene changes it at once and a
// lot. A face tracked across a cut is most likely somebody else: the
// analyzer ends every track there.
//
// Cuts belongs to one goroutine.
type Cuts struct {
	small, grey gocv.Mat
	last, cur   []uint8
	have        bool
	recent      []float64 // the last differences, a ring
	next        int
	sorted      []float64
}

// Thresholds of a cut, measured on the test media (TestCuts): within the
// test clips' shots (panning, moving and growing faces, faces leaving) the
// difference stays under 5.1 grey levels; the cut clip's cut, between two
// backgrounds of the same kind, is 40.8.
const (
	CutMAD   = 20
	CutRatio = 2.5
	// cutHistory is how many frames' differences the median is taken over,
	// and minHistory how many it needs (no cut is seen in a source's first
	// frames).
	cutHistory = 25
	minHistory = 3
)

const cutW, cutH = 32, 18

// Cut reports whether frame starts a new shot (never for the first frame).
func (c *Cuts) Cut(frame gocv.Mat) bool {
	if frame.Empty() {
		return false
	}
	if c.small.Ptr() == nil {
		c.small, c.grey = gocv.NewMat(), gocv.NewMat()
	}
	gocv.Resize(frame, &c.small, image.Pt(cutW, cutH), 0, 0, gocv.InterpolationArea)
	if c.small.Channels() == 3 {
		gocv.CvtColor(c.small, &c.grey, gocv.ColorBGRToGray)
	} else {
		c.small.CopyTo(&c.grey)
	}
	b, err := c.grey.DataPtrUint8()
	if err != nil || len(b) != cutW*cutH {
		return false
	}
	c.cur = append(c.cur[:0], b...)
	defer func() { c.last, c.cur, c.have = c.cur, c.last, true }()
	if !c.have {
		return false
	}
	d := mad(c.last, c.cur)
	cut := len(c.recent) >= minHistory && d > CutMAD && d > CutRatio*c.median()
	if len(c.recent) < cutHistory {
		c.recent = append(c.recent, d)
	} else {
		c.recent[c.next] = d
		c.next = (c.next + 1) % cutHistory
	}
	return cut
}

// median is the recent differences' (0 before any).
func (c *Cuts) median() float64 {
	if len(c.recent) == 0 {
		return 0
	}
	c.sorted = append(c.sorted[:0], c.recent...)
	slices.Sort(c.sorted)
	return c.sorted[len(c.sorted)/2]
}

// mad is the mean absolute difference of two thumbnails.
func mad(a, b []uint8) float64 {
	var sum float64
	for i := range a {
		sum += math.Abs(float64(a[i]) - float64(b[i]))
	}
	return sum / float64(len(a))
}

// Close frees the thumbnails.
func (c *Cuts) Close() {
	if c.small.Ptr() != nil {
		c.small.Close()
		c.grey.Close()
	}
}
