package capture_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gocv.io/x/gocv"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/file"
	"github.com/affectd/affectd/capture/open"
	"github.com/affectd/affectd/tools/testmedia"
)

func TestQueueNewestWins(t *testing.T) {
	pool := capture.NewPool(4)
	defer pool.Close()
	dropped := 0
	q := capture.NewQueue(2, func() { dropped++ })
	for i := 1; i <= 5; i++ {
		f := pool.Get()
		f.Seq = uint64(i)
		q.Push(f)
	}
	var got []uint64
	for len(got) < 2 {
		f := <-q.C()
		got = append(got, f.Seq)
		f.Release()
	}
	if got[0] != 4 || got[1] != 5 || dropped != 3 {
		t.Fatalf("got %v with %d dropped, want [4 5] with 3", got, dropped)
	}
	if n := pool.Live(); n != 0 {
		t.Fatalf("%d frames not released", n)
	}
}

func TestStateStrings(t *testing.T) {
	for s, want := range map[capture.State]string{
		capture.StateStarting: "starting", capture.StateUp: "up", capture.StateReconnecting: "reconnecting",
		capture.StateEnded: "ended", capture.StateStopped: "stopped", capture.State(9): "State(9)",
	} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", int(s), s.String(), want)
		}
	}
}

// statusLog collects status events (the callback only forwards).
type statusLog struct {
	mu  sync.Mutex
	evs []capture.Status
}

func (l *statusLog) add(s capture.Status) {
	l.mu.Lock()
	l.evs = append(l.evs, s)
	l.mu.Unlock()
}

func (l *statusLog) states() []capture.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []capture.State
	for _, e := range l.evs {
		out = append(out, e.State)
	}
	return out
}

func runStream(t *testing.T, o capture.StreamOptions) (*capture.Stream, context.CancelFunc, chan error) {
	t.Helper()
	s, err := capture.NewStream(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, cancel, done
}

func TestFileFastReadsEveryFrame(t *testing.T) {
	clip := testmedia.MustEnsure(t, "one_face", 640, 360)
	truth, err := clip.Truth()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := capture.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var log statusLog
	pool := capture.NewPool(4)
	s, cancel, done := runStream(t, capture.StreamOptions{
		ID: "f", Source: file.New(file.Options{Path: clip.Path}), Lossless: true,
		Pool: pool, Metrics: m, OnStatus: log.add,
	})
	defer cancel()
	var n int
	var last time.Duration
	for f := range s.Frames() {
		n++
		if f.Seq != uint64(n) || f.Stream != "f" {
			t.Fatalf("frame %d: seq %d stream %q", n, f.Seq, f.Stream)
		}
		if n > 1 && f.PTS <= last {
			t.Fatalf("frame %d: PTS %v after %v", n, f.PTS, last)
		}
		if f.Mat.Cols() != 640 || f.Mat.Rows() != 360 || f.Mat.Type() != gocv.MatTypeCV8UC3 {
			t.Fatalf("frame %d: %dx%d type %v", n, f.Mat.Cols(), f.Mat.Rows(), f.Mat.Type())
		}
		last = f.PTS
		f.Release()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n != truth.FrameCount {
		t.Errorf("read %d frames, the clip has %d", n, truth.FrameCount)
	}
	if want := time.Duration(float64(truth.FrameCount-1) / truth.FPS * float64(time.Second)); last < want-50*time.Millisecond || last > want+50*time.Millisecond {
		t.Errorf("last PTS %v, want ≈%v", last, want)
	}
	st := log.states()
	if len(st) != 3 || st[0] != capture.StateStarting || st[1] != capture.StateUp || st[2] != capture.StateEnded {
		t.Errorf("states %v, want [starting up ended]", st)
	}
	if got := testutil.ToFloat64(m.Captured("f")); int(got) != n {
		t.Errorf("frames_captured_total %v, want %d", got, n)
	}
	if pool.Live() != 0 {
		t.Errorf("%d frames not released", pool.Live())
	}
	pool.Close()
	if problems, err := testutil.CollectAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", err, problems)
	}
}

func TestFilePacedAndLooping(t *testing.T) {
	clip := testmedia.MustEnsure(t, "one_face", 640, 360)
	truth, _ := clip.Truth()
	s, cancel, done := runStream(t, capture.StreamOptions{
		ID: "p", Source: file.New(file.Options{Path: clip.Path, Realtime: true, Loop: true}), Queue: 4,
	})
	// Frames arrive at the file's rate: count them over one second after the first.
	first := <-s.Frames()
	first.Release()
	t0 := time.Now()
	n := 0
	for time.Since(t0) < time.Second {
		f := <-s.Frames()
		n++
		f.Release()
	}
	if n < 18 || n > 32 {
		t.Errorf("%d frames in 1s from a 25 fps file played in real time", n)
	}
	cancel()
	for f := range s.Frames() {
		f.Release()
	}
	<-done

	// Looping as fast as possible: PTS keeps increasing past the end.
	s, cancel, done = runStream(t, capture.StreamOptions{
		ID: "l", Source: file.New(file.Options{Path: clip.Path, Loop: true}), Lossless: true,
	})
	defer cancel()
	var last time.Duration
	for i := 0; i < truth.FrameCount*2+10; i++ {
		f := <-s.Frames()
		if i > 0 && f.PTS <= last {
			t.Fatalf("frame %d: PTS %v after %v across the loop", i, f.PTS, last)
		}
		last = f.PTS
		f.Release()
	}
	if min := 2 * time.Duration(truth.FrameCount) * time.Second / 25; last < min {
		t.Errorf("after two loops the PTS is %v, want > %v", last, min)
	}
	cancel()
	for f := range s.Frames() {
		f.Release()
	}
	<-done
}

func TestFileMissingEnds(t *testing.T) {
	var log statusLog
	s, cancel, done := runStream(t, capture.StreamOptions{
		ID: "m", Source: file.New(file.Options{Path: "/nonexistent.mp4"}), OnStatus: log.add,
	})
	defer cancel()
	for range s.Frames() {
	}
	<-done
	st := log.states()
	if st[len(st)-1] != capture.StateEnded {
		t.Fatalf("states %v: want to end", st)
	}
	log.mu.Lock()
	err := log.evs[len(log.evs)-1].Err
	log.mu.Unlock()
	if !errors.Is(err, capture.ErrEnded) {
		t.Fatalf("err %v", err)
	}
}

// flakySource delivers a few frames, then fails; it counts its runs.
type flakySource struct {
	mu   sync.Mutex
	runs int
	mat  gocv.Mat
}

func (f *flakySource) String() string { return "flaky" }

func (f *flakySource) Run(ctx context.Context, sink capture.Sink) error {
	f.mu.Lock()
	f.runs++
	f.mu.Unlock()
	for i := 0; i < 3; i++ {
		fr := sink.Frame()
		f.mat.CopyTo(&fr.Mat)
		fr.PTS = time.Duration(i) * 40 * time.Millisecond
		sink.Up()
		sink.Deliver(fr)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Millisecond):
		}
	}
	return errors.New("connection reset")
}

func TestStreamReconnectsWithBackoff(t *testing.T) {
	src := &flakySource{mat: gocv.NewMatWithSize(8, 8, gocv.MatTypeCV8UC3)}
	defer src.mat.Close()
	reg := prometheus.NewRegistry()
	m, _ := capture.NewMetrics(reg)
	var log statusLog
	s, cancel, done := runStream(t, capture.StreamOptions{
		ID: "r", Source: src, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
		Metrics: m, OnStatus: log.add,
	})
	// The consumer stays on one channel across reconnects.
	seen := 0
	var lastSeq uint64
	for seen < 12 {
		f := <-s.Frames()
		if f.Seq <= lastSeq {
			t.Fatalf("seq %d after %d", f.Seq, lastSeq)
		}
		lastSeq = f.Seq
		seen++
		f.Release()
	}
	cancel()
	for f := range s.Frames() {
		f.Release()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	var retries []time.Duration
	for _, e := range log.evs {
		if e.State == capture.StateReconnecting {
			retries = append(retries, e.Retry)
			if e.Err == nil || e.Err.Error() != "connection reset" {
				t.Errorf("reconnecting without its cause: %v", e.Err)
			}
		}
	}
	log.mu.Unlock()
	if len(retries) < 3 {
		t.Fatalf("%d reconnects, want ≥ 3", len(retries))
	}
	// 10ms, 20ms, 40ms, 40ms… each ±25%.
	for i, r := range retries {
		base := min(10*time.Millisecond<<i, 40*time.Millisecond)
		if r < base*3/4 || r > base*5/4 {
			t.Errorf("retry %d after %v, want %v ±25%%", i, r, base)
		}
	}
	if got := testutil.ToFloat64(m.Reconnects("r")); int(got) != len(retries) {
		t.Errorf("reconnects_total %v, want %d", got, len(retries))
	}
	if st := log.states(); st[len(st)-1] != capture.StateStopped {
		t.Errorf("last state %v, want stopped", st[len(st)-1])
	}
}

// A slow consumer never blocks the source: frames are dropped and counted.
func TestSlowConsumerDropsOldest(t *testing.T) {
	clip := testmedia.MustEnsure(t, "one_face", 640, 360)
	reg := prometheus.NewRegistry()
	m, _ := capture.NewMetrics(reg)
	s, cancel, done := runStream(t, capture.StreamOptions{
		ID: "s", Source: file.New(file.Options{Path: clip.Path}), Queue: 2, Metrics: m,
	})
	defer cancel()
	n := 0
	var prev uint64
	for f := range s.Frames() {
		if f.Seq <= prev {
			t.Fatalf("seq %d after %d", f.Seq, prev)
		}
		prev = f.Seq
		n++
		time.Sleep(20 * time.Millisecond) // far slower than decoding
		f.Release()
	}
	<-done
	st := s.Stats()
	if st.Dropped == 0 || int(st.Captured) != n+int(st.Dropped) {
		t.Fatalf("consumed %d, stats %+v: want captured = consumed + dropped, dropped > 0", n, st)
	}
	if got := testutil.ToFloat64(m.Dropped("s", "queue_full")); uint64(got) != st.Dropped {
		t.Errorf("dropped_total{reason=queue_full} %v, want %d", got, st.Dropped)
	}
}

func TestOpenURLs(t *testing.T) {
	for _, tc := range []struct {
		url, kind, shown string
		bad              bool
	}{
		{"file:///data/a.mp4", "file", "file:///data/a.mp4", false},
		{"/data/a.mp4", "file", "file:///data/a.mp4", false},
		{"clips/a.mp4", "file", "file://clips/a.mp4", false},
		{"rtsp://user:secret@cam.local:554/stream1", "rtsp", "rtsp://cam.local:554/stream1", false},
		{"rtsps://cam/x", "rtsp", "rtsps://cam/x", false},
		{"v4l2:///dev/video2", "v4l2", "v4l2:///dev/video2", false},
		{"v4l2://1", "v4l2", "v4l2://1", false},
		{"0", "v4l2", "v4l2://0", false},
		{"v4l2://video0", "v4l2", "", true},
		{"http://example.com/x.mp4", "", "", true},
		{"rtsp://", "rtsp", "", true},
	} {
		t.Run(tc.url, func(t *testing.T) {
			if k := open.Kind(tc.url); k != tc.kind {
				t.Errorf("Kind = %q, want %q", k, tc.kind)
			}
			src, err := open.Source(tc.url, open.Options{})
			if tc.bad {
				if err == nil {
					t.Fatalf("no error for %q", tc.url)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if src.String() != tc.shown {
				t.Errorf("String = %q, want %q", src.String(), tc.shown)
			}
		})
	}
}
