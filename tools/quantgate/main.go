// Command quantgate is the accuracy gate of tools/export's --int8: it runs
// the float32 reference and the quantized model through affectd's engine
// on real faces (the test media's, or a folder of the user's pictures and
// videos), prints the figures, and exits 1 when the quantized model is
// too far from its reference (mean feature cosine, largest head
// difference), 2 on a usage or set-up error.
//
//	go run ./tools/quantgate -ref model.fp32.onnx -model model.int8.onnx [-calib DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/tools/quantgate/gate"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/track"
)

func main() {
	os.Exit(run())
}

func run() int {
	ref := flag.String("ref", "", "the float32 model (required)")
	model := flag.String("model", "", "the quantized model (required)")
	calib := flag.String("calib", "", "folder of pictures and videos with faces (default: the test media, made if missing)")
	lib := flag.String("ort", "", "ONNX Runtime library (default: the one `make setup` fetched)")
	detector := flag.String("detector", "", "BlazeFace model (default: the one `make setup` fetched)")
	maxFaces := flag.Int("faces", 64, "faces to compare at most")
	every := flag.Int("every", 10, "in videos, one frame in this many")
	minCos := flag.Float64("min-cosine", gate.MinCosineMean, "least mean feature cosine")
	minCentered := flag.Float64("min-centered", gate.MinCentered, "least mean centered feature cosine")
	maxHead := flag.Float64("max-head-diff", gate.MaxHeadDiff, "largest difference of any decoded head value")
	flag.Parse()
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "quantgate: %v\n", err)
		return 2
	}
	if *ref == "" || *model == "" || *maxFaces < 1 || *every < 1 {
		flag.Usage()
		return 2
	}
	if *lib == "" {
		p, err := testenv.ORTLibrary()
		if err != nil {
			return fail(err)
		}
		*lib = p
	}
	if *detector == "" {
		c, err := testenv.Cache()
		if err != nil {
			return fail(err)
		}
		*detector = filepath.Join(c, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")
	}
	var sources []string
	if *calib == "" {
		for _, name := range testmedia.Names() {
			c, err := testmedia.Ensure(name, testmedia.Sizes[0][0], testmedia.Sizes[0][1])
			if err != nil {
				return fail(err)
			}
			sources = append(sources, c.Path)
		}
	} else {
		s, err := gate.Sources(*calib)
		if err != nil {
			return fail(err)
		}
		if len(s) == 0 {
			return fail(fmt.Errorf("-calib %s: no pictures or videos", *calib))
		}
		sources = s
	}
	so := infer.SessionOptions{LibraryPath: *lib}
	mr, err := infer.Load(*ref, so, nil)
	if err != nil {
		return fail(err)
	}
	defer mr.Close()
	mc, err := infer.Load(*model, so, nil)
	if err != nil {
		return fail(err)
	}
	defer mc.Close()
	det, err := track.NewDetector(track.DetectorOptions{LibraryPath: *lib, ModelPath: *detector})
	if err != nil {
		return fail(err)
	}
	defer det.Close()
	md := mr.Metadata()
	al, err := track.NewAligner(md.Input.Size, float32(config.Default().Align.Margin), md.Input.Mean, md.Input.Std) // as the daemon aligns by default
	if err != nil {
		return fail(err)
	}
	faces, faceless, err := gate.Faces(sources, det, al, *every, *maxFaces)
	if err != nil {
		return fail(err)
	}
	if faceless > 0 {
		fmt.Fprintf(os.Stderr, "quantgate: %d of %d sources gave no face\n", faceless, len(sources))
	}
	f, err := gate.Compare(context.Background(), mr, mc, faces)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("gate: %s (limits: cosine_mean >= %.4f, centered_cosine >= %.4f, head diff <= %.4f)\n", f, *minCos, *minCentered, *maxHead)
	if err := f.Check(*minCos, *minCentered, *maxHead); err != nil {
		fmt.Fprintf(os.Stderr, "quantgate: REFUSED: %v\n", err)
		return 1
	}
	return 0
}
