//go:build matprofile

package daemon

import (
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
