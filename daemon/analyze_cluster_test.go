package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/daemon/cluster"
	"github.com/affectd/affectd/stream/record"
	"github.com/affectd/affectd/tools/testmedia"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// clusterWorker is one `affectd analyze -cluster` process.
type clusterWorker struct {
	name   string
	cmd    *exec.Cmd
	stdout lockedBuffer
	stderr lockedBuffer
	exited chan struct{}
	code   int
}

// TestAnalyzeCluster: `analyze -cluster` over 3 workers (the same
// command) processes 12 files once each and survives killing one worker
// (SIGKILL) in the middle of a file: another worker takes that file over
// after AckWait and finishes it. Every output is the single-node output;
// hostile messages on the job's subject are refused.
func TestAnalyzeCluster(t *testing.T) {
	start := time.Now()
	p := paths(t)
	cfg := analyzeConfigFile(t, p)
	url := natsServer(t)
	clip := testmedia.MustEnsure(t, "one_face", 640, 360)
	dir := t.TempDir()
	short := filepath.Join(dir, "short.mp4") // 50 frames: cheap, yet seconds per file
	if b, err := exec.Command("ffmpeg", "-v", "error", "-i", clip.Path, "-frames:v", "50", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", short).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	var inputs []string
	for i := 1; i <= 12; i++ {
		in := filepath.Join(dir, "in", fmt.Sprintf("f%02d.mp4", i))
		os.MkdirAll(filepath.Dir(in), 0o755)
		if err := os.Symlink(short, in); err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, in)
	}
	ref := filepath.Join(dir, "ref")
	if r := runAnalyze(t, "-config", cfg, "-out", ref, short); r.code != 0 {
		t.Fatalf("single-node analyze: status %d: %s", r.code, r.stderr)
	}
	want, err := os.ReadFile(filepath.Join(ref, "short.csv"))
	if err != nil {
		t.Fatal(err)
	}
	_, wantRows := readCSV(t, filepath.Join(ref, "short.csv"))

	// A bad job name is refused before anything is queued.
	if r := runAnalyze(t, "-cluster", url, "-job", "../x", "-config", cfg, "-out", filepath.Join(dir, "bad"), inputs[0]); r.code != 2 {
		t.Errorf("-job ../x: status %d, want 2: %s", r.code, r.stderr)
	}

	// Watch every change of the job bucket (made here as the workers make it).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n, err := cluster.Open(ctx, config.Cluster{NATS: url, Node: "test", LeaseTTL: config.Duration(3 * time.Second), Capacity: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	jobs, err := n.Jobs(ctx, cluster.JobOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, cluster.JobBucket)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()

	t.Logf("%.1fs: set up (the binary built, the single-node reference analysed); 3 workers start", time.Since(start).Seconds())
	out := filepath.Join(dir, "out")
	flags := []string{"analyze", "-cluster", url, "-config", cfg, "-out", out}
	workers := make([]*clusterWorker, 3)
	for i := range workers {
		w := &clusterWorker{name: fmt.Sprintf("w%d", i+1), exited: make(chan struct{})}
		args := append(append(slices.Clone(flags), "-node", w.name), inputs...)
		w.cmd = exec.Command(binary(t), args...)
		w.cmd.Stdout, w.cmd.Stderr = &w.stdout, &w.stderr
		if err := w.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			err := w.cmd.Wait()
			if ee, ok := err.(*exec.ExitError); ok {
				w.code = ee.ExitCode()
			}
			close(w.exited)
		}()
		workers[i] = w
		defer func() {
			w.cmd.Process.Kill()
			<-w.exited
		}()
	}
	byName := map[string]*clusterWorker{}
	for _, w := range workers {
		byName[w.name] = w
	}

	// Follow the bucket: kill the first worker seen mid-file (running, with
	// frames reported), feed the job hostile messages once it exists, and
	// count each file's transitions to done.
	var (
		job, victimFile string
		victim          *clusterWorker
		doneBy          = map[string][]string{} // key → the nodes that marked it done
		last            = map[string]cluster.FileState{}
	)
	survivorsDone := func() bool {
		for _, w := range workers {
			select {
			case <-w.exited:
			default:
				if w != victim {
					return false
				}
			}
		}
		if victim == nil {
			t.Fatal("every worker exited before one could be killed mid-file")
		}
		return true
	}
	see := func(e jetstream.KeyValueEntry) {
		if e == nil {
			return
		}
		k := e.Key()
		j, rest, _ := strings.Cut(k, ".")
		if job == "" {
			job = j
			for _, m := range []string{`{"job":"` + job + `","file":"relative.mp4","name":"x"}`, `{"job":"` + job + `","file":"/etc/x.mp4","name":"../../x"}`, `{"job":"other","file":"/x.mp4","name":"x"}`} {
				if _, err := js.Publish(ctx, cluster.JobSubject(job), []byte(m)); err != nil {
					t.Fatal(err)
				}
			}
		} else if j != job {
			t.Fatalf("a second job %s (and %s): the workers did not join one job", j, job)
		}
		if rest == "meta" {
			return
		}
		var s cluster.FileState
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if s.State == cluster.StateDone {
			doneBy[k] = append(doneBy[k], s.Node)
		}
		last[k] = s
		// Mid-file: frames reported, most still to do. A machine so fast
		// that no report comes before a file ends gets its kill right
		// after a claim, once half the files are done.
		if victim == nil && s.State == cluster.StateRunning && (s.Frames > 0 && s.Frames < s.Total*3/4 || s.Frames == 0 && len(doneBy) >= 6) {
			victim, victimFile = byName[s.Node], s.File
			victim.cmd.Process.Signal(syscall.SIGKILL)
			<-victim.exited
			t.Logf("%.1fs: killed %s in the middle of %s (%d of %d frames)", time.Since(start).Seconds(), s.Node, filepath.Base(s.File), s.Frames, s.Total)
		}
	}
	deadline := time.After(150 * time.Second)
	for !survivorsDone() {
		select {
		case e := <-watch.Updates():
			see(e)
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			for _, w := range workers {
				t.Logf("%s stderr:\n%s", w.name, w.stderr.String())
			}
			t.Fatalf("the job did not finish in time (victim %v)", victim != nil)
		}
	}
	for quiet := false; !quiet; { // the watch's last changes
		select {
		case e := <-watch.Updates():
			see(e)
		case <-time.After(time.Second):
			quiet = true
		}
	}
	var cpu time.Duration
	for _, w := range workers {
		cpu += w.cmd.ProcessState.UserTime() + w.cmd.ProcessState.SystemTime()
	}
	t.Logf("%.1fs: the survivors exited; the 3 workers used %.1fs of CPU", time.Since(start).Seconds(), cpu.Seconds())
	for _, w := range workers {
		if w == victim {
			continue
		}
		if w.code != 0 || strings.Contains(w.stderr.String(), raceReport) {
			t.Errorf("%s: exit status %d, want 0; stderr:\n%s", w.name, w.code, w.stderr.String())
		}
		if !strings.Contains(w.stdout.String(), "12 files: 12 done, 0 failed, 0 running, 0 queued (finished)") {
			t.Errorf("%s: stdout %q", w.name, w.stdout.String())
		}
	}
	// The hostile messages: refused (logged; a worker killed may have
	// taken one to its grave, redelivered to another), never a file.
	refused := 0
	for _, w := range workers {
		refused += strings.Count(w.stderr.String(), "refused a job message")
	}
	if refused < 2 {
		t.Errorf("the workers refused %d hostile messages, want 3", refused)
	}
	if _, err := os.Stat(filepath.Join(out, "x.csv")); err == nil {
		t.Error("a hostile message was analysed")
	}

	// Each file done once; the victim's by another worker, after AckWait.
	if len(last) != 12 {
		t.Errorf("%d files in the job, want 12", len(last))
	}
	for k, s := range last {
		if s.State != cluster.StateDone || len(doneBy[k]) != 1 {
			t.Errorf("%s: state %s, marked done by %v (want once)", filepath.Base(s.File), s.State, doneBy[k])
		}
		if s.File == victimFile && (s.Node == victim.name || s.Attempt < 2) {
			t.Errorf("the killed worker's file %s: done by %s at attempt %d, want another worker's second attempt", filepath.Base(s.File), s.Node, s.Attempt)
		}
	}
	if victimFile == "" {
		t.Error("no worker was killed mid-file")
	}

	// Every output is the single-node one, and nothing is left half done.
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".mp4")
		got, err := os.ReadFile(filepath.Join(out, name+".csv"))
		if err != nil {
			t.Error(err)
			continue
		}
		if !bytes.Equal(got, want) {
			_, rows := readCSV(t, filepath.Join(out, name+".csv"))
			t.Errorf("%s.csv: %d bytes, %d rows; the single-node output has %d bytes, %d rows", name, len(got), len(rows), len(want), len(wantRows))
		}
	}
	if left, _ := filepath.Glob(filepath.Join(out, "*.partial*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}

	// The job's progress, from any node.
	st, err := jobs.Status(ctx, job)
	if err != nil || !st.Finished() {
		t.Fatalf("status: %+v %v", st, err)
	}
	r := runAnalyze(t, "-cluster", url, "-job", job, "-status")
	if r.code != 0 || !strings.Contains(r.stdout, "12 files: 12 done, 0 failed, 0 running, 0 queued (finished)") {
		t.Errorf("-status: %d %q %s", r.code, r.stdout, r.stderr)
	}
	t.Logf("%.1fs in all; %s", time.Since(start).Seconds(), strings.TrimSpace(r.stdout))
}

// TestWorkerPartials: analyze -cluster's workers share the output folder
// but each grows its own partial file. Worker a is interrupted after a
// checkpoint. Worker b resumes from a copy of a's checkpoint, but its
// commit is refused (the file went to another worker meanwhile): no
// output is put in place and a's files are as a left them. Worker c
// resumes from the furthest checkpoint (b's), commits, and writes exactly
// an uninterrupted run's bytes; no partial file is left.
func TestWorkerPartials(t *testing.T) {
	p := paths(t)
	cfg, err := config.Load(analyzeConfigFile(t, p))
	if err != nil {
		t.Fatal(err)
	}
	clip := testmedia.MustEnsure(t, "two_faces", 640, 360)
	dir := t.TempDir()
	input := filepath.Join(dir, "long.mp4") // 300 frames: checkpoints at 128 and 256
	if b, err := exec.Command("ffmpeg", "-v", "error", "-stream_loop", "1", "-i", clip.Path, "-c", "copy", input).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	whole, shared := filepath.Join(dir, "whole"), filepath.Join(dir, "shared")
	for _, d := range []string{whole, shared} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	s, err := openSession(cfg, AnalyzeOptions{Format: "csv", OutDir: whole}, "w")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	ctx := context.Background()
	var total atomic.Int64
	if rep := s.run(ctx, input, "long", &total, nil); rep.Status != "done" {
		t.Fatalf("uninterrupted run: %+v", rep)
	}
	want, err := os.ReadFile(filepath.Join(whole, "long.csv"))
	if err != nil {
		t.Fatal(err)
	}

	s.a.o.OutDir = shared
	out := filepath.Join(shared, "long.csv")
	pa, pb := workerPartial(out, "a"), workerPartial(out, "b")
	state := func(partial string) record.State {
		var st record.State
		if b, err := os.ReadFile(partial + ".state"); err == nil {
			json.Unmarshal(b, &st)
		}
		return st
	}
	actx, interrupt := context.WithCancel(ctx)
	go func() {
		defer interrupt()
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline) && actx.Err() == nil; time.Sleep(10 * time.Millisecond) {
			if state(pa).Frames > 0 {
				return
			}
		}
	}()
	s.a.node = "a"
	rep := s.run(actx, input, "long", &total, nil)
	interrupt()
	sa := state(pa)
	if rep.Status != "" || sa.Frames == 0 || sa.Frames >= 300 {
		t.Fatalf("a: %+v, checkpoint %+v: want interrupted after a checkpoint", rep, sa)
	}
	aBytes, _ := os.ReadFile(pa)
	t.Logf("a interrupted with %d frames checkpointed", sa.Frames)

	s.a.node = "b"
	rep = s.run(ctx, input, "long", &total, func() error { return cluster.ErrLost })
	if !errors.Is(rep.Err, cluster.ErrLost) || rep.Replayed != int64(sa.Frames) {
		t.Fatalf("b: %+v (err %v), want resumed from a's %d frames and its commit refused", rep, rep.Err, sa.Frames)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("b put its output in place after its commit was refused")
	}
	if b, _ := os.ReadFile(pa); state(pa) != sa || !bytes.Equal(b, aBytes) {
		t.Fatal("b changed a's partial file or its state")
	}
	sb := state(pb)
	if sb.Frames <= sa.Frames {
		t.Fatalf("b's checkpoint %+v, want past a's %d frames", sb, sa.Frames)
	}

	commits := 0
	s.a.node = "c"
	rep = s.run(ctx, input, "long", &total, func() error { commits++; return nil })
	if rep.Status != "done" || rep.Replayed != int64(sb.Frames) || commits != 1 {
		t.Fatalf("c: %+v (err %v, %d commits), want done, resumed from b's %d frames", rep, rep.Err, commits, sb.Frames)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("c's output: %d bytes (%v), the uninterrupted run's %d", len(got), err, len(want))
	}
	if left, _ := filepath.Glob(filepath.Join(shared, "*.partial*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
