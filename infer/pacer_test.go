package infer

import (
	"testing"
	"time"
)

// The pacer measures the engine's capacity and turns demand above it into
// one interval that every face waits between analyses.
func TestPacerInterval(t *testing.T) {
	f := &fakeRunner{md: fakeMeta(), delay: 10 * time.Millisecond}
	e, _ := startEngine(t, f, Options{MaxBatch: 1, MaxWait: time.Microsecond})
	p := NewPacer(e, PacerOptions{Headroom: 0.5})
	if p.Interval() != 0 || p.Capacity() != 0 {
		t.Fatal("a pacer without measurements paces")
	}
	for i := 0; i < 20; i++ {
		r := submitValue(t, e, 1)
		checkResult(t, r, 1)
		r.Release()
	}
	p.update()
	c := p.Capacity()
	if c < 60 || c > 110 { // 10 ms per face of model time: ≈100 faces/s
		t.Fatalf("capacity %.1f faces/s, want ≈100", c)
	}
	p.Report("a", 1, 25)
	p.Report("b", 0, 25)
	p.update()
	if p.Interval() != 0 {
		t.Errorf("demand 25 faces/s under a budget of %.0f: interval %v, want 0", 0.5*c, p.Interval())
	}
	p.Report("b", 3, 25) // 100 faces/s of demand, 4 faces
	p.update()
	want := time.Duration(4 / (0.5 * p.Capacity()) * float64(time.Second))
	if d := p.Interval() - want; d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("interval %v, want %v (4 faces sharing %.0f faces/s)", p.Interval(), want, 0.5*p.Capacity())
	}
	now := time.Now()
	if !p.Due(time.Time{}, now, 40*time.Millisecond) || p.Due(now.Add(-10*time.Millisecond), now, 40*time.Millisecond) {
		t.Error("Due: a new face is due at once, one just analysed is not")
	}
	p.Forget("b")
	p.update()
	if p.Interval() != 0 {
		t.Errorf("after Forget: interval %v", p.Interval())
	}
	capped := NewPacer(e, PacerOptions{MaxRate: 5})
	if capped.Interval() != 200*time.Millisecond {
		t.Errorf("max rate 5/s: interval %v", capped.Interval())
	}
}
