// Package gate compares a quantized model with the float32 model it came
// from, on real faces prepared exactly as the live path prepares them
// (BlazeFace, the five-point alignment, the model's normalisation), through
// the engine that serves them. tools/export's --int8 refuses a model this
// package finds too far from its reference; bench quant reports the same
// figures.
package gate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/track"
)

// Default limits of the gate.
const (
	// MinCosineMean is the least mean cosine between the two models'
	// feature vectors.
	MinCosineMean = 0.99
	// MinCentered is the least mean centered cosine (see Figures): the
	// raw cosine alone passes a model that keeps the features' common
	// direction and scrambles what tells faces apart.
	MinCentered = 0.98
	// MaxHeadDiff is the largest difference allowed in any decoded head
	// value (probabilities, tanh outputs: all in [-1, 1]).
	MaxHeadDiff = 0.05
)

// Figures are the comparison's results.
type Figures struct {
	Faces                 int
	CosineMean, CosineMin float64
	HeadMaxDiff           float64
	HeadMaxName           string // the head with the largest difference
	// Centered is the mean cosine after subtracting the reference's mean
	// feature over the faces: the part of the features that tells faces
	// apart. Between is the control: the mean cosine between the
	// reference features of different faces. A cosine near 1 says little
	// when Between is near 1 too (features dominated by a constant).
	Centered, Between float64
}

func (f Figures) String() string {
	s := fmt.Sprintf("faces=%d cosine_mean=%.5f cosine_min=%.5f centered_cosine=%.4f between_faces=%.4f",
		f.Faces, f.CosineMean, f.CosineMin, f.Centered, f.Between)
	if f.HeadMaxName != "" {
		s += fmt.Sprintf(" head_max_diff=%.4f (%s)", f.HeadMaxDiff, f.HeadMaxName)
	}
	return s
}

// Check says why the figures fail the limits (nil: they pass).
func (f Figures) Check(minCosine, minCentered, maxHead float64) error {
	var errs []error
	if f.Faces == 0 {
		return errors.New("no faces to compare")
	}
	if f.CosineMean < minCosine {
		errs = append(errs, fmt.Errorf("mean feature cosine %.4f < %.4f", f.CosineMean, minCosine))
	}
	if f.Centered < minCentered {
		errs = append(errs, fmt.Errorf("mean centered feature cosine %.4f < %.4f", f.Centered, minCentered))
	}
	if f.HeadMaxDiff > maxHead {
		errs = append(errs, fmt.Errorf("head %s differs by %.4f > %.4f", f.HeadMaxName, f.HeadMaxDiff, maxHead))
	}
	return errors.Join(errs...)
}

var (
	imageExt = []string{".jpg", ".jpeg", ".png", ".bmp", ".webp"}
	videoExt = []string{".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m"}
)

// Sources lists the pictures and videos under dir (sorted).
func Sources(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ext := strings.ToLower(filepath.Ext(p))
		if !d.IsDir() && (slices.Contains(imageExt, ext) || slices.Contains(videoExt, ext)) {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// Faces detects and aligns up to max faces from the sources (pictures:
// every face; videos: every face of one frame in every). Each face is a
// 3×S×S model input. It also reports how many sources gave no face.
func Faces(sources []string, det *track.Detector, al *track.Aligner, every, max int) (faces [][]float32, faceless int, err error) {
	s := al.Size()
	var dets []track.Detection
	take := func(img gocv.Mat) int {
		n := 0
		dets, err = det.Detect(img, dets[:0])
		if err != nil {
			return 0
		}
		for _, d := range dets {
			if len(faces) >= max {
				break
			}
			in := make([]float32, 3*s*s)
			if _, e := al.Align(img, d.Keypoints, in); e != nil {
				continue
			}
			faces = append(faces, in)
			n++
		}
		return n
	}
	for _, src := range sources {
		if len(faces) >= max {
			break
		}
		n := 0
		if slices.Contains(imageExt, strings.ToLower(filepath.Ext(src))) {
			img := gocv.IMRead(src, gocv.IMReadColor)
			if img.Empty() {
				img.Close()
				return nil, 0, fmt.Errorf("%s: not a picture OpenCV can read", src)
			}
			n = take(img)
			img.Close()
		} else {
			vc, e := gocv.VideoCaptureFile(src)
			if e != nil {
				return nil, 0, fmt.Errorf("%s: %v", src, e)
			}
			img := gocv.NewMat()
			for k := 0; len(faces) < max && vc.Read(&img); k++ {
				if !img.Empty() && k%every == 0 {
					n += take(img)
				}
			}
			img.Close()
			vc.Close()
		}
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", src, err)
		}
		if n == 0 {
			faceless++
		}
	}
	return faces, faceless, nil
}

// Compare runs every face through both models' engines and compares
// features (cosine) and decoded heads (largest absolute difference).
func Compare(ctx context.Context, ref, cand *infer.Model, faces [][]float32) (Figures, error) {
	a, b := ref.Metadata(), cand.Metadata()
	if a.Input.Size != b.Input.Size || a.Input.Mean != b.Input.Mean || a.Input.Std != b.Input.Std {
		return Figures{}, errors.New("the models want different inputs")
	}
	if a.FeatureDim != b.FeatureDim || a.NumLogits != b.NumLogits || len(a.Heads) != len(b.Heads) {
		return Figures{}, fmt.Errorf("the models' outputs differ (features %d/%d, logits %d/%d, heads %d/%d)",
			a.FeatureDim, b.FeatureDim, a.NumLogits, b.NumLogits, len(a.Heads), len(b.Heads))
	}
	if a.FeatureDim == 0 {
		return Figures{}, errors.New("the reference model has no features output")
	}
	run := func(m *infer.Model) ([]infer.Result, error) {
		e, err := infer.New(m, infer.Options{MaxBatch: 8, KeepFeatures: true, Overload: infer.OverloadWait})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		defer func() { cancel(); <-done; e.Close() }()
		out := make([]infer.Result, len(faces))
		errc := make(chan error, len(faces))
		for i := range faces {
			go func(i int) {
				var err error
				out[i], err = e.Infer(ctx, func(dst []float32) { copy(dst, faces[i]) })
				errc <- err
			}(i)
		}
		var first error
		for range faces {
			if err := <-errc; err != nil && first == nil {
				first = err
			}
		}
		return out, first
	}
	ra, err := run(ref)
	if err != nil {
		return Figures{}, fmt.Errorf("reference: %w", err)
	}
	rb, err := run(cand)
	if err != nil {
		return Figures{}, fmt.Errorf("candidate: %w", err)
	}
	f := Figures{Faces: len(faces), CosineMin: 1}
	mean := make([]float32, a.FeatureDim)
	for i := range faces {
		for k, v := range ra[i].Features {
			mean[k] += v / float32(len(faces))
		}
	}
	ca, cb := make([]float32, a.FeatureDim), make([]float32, a.FeatureDim)
	for i := range faces {
		for k := range mean {
			ca[k], cb[k] = ra[i].Features[k]-mean[k], rb[i].Features[k]-mean[k]
		}
		f.Centered += Cosine(ca, cb) / float64(len(faces))
		if len(faces) > 1 {
			f.Between += Cosine(ra[i].Features, ra[(i+1)%len(faces)].Features) / float64(len(faces))
		}
	}
	for i := range faces {
		c := Cosine(ra[i].Features, rb[i].Features)
		f.CosineMean += c / float64(len(faces))
		f.CosineMin = min(f.CosineMin, c)
		for h := range ra[i].Heads {
			for k, v := range ra[i].Heads[h].Values {
				if d := math.Abs(float64(v - rb[i].Heads[h].Values[k])); d > f.HeadMaxDiff || f.HeadMaxName == "" {
					f.HeadMaxDiff, f.HeadMaxName = d, ra[i].Heads[h].Name
				}
			}
		}
	}
	return f, nil
}

// Cosine is the cosine similarity of two vectors (0 when either is zero).
func Cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}
