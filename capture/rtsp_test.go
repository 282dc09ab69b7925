package capture_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/rtsp"
	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

// TestRTSPReconnect runs a real RTSP server (GStreamer's, tools/rtspserve.py)
// on 127.0.0.1: frames arrive; the server is killed mid-stream and
// restarted; the stream reports reconnecting, then frames resume soon after
// the restart; no goroutine is left behind.
//
// The bound: one backoff (MaxBackoff 1 s, +25 % jitter) plus, should that
// attempt reach the server while it is still coming up, one failed open
// bounded by the socket timeout (3 × 2 s), then the next backoff and a
// good open: under 10 s. Typically about 1.2 s.
func TestRTSPReconnect(t *testing.T) {
	clip := testmedia.MustEnsure(t, "one_face", 640, 360)
	srv, err := testmedia.StartRTSP(t, clip.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := rtsp.Configure(rtsp.Transport{Protocol: "tcp", Timeout: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	src, err := rtsp.New(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	goroutines := testenv.SnapshotGoroutines()
	states := make(chan capture.Status, 64)
	start := time.Now()
	var histMu sync.Mutex
	var history []string // every transition, printed when the test fails
	defer func() {
		if t.Failed() {
			histMu.Lock()
			defer histMu.Unlock()
			for _, h := range history {
				t.Log(h)
			}
			t.Logf("server stderr:\n%s", srv.Stderr())
		}
	}()
	pool := capture.NewPool(8)
	s, err := capture.NewStream(capture.StreamOptions{
		ID: "cam", Source: src, Pool: pool,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
		OnStatus: func(st capture.Status) {
			histMu.Lock()
			history = append(history, fmt.Sprintf("%8.3fs %v err=%v retry=%v",
				time.Since(start).Seconds(), st.State, st.Err, st.Retry))
			histMu.Unlock()
			select {
			case states <- st:
			default: // the test reads only the states it waits for
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	// The consumer records every frame and releases it at once.
	type info struct {
		seq uint64
		at  time.Time
	}
	got := make(chan info, 1024)
	go func() {
		for f := range s.Frames() {
			got <- info{f.Seq, time.Now()}
			if f.Mat.Cols() != 640 || f.Mat.Rows() != 360 {
				t.Errorf("frame %dx%d", f.Mat.Cols(), f.Mat.Rows())
			}
			f.Release()
		}
		close(got)
	}()
	waitState := func(want capture.State, within time.Duration) capture.Status {
		t.Helper()
		timer := time.After(within)
		for {
			select {
			case st := <-states:
				if st.State == want {
					return st
				}
			case <-timer:
				t.Fatalf("no %v state within %v", want, within)
			}
		}
	}
	waitFrames := func(n int, within time.Duration) info {
		t.Helper()
		timer := time.After(within)
		var last info
		for i := 0; i < n; i++ {
			select {
			case last = <-got:
			case <-timer:
				t.Fatalf("%d of %d frames within %v", i, n, within)
			}
		}
		return last
	}

	waitState(capture.StateUp, 10*time.Second)
	waitFrames(25, 5*time.Second)

	srv.Stop()
	st := waitState(capture.StateReconnecting, 10*time.Second)
	t.Logf("reconnecting: %v (retry in %v)", st.Err, st.Retry)
	for len(got) > 0 { // frames read before the server died
		<-got
	}
	time.Sleep(time.Second) // the server stays down a while: several attempts fail
	restarted := time.Now()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	histMu.Lock()
	history = append(history, fmt.Sprintf("%8.3fs server restarted", time.Since(start).Seconds()))
	histMu.Unlock()
	first := waitFrames(1, 10*time.Second)
	t.Logf("frames resumed %v after the restart (seq %d)", first.at.Sub(restarted), first.seq)
	waitFrames(25, 5*time.Second)

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for range got {
	}
	if pool.Live() != 0 {
		t.Errorf("%d frames not released", pool.Live())
	}
	pool.Close()
	srv.Stop() // the test's own server: its output copiers are the test's goroutines
	goroutines.Check(t)
}
