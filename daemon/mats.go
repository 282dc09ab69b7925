//go:build !matprofile

package daemon

import "github.com/prometheus/client_golang/prometheus"

// matsCollector is nil: Mats are counted only with -tags matprofile
// (mats_matprofile.go).
func matsCollector() prometheus.Collector { return nil }
