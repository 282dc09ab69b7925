package testenv

import (
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Goroutines is a snapshot of the running goroutines, the one goroutine
// leak check of every test (go.uber.org/goleak).
type Goroutines struct{ before goleak.Option }

// SnapshotGoroutines records the goroutines running now.
func SnapshotGoroutines() Goroutines { return Goroutines{goleak.IgnoreCurrent()} }

// Check fails the test if goroutines started since the snapshot are
// still running after up to about 5 s (they get that long to finish).
// Idle keep-alive connections of http.DefaultClient are closed first:
// they are the client's, not a leak of the code under test.
func (g Goroutines) Check(t testing.TB) {
	t.Helper()
	http.DefaultClient.CloseIdleConnections()
	if err := findLeaks(g.before); err != nil {
		t.Errorf("goroutines left running: %v", err)
	}
}

// NoLeaks checks, when the test ends (after the cleanups registered
// later), that every goroutine it started has stopped. Call it first.
func NoLeaks(t testing.TB) {
	t.Helper()
	g := SnapshotGoroutines()
	t.Cleanup(func() { g.Check(t) })
}

// findLeaks is goleak.Find, tried again for about 5 s: stopping peers and
// connections take a moment to let their goroutines go.
func findLeaks(before goleak.Option) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := goleak.Find(before) // itself retries for ~2 s
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}
