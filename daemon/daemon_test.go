package daemon

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/tools/testenv"
)

// TestInProcess runs the daemon inside the test binary, so that the race
// detector sees the whole pipeline: two streams, a websocket client,
// /v1/streams and /metrics, then a clean stop with no goroutine left.
func TestInProcess(t *testing.T) {
	testenv.NoLeaks(t)
	p := paths(t)
	cfg, err := config.Parse([]byte(configYAML(t, p, "", streamSpec{"one", clipPath(t, "one_face"), true}, streamSpec{"two", clipPath(t, "two_faces"), true})), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for d.Addr() == "" || !d.ready.Load() {
		if time.Now().After(deadline) {
			t.Fatal("not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, msgs := dialWS(t, d.Addr(), "?streams=two")
	frames := 0
	for frames < 40 {
		select {
		case m := <-msgs:
			if m.Type == "frame" {
				if m.Stream != "two" {
					t.Fatalf("frame of stream %s on a client of two only", m.Stream)
				}
				frames++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d frames in 10 s", frames)
		}
	}
	if list := listStreams(t, d.Addr()); len(list) != 2 || list[1].State != "up" || list[1].Faces != 2 || strings.Contains(list[0].URL, "?") {
		t.Errorf("/v1/streams: %+v", list)
	}
	if problems, err := testutil.GatherAndLint(d.Registry()); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", err, problems)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of cancellation")
	}
}
