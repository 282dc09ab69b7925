//go:build matprofile

package capture_test

import (
	"context"
	"testing"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/file"
	"github.com/affectd/affectd/tools/testmedia"
)

// TestNoMatLeak reads a clip through a stream, with a consumer that keeps a
// few frames for a while and drops others, and checks with gocv's Mat
// profile (build tag matprofile) that every Mat is closed in the end.
func TestNoMatLeak(t *testing.T) {
	clip := testmedia.MustEnsure(t, "one_face", 640, 360)
	before := gocv.MatProfile.Count()
	pool := capture.NewPool(3)
	s, err := capture.NewStream(capture.StreamOptions{ID: "m", Source: file.New(file.Options{Path: clip.Path}), Pool: pool, Queue: 2})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	var held []*capture.Frame
	n := 0
	for f := range s.Frames() {
		n++
		held = append(held, f)
		if len(held) == 5 { // hold several frames, so the pool must grow past its limit
			for _, h := range held {
				h.Release()
			}
			held = held[:0]
		}
	}
	for _, h := range held {
		h.Release()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if during := gocv.MatProfile.Count(); during <= before {
		t.Fatalf("the profile saw no Mats (%d → %d): is the matprofile tag on?", before, during)
	}
	pool.Close()
	if after := gocv.MatProfile.Count(); after != before {
		t.Errorf("%d Mats open after %d frames, %d before", after, n, before)
	}
}
