package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/affectd/affectd/config"
)

func TestJobChecks(t *testing.T) {
	for _, s := range []string{"a", "job-1_X", strings.Repeat("j", MaxJobName)} {
		if !ValidJob(s) {
			t.Errorf("ValidJob(%q) = false", s)
		}
	}
	for _, s := range []string{"", "a.b", "a*", "a>", "../x", "a b", "é", strings.Repeat("j", MaxJobName+1)} {
		if ValidJob(s) {
			t.Errorf("ValidJob(%q) = true", s)
		}
	}
	for _, p := range []string{"/v/a.mp4", "/v/ünï code.mp4"} {
		if err := CheckFile(p); err != nil {
			t.Errorf("CheckFile(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", "a.mp4", "./a.mp4", "/v/../etc/x", "/v//a.mp4", "/v/a\n.mp4", "/v/\xff.mp4", "/" + strings.Repeat("a", MaxPath)} {
		if CheckFile(p) == nil {
			t.Errorf("CheckFile(%q) = nil", p)
		}
	}
	for _, n := range []string{"", ".", "..", "a/b", `a\b`, "../x", "a\x00", strings.Repeat("n", MaxName+1)} {
		if CheckName(n) == nil {
			t.Errorf("CheckName(%q) = nil", n)
		}
	}
}

func openJobs(t *testing.T, url, name string, o JobOptions) *Jobs {
	t.Helper()
	n, err := Open(context.Background(), config.Cluster{NATS: url, Node: name, LeaseTTL: config.Duration(3 * time.Second), Capacity: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	j, err := n.Jobs(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestJobQueue: files queued by two workers are queued once; hostile
// messages and entries are refused; a file whose worker stops reporting
// goes to another after AckWait, and the first can no longer mark it.
func TestJobQueue(t *testing.T) {
	ns := embedded(t)
	o := JobOptions{AckWait: 2 * time.Second, Heartbeat: 300 * time.Millisecond, MaxDeliver: 3}
	a, b := openJobs(t, ns.ClientURL(), "a", o), openJobs(t, ns.ClientURL(), "b", o)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const job = "j1"
	meta := JobMeta{Options: "opts", OutDir: "/out"}
	for _, j := range []*Jobs{a, b} {
		if _, err := j.Join(ctx, job, meta); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Join(ctx, job, JobMeta{Options: "other", OutDir: "/out"}); err == nil {
		t.Error("joined a job with other options")
	}
	if _, err := a.Join(ctx, "../j", meta); err == nil {
		t.Error("joined a job with a bad name")
	}
	tasks := []Task{{File: "/in/1.mp4", Name: "1"}, {File: "/in/2.mp4", Name: "2"}}
	if n, err := a.Submit(ctx, job, tasks); err != nil || n != 2 {
		t.Fatalf("submit: %d %v", n, err)
	}
	if n, err := b.Submit(ctx, job, tasks); err != nil || n != 0 {
		t.Fatalf("submitted again: %d new, %v (want 0)", n, err)
	}
	if _, err := a.Submit(ctx, job, []Task{{File: "rel.mp4", Name: "r"}}); err == nil {
		t.Error("submitted a relative path")
	}

	// Hostile messages on the job's subject and a hostile entry.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for _, m := range []string{`{"job":"j1","file":"rel.mp4","name":"x"}`, `{"job":"j1","file":"/in/3.mp4","name":"../x"}`,
		`{"job":"j2","file":"/in/3.mp4","name":"x"}`, `not json`} {
		if _, err := js.Publish(ctx, JobSubject(job), []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	bad, _ := json.Marshal(FileState{File: "etc/passwd", Name: "p", State: StateQueued})
	if _, err := a.kv.Put(ctx, job+".0123", bad); err != nil {
		t.Fatal(err)
	}

	claims := map[string]*Claim{}
	refused := 0
	for deadline := time.Now().Add(10 * time.Second); len(claims) < 2 || refused < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("claimed %d, refused %d", len(claims), refused)
		}
		c, err := a.Claim(ctx, job, 500*time.Millisecond)
		switch {
		case errors.Is(err, ErrBadTask):
			refused++
		case err != nil:
			t.Fatal(err)
		case c != nil:
			claims[c.File] = c
		}
	}
	st, err := b.Status(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if q, r, _, _ := st.Count(); len(st.Files) != 2 || r != 2 || q != 0 || len(st.Bad) != 1 || st.Files[0].Node != "a" {
		t.Fatalf("status: %+v", st)
	}

	// 1.mp4: a keeps it (heartbeats) past AckWait and finishes it.
	one, two := claims["/in/1.mp4"], claims["/in/2.mp4"]
	stop := one.Keep(func() (int64, int64) { return 7, 10 }, func() { t.Error("a lost a file it kept") })
	// 2.mp4: a stops reporting; b gets it after AckWait.
	var taken *Claim
	for deadline := time.Now().Add(5 * time.Second); taken == nil; {
		if time.Now().After(deadline) {
			t.Fatal("the unreported file did not go to b")
		}
		if taken, err = b.Claim(ctx, job, 500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if taken.File != "/in/2.mp4" || taken.Attempt != 2 || taken.Previous.Node != "a" {
		t.Errorf("b took %s attempt %d from %q", taken.File, taken.Attempt, taken.Previous.Node)
	}
	if err := two.Finish(ctx, Result{Frames: 10}); !errors.Is(err, ErrLost) {
		t.Errorf("a finished a file b has: %v", err)
	}
	if err := taken.Finish(ctx, Result{Frames: 10, Rows: 10}); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := one.Finish(ctx, Result{Err: errors.New("boom")}); err != nil {
		t.Fatal(err)
	}
	if st, err = a.Status(ctx, job); err != nil {
		t.Fatal(err)
	}
	_, _, d, f := st.Count()
	if !st.Finished() || d != 1 || f != 1 || st.Files[1].Node != "b" || st.Files[0].Error != "boom" {
		t.Errorf("status at the end: finished %v, %+v", st.Finished(), st.Files)
	}
	if c, err := a.Claim(ctx, job, 300*time.Millisecond); c != nil || err != nil {
		t.Errorf("a claim after the end: %v %v", c, err)
	}
}

// TestJobSweep: a file handed out MaxDeliver times to workers that never
// finish it leaves the queue; Sweep then marks it failed, and the job
// finishes.
func TestJobSweep(t *testing.T) {
	ns := embedded(t)
	j := openJobs(t, ns.ClientURL(), "a", JobOptions{AckWait: time.Second, MaxDeliver: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := j.Join(ctx, "j", JobMeta{Options: "o", OutDir: "/out"}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Submit(ctx, "j", []Task{{File: "/in/crash.mp4", Name: "crash"}}); err != nil {
		t.Fatal(err)
	}
	if c, err := j.Claim(ctx, "j", time.Second); c == nil || err != nil {
		t.Fatalf("claim: %v %v", c, err)
	}
	// The worker dies: no report, no finish.
	var st *JobStatus
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var err error
		if st, err = j.Status(ctx, "j"); err != nil {
			t.Fatal(err)
		}
		if st.Idle() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the file is still on the queue after its one delivery: %+v", st)
		}
	}
	if st.Finished() || j.Sweep(ctx, st, time.Hour) != 0 {
		t.Fatal("finished, or swept within grace, with a file running")
	}
	if n := j.Sweep(ctx, st, 0); n != 1 {
		t.Fatalf("swept %d files, want 1", n)
	}
	if st, _ = j.Status(ctx, "j"); !st.Finished() || st.Files[0].State != StateFailed || !strings.Contains(st.Files[0].Error, "abandoned") {
		t.Errorf("after the sweep: %+v", st)
	}
}
