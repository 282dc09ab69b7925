// Command demomodel prints the path of affectd's demo model, a seeded random
// MAE-Face ViT-tiny with ABAW heads marked as a demo, exporting it with
// tools/export the first time. Its outputs are not affect estimates.
//
//	go run ./tools/demomodel [-preset tiny] [-seed 1]
package main
