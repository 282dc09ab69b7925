// Package infer runs MAE-Face models: it loads an ONNX model and its
// affectd.* metadata (the model contract of DESIGN.md), owns the ONNX
// Runtime session, batches faces from every stream into one queue, and
// shares the model fairly among them (Pacer). The per-frame path that
// feeds it is infer/analysis; the landmark AU backend is infer/lmau.
//
// # Concurrency
//
// Load returns a *Model whose session may be run from several goroutines.
// New wraps it in an *Engine; Engine.Run starts the goroutines the engine
// owns (one dispatcher, Options.Runners runners) and blocks until its
// context ends or Close is called, then drains: every submitted face still
// gets its result. Reserve, Submit, Wait and Release are safe to call from
// any number of goroutines, each Request being used by one goroutine.
//
// # The path of a face
//
// Reserve admits a face (bounded by Options.QueueLimit, with an explicit
// OverloadPolicy and a counter) and hands out a row of a pooled batch
// tensor; the caller writes the aligned crop straight into Request.Input,
// so no per-face buffer is allocated or copied. Submit marks the row
// filled. A batch runs when it is full, or when its first face has waited
// Options.MaxWait and a runner is free; while every runner is busy a batch
// keeps filling instead of queueing small batches. The runner decodes each
// row with its head's activation (sigmoid, tanh, softmax) and threshold
// into the request's own Result, and Wait returns it.
//
// # ONNX Runtime
//
// ONNX Runtime has one environment per process, bound to the shared library
// first loaded (SessionOptions.LibraryPath): point it at a CUDA or TensorRT
// build to use a GPU. A provider the library lacks logs a warning and falls
// back to CPU, or fails with ErrProvider when SessionOptions.NoFallback is set.
package infer
