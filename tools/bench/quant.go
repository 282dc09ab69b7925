package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/tools/quantgate/gate"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/track"
)

// benchQuant measures the int8 export against its float32 model in one
// run: the bare session's faces/s at each one's best batch size (the
// sizes and then the models alternate, rounds × each), and the feature
// cosine on real faces (the test media's photographs, detected and
// aligned as live). Both models come from the same seeded random
// checkpoint in MAE-Face's format (ViT-B/16 by default): speed does not
// depend on the weights' values; accuracy here is quantization error on
// these weights, not affect accuracy.
func benchQuant(args []string) error {
	fs := flag.NewFlagSet("quant", flag.ExitOnError)
	preset := fs.String("preset", "base", "ViT size of the random MAE-Face checkpoint")
	threads := fs.Int("threads", 0, "ONNX Runtime intra-op threads (0: one per CPU)")
	seconds := fs.Float64("seconds", 4, "seconds per measurement")
	rounds := fs.Int("rounds", 3, "alternating fp32/int8 rounds")
	batches := fs.String("batches", "1,4,8", "batch sizes to try")
	faces := fs.Int("faces", 64, "real faces for the cosine")
	fs.Parse(args)

	lib, err := testenv.ORTLibrary()
	if err != nil {
		return err
	}
	spec := testenv.ModelSpec{Preset: *preset, Seed: 1, Heads: "abaw", GlobalPool: true}
	fmt.Printf("quant: exporting ViT-%s fp32 and int8 (cached after the first run)\n", *preset)
	m32, err := testenv.BuildModel(spec)
	if err != nil {
		return err
	}
	spec.Int8 = true
	m8, err := testenv.BuildModel(spec)
	if err != nil {
		return err
	}
	so := infer.SessionOptions{LibraryPath: lib, IntraOpThreads: *threads}
	var models [2]*infer.Model
	for i, p := range []string{m32.ONNX, m8.ONNX} {
		if models[i], err = infer.Load(p, so, nil); err != nil {
			return err
		}
		defer models[i].Close()
		md := models[i].Metadata()
		fmt.Printf("model: %s %s %s\n", md.Model.Backbone, md.Model.Precision, p)
	}
	crop := makeCrop(models[0].Metadata().Input.Size)
	dur := time.Duration(*seconds * float64(time.Second))
	var faces32, secs32, faces8, secs8 [64]float64 // by batch size
	sizes := splitInts(*batches)
	for r := 0; r < *rounds; r++ {
		for _, n := range sizes {
			if n < 1 || n >= len(faces32) {
				return fmt.Errorf("-batches: %d out of range", n)
			}
			for i, m := range models {
				rate, _, secs, err := bareRate(m, n, crop, dur)
				if err != nil {
					return err
				}
				fmt.Printf("round %d batch=%-2d %s faces/s=%.1f\n", r+1, n, [2]string{"fp32", "int8"}[i], rate)
				if i == 0 {
					faces32[n] += rate * secs
					secs32[n] += secs
				} else {
					faces8[n] += rate * secs
					secs8[n] += secs
				}
			}
		}
	}
	best := func(f, s *[64]float64) (float64, int) {
		b, at := 0.0, 0
		for _, n := range sizes {
			if r := f[n] / s[n]; r > b {
				b, at = r, n
			}
		}
		return b, at
	}
	fps32, b32 := best(&faces32, &secs32)
	fps8, b8 := best(&faces8, &secs8)
	fmt.Printf("best batch: fp32 %d, int8 %d\n", b32, b8)

	// Accuracy on real faces.
	cache, err := testenv.Cache()
	if err != nil {
		return err
	}
	det, err := track.NewDetector(track.DetectorOptions{LibraryPath: lib,
		ModelPath: filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")})
	if err != nil {
		return err
	}
	defer det.Close()
	md := models[0].Metadata()
	al, err := track.NewAligner(md.Input.Size, float32(config.Default().Align.Margin), md.Input.Mean, md.Input.Std)
	if err != nil {
		return err
	}
	var sources []string
	for _, name := range testmedia.Names() {
		c, err := testmedia.Ensure(name, testmedia.Sizes[0][0], testmedia.Sizes[0][1])
		if err != nil {
			return err
		}
		sources = append(sources, c.Path)
	}
	inputs, _, err := gate.Faces(sources, det, al, 10, *faces)
	if err != nil {
		return err
	}
	f, err := gate.Compare(context.Background(), models[0], models[1], inputs)
	if err != nil {
		return err
	}
	fmt.Printf("accuracy: %s\n", f)
	fmt.Printf("quant: fp32_fps=%.1f int8_fps=%.1f speedup=%.2f cosine_mean=%.5f cosine_min=%.5f\n",
		fps32, fps8, fps8/fps32, f.CosineMean, f.CosineMin)
	return nil
}
