package infer

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// OverloadPolicy says what Reserve does when QueueLimit faces already wait.
type OverloadPolicy int

// Overload policies.
const (
	// OverloadReject fails the new request at once with ErrOverloaded and
	// counts it (affectd_infer_rejected_total{reason="queue_full"}): the
	// caller keeps its previous estimate and tries again with a fresher crop.
	OverloadReject OverloadPolicy = iota
	// OverloadWait blocks Reserve until there is room or its context ends
	// (offline analysis, where every frame must be analysed).
	OverloadWait
)

var overloadNames = [...]string{"reject", "wait"}

func (p OverloadPolicy) String() string {
	if int(p) < len(overloadNames) {
		return overloadNames[p]
	}
	return fmt.Sprintf("OverloadPolicy(%d)", int(p))
}

// ParseOverloadPolicy parses "reject" or "wait".
func ParseOverloadPolicy(s string) (OverloadPolicy, error) {
	for i, n := range overloadNames {
		if s == n {
			return OverloadPolicy(i), nil
		}
	}
	return 0, fmt.Errorf("unknown overload policy %q (want %s)", s, strings.Join(overloadNames[:], ", "))
}

// Options are the engine's knobs. Zero values take the defaults noted.
type Options struct {
	// MaxBatch is the largest batch run at once (default 16).
	MaxBatch int
	// MaxWait is how long the first face of a batch may wait for more
	// faces before the batch runs anyway (default 5ms). A batch only waits
	// while a runner is free: when all runners are busy it keeps filling.
	MaxWait time.Duration
	// QueueLimit bounds the faces waiting to run (default 4×MaxBatch; at
	// least MaxBatch).
	QueueLimit int
	// Overload is the policy when QueueLimit faces wait (default reject).
	Overload OverloadPolicy
	// Runners is the number of batches run concurrently (default 1; more
	// helps GPUs overlap transfers and compute).
	Runners int
	// KeepFeatures copies the features output into each Result.
	KeepFeatures bool
	// Registerer receives the engine's metrics (nil: not registered).
	Registerer prometheus.Registerer
}

func (o *Options) setDefaults() {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 16
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 5 * time.Millisecond
	}
	if o.QueueLimit <= 0 {
		o.QueueLimit = 4 * o.MaxBatch
	}
	if o.Runners <= 0 {
		o.Runners = 1
	}
}

func (o *Options) validate() error {
	switch {
	case o.MaxBatch > 1024:
		return fmt.Errorf("infer: max batch %d is over 1024", o.MaxBatch)
	case o.QueueLimit < o.MaxBatch:
		return fmt.Errorf("infer: queue limit %d is below max batch %d: batches could never fill", o.QueueLimit, o.MaxBatch)
	case o.Overload != OverloadReject && o.Overload != OverloadWait:
		return fmt.Errorf("infer: unknown overload policy %d", o.Overload)
	}
	return nil
}
