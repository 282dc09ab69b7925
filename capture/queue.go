package capture

// Queue is the bounded hand-off from a source to its consumer. The newest
// frame wins: when the queue is full, Push drops the oldest frame (releases
// it and counts it) so that the producer never blocks and the consumer
// always gets the freshest pictures. One producer, any consumers.
type Queue struct {
	ch      chan *Frame
	dropped func() // counts one frame dropped because the queue was full
}

// NewQueue makes a queue holding up to n frames (at least 1).
func NewQueue(n int, dropped func()) *Queue {
	if n < 1 {
		n = 1
	}
	if dropped == nil {
		dropped = func() {}
	}
	return &Queue{ch: make(chan *Frame, n), dropped: dropped}
}

// Push hands a frame over without blocking, evicting the oldest if full.
func (q *Queue) Push(f *Frame) {
	for {
		select {
		case q.ch <- f:
			return
		default:
		}
		select {
		case old := <-q.ch:
			old.Release()
			q.dropped()
		default: // the consumer took one meanwhile
		}
	}
}

// C delivers the frames; the receiver owns (and releases) each one.
func (q *Queue) C() <-chan *Frame { return q.ch }

// Drain releases every frame still queued.
func (q *Queue) Drain() {
	for {
		select {
		case f := <-q.ch:
			f.Release()
		default:
			return
		}
	}
}
