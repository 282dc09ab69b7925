package testmedia

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

func startRTSP(t *testing.T, file string, opt RTSPOptions) *RTSPServer {
	t.Helper()
	s, err := StartRTSPWith(t, file, opt)
	if err != nil { // ErrRTSPUnavailable too: make setup installs the server
		t.Fatal(err)
	}
	return s
}

// openRTSP opens url with OpenCV's FFmpeg backend over TCP, with a 5 s
// socket timeout. With 2 s, TestRTSPLoop's first read failed once in CI
// while other test packages loaded both cores; the server prepares its
// media (demuxing and payloading the file) on the first PLAY.
func openRTSP(t *testing.T, url string) *gocv.VideoCapture {
	t.Helper()
	t.Setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|timeout;5000000")
	vc, err := gocv.OpenVideoCaptureWithAPI(url, gocv.VideoCaptureFFmpeg)
	if err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	if !vc.IsOpened() {
		vc.Close()
		t.Fatalf("opening %s: not opened", url)
	}
	return vc
}

// readFrames reads n frames of w x h from vc.
func readFrames(t *testing.T, vc *gocv.VideoCapture, n, w, h int) []gocv.Mat {
	t.Helper()
	var out []gocv.Mat
	for i := 0; i < n; i++ {
		m := gocv.NewMat()
		if !vc.Read(&m) || m.Empty() {
			m.Close()
			t.Fatalf("frame %d: read failed", i)
		}
		if m.Cols() != w || m.Rows() != h {
			t.Fatalf("frame %d is %dx%d, want %dx%d", i, m.Cols(), m.Rows(), w, h)
		}
		out = append(out, m)
	}
	return out
}

func closeAll(ms []gocv.Mat) {
	for _, m := range ms {
		m.Close()
	}
}

// TestRTSPStopRestart serves one_face, reads from it, stops the server
// (reads fail), restarts it on the same port and reads again.
func TestRTSPStopRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("streams in real time")
	}
	clip := MustEnsure(t, "one_face", 640, 360)
	s := startRTSP(t, clip.Path, RTSPOptions{})
	url := s.URL()

	start := time.Now()
	vc := openRTSP(t, url)
	closeAll(readFrames(t, vc, 50, 640, 360))
	t.Logf("50 frames from %s in %v", url, time.Since(start).Round(time.Millisecond))

	s.Stop()
	if s.Running() {
		t.Fatal("still running after Stop")
	}
	start = time.Now()
	m := gocv.NewMat()
	failed := false
	for i := 0; i < 100 && time.Since(start) < 15*time.Second; i++ { // frames already buffered may still come
		if !vc.Read(&m) || m.Empty() {
			failed = true
			break
		}
	}
	m.Close()
	vc.Close()
	if !failed {
		t.Fatal("reads kept working after Stop")
	}
	t.Logf("read failed %v after Stop", time.Since(start).Round(time.Millisecond))

	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.URL() != url {
		t.Fatalf("URL changed across Restart: %s, was %s", s.URL(), url)
	}
	start = time.Now()
	vc = openRTSP(t, url)
	defer vc.Close()
	closeAll(readFrames(t, vc, 50, 640, 360))
	t.Logf("50 frames after Restart in %v", time.Since(start).Round(time.Millisecond))
}

// TestRTSPLoop serves a 2 s clip and reads 3.5 s of it: every frame must
// be the clip's frame i mod 50, decoded from the file the same way.
func TestRTSPLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("streams in real time")
	}
	file := filepath.Join(t.TempDir(), "two_seconds.mp4")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "2",
		"-c:v", "libx264", "-profile:v", "baseline", "-bf", "0", "-g", "25",
		"-pix_fmt", "yuv420p", "-preset", "veryfast", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	vf, err := gocv.VideoCaptureFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ref := readFrames(t, vf, 50, 320, 240)
	vf.Close()
	defer closeAll(ref)

	s := startRTSP(t, file, RTSPOptions{Path: "/loop"})
	defer func() {
		if t.Failed() {
			t.Logf("server stderr:\n%s", s.Stderr())
		}
	}()
	vc := openRTSP(t, s.URL())
	defer vc.Close()
	got := readFrames(t, vc, 88, 320, 240)
	defer closeAll(got)
	diff := gocv.NewMat()
	defer diff.Close()
	for i, g := range got {
		gocv.AbsDiff(g, ref[i%50], &diff)
		if mean := diff.Mean(); mean.Val1+mean.Val2+mean.Val3 > 0.5 {
			t.Fatalf("streamed frame %d differs from the clip's frame %d by %v", i, i%50, mean)
		}
	}
}
