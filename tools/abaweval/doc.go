// Command abaweval scores affectd predictions against Aff-Wild2 annotations
// with the ABAW challenge metrics (AU macro-F1, EXPR macro-F1, VA mean CCC).
//
// Usage:
//
//	go run ./tools/abaweval -pred PATH -ann PATH [-face N] [-missing zero|skip]
//
// Each PATH is a file or a folder; folders are paired by base name,
// <video>.csv (written by `affectd analyze`) with <video>.txt (Aff-Wild2
// annotation). The task comes from the annotation headers. The last line of
// the output reads
//
//	abaw: task=AU score=0.4321 frames=1234 invalid=12 missing=5
package main
