// Command whippub publishes an H.264 (Annex-B) or VP8 (IVF) file to a WHIP
// (RFC 9725) endpoint over WebRTC, paced in real time: for tests and for
// users without a browser.
//
//	go run ./tools/whippub -url http://127.0.0.1:8686/v1/whip/cam1 -file clip.h264 [-token T] [-fps 25] [-loop] [-n frames] [-loopback]
//
// An Annex-B file can be made from an H.264 mp4 with
//
//	ffmpeg -i clip.mp4 -c:v copy -bsf:v h264_mp4toannexb,h264_metadata=aud=insert -f h264 clip.h264
//
// and an IVF file with
//
//	ffmpeg -i clip.mp4 -c:v libvpx -b:v 1M -deadline realtime -g 25 -f ivf clip.ivf
//
// Browsers and decoders expect a key frame about every second (-g 25 at 25
// fps): after a PLI, H.264 sending resumes at the file's next IDR frame.
// Interrupt (Ctrl-C) ends the session normally (DELETE) and prints the
// summary.
package main
