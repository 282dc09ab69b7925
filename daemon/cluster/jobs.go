package cluster

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Offline analysis over several nodes (`affectd analyze -cluster`): each
// file of a job is a message on a work-queue stream (Nats-Msg-Id: the job
// and a hash of its path, so it is queued once) and an entry in a KV
// bucket (queued, running on a node, done, failed) any node reads. A
// worker pulls one message at a time from the job's durable consumer and
// keeps it by reporting (InProgress) every Heartbeat; a dead worker's file
// goes to another after AckWait. Entries are written compare-and-set: a
// worker whose file went to another cannot mark it done. Everything read
// from NATS is checked (job token, absolute clean path, one-element
// output name, sizes).

// The stream (subjects JobsPrefix<job>), the bucket (keys <job>.<hash of
// the path>, <job>.meta), each job's consumer, the states and the limits.
const (
	JobsStream        = "AFFECTD_JOBS"
	JobsPrefix        = "affectd.v1.jobs."
	JobBucket         = "affectd_jobs"
	JobConsumerPrefix = "affectd_job_"

	StateQueued  = "queued"
	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed"

	MaxJobName  = 64
	MaxPath     = 4096
	MaxName     = 200 // an output's base name, bytes
	MaxError    = 1024
	maxNodeName = 64
	maxMsgSize  = 8 << 10
	dupWindow   = time.Hour          // the stream remembers a file's message id this long
	jobLife     = 7 * 24 * time.Hour // a job's queue and states are kept this long after their last change
)

// ErrBadTask is a queue message that is not a valid task (refused and
// terminated); ErrLost is a file another node has taken since.
var (
	ErrBadTask = errors.New("cluster: a job message that is not a valid task")
	ErrLost    = errors.New("cluster: the file was given to another node")
)

// JobOptions tune the job queue (zero: the default). AckWait is how long
// a file stays with a worker that stops reporting before another gets it
// (10 s), Heartbeat how often a worker reports (2 s), MaxDeliver how many
// times a file is handed out (5: a file that kills every worker that takes
// it ends up failed), Replicas how many NATS servers keep the queue (0:
// the node's cluster.replicas if set, else as many as the queue has, or
// the node's default for a new one).
type JobOptions struct {
	AckWait, Heartbeat   time.Duration
	MaxDeliver, Replicas int
}

// Task is one file of a job: the queue message.
type Task struct {
	Job  string `json:"job"`
	File string `json:"file"` // absolute, on the filesystem the workers share
	Name string `json:"name"` // the output's base name, without the extension
}

// FileState is a file's entry in the job bucket.
type FileState struct {
	File    string    `json:"file"`
	Name    string    `json:"name"`
	State   string    `json:"state"`
	Node    string    `json:"node,omitempty"`
	Frames  int64     `json:"frames"`          // frames analysed so far (by this node)
	Total   int64     `json:"total,omitempty"` // frames the container announces (0: unknown)
	Rows    int64     `json:"rows,omitempty"`  // face rows written (done)
	Resumed bool      `json:"resumed,omitempty"`
	Error   string    `json:"error,omitempty"`
	Attempt int       `json:"attempt,omitempty"` // which delivery of the file this is
	Updated time.Time `json:"updated"`

	rev uint64
}

// JobMeta is a job's settings: every worker of a job must have them.
type JobMeta struct {
	Options string    `json:"options"` // identifies every option that changes the outputs
	OutDir  string    `json:"out_dir"`
	Node    string    `json:"node"` // who made the job
	Created time.Time `json:"created"`
}

// ValidJob says whether s can name a job: 1 to 64 letters, digits, _ or -.
func ValidJob(s string) bool {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
	return s != "" && len(s) <= MaxJobName && strings.Trim(s, chars) == ""
}

// CheckFile checks an input path read from NATS: absolute, clean, valid
// UTF-8 without control characters, at most MaxPath bytes.
func CheckFile(p string) error {
	switch {
	case p == "" || len(p) > MaxPath:
		return fmt.Errorf("file path of %d bytes", len(p))
	case !filepath.IsAbs(p) || filepath.Clean(p) != p:
		return fmt.Errorf("file %q: not an absolute clean path", p)
	case !printable(p):
		return fmt.Errorf("file %q: not UTF-8 or has control characters", p)
	}
	return nil
}

// CheckName checks an output name read from NATS: one path element.
func CheckName(s string) error {
	if s == "" || len(s) > MaxName || s == "." || s == ".." || strings.ContainsAny(s, `/\`) || !printable(s) {
		return fmt.Errorf("output name %q: not a plain file name", s)
	}
	return nil
}

func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// Check validates a task.
func (t Task) Check() error {
	if !ValidJob(t.Job) {
		return errJob(t.Job)
	}
	return cmp.Or(CheckFile(t.File), CheckName(t.Name))
}

func errJob(job string) error {
	return fmt.Errorf("cluster: job %q: want 1 to %d letters, digits, _ or -", job, MaxJobName)
}

func (s *FileState) check(job, key string) error {
	switch err := (Task{Job: job, File: s.File, Name: s.Name}).Check(); {
	case err != nil:
		return err
	case fileKey(job, s.File) != key:
		return fmt.Errorf("key %s is not the file %q's", key, s.File)
	case !slices.Contains([]string{StateQueued, StateRunning, StateDone, StateFailed}, s.State):
		return fmt.Errorf("state %q", s.State)
	case len(s.Node) > maxNodeName || !printable(s.Node) || len(s.Error) > MaxError || s.Frames < 0 || s.Total < 0 || s.Rows < 0:
		return errors.New("node, error or counts out of bounds")
	}
	return nil
}

// fileKey is a file's key in the job bucket, and its message id.
func fileKey(job, file string) string {
	h := sha256.Sum256([]byte(file))
	return job + "." + hex.EncodeToString(h[:16])
}

func metaKey(job string) string { return job + ".meta" }

// JobSubject is the subject of a job's files.
func JobSubject(job string) string { return JobsPrefix + job }

// Jobs is a node's handle on the job queue.
type Jobs struct {
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	node string
	o    JobOptions
}

// Jobs binds to (or makes) the job stream and bucket.
func (n *Node) Jobs(ctx context.Context, o JobOptions) (*Jobs, error) {
	o.AckWait = cmp.Or(max(o.AckWait, 0), 10*time.Second)
	o.Heartbeat = min(cmp.Or(max(o.Heartbeat, 0), 2*time.Second), o.AckWait/3)
	o.MaxDeliver = cmp.Or(max(o.MaxDeliver, 0), 5)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	o.Replicas = n.replicasOf(ctx, JobsStream, cmp.Or(max(o.Replicas, 0), n.set))
	_, err := n.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: JobsStream, Subjects: []string{JobsPrefix + ">"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: o.Replicas, Duplicates: dupWindow, MaxAge: jobLife,
		MaxMsgSize: maxMsgSize, MaxBytes: 256 << 20, Discard: jetstream.DiscardNew,
		Description: "affectd analyze -cluster: the files to analyse",
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: job stream: %w", err)
	}
	kv, err := n.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: JobBucket, History: 1, TTL: jobLife, Storage: jetstream.FileStorage, Replicas: o.Replicas,
		MaxValueSize: maxMsgSize, Description: "affectd analyze -cluster: each file's state",
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: job bucket: %w", err)
	}
	return &Jobs{js: n.js, kv: kv, node: n.Name, o: o}, nil
}

// Options are the queue's settings (defaults filled in).
func (j *Jobs) Options() JobOptions { return j.o }

// Join makes the job, or joins it: its settings must be m's (else an
// error naming the difference). It returns the job's settings.
func (j *Jobs) Join(ctx context.Context, job string, m JobMeta) (JobMeta, error) {
	if !ValidJob(job) {
		return JobMeta{}, errJob(job)
	}
	m.Node, m.Created = j.node, time.Now().UTC()
	b, _ := json.Marshal(m)
	have := m
	if _, err := j.kv.Create(ctx, metaKey(job), b); errors.Is(err, jetstream.ErrKeyExists) {
		if have, err = j.Meta(ctx, job); err != nil {
			return JobMeta{}, err
		}
		switch {
		case have.Options != m.Options:
			return have, fmt.Errorf("cluster: job %s was made with other options (by %s at %s): give the same options, or another -job", job, have.Node, have.Created.Format(time.RFC3339))
		case have.OutDir != m.OutDir:
			return have, fmt.Errorf("cluster: job %s writes to %s, not %s", job, have.OutDir, m.OutDir)
		}
	} else if err != nil {
		return JobMeta{}, fmt.Errorf("cluster: job %s: %w", job, err)
	}
	_, err := j.js.CreateOrUpdateConsumer(ctx, JobsStream, jetstream.ConsumerConfig{
		Durable: JobConsumerPrefix + job, FilterSubject: JobSubject(job), DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: j.o.AckWait, MaxDeliver: j.o.MaxDeliver,
		InactiveThreshold: 24 * time.Hour, Description: "affectd analyze -cluster job " + job,
	})
	if err != nil {
		return have, fmt.Errorf("cluster: job %s: consumer: %w", job, err)
	}
	return have, nil
}

// Meta reads a job's settings (jetstream.ErrKeyNotFound: no such job).
func (j *Jobs) Meta(ctx context.Context, job string) (JobMeta, error) {
	var m JobMeta
	e, err := j.kv.Get(ctx, metaKey(job))
	if err != nil {
		return m, err
	}
	if len(e.Value()) > maxMsgSize || json.Unmarshal(e.Value(), &m) != nil || !filepath.IsAbs(m.OutDir) || !printable(m.OutDir) || len(m.Options) > 256 {
		return m, fmt.Errorf("cluster: job %s: its settings in %s do not decode", job, JobBucket)
	}
	return m, nil
}

// Submit queues the tasks (each file once per job, however many workers
// submit it) and records them as queued. It returns how many were new.
func (j *Jobs) Submit(ctx context.Context, job string, tasks []Task) (int, error) {
	added := 0
	for _, t := range tasks {
		t.Job = job
		b, _ := json.Marshal(t)
		if err := t.Check(); err != nil || len(b) > maxMsgSize {
			return added, fmt.Errorf("cluster: submit %q (%d bytes): %v", t.File, len(b), err)
		}
		key := fileKey(job, t.File)
		ack, err := j.js.PublishMsg(ctx, &nats.Msg{Subject: JobSubject(job), Data: b}, jetstream.WithMsgID(key))
		if err != nil {
			return added, fmt.Errorf("cluster: submit %s: %w", t.File, err)
		}
		if !ack.Duplicate {
			added++
		}
		// After the message, so a queued file is on the queue; a worker may have made the entry.
		st, _ := json.Marshal(FileState{File: t.File, Name: t.Name, State: StateQueued, Updated: time.Now().UTC()})
		if _, err := j.kv.Create(ctx, key, st); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return added, fmt.Errorf("cluster: submit %s: %w", t.File, err)
		}
	}
	return added, nil
}

// Claim is a file this node took from the queue: Attempt is which
// delivery (2 and up: a node before did not finish it), Previous the
// file's entry before.
type Claim struct {
	Task
	Attempt  int
	Previous FileState

	j   *Jobs
	msg jetstream.Msg
	key string
	mu  sync.Mutex
	st  FileState // the entry as this node last wrote it (st.rev its revision)
}

// Claim takes the job's next file, waiting up to wait: nil (and no
// error) when there was none, or the message was a file done already.
// A message that is not a valid task is terminated (ErrBadTask).
func (j *Jobs) Claim(ctx context.Context, job string, wait time.Duration) (*Claim, error) {
	cons, err := j.js.Consumer(ctx, JobsStream, JobConsumerPrefix+job)
	if err != nil {
		return nil, err
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(wait))
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		err = nil // nothing now
	}
	if err != nil || msg == nil {
		return nil, err
	}
	var t Task
	switch {
	case msg.Subject() != JobSubject(job) || len(msg.Data()) > maxMsgSize:
		err = fmt.Errorf("subject %q, %d bytes", msg.Subject(), len(msg.Data()))
	case json.Unmarshal(msg.Data(), &t) != nil:
		err = errors.New("not JSON")
	case t.Job != job:
		err = fmt.Errorf("job %q on job %s's subject", t.Job, job)
	default:
		err = t.Check()
	}
	if err != nil {
		msg.TermWithReason("not a valid task")
		return nil, fmt.Errorf("%w: %v", ErrBadTask, err)
	}
	c := &Claim{Task: t, j: j, msg: msg, key: fileKey(job, t.File)}
	if md, err := msg.Metadata(); err == nil {
		c.Attempt = int(min(md.NumDelivered, 1<<20))
	}
	for range 5 {
		var prev FileState
		var rev uint64
		e, err := j.kv.Get(ctx, c.key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			msg.Nak()
			return nil, err
		default:
			rev = e.Revision()
			if len(e.Value()) > maxMsgSize || json.Unmarshal(e.Value(), &prev) != nil || prev.check(job, c.key) != nil {
				prev = FileState{State: StateQueued} // a bad entry: overwritten with the truth
			}
		}
		switch {
		case prev.State == StateDone:
			return nil, msg.Ack()
		case prev.State == StateFailed:
			return nil, msg.TermWithReason("failed")
		case prev.State == StateRunning && prev.Node != j.node && time.Since(prev.Updated) < j.o.AckWait/2:
			// Its node still reports: it stalled a moment, it is not dead.
			return nil, msg.NakWithDelay(j.o.AckWait)
		}
		c.Previous, c.st = prev, c.running(prev)
		b, _ := json.Marshal(c.st)
		if rev == 0 {
			c.st.rev, err = j.kv.Create(ctx, c.key, b)
		} else {
			c.st.rev, err = j.kv.Update(ctx, c.key, b, rev)
		}
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			msg.Nak()
			return nil, err
		}
		return c, nil
	}
	msg.Nak()
	return nil, fmt.Errorf("cluster: %s: its entry keeps changing", t.File)
}

func (c *Claim) running(prev FileState) FileState {
	return FileState{File: c.File, Name: c.Name, State: StateRunning, Node: c.j.node, Total: prev.Total,
		Attempt: c.Attempt, Updated: time.Now().UTC()}
}

func (c *Claim) last() FileState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// write replaces the entry with s if this node's write is still the last
// (ErrLost if not).
func (c *Claim) write(ctx context.Context, s FileState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.Updated = time.Now().UTC()
	b, _ := json.Marshal(s)
	rev, err := c.j.kv.Update(ctx, c.key, b, c.st.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return ErrLost
	}
	if err != nil {
		return err
	}
	s.rev = rev
	c.st = s
	return nil
}

// Keep holds the file while it is analysed: every Heartbeat it tells the
// queue the work goes on and records progress() (frames done and
// announced) in the bucket. lost is called once when this node must stop:
// the file was given to another node, or the server has not heard from
// this one for most of AckWait (it soon will be). stop ends it.
func (c *Claim) Keep(progress func() (frames, total int64), lost func()) (stop func()) {
	stopc, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(c.j.o.Heartbeat)
		defer t.Stop()
		heard := time.Now()
		for {
			select {
			case <-stopc:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.j.o.Heartbeat)
			err := c.msg.InProgress()
			if err == nil {
				s := c.last()
				s.Frames, s.Total = progress()
				err = c.write(ctx, s)
			}
			cancel()
			switch {
			case err == nil:
				heard = time.Now()
			case errors.Is(err, ErrLost) || time.Since(heard) > c.j.o.AckWait*2/3:
				lost()
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(stopc); <-done }) }
}

// Confirm checks, just before the output is put in place, that the file
// is still this node's, and keeps it a while longer; ErrLost if not.
func (c *Claim) Confirm(ctx context.Context) error {
	if err := c.msg.InProgress(); err != nil {
		return err
	}
	return c.write(ctx, c.last())
}

// Result is how a file ended: Err why it failed (nil: done).
type Result struct {
	Frames, Total, Rows int64
	Resumed             bool
	Err                 error
}

// Finish records the file done or failed (its message acknowledged or
// terminated); ErrLost when another node has it now (nothing recorded).
func (c *Claim) Finish(ctx context.Context, r Result) error {
	s := c.last()
	s.State, s.Frames, s.Total, s.Rows, s.Resumed = StateDone, r.Frames, r.Total, r.Rows, r.Resumed
	if r.Err != nil {
		s.State, s.Error = StateFailed, truncate(r.Err.Error(), MaxError)
	}
	if err := c.write(ctx, s); err != nil {
		return err
	}
	if r.Err != nil {
		return c.msg.TermWithReason("failed")
	}
	return c.msg.DoubleAck(ctx)
}

// Release gives the file back to the queue at once (this node stops:
// another takes it and resumes it).
func (c *Claim) Release(ctx context.Context) error {
	s := c.last()
	s.State, s.Node = StateQueued, ""
	err := c.write(ctx, s)
	if err == nil {
		err = c.msg.Nak()
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
}
