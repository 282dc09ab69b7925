package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"syscall"
	"time"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/daemon"
	"github.com/affectd/affectd/infer"
)

// benchAnalyze measures `affectd analyze` against its two halves, each
// alone, in one run: the first half (decode, detect, track, landmarks,
// align) in frames/s, the engine in faces/s (full batches, analyze's
// settings) over the faces per frame the first half found. Overlapped, the
// whole should go as fast as the slower half: ratio = fps / bound_fps.
// Each whole run sits between two engine-alone runs (A-B-A) so that the
// machine's drift cancels; the last line is the median of -rounds rounds.
func benchAnalyze(args []string) error {
	fs := flag.NewFlagSet("analyze", flag.ExitOnError)
	modelPath := fs.String("model", "", "ONNX model (default: a seeded random ViT-tiny, made if missing)")
	clipName := fs.String("clip", "two_faces", "test clip")
	size := fs.String("size", "640x360", "clip size")
	loops := fs.Int("loops", 6, "the input is the clip this many times over (one file: research videos are long)")
	copies := fs.Int("files", 1, "the input is analysed this many times (as separate files)")
	batch := fs.Int("batch", 0, "analyze -batch (0: its default, the config's batch.max_batch)")
	threads := fs.Int("threads", 0, "analyze -threads (model's ONNX Runtime threads; 0: one per CPU)")
	noLandmarks := fs.Bool("no-landmarks", false, "analyze -landmarks=false")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the last whole run to this file")
	nRounds := fs.Int("rounds", 3, "whole runs, each between two engine-alone runs; the summary is the median round")
	fs.Parse(args)

	clip, err := ensureClip(*clipName, *size)
	if err != nil {
		return err
	}
	cfg, err := benchConfig(*modelPath)
	if err != nil {
		return err
	}
	cfg.ORT.Threads = *threads
	cfg.Smoothing.Enabled = false // analyze's default: raw per-frame values
	*batch = daemon.AnalyzeBatch(cfg, *batch)
	if *noLandmarks {
		cfg.Landmarks.Model = ""
	}
	out, err := os.MkdirTemp("", "affectd-analyze-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(out)
	input, err := loopClip(clip.Path, *loops, out)
	if err != nil {
		return err
	}
	inputs := make([]string, *copies)
	for i := range inputs {
		inputs[i] = input
	}
	ctx := context.Background()
	o := daemon.AnalyzeOptions{Inputs: inputs, OutDir: out, Batch: *batch, Force: true}

	o.TrackOnly = true
	cpu := cpuMeter()
	first, err := daemon.Analyze(ctx, cfg, o)
	if err != nil {
		return fmt.Errorf("first half: %w", err)
	}
	if first.Failed() > 0 || first.Frames == 0 {
		return fmt.Errorf("first half: %d files failed, %d frames", first.Failed(), first.Frames)
	}
	trackFPS := first.FPS()
	perFrame := float64(first.Rows) / float64(first.Frames)
	fmt.Printf("first half (decode+detect+track+landmarks+align): %d frames in %.2fs: %.1f frames/s, %.2f faces/frame, %.2f CPUs busy\n",
		first.Frames, first.Work.Seconds(), trackFPS, perFrame, cpu(first.Elapsed))

	// The engine alone is measured just before and just after each whole
	// run and averaged (A-B-A), so that a drift of this shared machine's
	// speed over a round cancels out instead of landing in the ratio; the
	// summary is the round with the median ratio.
	faces := max(int(first.Rows)/2, 4**batch)
	engineRate := func() (float64, error) {
		cpu := cpuMeter()
		rate, err := engineRate(ctx, cfg, *batch, faces)
		if err != nil {
			return 0, fmt.Errorf("engine: %w", err)
		}
		fmt.Printf("second half (engine, batch %d): %.1f faces/s = %.1f frames/s at %.2f faces/frame, %.2f CPUs busy\n", *batch, rate, rate/perFrame, perFrame, cpu(0))
		return rate, nil
	}
	type round struct{ fps, bound, ratio float64 }
	var rounds []round
	before, err := engineRate()
	if err != nil {
		return err
	}
	o.TrackOnly = false
	for r := 0; r < *nRounds; r++ {
		var prof *os.File
		if *profile != "" && r == *nRounds-1 {
			if prof, err = os.Create(*profile); err != nil {
				return err
			}
			pprof.StartCPUProfile(prof)
		}
		cpu := cpuMeter()
		whole, err := daemon.Analyze(ctx, cfg, o)
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
		}
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		if whole.Failed() > 0 {
			return fmt.Errorf("analyze: %d files failed", whole.Failed())
		}
		fmt.Printf("analyze: %d frames, %d rows in %.2fs, %.2f CPUs busy (%d CPUs)\n", whole.Frames, whole.Rows, whole.Work.Seconds(), cpu(whole.Elapsed), runtime.NumCPU())
		if whole.Batches > 0 {
			fmt.Printf("analyze: the model ran %d batches (%.1f faces each), busy %.0f%% of the time, %.1f ms per face\n",
				whole.Batches, float64(whole.Rows)/float64(whole.Batches), 100*whole.ModelTime.Seconds()/whole.Work.Seconds(),
				1000*whole.ModelTime.Seconds()/float64(whole.Rows))
		}
		after, err := engineRate()
		if err != nil {
			return err
		}
		bound := min(trackFPS, (before+after)/2/perFrame)
		rd := round{whole.FPS(), bound, whole.FPS() / bound}
		rounds = append(rounds, rd)
		fmt.Printf("round %d: fps=%.1f bound_fps=%.1f ratio=%.3f\n", r+1, rd.fps, rd.bound, rd.ratio)
		before = after
	}
	sort.Slice(rounds, func(i, j int) bool { return rounds[i].ratio < rounds[j].ratio })
	med := rounds[(len(rounds)-1)/2]
	fmt.Printf("analyze: fps=%.1f bound_fps=%.1f ratio=%.3f\n", med.fps, med.bound, med.ratio)
	return nil
}

// cpuMeter starts measuring the process's CPU time; the func returns the
// CPUs kept busy on average over the wall time since (or over wall when
// it is not 0).
func cpuMeter() func(wall time.Duration) float64 {
	used := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start, t0 := used(), time.Now()
	return func(wall time.Duration) float64 {
		if wall <= 0 {
			wall = time.Since(t0)
		}
		return (used() - start).Seconds() / wall.Seconds()
	}
}

// engineRate measures analyze's second half alone: its engine (batch
// size, threads, policy: daemon.LoadModels with the offline options) fed
// full batches of crops by one goroutine, in faces per second.
func engineRate(ctx context.Context, cfg *config.Config, batch, faces int) (float64, error) {
	c := *cfg
	c.Landmarks.Model = ""
	if c.ORT.Threads <= 0 { // as analyze: one CPU left to the first half
		c.ORT.Threads = max(1, runtime.NumCPU()-1)
	}
	m, err := daemon.LoadModels(&c, daemon.ModelOptions{Offline: true, Batch: batch})
	if err != nil {
		return 0, err
	}
	defer m.Close()
	eng := m.Core.Engine
	if eng == nil {
		return 0, errors.New("no model (model.path)")
	}
	engCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(engCtx) }()
	defer func() { cancel(); <-done }()
	run := func(n int) (time.Duration, error) {
		start := time.Now()
		reqs := make(chan *infer.Request, 4*batch)
		errc := make(chan error, 1)
		go func() {
			var first error
			for r := range reqs {
				if _, err := r.Wait(ctx); err != nil && first == nil {
					first = err
				}
				r.Release()
			}
			errc <- first
		}()
		v := float32(0)
		for i := 0; i < n; i++ {
			r, err := eng.Reserve(ctx)
			if err != nil {
				close(reqs)
				<-errc
				return 0, err
			}
			in := r.Input()
			for k := range in { // a crop's worth of varied values
				v += 0.618034
				if v > 1 {
					v -= 2
				}
				in[k] = v
			}
			r.Submit()
			reqs <- r
		}
		eng.Flush()
		close(reqs)
		err := <-errc
		return time.Since(start), err
	}
	if _, err := run(batch); err != nil { // warm-up
		return 0, err
	}
	el, err := run(faces)
	if err != nil {
		return 0, err
	}
	return float64(faces) / el.Seconds(), nil
}
