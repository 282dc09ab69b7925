package daemon

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestReloadStorm reloads the race-built daemon's config 50 times
// (SIGHUP), switching between two stream lists (one stream kept, one
// removed and added, one changed), while clients keep reading
// /v1/streams, a stream's preview and the websocket. The daemon must
// stay up with no race report (startBinary's cleanup checks), every
// reload must apply, the kept stream must keep flowing, and once the
// clients have gone the daemon must be back to the goroutines it had
// before the storm.
func TestReloadStorm(t *testing.T) {
	p := paths(t)
	one, two := clipPath(t, "one_face"), clipPath(t, "two_faces")
	cfgA := configYAML(t, p, "", streamSpec{"keep", one, true}, streamSpec{"gone", two, true}, streamSpec{"moved", one, true})
	cfgB := configYAML(t, p, "", streamSpec{"keep", one, true}, streamSpec{"moved", two, true}, streamSpec{"new", two, true})
	proc := startBinary(t, cfgA)
	settle := func() float64 {
		http.DefaultClient.CloseIdleConnections()
		time.Sleep(2 * time.Second) // streams reach steady state, connections close
		return metric(t, proc.addr, "go_goroutines")
	}
	before := settle()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var reads atomic.Int64
	poll := func(path string) {
		defer wg.Done()
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+proc.addr+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			reads.Add(1)
		}
	}
	wg.Add(3)
	go poll("/v1/streams")
	go poll("/v1/streams/keep/preview")
	go poll("/v1/streams/moved/preview")
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+proc.addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	var keepFrames atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				return
			}
			if strings.Contains(string(b[:min(len(b), 64)]), `"type":"frame","v":1,"stream":"keep"`) {
				keepFrames.Add(1)
			}
		}
	}()

	const reloads = 50
	for i := 1; i <= reloads; i++ {
		cfg := cfgB
		if i%2 == 0 {
			cfg = cfgA
		}
		if err := os.WriteFile(proc.cfg, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		proc.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(proc.logs(), "msg=reloaded") < i {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d did not apply within 30 s", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // some frames between reloads
	}
	framesDuring := keepFrames.Load()
	time.Sleep(time.Second)
	if keepFrames.Load() <= framesDuring {
		t.Error("the kept stream stopped flowing after the reloads")
	}
	cancel()
	conn.Close()
	wg.Wait()
	t.Logf("%d reloads; %d HTTP reads and %d frames of the kept stream meanwhile", reloads, reads.Load(), framesDuring)
	if reads.Load() < reloads || framesDuring == 0 {
		t.Errorf("the clients read too little during the storm: %d reads, %d frames", reads.Load(), framesDuring)
	}

	// The same config as before the storm, no clients: the same
	// goroutines (a little slack for the runtime's own).
	var after float64
	for end := time.Now().Add(20 * time.Second); ; {
		if after = settle(); after <= before+2 || time.Now().After(end) {
			break
		}
	}
	t.Logf("goroutines: %v before the storm, %v after", before, after)
	if after > before+2 {
		t.Errorf("goroutines: %v before the storm, %v after: a leak", before, after)
	}
	if strings.Contains(proc.logs(), "level=ERROR") {
		t.Errorf("errors logged during the storm:\n%s", proc.logs())
	}
	if list := listStreams(t, proc.addr); len(list) != 3 {
		t.Errorf("/v1/streams after the storm: %+v", list)
	}
}
