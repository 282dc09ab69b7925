// Package testmedia makes reproducible synthetic test clips with ground
// truth: faces cut out of the public-domain photos in <cache>/photos (fetched
// by tools/setup.sh), pasted with a soft elliptical mask onto a procedural
// background, moved along fixed paths and encoded to H.264 by ffmpeg.
//
// Every clip is defined in normalised frame coordinates, so a clip at
// 1280x720 is the same clip as at 640x360, scaled. Nothing depends on time
// or on unseeded randomness: a clip changes only when the generator, the
// face table or ffmpeg changes. Each clip has a JSON sidecar with, per
// frame, every face's box, eyes and visible fraction in clip pixels.
//
// Clips are made on demand under <cache>/media, once, under a cache-wide
// lock (testenv.Lock), so parallel test binaries share them:
//
//	clip, err := testmedia.Ensure("one_face", 640, 360)
//	truth, err := testmedia.ReadTruth(clip.TruthPath)
//
// `go run ./tools/testmedia/cmd/testmedia -all` makes every clip at both
// sizes. StartRTSP (rtsp.go) serves a clip over RTSP.
package testmedia
