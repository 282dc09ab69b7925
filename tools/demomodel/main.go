package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/affectd/affectd/tools/testenv"
)

func main() {
	preset := flag.String("preset", "tiny", "ViT preset: tiny, small, base, large")
	seed := flag.Int("seed", 1, "random seed")
	fullMAE := flag.Bool("full-mae", false, "checkpoint with MAE decoder keys")
	heads := flag.String("heads", "abaw", `head preset ("" for an encoder only)`)
	flag.Parse()
	m, err := testenv.BuildModel(testenv.ModelSpec{Preset: *preset, Seed: *seed, Heads: *heads, GlobalPool: !*fullMAE, FullMAE: *fullMAE, Demo: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "demomodel:", err)
		os.Exit(1)
	}
	fmt.Println(m.ONNX)
}
