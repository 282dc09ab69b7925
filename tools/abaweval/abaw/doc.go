// Package abaw computes the ABAW challenge metrics (Aff-Wild2) from the
// per-video prediction CSV files written by `affectd analyze` and the
// Aff-Wild2 annotation text files.
//
// Three tasks are supported:
//
//   - AU: 12 action units; F1 per AU (positive class 1), score = mean F1.
//   - EXPR: 8 expressions; F1 per class (one-vs-rest), score = mean F1 over
//     all 8 classes; accuracy is reported too.
//   - VA: valence and arousal; Concordance Correlation Coefficient per
//     dimension, score = mean CCC.
//
// All metrics are pooled over every valid frame of every video, as the
// challenge computes them; frames marked invalid in the annotation are
// skipped.
package abaw
