//go:build matprofile

package daemon

import "gocv.io/x/gocv"

// matCount is the number of OpenCV Mats alive (gocv's Mat profile).
func matCount() int { return gocv.MatProfile.Count() }
