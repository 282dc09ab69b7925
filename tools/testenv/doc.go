// Package testenv finds and makes what tests, benches and `make run` need:
// the artefact cache (downloaded by tools/setup.sh), the ONNX Runtime
// library, Debian's Python with PyTorch, and seeded random MAE-Face models
// exported by tools/export. Models are made on demand, once, under a file
// lock so that parallel test binaries share them.
package testenv
