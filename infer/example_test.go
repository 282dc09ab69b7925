package infer_test

import (
	"context"
	"fmt"
	"log"

	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/tools/testenv"
)

// A random ViT-tiny with ABAW heads: reserve a row, write the crop into it,
// submit, and read the decoded heads.
func Example() {
	lib, err := testenv.ORTLibrary()
	if err != nil {
		log.Fatal(err)
	}
	mm, err := testenv.BuildModel(testenv.ModelSpec{Preset: "tiny", Seed: 7, Heads: "abaw", GlobalPool: true})
	if err != nil {
		log.Fatal(err)
	}
	m, err := infer.Load(mm.ONNX, infer.SessionOptions{LibraryPath: lib}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	e, err := infer.New(m, infer.Options{MaxBatch: 8})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go e.Run(ctx)
	defer func() { cancel(); e.Close() }()

	r, err := e.Reserve(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Release()
	crop := r.Input() // 3×224×224, normalised RGB: the aligner writes here
	for i := range crop {
		crop[i] = 0
	}
	r.Submit()
	res, err := r.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range res.Heads {
		fmt.Println(h.Name, len(h.Values), h.Labels[0])
	}
	// Output:
	// au 12 AU1
	// va 2 valence
	// expr 8 neutral
}
