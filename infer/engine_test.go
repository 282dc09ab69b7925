package infer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeRunner computes a simple function of each row so every caller can
// check it got its own row back: logits[j] = in[0]*10 + j, features[d] = in[1] + d.
type fakeRunner struct {
	md    Metadata
	delay time.Duration
	gate  chan struct{} // when set, each run waits for one token
	fail  atomic.Bool
	panic atomic.Bool

	mu    sync.Mutex
	sizes []int
	runs  atomic.Int32
	busy  atomic.Int32
	peak  atomic.Int32
}

func (f *fakeRunner) run(b *batch, n int) error {
	if c := f.busy.Add(1); c > f.peak.Load() {
		f.peak.Store(c)
	}
	defer f.busy.Add(-1)
	f.runs.Add(1)
	f.mu.Lock()
	f.sizes = append(f.sizes, n)
	f.mu.Unlock()
	if f.gate != nil {
		<-f.gate
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if f.fail.Load() {
		return errors.New("fake failure")
	}
	if f.panic.Load() {
		panic("a runtime that misbehaves")
	}
	in := 3 * f.md.Input.Size * f.md.Input.Size
	for i := 0; i < n; i++ {
		row := b.in[i*in : (i+1)*in]
		for j := 0; j < f.md.NumLogits; j++ {
			b.logits[i*f.md.NumLogits+j] = row[0]*10 + float32(j)
		}
		for d := 0; d < f.md.FeatureDim; d++ {
			b.feats[i*f.md.FeatureDim+d] = row[1] + float32(d)
		}
	}
	return nil
}

func (f *fakeRunner) release(*batch) {}

func (f *fakeRunner) batchSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.sizes...)
}

func fakeMeta() Metadata {
	th := float32(0.5)
	return Metadata{
		Input: InputSpec{Size: 4, Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.25, 0.25, 0.25}},
		Heads: []Head{
			{Name: "au", Offset: 0, Labels: []string{"AU1", "AU2"}, Activation: ActivationSigmoid, Threshold: &th},
			{Name: "va", Offset: 2, Labels: []string{"valence", "arousal"}, Activation: ActivationTanh},
			{Name: "expr", Offset: 4, Labels: []string{"a", "b", "c"}, Activation: ActivationSoftmax},
		},
		FeatureDim: 3,
		NumLogits:  7,
	}
}

// startEngine runs an engine over a fake runner until the test ends.
func startEngine(t *testing.T, f *fakeRunner, o Options) (*Engine, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	e, err := newEngine(f, f.md, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
		e.Close()
	})
	return e, reg
}

func submitValue(t *testing.T, e *Engine, v float32) *Request {
	t.Helper()
	r, err := e.Reserve(context.Background())
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	in := r.Input()
	in[0], in[1] = v, v*2
	r.Submit()
	return r
}

func checkResult(t *testing.T, r *Request, v float32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := r.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	want0 := v * 10
	if got := res.Logits[0]; got != want0 {
		t.Fatalf("logit 0 = %v, want %v (a neighbour's row?)", got, want0)
	}
	au, _ := res.Head("au")
	if s := float32(1 / (1 + math.Exp(-float64(want0)))); math.Abs(float64(au.Values[0]-s)) > 1e-6 {
		t.Fatalf("au[0] = %v, want sigmoid(%v) = %v", au.Values[0], want0, s)
	}
	if au.Active[0] != (au.Values[0] >= 0.5) {
		t.Fatalf("au active flag %v for value %v", au.Active[0], au.Values[0])
	}
	va, _ := res.Head("va")
	if s := float32(math.Tanh(float64(want0 + 2))); math.Abs(float64(va.Values[0]-s)) > 1e-6 || va.Active != nil {
		t.Fatalf("va[0] = %v, want %v", va.Values[0], s)
	}
	ex, _ := res.Head("expr")
	var sum float32
	for _, p := range ex.Values {
		sum += p
	}
	if math.Abs(float64(sum-1)) > 1e-5 || ex.Top != 2 {
		t.Fatalf("expr %v (sum %v) top %d, want a distribution with top 2", ex.Values, sum, ex.Top)
	}
	if res.Features != nil && res.Features[1] != v*2+1 {
		t.Fatalf("features %v, want [%v %v …]", res.Features, v*2, v*2+1)
	}
}

func TestEngineFlushOnDeadline(t *testing.T) {
	f := &fakeRunner{md: fakeMeta()}
	e, _ := startEngine(t, f, Options{MaxBatch: 8, MaxWait: 30 * time.Millisecond, KeepFeatures: true})
	start := time.Now()
	rs := []*Request{submitValue(t, e, 1), submitValue(t, e, 2), submitValue(t, e, 3)}
	for i, r := range rs {
		checkResult(t, r, float32(i+1))
		r.Release()
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Errorf("a partial batch ran after %v, before MaxWait", el)
	}
	if got := f.batchSizes(); len(got) != 1 || got[0] != 3 {
		t.Errorf("batch sizes %v, want [3]", got)
	}
}

func TestEngineFlushWhenFull(t *testing.T) {
	f := &fakeRunner{md: fakeMeta()}
	e, reg := startEngine(t, f, Options{MaxBatch: 4, MaxWait: time.Hour})
	var rs []*Request
	for i := 0; i < 8; i++ {
		rs = append(rs, submitValue(t, e, float32(i)))
	}
	for i, r := range rs {
		checkResult(t, r, float32(i))
		r.Release()
	}
	if got := f.batchSizes(); len(got) != 2 || got[0] != 4 || got[1] != 4 {
		t.Errorf("batch sizes %v, want [4 4]", got)
	}
	if n := testutil.ToFloat64(e.m.faces); n != 8 {
		t.Errorf("faces_total %v, want 8", n)
	}
	if problems, err := testutil.CollectAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", err, problems)
	}
}

// TestEngineExplicitFlush: Flush runs a partial batch at once (MaxWait is
// an hour), including one whose rows are submitted after the flush, and
// batches are cut exactly at the flushes.
func TestEngineExplicitFlush(t *testing.T) {
	f := &fakeRunner{md: fakeMeta()}
	e, _ := startEngine(t, f, Options{MaxBatch: 4, MaxWait: time.Hour})
	var rs []*Request
	for i := 0; i < 6; i++ { // a full batch of 4, then 2
		rs = append(rs, submitValue(t, e, float32(i)))
	}
	e.Flush()
	late, err := e.Reserve(context.Background()) // reserved before, submitted after a flush
	if err != nil {
		t.Fatal(err)
	}
	e.Flush()
	late.Input()[0], late.Input()[1] = 6, 12
	late.Submit()
	rs = append(rs, late)
	e.Flush() // nothing taking reservations: no effect
	for i, r := range rs {
		checkResult(t, r, float32(i))
		r.Release()
	}
	if got := f.batchSizes(); fmt.Sprint(got) != "[4 2 1]" {
		t.Errorf("batch sizes %v, want [4 2 1]", got)
	}
}

// TestEngineFlushedBatchesWait: flushed partial batches can take every
// batch buffer while the queue still has room; with OverloadWait, Reserve
// then waits for a buffer instead of failing.
func TestEngineFlushedBatchesWait(t *testing.T) {
	f := &fakeRunner{md: fakeMeta(), gate: make(chan struct{})}
	e, _ := startEngine(t, f, Options{MaxBatch: 4, QueueLimit: 8, MaxWait: time.Hour, Overload: OverloadWait})
	rs := make(chan *Request, 8)
	go func() {
		defer close(rs)
		for i := 0; i < 8; i++ { // single-face batches: more batches than buffers
			r, err := e.Reserve(context.Background())
			if err != nil {
				t.Errorf("Reserve %d: %v", i, err)
				return
			}
			r.Input()[0], r.Input()[1] = float32(i), float32(2*i)
			r.Submit()
			e.Flush()
			rs <- r
		}
	}()
	time.Sleep(100 * time.Millisecond) // the runner is gated: the submitter must be waiting
	if n := len(rs); n >= 8 {
		t.Fatalf("%d requests admitted with the runner stopped: more than the buffers hold", n)
	}
	go func() {
		for i := 0; i < 8; i++ {
			f.gate <- struct{}{}
		}
	}()
	i := 0
	for r := range rs {
		checkResult(t, r, float32(i))
		r.Release()
		i++
	}
	if got := f.batchSizes(); i != 8 || len(got) != 8 {
		t.Errorf("%d results, batch sizes %v: want eight batches of 1", i, got)
	}
}

func TestEngineOverloadReject(t *testing.T) {
	f := &fakeRunner{md: fakeMeta(), gate: make(chan struct{})}
	e, _ := startEngine(t, f, Options{MaxBatch: 2, MaxWait: time.Millisecond, QueueLimit: 4})
	// The first batch runs (and blocks in the gate); 4 more fill the queue.
	var rs []*Request
	rs = append(rs, submitValue(t, e, 0), submitValue(t, e, 1))
	waitFor(t, func() bool { return f.runs.Load() == 1 })
	for i := 2; i < 6; i++ {
		rs = append(rs, submitValue(t, e, float32(i)))
	}
	if _, err := e.Reserve(context.Background()); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("Reserve on a full queue: %v, want ErrOverloaded", err)
	}
	if n := testutil.ToFloat64(e.m.rejected); n != 1 {
		t.Errorf("rejected_total %v, want 1", n)
	}
	close(f.gate)
	for i, r := range rs {
		checkResult(t, r, float32(i))
		r.Release()
	}
}

func TestEngineOverloadWait(t *testing.T) {
	f := &fakeRunner{md: fakeMeta(), gate: make(chan struct{})}
	e, _ := startEngine(t, f, Options{MaxBatch: 1, QueueLimit: 1, Overload: OverloadWait})
	r0 := submitValue(t, e, 0)
	waitFor(t, func() bool { return f.runs.Load() == 1 })
	r1 := submitValue(t, e, 1) // fills the queue
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := e.Reserve(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Reserve on a full queue with wait policy: %v, want deadline exceeded", err)
	}
	got := make(chan *Request, 1)
	go func() {
		r, err := e.Reserve(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	select {
	case <-got:
		t.Fatal("Reserve returned while the queue was full")
	case <-time.After(20 * time.Millisecond):
	}
	f.gate <- struct{}{} // r0's batch completes, r1's runs: room for one
	r2 := <-got
	r2.Input()[0] = 2
	r2.Submit()
	close(f.gate)
	for i, r := range []*Request{r0, r1, r2} {
		checkResult(t, r, float32(i))
		r.Release()
	}
}

// A batch keeps filling while the runner is busy, instead of queueing
// small deadline-expired batches behind it.
func TestEngineCoalescesWhileBusy(t *testing.T) {
	f := &fakeRunner{md: fakeMeta(), gate: make(chan struct{})}
	e, _ := startEngine(t, f, Options{MaxBatch: 8, MaxWait: time.Millisecond})
	r0 := submitValue(t, e, 0)
	waitFor(t, func() bool { return f.runs.Load() == 1 })
	var rs []*Request
	for i := 1; i <= 5; i++ {
		rs = append(rs, submitValue(t, e, float32(i)))
		time.Sleep(3 * time.Millisecond) // each one past the previous one's deadline
	}
	close(f.gate)
	checkResult(t, r0, 0)
	r0.Release()
	for i, r := range rs {
		checkResult(t, r, float32(i+1))
		r.Release()
	}
	if got := f.batchSizes(); len(got) != 2 || got[1] != 5 {
		t.Errorf("batch sizes %v, want [1 5]", got)
	}
}

func TestEngineCloseDrains(t *testing.T) {
	f := &fakeRunner{md: fakeMeta(), delay: 5 * time.Millisecond}
	reg := prometheus.NewRegistry()
	e, err := newEngine(f, f.md, Options{MaxBatch: 4, MaxWait: time.Hour, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- e.Run(context.Background()) }()
	var rs []*Request
	for i := 0; i < 6; i++ { // one full batch and a partial one that only Close flushes
		rs = append(rs, submitValue(t, e, float32(i)))
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		checkResult(t, r, float32(i))
		r.Release()
	}
	if err := <-runDone; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := e.Reserve(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reserve after Close: %v, want ErrClosed", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestEngineCloseWithoutRun(t *testing.T) {
	f := &fakeRunner{md: fakeMeta()}
	e, err := newEngine(f, f.md, Options{MaxBatch: 4})
	if err != nil {
		t.Fatal(err)
	}
	r := submitValue(t, e, 1)
	e.Close() // drains itself
	checkResult(t, r, 1)
	r.Release()
	if err := e.Run(context.Background()); err != nil {
		t.Errorf("Run after Close: %v, want nil (nothing left to do)", err)
	}
}

func TestEngineFailureReachesEveryCaller(t *testing.T) {
	f := &fakeRunner{md: fakeMeta()}
	f.fail.Store(true)
	e, _ := startEngine(t, f, Options{MaxBatch: 2, MaxWait: time.Millisecond})
	rs := []*Request{submitValue(t, e, 1), submitValue(t, e, 2)}
	for _, r := range rs {
		if _, err := r.Wait(context.Background()); err == nil {
			t.Fatal("Wait: nil error after a failed run")
		}
		r.Release()
	}
	if n := testutil.ToFloat64(e.m.failures); n != 1 {
		t.Errorf("failures_total %v, want 1", n)
	}
}

// Released-unsubmitted rows leave a hole; the rest of the batch still runs.
func TestEngineReleaseUnsubmitted(t *testing.T) {
	f := &fakeRunner{md: fakeMeta()}
	e, _ := startEngine(t, f, Options{MaxBatch: 3, MaxWait: time.Hour})
	a := submitValue(t, e, 1)
	hole, err := e.Reserve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := submitValue(t, e, 3)
	hole.Release()
	checkResult(t, a, 1)
	checkResult(t, c, 3)
	a.Release()
	c.Release()
}

// Many goroutines, random sizes: every caller gets its own row (run with -race).
func TestEngineConcurrentCallers(t *testing.T) {
	f := &fakeRunner{md: fakeMeta(), delay: 200 * time.Microsecond}
	e, _ := startEngine(t, f, Options{MaxBatch: 8, MaxWait: 500 * time.Microsecond, QueueLimit: 64, Overload: OverloadWait, Runners: 2, KeepFeatures: true})
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				v := float32(g*1000 + i)
				r, err := e.Reserve(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				r.Input()[0], r.Input()[1] = v, v*2
				r.Submit()
				res, err := r.Wait(context.Background())
				if err != nil || res.Logits[0] != v*10 || res.Features[1] != v*2+1 {
					t.Errorf("caller %d/%d: got %v %v", g, i, res, err)
				}
				r.Release()
			}
		}(g)
	}
	wg.Wait()
	if p := f.peak.Load(); p > 2 {
		t.Errorf("%d runs at once, want at most Runners=2", p)
	}
}

// Steady state allocates nothing per face.
func TestEngineNoAllocPerFace(t *testing.T) {
	f := &fakeRunner{md: fakeMeta()}
	e, _ := startEngine(t, f, Options{MaxBatch: 1, MaxWait: time.Microsecond, KeepFeatures: true})
	ctx := context.Background()
	cycle := func() {
		r, err := e.Reserve(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r.Input()[0] = 1
		r.Submit()
		if _, err := r.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		r.Release()
	}
	for i := 0; i < 10; i++ {
		cycle()
	}
	// AllocsPerRun counts the whole process: the engine's goroutines too.
	if a := testing.AllocsPerRun(200, cycle); a > 0.5 {
		t.Errorf("%.2f allocations per face, want 0", a)
	}
}

func TestOptionsValidate(t *testing.T) {
	f := &fakeRunner{md: fakeMeta()}
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"queue below batch", Options{MaxBatch: 8, QueueLimit: 4}},
		{"huge batch", Options{MaxBatch: 5000}},
		{"bad policy", Options{Overload: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newEngine(f, f.md, tc.o); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestEnumStrings(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{OverloadReject.String(), "reject"},
		{OverloadWait.String(), "wait"},
		{OverloadPolicy(9).String(), "OverloadPolicy(9)"},
		{ProviderCPU.String(), "cpu"},
		{ProviderCUDA.String(), "cuda"},
		{ProviderTensorRT.String(), "tensorrt"},
		{Provider(5).String(), "Provider(5)"},
		{ActivationSoftmax.String(), "softmax"},
		{Activation(8).String(), "Activation(8)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, s := range []string{"cpu", "CUDA", "tensorrt"} {
		if _, err := ParseProvider(s); err != nil {
			t.Errorf("ParseProvider(%q): %v", s, err)
		}
	}
	if _, err := ParseProvider("rocm"); err == nil {
		t.Error("ParseProvider(rocm): no error")
	}
	if p, err := ParseOverloadPolicy("wait"); err != nil || p != OverloadWait {
		t.Errorf("ParseOverloadPolicy(wait) = %v, %v", p, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// TestEngineStalled: the watchdog reports an engine whose run hangs with
// work waiting, and not an idle or a working one.
func TestEngineStalled(t *testing.T) {
	f := &fakeRunner{md: fakeMeta(), gate: make(chan struct{})}
	e, _ := startEngine(t, f, Options{MaxBatch: 1, MaxWait: time.Millisecond})
	if e.Stalled(10 * time.Millisecond) {
		t.Fatal("an idle engine is stalled")
	}
	r, err := e.Reserve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.Submit()
	time.Sleep(50 * time.Millisecond) // the run waits at the gate: hung
	if !e.Stalled(20 * time.Millisecond) {
		t.Error("a hung run is not stalled")
	}
	if e.Stalled(time.Minute) {
		t.Error("stalled within the minute allowed")
	}
	f.gate <- struct{}{}
	if _, err := r.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.Release()
	if e.Stalled(20 * time.Millisecond) {
		t.Error("stalled after the run ended and nothing waits")
	}
	close(f.gate)
}

// TestEngineRunPanic: a run that panics fails its batch's requests with
// an error and the engine serves the next batch. Before, the panic in the
// engine's goroutine killed the daemon and every stream.
func TestEngineRunPanic(t *testing.T) {
	f := &fakeRunner{md: fakeMeta()}
	e, _ := startEngine(t, f, Options{MaxBatch: 1, MaxWait: time.Millisecond})
	f.panic.Store(true)
	r := submitValue(t, e, 1)
	if _, err := r.Wait(context.Background()); !errors.Is(err, errPanic) {
		t.Errorf("a panicking run: %v, want errPanic", err)
	}
	r.Release()
	f.panic.Store(false)
	r = submitValue(t, e, 2)
	if res, err := r.Wait(context.Background()); err != nil || res == nil {
		t.Errorf("the next run: %v", err)
	}
	r.Release()
}
