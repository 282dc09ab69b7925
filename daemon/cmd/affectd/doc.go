// Command affectd streams facial action units, valence/arousal and
// expression for every face in live video. See README.md.
package main
