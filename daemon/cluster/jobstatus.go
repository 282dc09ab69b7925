package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// JobStatus is a job's progress, read from the bucket and the queue:
// Meta nil when there is no such job; Bad the entries refused (not
// written by affectd, or damaged); Pending the files not handed out yet,
// AckPending those handed out and not finished.
type JobStatus struct {
	Job                 string
	Meta                *JobMeta
	Files               []FileState // by file
	Bad                 []string
	Pending, AckPending uint64
}

// Status reads a job's progress.
func (j *Jobs) Status(ctx context.Context, job string) (*JobStatus, error) {
	if !ValidJob(job) {
		return nil, errJob(job)
	}
	st := &JobStatus{Job: job}
	m, err := j.Meta(ctx, job)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return st, nil
	case err != nil:
		return nil, err
	}
	st.Meta = &m
	w, err := j.kv.Watch(ctx, job+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e == nil {
			break
		}
		if e.Key() == metaKey(job) {
			continue
		}
		var s FileState
		err := errors.New("does not decode")
		if len(e.Value()) <= maxMsgSize && json.Unmarshal(e.Value(), &s) == nil {
			err = s.check(job, e.Key())
		}
		if err != nil {
			st.Bad = append(st.Bad, e.Key()+": "+err.Error())
			continue
		}
		s.rev = e.Revision()
		st.Files = append(st.Files, s)
	}
	sort.Slice(st.Files, func(a, b int) bool { return st.Files[a].File < st.Files[b].File })
	cons, err := j.js.Consumer(ctx, JobsStream, JobConsumerPrefix+job)
	var ci *jetstream.ConsumerInfo
	if err == nil {
		if ci, err = cons.Info(ctx); err == nil {
			st.Pending, st.AckPending = ci.NumPending, uint64(max(ci.NumAckPending, 0))
		}
	}
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		err = nil // gone idle (InactiveThreshold): nothing left on the queue
	}
	return st, err
}

// Count is how many files are in each state.
func (s *JobStatus) Count() (queued, running, done, failed int) {
	n := map[string]int{}
	for _, f := range s.Files {
		n[f.State]++
	}
	return n[StateQueued], n[StateRunning], n[StateDone], n[StateFailed]
}

// Idle says whether the queue has nothing left for this job.
func (s *JobStatus) Idle() bool { return s.Pending == 0 && s.AckPending == 0 }

// Finished says whether every file is done or failed and none is left
// on the queue.
func (s *JobStatus) Finished() bool {
	q, r, _, _ := s.Count()
	return s.Meta != nil && s.Idle() && q == 0 && r == 0
}

// Sweep marks failed the files left queued or running, not updated for
// grace, while the queue has nothing of the job left: their message is
// gone (handed out MaxDeliver times to nodes that died). It returns how
// many it marked.
func (j *Jobs) Sweep(ctx context.Context, s *JobStatus, grace time.Duration) int {
	n := 0
	for _, f := range s.Files {
		if !s.Idle() || (f.State != StateQueued && f.State != StateRunning) || time.Since(f.Updated) < grace {
			continue
		}
		f.State, f.Updated = StateFailed, time.Now().UTC()
		f.Error = fmt.Sprintf("abandoned: off the queue after %d of at most %d deliveries to workers that did not finish it", f.Attempt, j.o.MaxDeliver)
		b, _ := json.Marshal(f)
		if _, err := j.kv.Update(ctx, fileKey(s.Job, f.File), b, f.rev); err == nil {
			n++
		}
	}
	return n
}
