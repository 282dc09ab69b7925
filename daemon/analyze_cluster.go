package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/affectd/affectd/config"
	"github.com/affectd/affectd/daemon/cluster"
	"github.com/affectd/affectd/stream/record"
)

// `affectd analyze -cluster nats://…`: offline analysis spread over
// several machines. Every invocation is a worker: it queues the files it
// was given on the job's work-queue stream (each file once, however many
// workers are given it), then takes the job's files one at a time, from
// whichever worker queued them, until every file of the job is done or
// failed (daemon/cluster/jobs.go). The inputs and the output folder must
// be on a filesystem every worker sees at the same paths (NFS, CephFS…):
// a file a worker dies in is resumed by another from its checkpoint. The
// job's name, unless -job gives one, is a hash of the inputs, the output
// folder and every option that changes the outputs, so the same command
// on several machines makes one job; a worker with other options cannot
// join a job (-job).

// clusterFlags are analyze's -cluster flags.
type clusterFlags struct {
	nats, job, node *string
	replicas        *int
	status          *bool
}

func addClusterFlags(fs *flag.FlagSet) *clusterFlags {
	return &clusterFlags{
		nats:     fs.String("cluster", "", "nats://host:port[,…]: analyse over several machines through NATS JetStream: this command is one worker; it queues its files on the job and takes the job's next file until all are done (inputs and -out on a filesystem every worker shares, at the same paths)"),
		job:      fs.String("job", "", "with -cluster: the job's name (letters, digits, _ and -; default: a hash of the inputs, -out and the options, so the same command on every machine joins one job); with -job, a worker may be given no files"),
		node:     fs.String("node", "", "with -cluster: this worker's name in the job's progress (default: host name and process id)"),
		replicas: fs.Int("replicas", 0, "with -cluster: how many NATS servers keep the job queue and its progress (1 to 5; default: as many as the queue has, or 1 for a new one)"),
		status:   fs.Bool("status", false, "with -cluster and -job: print the job's progress (every worker's files) and exit"),
	}
}

func (f *clusterFlags) on() bool { return *f.nats != "" }

// dial checks -cluster and -node and connects.
func (f *clusterFlags) dial(ctx context.Context, log *slog.Logger) (*cluster.Node, error) {
	for _, u := range strings.Split(*f.nats, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || (pu.Scheme != "nats" && pu.Scheme != "tls") || pu.Host == "" {
			return nil, fmt.Errorf("-cluster %q: want nats://host:port URLs separated by commas", u)
		}
	}
	node := *f.node
	if node == "" {
		h, _ := os.Hostname()
		node = fmt.Sprintf("%s-%d", strings.NewReplacer(".", "-", " ", "-").Replace(h), os.Getpid())
	}
	if len(node) > 64 || strings.ContainsAny(node, " \t\n.*>/") || cluster.CheckName(node) != nil {
		return nil, fmt.Errorf("-node %q: want one word of at most 64 characters without dots, slashes or wildcards", node)
	}
	if *f.replicas < 0 || *f.replicas > 5 {
		return nil, fmt.Errorf("-replicas %d: want 1 to 5", *f.replicas)
	}
	return cluster.Open(ctx, config.Cluster{NATS: *f.nats, Node: node, LeaseTTL: config.Duration(3 * time.Second), Capacity: 8, Replicas: *f.replicas}, log)
}

// clusterStatusCmd is `analyze -cluster URL -job NAME -status`.
func clusterStatusCmd(f *clusterFlags, stdout, stderr io.Writer) int {
	if !cluster.ValidJob(*f.job) {
		fmt.Fprintln(stderr, "affectd analyze: -status: give the job with -job (letters, digits, _ and -)")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := f.dial(ctx, nil)
	if err != nil {
		fmt.Fprintf(stderr, "affectd analyze: %v\n", err)
		return 1
	}
	defer n.Close()
	jobs, err := n.Jobs(ctx, cluster.JobOptions{})
	if err == nil {
		var st *cluster.JobStatus
		if st, err = jobs.Status(ctx, *f.job); err == nil {
			if st.Meta == nil {
				fmt.Fprintf(stderr, "affectd analyze: no job %s on %s\n", *f.job, *f.nats)
				return 1
			}
			printJobStatus(stdout, st, jobs.Options().AckWait)
			return 0
		}
	}
	fmt.Fprintf(stderr, "affectd analyze: %v\n", err)
	return 1
}

// analyzeClusterCmd runs analyze as a worker of a cluster job: o and cfg
// as analyzeCmd made them.
func analyzeClusterCmd(ctx context.Context, cfg *config.Config, o AnalyzeOptions, f *clusterFlags, quiet bool, stdout, stderr io.Writer) int {
	if len(o.Inputs) == 0 && *f.job == "" {
		fmt.Fprintln(stderr, "affectd analyze: -cluster: give the files, or the job to join with -job")
		return 2
	}
	if *f.job != "" && !cluster.ValidJob(*f.job) {
		fmt.Fprintf(stderr, "affectd analyze: -job %q: want 1 to %d letters, digits, _ or -\n", *f.job, cluster.MaxJobName)
		return 2
	}
	if o.Format != "csv" && o.Format != "jsonl" {
		fmt.Fprintf(stderr, "affectd analyze: -format %q: want csv or jsonl\n", o.Format)
		return 2
	}
	out, err := filepath.Abs(o.OutDir)
	if err == nil {
		err = os.MkdirAll(out, 0o750)
	}
	if err != nil {
		fmt.Fprintf(stderr, "affectd analyze: output folder: %v\n", err)
		return 1
	}
	o.OutDir = out
	tasks, err := clusterTasks(o)
	if err != nil {
		fmt.Fprintf(stderr, "affectd analyze: %v\n", err)
		return 2
	}
	opts := clusterOptions(cfg, o)
	job := *f.job
	if job == "" {
		job = defaultJob(tasks, out, opts)
	}
	n, err := f.dial(ctx, o.Log)
	if err != nil {
		fmt.Fprintf(stderr, "affectd analyze: %v\n", err)
		return 1
	}
	defer n.Close()
	jobs, err := n.Jobs(ctx, cluster.JobOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "affectd analyze: %v\n", err)
		return 1
	}
	if _, err := jobs.Join(ctx, job, cluster.JobMeta{Options: opts, OutDir: out}); err != nil {
		fmt.Fprintf(stderr, "affectd analyze: cannot join: %v\n", err)
		return 2
	}
	added, err := jobs.Submit(ctx, job, tasks)
	if err != nil {
		fmt.Fprintf(stderr, "affectd analyze: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "affectd analyze: job %s → %s: worker %s joins; %d of its %d files newly queued (the others were already)\n", job, out, n.Name, added, len(tasks))
	w := &worker{jobs: jobs, job: job, node: n.Name, cfg: cfg, o: o, log: o.Log}
	if !quiet {
		w.progress = stderr
	}
	st, err := w.run(ctx)
	if st != nil {
		printJobStatus(stdout, st, jobs.Options().AckWait)
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "affectd analyze: interrupted: this worker's file went back to the queue; run the same command again to rejoin job %s\n", job)
		return 130
	case err != nil:
		fmt.Fprintf(stderr, "affectd analyze: job %s: %v\n", job, err)
		return 1
	}
	faceless := 0
	for _, fs := range st.Files {
		switch {
		case fs.State == cluster.StateFailed:
			fmt.Fprintf(stderr, "affectd analyze: %s: failed on %s: %s\n", fs.File, fs.Node, fs.Error)
		case fs.Rows == 0 && fs.Frames > 0 && !fs.Resumed:
			faceless++
			fmt.Fprintf(stderr, "affectd analyze: %s: no face found in any of its %d frames\n", fs.File, fs.Frames)
		}
	}
	_, _, _, failed := st.Count()
	switch {
	case failed > 0:
		return 1
	case faceless > 0:
		return 3
	}
	return 0
}

// clusterTasks expands the inputs as a single-node run does (folders
// searched, -frames folders one input each) into absolute paths, with
// their outputs' names (a later input with a name taken is numbered).
func clusterTasks(o AnalyzeOptions) ([]cluster.Task, error) {
	var files []string
	// A missing or unreadable input fails on the worker that takes it.
	keep := func(p string, _ error) { files = append(files, p) }
	for _, in := range o.Inputs {
		p, err := filepath.Abs(in)
		if err != nil {
			return nil, err
		}
		found, err := expandInputs([]string{p}, o.Frames, keep, func(string) {})
		if err != nil {
			return nil, err
		}
		files = append(files, found...)
	}
	var tasks []cluster.Task
	for i, name := range outputNames(files) {
		if err := cluster.CheckFile(files[i]); err != nil {
			return nil, err
		}
		if err := cluster.CheckName(name); err != nil {
			return nil, err
		}
		tasks = append(tasks, cluster.Task{File: files[i], Name: name})
	}
	return tasks, nil
}

// clusterOptions identifies every option that changes the outputs, as
// the resume signature does, less what differs between machines of one
// job (threads, the ONNX Runtime library, where the models lie: a model is
// its file name and size).
func clusterOptions(cfg *config.Config, o AnalyzeOptions) string {
	c := analyzeConfig(cfg)
	model := func(p string) string {
		if p == "" {
			return ""
		}
		if fi, err := os.Stat(p); err == nil {
			return fmt.Sprintf("%s|%d", filepath.Base(p), fi.Size())
		}
		return filepath.Base(p)
	}
	neutral := o.Neutral
	if neutral != "" && neutral != "prior" && neutral != "first" {
		neutral = model(neutral)
	}
	parts := []any{
		"affectd analyze -cluster v1", Version, o.Format, o.Points, o.Mesh, o.Features, AnalyzeBatch(&c, o.Batch), o.Frames, neutral, o.Force,
		model(c.Model.Path), model(c.Detector.Model), c.Detector.ScoreThreshold, c.Detector.DetectEvery, c.Detector.RefineRuns,
		c.Detector.Verify, c.Detector.VerifyThreshold, c.Tracker.LostAfter.D(), c.Tracker.ConfirmHits, c.Tracker.Cuts, c.Tracker.FitThreshold,
		c.Align.Margin, model(c.Landmarks.Model), c.Landmarks.Align, c.Landmarks.FOV, c.Landmarks.Backend,
		model(c.Landmarks.MeshModel), model(c.Landmarks.IrisModel), c.Smoothing, model(c.ExpressionFER.Model),
		c.Identity.Mode, model(c.Identity.Model), c.Identity.Threshold, c.Identity.Expiry.D(), c.Identity.Every.D(),
	}
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%v\x00", p)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// defaultJob names a job after its files, output folder and options.
func defaultJob(tasks []cluster.Task, out, opts string) string {
	files := make([]string, len(tasks))
	for i, t := range tasks {
		files[i] = t.File
	}
	sort.Strings(files)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", out, opts)
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f)
	}
	return "analyze-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// worker takes a job's files until all are done or failed.
type worker struct {
	jobs     *cluster.Jobs
	job      string
	node     string
	cfg      *config.Config
	o        AnalyzeOptions
	log      *slog.Logger
	progress io.Writer  // a line for the whole job now and then; nil: none
	mu       sync.Mutex // progress's
	sess     *fileSession
}

// run works until the job is finished (its status then) or ctx ends.
func (w *worker) run(ctx context.Context) (*cluster.JobStatus, error) {
	defer func() {
		if w.sess != nil {
			w.sess.close()
		}
	}()
	stopLines := w.startLines()
	defer stopLines()
	ackWait := w.jobs.Options().AckWait
	failures := 0
	for ctx.Err() == nil {
		c, err := w.jobs.Claim(ctx, w.job, 2*time.Second)
		switch {
		case errors.Is(err, cluster.ErrBadTask):
			w.log.Warn("refused a job message", "job", w.job, "err", err)
			continue
		case err != nil && ctx.Err() == nil:
			if failures++; failures > 30 {
				return nil, err
			}
			w.log.Warn("job queue", "job", w.job, "err", err)
			time.Sleep(time.Second)
			continue
		case err != nil:
			return nil, ctx.Err()
		case c == nil: // nothing to take: finished?
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			st, err := w.jobs.Status(sctx, w.job)
			if err == nil && !st.Finished() && w.jobs.Sweep(sctx, st, 3*ackWait) > 0 {
				st, err = w.jobs.Status(sctx, w.job)
			}
			cancel()
			if err == nil && st.Finished() {
				return st, nil
			}
			continue
		}
		failures = 0
		if err := w.file(ctx, c); err != nil {
			return nil, err
		}
		w.line(ctx)
	}
	return nil, ctx.Err()
}

// file analyses one claimed file and records how it ended. Its error is
// for the whole run (models that do not load).
func (w *worker) file(ctx context.Context, c *cluster.Claim) error {
	// Kept from the start: loading the models may take longer than AckWait.
	fctx, lost := context.WithCancel(ctx)
	defer lost()
	var an atomic.Pointer[analyzer]
	var base, total atomic.Int64
	stop := c.Keep(func() (int64, int64) {
		if a := an.Load(); a != nil {
			return a.done.Load() - base.Load(), total.Load()
		}
		return 0, 0
	}, lost)
	defer stop()
	if w.sess == nil {
		s, err := openSession(w.cfg, w.o, w.node)
		if err != nil {
			stop()
			lastWord(c.Release)
			return err
		}
		w.sess = s
	}
	if c.Previous.State == cluster.StateRunning {
		w.log.Warn("taking over a file another worker did not finish", "file", c.File, "from", c.Previous.Node, "attempt", c.Attempt)
	}
	base.Store(w.sess.a.done.Load())
	an.Store(w.sess.a)
	var commitErr error
	rep := w.sess.run(fctx, c.File, c.Name, &total, func() error {
		commitErr = lastWord(c.Confirm)
		return commitErr
	})
	stop()
	switch {
	case ctx.Err() != nil: // interrupted: another worker takes it at once
		lastWord(c.Release)
		return nil
	case fctx.Err() != nil || errors.Is(commitErr, cluster.ErrLost):
		w.log.Warn("another worker has the file now: stopped", "file", c.File)
		return nil
	case commitErr != nil: // complete, but not confirmed: resumed from its checkpoint by whoever takes it next
		w.log.Warn("could not confirm the file before putting it in place: given back", "file", c.File, "err", commitErr)
		lastWord(c.Release)
		return nil
	}
	r := cluster.Result{Frames: rep.Frames + rep.Replayed, Total: total.Load(), Rows: rep.Rows, Resumed: rep.Replayed > 0, Err: rep.Err}
	if rep.Status == "failed" && r.Err == nil {
		r.Err = errors.New("failed")
	}
	if err := lastWord(func(ctx context.Context) error { return c.Finish(ctx, r) }); err != nil {
		w.log.Warn("could not record the file's end", "file", c.File, "err", err)
	}
	return nil
}

// lastWord tells the queue how a file ended, with a moment of its own
// (the run's context may have ended).
func lastWord(fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return fn(ctx)
}

// startLines prints the job's progress every 10 s until stopped.
func (w *worker) startLines() func() {
	if w.progress == nil {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				w.line(context.Background())
			}
		}
	}()
	return func() { close(stop); <-done }
}

// line prints the whole job's progress in one line.
func (w *worker) line(ctx context.Context) {
	if w.progress == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := w.jobs.Status(ctx, w.job)
	if err != nil {
		return
	}
	q, r, d, f := st.Count()
	var running []string
	for _, fs := range st.Files {
		if fs.State == cluster.StateRunning {
			running = append(running, fmt.Sprintf("%s: %s %s", fs.Node, filepath.Base(fs.File), frameCount(fs)))
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.progress, "job %s: %d/%d done, %d failed, %d running [%s], %d queued\n", w.job, d, len(st.Files), f, r, strings.Join(running, "; "), q)
}

func frameCount(fs cluster.FileState) string {
	if fs.Total > 0 {
		return fmt.Sprintf("%d/%d", fs.Frames, fs.Total)
	}
	return fmt.Sprintf("%d", fs.Frames)
}

// printJobStatus prints a job's progress: the counts, then each file
// running or failed.
func printJobStatus(w io.Writer, st *cluster.JobStatus, ackWait time.Duration) {
	q, r, d, f := st.Count()
	fmt.Fprintf(w, "job %s → %s: %d files: %d done, %d failed, %d running, %d queued", st.Job, st.Meta.OutDir, len(st.Files), d, f, r, q)
	if st.Finished() {
		fmt.Fprint(w, " (finished)")
	}
	fmt.Fprintln(w)
	for _, fs := range st.Files {
		switch fs.State {
		case cluster.StateRunning:
			stale := ""
			if age := time.Since(fs.Updated); age > ackWait {
				stale = fmt.Sprintf(" (no report for %s: its worker may have died; another takes it over)", age.Round(time.Second))
			}
			fmt.Fprintf(w, "  running on %s: %s, %s frames%s\n", fs.Node, fs.File, frameCount(fs), stale)
		case cluster.StateFailed:
			fmt.Fprintf(w, "  failed on %s: %s: %s\n", fs.Node, fs.File, fs.Error)
		}
	}
	for _, b := range st.Bad {
		fmt.Fprintf(w, "  refused entry %s\n", b)
	}
}

// fileSession is Analyze's setup (models loaded, the engine running)
// kept for one file after another.
type fileSession struct {
	a         *analyzer
	engCancel context.CancelFunc
	engDone   chan struct{}
}

// openSession loads the models as Analyze does, for the worker node.
func openSession(cfg *config.Config, o AnalyzeOptions, node string) (*fileSession, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	o.Progress, o.TrackOnly = nil, false
	a, err := newAnalyzer(cfg, o)
	if err != nil {
		return nil, err
	}
	a.node = node
	s := &fileSession{a: a, engDone: make(chan struct{})}
	var engCtx context.Context
	engCtx, s.engCancel = context.WithCancel(context.Background())
	go func() { defer close(s.engDone); a.m.Run(engCtx) }()
	return s, nil
}

func (s *fileSession) close() {
	s.engCancel()
	<-s.engDone
	s.a.m.Close()
}

// run analyses one input into <OutDir>/<name>.<format> as Analyze's plan
// and runFile do: an existing output is skipped (-force redoes it), an
// interrupted run's (this node's or another's) is resumed. The output
// grows in this node's own partial file; commit is asked before the
// complete output is put in place. total gets the frames the container
// announces.
func (s *fileSession) run(ctx context.Context, in, name string, total *atomic.Int64, commit func() error) *FileReport {
	a := s.a
	st, err := os.Stat(in)
	switch {
	case err != nil:
		return &FileReport{Input: in, Status: "failed", Err: err}
	case st.IsDir() && !a.o.Frames:
		return &FileReport{Input: in, Status: "failed", Err: errors.New("a folder (-frames takes a folder of pictures as a video)")}
	}
	j := a.prepare(in, name)
	if j.rep.Status == "skipped" { // done already: what another worker left is of no use
		record.RemovePartials(j.rep.Output)
	}
	if j.rep.Status != "" {
		return j.rep
	}
	j.commit = commit
	total.Store(int64(j.probed))
	a.runFile(ctx, j)
	if j.rep.Status == "done" {
		record.RemovePartials(j.rep.Output)
	}
	return j.rep
}
