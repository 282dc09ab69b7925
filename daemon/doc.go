// Package daemon wires affectd together: it reads the configuration, starts
// capture, tracking, inference and the outputs, and maps signals to
// cancellation. It is the only package that imports config/, and the only
// one that logs on its own behalf.
package daemon
