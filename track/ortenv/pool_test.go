package ortenv_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/affectd/affectd/track/ortenv"
)

var errClosed = errors.New("test: closed")

// runner counts its Close calls; closeErr is what Close returns.
type runner struct {
	id       int
	closes   atomic.Int32
	closeErr error
}

func (r *runner) Close() error {
	r.closes.Add(1)
	return r.closeErr
}

// newPool makes a pool of n runners, returning them in the order made.
func newPool(t *testing.T, n int) (*ortenv.Pool[*runner], *[]*runner) {
	t.Helper()
	var made []*runner
	p, err := ortenv.NewPool(n, errClosed, func() (*runner, error) {
		r := &runner{id: len(made)}
		made = append(made, r)
		return r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, &made
}

// TestPoolConcurrency: with n runners, n calls run at once and no more,
// each on a runner of its own, and every call runs.
func TestPoolConcurrency(t *testing.T) {
	const n, calls = 3, 24
	p, made := newPool(t, n)
	if len(*made) != n {
		t.Fatalf("made %d runners, want %d", len(*made), n)
	}
	var (
		running, peak atomic.Int32
		ran           atomic.Int32
		inUse         sync.Map // *runner → struct{}: runners in a call now
		reached       = make(chan struct{}, calls)
		release       = make(chan struct{})
		wg            sync.WaitGroup
	)
	for range calls {
		wg.Go(func() {
			err := p.Do(func(r *runner) error {
				if _, busy := inUse.LoadOrStore(r, struct{}{}); busy {
					t.Errorf("runner %d in two calls at once", r.id)
				}
				now := running.Add(1)
				for {
					old := peak.Load()
					if now <= old || peak.CompareAndSwap(old, now) {
						break
					}
				}
				reached <- struct{}{}
				<-release // the barrier: hold the runner until released
				running.Add(-1)
				inUse.Delete(r)
				ran.Add(1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	// n calls get a runner; the rest wait for one.
	for range n {
		<-reached
	}
	select {
	case <-reached:
		t.Errorf("a call ran with all %d runners busy", n)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	if got := peak.Load(); got != n {
		t.Errorf("peak %d calls at once, want %d", got, n)
	}
	if got := ran.Load(); got != calls {
		t.Errorf("%d calls ran, want %d", got, calls)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range *made {
		if got := r.closes.Load(); got != 1 {
			t.Errorf("runner %d closed %d times, want 1", r.id, got)
		}
	}
}

// TestPoolMinOne: n < 1 makes one runner.
func TestPoolMinOne(t *testing.T) {
	for _, n := range []int{0, -2} {
		p, made := newPool(t, n)
		if len(*made) != 1 {
			t.Errorf("n=%d: made %d runners, want 1", n, len(*made))
		}
		p.Close()
	}
}

// TestPoolClose: Close waits for the call in flight, closes each runner
// once and joins their errors; a second Close is nil and closes nothing;
// Do after Close returns the pool's error without running fn.
func TestPoolClose(t *testing.T) {
	p, made := newPool(t, 2)
	e0, e1 := errors.New("close 0"), errors.New("close 1")
	(*made)[0].closeErr, (*made)[1].closeErr = e0, e1

	inCall, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	callDone := make(chan error)
	go func() {
		callDone <- p.Do(func(r *runner) error {
			close(inCall)
			<-release
			if r.closes.Load() != 0 {
				t.Error("runner closed during a call")
			}
			finished.Store(true)
			return nil
		})
	}()
	<-inCall
	closeDone := make(chan error)
	go func() { closeDone <- p.Close() }()
	select {
	case <-closeDone:
		t.Fatal("Close returned with a call in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-callDone; err != nil {
		t.Fatal(err)
	}
	err := <-closeDone
	if !finished.Load() {
		t.Error("Close returned before the call finished")
	}
	if !errors.Is(err, e0) || !errors.Is(err, e1) {
		t.Errorf("Close: %v, want both runners' errors", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, r := range *made {
		if got := r.closes.Load(); got != 1 {
			t.Errorf("runner %d closed %d times, want 1", r.id, got)
		}
	}
	ran := false
	if err := p.Do(func(*runner) error { ran = true; return nil }); err != errClosed {
		t.Errorf("Do after Close: %v, want %v", err, errClosed)
	}
	if ran {
		t.Error("Do ran fn after Close")
	}
}

// TestPoolDoError: Do returns fn's error and gives the runner back.
func TestPoolDoError(t *testing.T) {
	p, _ := newPool(t, 1)
	defer p.Close()
	want := errors.New("fn failed")
	for range 2 { // the second call would block if the runner were lost
		if err := p.Do(func(*runner) error { return want }); err != want {
			t.Fatalf("Do: %v, want %v", err, want)
		}
	}
}

// TestPoolMakeError: when making a runner fails, NewPool closes the part
// made and every runner made before, and returns the error.
func TestPoolMakeError(t *testing.T) {
	want := errors.New("no session")
	var made []*runner
	p, err := ortenv.NewPool(4, errClosed, func() (*runner, error) {
		r := &runner{id: len(made)}
		made = append(made, r)
		if len(made) == 3 {
			return r, want // the part made, with the error
		}
		return r, nil
	})
	if p != nil || err != want {
		t.Fatalf("NewPool: %v, %v; want nil, %v", p, err, want)
	}
	if len(made) != 3 {
		t.Fatalf("made %d runners, want 3 (stop at the error)", len(made))
	}
	for _, r := range made {
		if got := r.closes.Load(); got != 1 {
			t.Errorf("runner %d closed %d times, want 1", r.id, got)
		}
	}
}
