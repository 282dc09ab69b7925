//go:build matprofile

package daemon

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"
)

// matsCollector is affectd_opencv_mats, the OpenCV Mats alive, in builds
// with gocv's Mat profile (-tags matprofile: the tests and bench soak).
func matsCollector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "affectd_opencv_mats",
		Help: "OpenCV Mats alive (builds with -tags matprofile only).",
	}, func() float64 { return float64(gocv.MatProfile.Count()) })
}

// With AFFECTD_MATS_DUMP set to a folder, SIGUSR1 writes the Mats alive,
// grouped by the stack that made them, to <folder>/mats-<unix ms>.txt
// (bench soak asks for one at its first and last samples, so that a Mat
// count that grew can be traced to its maker).
func init() {
	dir := os.Getenv("AFFECTD_MATS_DUMP")
	if dir == "" {
		return
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() { // lives as long as the process: a debug build's hook
		for range usr1 {
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("mats-%d.txt", time.Now().UnixMilli())))
			if err != nil {
				continue
			}
			gocv.MatProfile.WriteTo(f, 1)
			f.Close()
		}
	}()
}
