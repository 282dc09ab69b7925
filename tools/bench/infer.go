package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/affectd/affectd/infer"
	"github.com/affectd/affectd/tools/testenv"
)

// benchInfer compares, in one run, the bare ONNX Runtime session at its
// best batch size with the engine fed by concurrent producers, and reports
// per-request latency at 100% and 50% of the engine's capacity. With
// several -model flags the models are measured side by side: every sweep
// and every round visits each model in turn, so that a drift of the
// machine's speed reaches them all alike.
func benchInfer(args []string) error {
	fs := flag.NewFlagSet("infer", flag.ExitOnError)
	var paths []string
	fs.Func("model", "ONNX model; repeat to compare models in one run (default: a seeded random ViT-tiny, made if missing)",
		func(s string) error { paths = append(paths, s); return nil })
	lib := fs.String("ort", "", "libonnxruntime.so (default: the one make setup fetched)")
	threads := fs.Int("threads", 0, "ONNX Runtime intra-op threads (0: one per CPU)")
	seconds := fs.Float64("seconds", 3, "seconds per measurement")
	rounds := fs.Int("rounds", 5, "alternating bare/engine rounds at the best batch size")
	batches := fs.String("batches", "1,2,4,8,16,32", "bare batch sizes to try")
	sweeps := fs.Int("sweeps", 1, "interleaved sweeps over the batch sizes (each size's median is used)")
	maxWait := fs.Duration("max-wait", 5*time.Millisecond, "engine max wait")
	spin := fs.Bool("spin", false, "let ONNX Runtime threads spin between runs")
	fs.Parse(args)

	if *lib == "" {
		p, err := testenv.ORTLibrary()
		if err != nil {
			return err
		}
		*lib = p
	}
	if len(paths) == 0 {
		paths = []string{""}
		if err := defaultModel(&paths[0]); err != nil {
			return err
		}
	}
	so := infer.SessionOptions{LibraryPath: *lib, IntraOpThreads: *threads, Spin: *spin}
	type subject struct {
		path  string
		m     *infer.Model
		crop  []float32
		rates map[int][]float64
		best  int
		eo    infer.Options

		bareFaces, bareSecs, engFaces, engSecs float64
		sat                                    latencies
		satBatch                               []float64
	}
	var subs []*subject
	for _, p := range paths {
		m, err := infer.Load(p, so, nil)
		if err != nil {
			return err
		}
		defer m.Close()
		md := m.Metadata()
		fmt.Printf("model: %s (%s, D=%d, K=%d, %s) %s\n", md.Model.Name, md.Model.Backbone, md.FeatureDim, md.NumLogits, md.Model.Precision, p)
		subs = append(subs, &subject{path: p, m: m, crop: makeCrop(md.Input.Size), rates: map[int][]float64{}})
	}
	intra, _ := so.Threads()
	fmt.Printf("machine: %d CPUs, %s, ORT %s, provider %v, intra-op threads %d, spin %v\n",
		runtime.NumCPU(), runtime.GOARCH, infer.RuntimeVersion(), subs[0].m.Provider(), intra, *spin)
	dur := time.Duration(*seconds * float64(time.Second))
	name := func(s *subject) string {
		if len(subs) == 1 {
			return ""
		}
		return filepath.Base(s.path) + " "
	}

	// 1. Bare session: every batch size, pick the best. Sweeps interleave
	// the sizes (and the models); each size's figure is its median.
	var sizes []int
	for _, s := range splitInts(*batches) {
		if s > 0 {
			sizes = append(sizes, s)
		}
	}
	for k := 0; k < *sweeps; k++ {
		for _, n := range sizes {
			for _, sub := range subs {
				rate, msPer, _, err := bareRate(sub.m, n, sub.crop, dur)
				if err != nil {
					return err
				}
				fmt.Printf("%sbare   batch=%-3d faces/s=%8.1f  ms/run=%8.2f  (sweep %d)\n", name(sub), n, rate, msPer, k+1)
				sub.rates[n] = append(sub.rates[n], rate)
			}
		}
	}
	for _, sub := range subs {
		bestRate := 0.0
		for _, n := range sizes {
			rate := median(sub.rates[n])
			if *sweeps > 1 {
				fmt.Printf("%sbare   batch=%-3d faces/s=%8.1f  (median of %d sweeps)\n", name(sub), n, rate, *sweeps)
			}
			if rate > bestRate {
				sub.best, bestRate = n, rate
			}
		}
		sub.eo = infer.Options{MaxBatch: sub.best, MaxWait: *maxWait, QueueLimit: 4 * sub.best}
	}

	// 2. Alternate bare(best) and engine at saturation, so both see the
	// same machine state; totals over all rounds give the ratio.
	for r := 0; r < *rounds; r++ {
		for _, sub := range subs {
			br, _, secs, err := bareRate(sub.m, sub.best, sub.crop, dur)
			if err != nil {
				return err
			}
			sub.bareFaces += br * secs
			sub.bareSecs += secs
			res, err := engineClosedLoop(sub.m, sub.eo, sub.crop, 3*sub.best, dur)
			if err != nil {
				return err
			}
			sub.engFaces += res.faces
			sub.engSecs += res.secs
			fmt.Printf("%sround %d: bare=%.1f faces/s engine=%.1f faces/s (ratio %.3f, mean batch %.1f)\n", name(sub), r+1, br, res.rate, res.rate/br, res.meanBatch)
			sub.sat = append(sub.sat, res.lat...)
			sub.satBatch = append(sub.satBatch, res.meanBatch)
		}
	}
	var last []string
	for _, sub := range subs {
		bare, eng := sub.bareFaces/sub.bareSecs, sub.engFaces/sub.engSecs
		fmt.Printf("%sengine 100%%: faces/s=%.1f p50_ms=%.1f p99_ms=%.1f mean_batch=%.1f (%d producers, closed loop)\n",
			name(sub), eng, sub.sat.pct(50), sub.sat.pct(99), median(sub.satBatch), 3*sub.best)
		// 3. Open-loop arrivals at 50% of the engine's capacity.
		half, err := engineOpenLoop(sub.m, sub.eo, sub.crop, eng*0.5, dur*2)
		if err != nil {
			return err
		}
		fmt.Printf("%sengine  50%%: offered=%.1f faces/s done=%.1f faces/s p50_ms=%.1f p99_ms=%.1f mean_batch=%.1f\n",
			name(sub), eng*0.5, half.rate, half.lat.pct(50), half.lat.pct(99), half.meanBatch)
		line := fmt.Sprintf("infer: efficiency=%.3f engine=%.1f bare=%.1f batch=%d p99_ms=%.1f", eng/bare, eng, bare, sub.best, half.lat.pct(99))
		if len(subs) > 1 {
			line += " model=" + sub.path
		}
		last = append(last, line)
	}
	for _, l := range last {
		fmt.Println(l)
	}
	return nil
}

func makeCrop(size int) []float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	c := make([]float32, 3*size*size)
	for i := range c {
		c[i] = float32(rng.NormFloat64())
	}
	return c
}

func bareRate(m *infer.Model, n int, crop []float32, dur time.Duration) (rate, msPerRun, secs float64, err error) {
	bb := m.NewBareBatch(n)
	defer bb.Close()
	in := bb.Input()
	for i := 0; i < n; i++ {
		copy(in[i*len(crop):], crop)
	}
	for i := 0; i < 2; i++ { // warm-up: allocations, kernel selection
		if err := bb.Run(); err != nil {
			return 0, 0, 0, err
		}
	}
	runs := 0
	start := time.Now()
	for time.Since(start) < dur || runs < 3 {
		if err := bb.Run(); err != nil {
			return 0, 0, 0, err
		}
		runs++
	}
	el := time.Since(start)
	return float64(runs*n) / el.Seconds(), el.Seconds() * 1000 / float64(runs), el.Seconds(), nil
}

type engineResult struct {
	rate      float64
	faces     float64 // faces completed in the measured window
	secs      float64 // the window, from one batch's end to a later one's
	lat       latencies
	meanBatch float64
}

// runEngine starts an engine and returns it with a stop function that
// drains it.
func runEngine(m *infer.Model, o infer.Options) (*infer.Engine, func(), error) {
	e, err := infer.New(m, o)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	return e, func() {
		cancel()
		<-done
		e.Close()
	}, nil
}

// engineClosedLoop: p producers, each submitting its next face as soon as
// the previous result arrives (saturation).
func engineClosedLoop(m *infer.Model, o infer.Options, crop []float32, p int, dur time.Duration) (engineResult, error) {
	o.Overload = infer.OverloadWait
	e, stop, err := runEngine(m, o)
	if err != nil {
		return engineResult{}, err
	}
	ctx := context.Background()
	var (
		mu       sync.Mutex
		all      latencies
		ends     []time.Time // completion times in the measured window
		measured atomic.Bool
		wg       sync.WaitGroup
		firstErr error
	)
	deadline := make(chan struct{})
	for i := 0; i < p; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local latencies
			var localEnds []time.Time
			defer func() {
				mu.Lock()
				all = append(all, local...)
				ends = append(ends, localEnds...)
				mu.Unlock()
			}()
			for {
				select {
				case <-deadline:
					return
				default:
				}
				t0 := time.Now()
				r, err := e.Reserve(ctx)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				copy(r.Input(), crop)
				r.Submit()
				_, err = r.Wait(ctx)
				r.Release()
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				if measured.Load() {
					now := time.Now()
					local = append(local, now.Sub(t0))
					localEnds = append(localEnds, now)
				}
			}
		}()
	}
	time.Sleep(dur / 4) // warm-up: the queue fills, batches settle
	measured.Store(true)
	time.Sleep(dur)
	measured.Store(false)
	close(deadline)
	wg.Wait()
	stop()
	if firstErr != nil {
		return engineResult{}, firstErr
	}
	faces, secs := batchWindow(ends)
	return engineResult{rate: faces / secs, faces: faces, secs: secs, lat: all, meanBatch: meanBatch(e)}, nil
}

// batchWindow turns completion times into a rate without edge effects:
// completions come in bursts, one per batch; it counts the faces of every
// burst after the first, over the time from the first burst to the last.
func batchWindow(ends []time.Time) (faces, secs float64) {
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	if len(ends) < 2 {
		return 0, 1
	}
	const gap = 2 * time.Millisecond
	var starts []int // index of each burst's first completion
	for i := range ends {
		if i == 0 || ends[i].Sub(ends[i-1]) > gap {
			starts = append(starts, i)
		}
	}
	if len(starts) < 2 {
		return float64(len(ends)), ends[len(ends)-1].Sub(ends[0]).Seconds() + 1e-9
	}
	first, last := starts[0], starts[len(starts)-1]
	// Faces in bursts 2..G, over the time from burst 1 to burst G.
	return float64(len(ends) - (starts[1] - first)), ends[last].Sub(ends[first]).Seconds()
}

// engineOpenLoop: faces arrive at a fixed mean rate (Poisson), whatever the
// engine does; latency runs from the arrival time to the result.
func engineOpenLoop(m *infer.Model, o infer.Options, crop []float32, rate float64, dur time.Duration) (engineResult, error) {
	o.Overload = infer.OverloadReject
	e, stop, err := runEngine(m, o)
	if err != nil {
		return engineResult{}, err
	}
	ctx := context.Background()
	arrivals := make(chan time.Time, 4096)
	var (
		mu       sync.Mutex
		all      latencies
		done     atomic.Int64
		rejected atomic.Int64
		wg       sync.WaitGroup
	)
	workers := 4 * o.MaxBatch
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local latencies
			for t0 := range arrivals {
				r, err := e.Reserve(ctx)
				if err != nil {
					rejected.Add(1)
					continue
				}
				copy(r.Input(), crop)
				r.Submit()
				_, err = r.Wait(ctx)
				r.Release()
				if err == nil {
					local = append(local, time.Since(t0))
					done.Add(1)
				}
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	rng := rand.New(rand.NewPCG(3, 4))
	start := time.Now()
	next := start
	for time.Since(start) < dur {
		next = next.Add(time.Duration(rng.ExpFloat64() / rate * float64(time.Second)))
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		arrivals <- next
	}
	close(arrivals)
	wg.Wait()
	el := time.Since(start)
	stop()
	if n := rejected.Load(); n > 0 {
		fmt.Printf("engine  50%%: %d faces rejected (queue full)\n", n)
	}
	return engineResult{rate: float64(done.Load()) / el.Seconds(), lat: all, meanBatch: meanBatch(e)}, nil
}

func meanBatch(e *infer.Engine) float64 {
	st := e.Stats()
	if st.Batches == 0 {
		return 0
	}
	return float64(st.Faces) / float64(st.Batches)
}

func splitInts(s string) []int {
	var out []int
	var cur, have = 0, false
	for _, c := range s + "," {
		if c >= '0' && c <= '9' {
			cur = cur*10 + int(c-'0')
			have = true
		} else if have {
			out = append(out, cur)
			cur, have = 0, false
		}
	}
	return out
}
