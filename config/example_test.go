package config_test

import (
	"errors"
	"fmt"

	"github.com/affectd/affectd/config"
)

func ExampleParse() {
	cfg, err := config.Parse([]byte(`
listen: 127.0.0.1:9000
batch:
  max_batch: 8
  max_wait: 2ms
streams:
  - id: lobby
    url: rtsp://cam-lobby.local/stream1
  - id: desk
    url: "0"
    width: 1280
`), "affectd.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Listen, cfg.Batch.MaxBatch, cfg.Batch.QueueLimit, cfg.Batch.MaxWait)
	fmt.Println(cfg.Detector.DetectEvery, cfg.Tracker.LostAfter.D())
	for _, s := range cfg.Streams {
		fmt.Println(s.ID, s.Kind())
	}
	// Output:
	// 127.0.0.1:9000 8 32 2ms
	// 3 1s
	// lobby rtsp
	// desk v4l2
}

func ExampleParse_errors() {
	_, err := config.Parse([]byte(`
detector:
  detect_evrey: 5
batch:
  max_wait: 5
`), "affectd.yaml")
	fmt.Println(err)

	var problems config.Errors
	if errors.As(err, &problems) {
		fmt.Println(len(problems), "problems; first key:", problems[0].Key)
	}
	// Output:
	// affectd.yaml:3: detector.detect_evrey: unknown key (known: model, score_threshold, detect_every, refine_runs, threads, verify, verify_threshold)
	// affectd.yaml:5: batch.max_wait: want a duration with a unit, such as "5ms", "1.5s" or "2m", got "5"
	// 2 problems; first key: detector.detect_evrey
}
