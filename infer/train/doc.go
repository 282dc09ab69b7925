// Package train turns labels into heads for the MAE-Face encoder: it
// reads ABAW's per-video AU_Set, VA_Set and EXPR_Set files or a plain CSV
// (labels.go), the features `affectd features` writes (features.go: NPY
// plus an index CSV), fits linear heads on them with whole videos held out
// (fit.go: class-balanced logistic regression per AU with F1 thresholds,
// tanh regression against MSE + (1 − CCC), weighted softmax regression),
// scores them as ABAW does (metrics.go) and attaches them to the encoder's
// ONNX file with affectd's metadata (onnx.go), so the daemon loads the
// result as any fine-tune.
package train
