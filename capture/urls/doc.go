// Package urls shows source URLs without their secrets: the one place that
// decides what of a camera's URL may appear in logs, the API, statuses and
// `check-config`. Pure Go, no dependencies.
package urls
