package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/daemon"
	"github.com/affectd/affectd/infer/train"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

// benchTrain measures `affectd train`'s fitting on -vectors feature
// vectors of ViT-B's width (768: synthetic, with AU, VA and expression
// labels that are functions of them, in videos of 1000 frames, 20% held
// out), the three heads one after the other as the command fits them, and
// `affectd features` on aligned 112×112 crops of the test photos through
// the benchmarks' model. Its last line:
//
//	train: vectors=<n> seconds=<n> feature_fps=<n>
func benchTrain(args []string) error {
	fs := flag.NewFlagSet("train", flag.ExitOnError)
	vectors := fs.Int("vectors", 100000, "feature vectors to fit on")
	dim := fs.Int("dim", 768, "their width (ViT-B: 768)")
	crops := fs.Int("crops", 256, "aligned crops to extract features from")
	model := fs.String("model", "", "the encoder for feature_fps (default: the benchmarks' ViT-tiny)")
	fs.Parse(args)
	runtime.GOMAXPROCS(runtime.NumCPU())

	d, labels := syntheticSet(*vectors, *dim)
	start := time.Now()
	for _, task := range []train.Task{train.TaskAU, train.TaskVA, train.TaskExpr} {
		tr, va, err := train.SplitByVideo(d[task], 0.2, 1)
		if err != nil {
			return err
		}
		_, sc, err := train.Fit(string(task), task, labels[task], tr, va, train.Options{})
		if err != nil {
			return err
		}
		fmt.Printf("%s: %s %.3f on %d held-out vectors after %d epochs\n", task, sc.Metric, sc.Mean, sc.Val, sc.Epochs)
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("fit: %d vectors × %d, three heads, %.1f s\n", *vectors, *dim, secs)

	cfg, err := benchConfig(*model)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "affectd-train-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writeCrops(filepath.Join(dir, "cropped_aligned", "v"), *crops); err != nil {
		return err
	}
	start = time.Now()
	if _, err := daemon.ExtractFeatures(context.Background(), cfg, []string{filepath.Join(dir, "cropped_aligned")}, filepath.Join(dir, "features"), 1, 8, io.Discard); err != nil {
		return err
	}
	fps := float64(*crops) / time.Since(start).Seconds()
	fmt.Printf("features: %d crops through %s, %.1f crops/s\n", *crops, filepath.Base(filepath.Dir(cfg.Model.Path)), fps)
	fmt.Printf("train: vectors=%d seconds=%.1f feature_fps=%.1f\n", *vectors, secs, fps)
	return nil
}

// syntheticSet makes n vectors of width dim in videos of 1000, with AU
// (12 binary), VA (2 in [−1, 1]) and expression (8 classes) labels each a
// function of a direction of the vectors plus a per-video offset.
func syntheticSet(n, dim int) (map[train.Task]*train.Data, map[train.Task][]string) {
	r := rand.New(rand.NewPCG(1, 2))
	dirs := make([][]float64, 22)
	for c := range dirs {
		dirs[c] = make([]float64, dim)
		for j := range dirs[c] {
			dirs[c][j] = r.NormFloat64() / math.Sqrt(float64(dim))
		}
	}
	out := map[train.Task]*train.Data{train.TaskAU: {Dim: dim}, train.TaskVA: {Dim: dim}, train.TaskExpr: {Dim: dim}}
	x := make([]float32, dim)
	look := make([]float64, dim)
	for i := range n {
		if i%1000 == 0 {
			for j := range look {
				look[j] = 0.5 * r.NormFloat64()
			}
		}
		proj := make([]float64, len(dirs))
		for j := range x {
			x[j] = float32(look[j] + r.NormFloat64())
		}
		for c := range dirs {
			for j, v := range x {
				proj[c] += dirs[c][j] * float64(v)
			}
		}
		au := make([]float32, 12)
		for c := range au {
			if proj[c] > 0.4 {
				au[c] = 1
			}
		}
		best := 14
		for c := 14; c < 22; c++ {
			if proj[c] > proj[best] {
				best = c
			}
		}
		video := fmt.Sprintf("v%04d", i/1000)
		out[train.TaskAU].Add(video, x, au)
		out[train.TaskVA].Add(video, x, []float32{float32(math.Tanh(proj[12])), float32(math.Tanh(proj[13]))})
		out[train.TaskExpr].Add(video, x, []float32{float32(best - 14)})
	}
	return out, map[train.Task][]string{train.TaskAU: train.AUNames, train.TaskVA: train.VANames, train.TaskExpr: train.ExprNames}
}

// writeCrops writes n 112×112 crops of the test photos' faces, numbered
// from 00001.jpg, into dir.
func writeCrops(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cache, _ := testenv.Cache()
	for i := range n {
		pf := testmedia.FaceTable[i%len(testmedia.FaceTable)]
		img := gocv.IMRead(filepath.Join(cache, "photos", pf.File), gocv.IMReadColor)
		if img.Empty() {
			return fmt.Errorf("%s: cannot read (run make setup)", pf.File)
		}
		b := pf.Box
		roi := img.Region(image.Rect(int(b[0]), int(b[1]), int(b[0]+b[2]), int(b[1]+b[3])))
		crop := gocv.NewMat()
		gocv.Resize(roi, &crop, image.Pt(112, 112), 0, 0, gocv.InterpolationLinear)
		ok := gocv.IMWrite(filepath.Join(dir, fmt.Sprintf("%05d.jpg", i+1)), crop)
		crop.Close()
		roi.Close()
		img.Close()
		if !ok {
			return fmt.Errorf("cannot write crop %d", i+1)
		}
	}
	return nil
}
