package daemon

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// startProgress draws analyze's live progress line until the returned
// func is called.
func (a *analyzer) startProgress() func() {
	if a.o.Progress == nil {
		return func() {}
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		start := time.Now()
		var lastDone int64
		lastT := start
		rate := 0.0
		for {
			select {
			case <-stop:
				a.drawProgress(rate, start, true)
				return
			case now := <-t.C:
				done := a.done.Load()
				if dt := now.Sub(lastT).Seconds(); dt >= 1 {
					inst := float64(done-lastDone) / dt
					if rate == 0 {
						rate = inst
					} else {
						rate = 0.7*rate + 0.3*inst
					}
					lastDone, lastT = done, now
				}
				a.drawProgress(rate, start, false)
			}
		}
	}()
	return func() { close(stop); <-finished }
}

func (a *analyzer) drawProgress(rate float64, start time.Time, final bool) {
	done, total := a.done.Load(), a.total.Load()
	frac := 0.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	const width = 24
	bar := strings.Repeat("█", int(frac*width)) + strings.Repeat("·", width-int(frac*width))
	eta := "--:--"
	if rate > 0 && total > done {
		eta = clock(time.Duration(float64(total-done) / rate * float64(time.Second)))
	}
	if final {
		eta = clock(time.Since(start))
	}
	line := fmt.Sprintf("\r%d/%d %-24.24s %s %3.0f%% %d/%d frames %6.1f fps ETA %s ",
		min(a.filesDon.Load()+1, a.filesAll), a.filesAll, a.current.Load().(string), bar, frac*100, done, total, rate, eta)
	if final {
		line = fmt.Sprintf("\r%d/%d files %s %3.0f%% %d frames in %s%s\n", a.filesDon.Load(), a.filesAll, bar, frac*100, done, eta, strings.Repeat(" ", 20))
	}
	io.WriteString(a.o.Progress, line)
}

func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
