package daemon

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/stream"
)

// startStream opens a configured stream and starts its pipeline.
func (d *Daemon) startStream(cfg *config.Config, sc config.Stream) error {
	src, err := d.openSource(sc)
	if err != nil {
		return err
	}
	p, err := d.newPipeline(cfg, sc, src, d.models.Load())
	if err != nil {
		if sc.Kind() == "whip" {
			d.whip.Load().Unregister(sc.ID)
		}
		return err
	}
	d.run(p)
	d.log.Info("stream started", "stream", sc.ID, "url", src.String())
	return nil
}

// run registers a pipeline and starts its Run, owned by the daemon: stop
// cancels it and waits; a dynamic stream that ends on its own goes back to
// Run to be removed.
func (d *Daemon) run(p *pipeline) {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	d.mu.Lock()
	d.streams[p.cfg.ID] = p
	d.mu.Unlock()
	go func() {
		defer close(p.done)
		err := p.Run(ctx)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errPanic):
			n := p.failures.Add(1)
			d.failures.WithLabelValues(p.cfg.ID).Inc()
			msg := err.Error()
			p.lastErr.Store(&msg)
			wait := restartWait(int(n))
			d.log.Error("stream failed: restarting", "stream", p.cfg.ID, "failures", n, "retry", wait, "err", err)
			if p.dynamic {
				// Its publisher's session went with it: removed below,
				// as when the publisher leaves.
				d.hub.PublishStatus(stream.Status{Stream: p.cfg.ID, State: "failed", Error: firstLine(msg), At: time.Now()})
				break
			}
			d.hub.PublishStatus(stream.Status{Stream: p.cfg.ID, State: "failed", Error: firstLine(msg), RetryMs: wait.Milliseconds(), At: time.Now()})
			// Every wait and send gives way to ctx: a stop (which waits
			// for done) never waits on Run's loop.
			select {
			case <-ctx.Done():
			case <-time.After(wait):
				select {
				case d.failed <- p:
				case <-ctx.Done():
				}
			}
			return
		case err != nil:
			d.log.Error("stream failed", "stream", p.cfg.ID, "err", err)
		}
		if p.dynamic && ctx.Err() == nil {
			select {
			case d.finished <- p:
			case <-ctx.Done():
			}
		}
	}()
}

// restartWait is the back-off before the n-th restart of a failed stream:
// 1 s, doubling, at most a minute.
func restartWait(n int) time.Duration {
	return min(time.Second<<min(n-1, 6), time.Minute)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// restart replaces a configured stream stopped by a panic with a new
// pipeline of the same settings, unless a reload or a stop has replaced or
// removed it meanwhile (Run's goroutine). A dynamic stream is not
// restarted: it is removed, as when its publisher leaves.
func (d *Daemon) restart(old *pipeline) {
	d.mu.Lock()
	current := d.streams[old.cfg.ID] == old
	d.mu.Unlock()
	if !current {
		return
	}
	src, err := d.openSource(old.cfg)
	if err == nil {
		var p *pipeline
		if p, err = d.newPipeline(old.snap, old.cfg, src, d.models.Load()); err == nil {
			p.failures.Store(old.failures.Load())
			d.run(p) // replaces old in d.streams
			d.log.Info("stream restarted", "stream", old.cfg.ID, "failures", p.failures.Load())
			return
		}
	}
	d.log.Error("stream not restarted", "stream", old.cfg.ID, "err", err)
}

// stop cancels a pipeline and waits until it has stopped.
func (p *pipeline) stop() {
	p.cancel()
	<-p.done
}

func (d *Daemon) stopStream(id string) {
	d.mu.Lock()
	p := d.streams[id]
	delete(d.streams, id)
	d.mu.Unlock()
	if p == nil {
		return
	}
	p.stop()
	d.forgetStream(id)
}

// forgetStream drops a removed stream's metric series and load.
func (d *Daemon) forgetStream(id string) {
	d.capMetrics.Forget(id)
	d.anMetrics.Forget(id)
	d.sinkMetrics.Forget(id)
	d.failures.DeleteLabelValues(id)
	if w := d.whip.Load(); w != nil {
		w.Forget(id)
	}
	if m := d.models.Load(); m != nil && m.Pacer != nil {
		m.Pacer.Forget(id)
	}
	if m := d.models.Load(); m != nil {
		m.ids.forget(id)
	}
}

func (d *Daemon) stopStreams() {
	var wg sync.WaitGroup
	for _, p := range d.pipelines() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
		}()
	}
	wg.Wait()
}
