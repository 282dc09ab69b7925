package daemon

import (
	"testing"
	"time"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/tools/testmedia"
)

// TestInt8Model: an int8 export (tools/export --int8, through its accuracy
// gate) runs through the same engine path as fp32: the hello says int8 and
// every estimate reaches the websocket with all its heads, in range.
func TestInt8Model(t *testing.T) {
	p := paths(t)
	m := testenv.RequireModel(t, testenv.ModelSpec{Preset: "tiny", Seed: 1, Heads: "abaw", GlobalPool: true, Int8: true})
	p.model = m.ONNX
	one := testmedia.MustEnsure(t, "one_face", 640, 360)
	proc := startBinary(t, configYAML(t, p, "", streamSpec{"one", one.Path, false}))
	_, msgs := dialWS(t, proc.addr, "")
	hello := <-msgs
	if hello.Type != "hello" || hello.Model.Precision != "int8" {
		t.Fatalf("first message %+v: want a hello for an int8 model", hello)
	}
	estimates := 0
	distinct := map[float64]bool{}
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case msg, ok := <-msgs:
			if !ok {
				t.Fatal("connection closed")
			}
			if msg.Type == "status" && msg.State == "ended" {
				done = true
			}
			for _, f := range msg.Faces {
				if f.EstimateSeq == 0 {
					continue
				}
				estimates++
				if len(f.AU) != 12 || len(f.VA) != 2 || len(f.Expr) != 8 {
					t.Fatalf("face %s: heads au=%d va=%d expr=%d", f.ID, len(f.AU), len(f.VA), len(f.Expr))
				}
				sum := 0.0
				for _, v := range f.Expr {
					sum += v
				}
				if sum < 0.99 || sum > 1.01 {
					t.Errorf("expr softmax sums to %v", sum)
				}
				for _, v := range f.VA {
					if v < -1 || v > 1 {
						t.Errorf("va %v outside [-1, 1]", v)
					}
				}
				distinct[f.VA["valence"]] = true
			}
		case <-deadline:
			t.Fatal("the clip did not end within 30 s")
		}
	}
	t.Logf("%d estimates, %d distinct valence values", estimates, len(distinct))
	if estimates < 50 {
		t.Errorf("%d estimates over a 150-frame clip", estimates)
	}
	if len(distinct) < 5 {
		t.Errorf("valence took %d values: the int8 model's output does not follow the face", len(distinct))
	}
}
