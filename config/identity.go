package config

import (
	"os"
	"path/filepath"
	"time"
)

// Identity configures re-identification (a face that comes back takes its
// old id, neutral, calibration and smoothing) and the enrolled people
// (POST /v1/identities). `identity: global` is short for `identity:
// {mode: global}`.
type Identity struct {
	// Mode is stream (faces come back within their stream; the default),
	// global (across every stream of the daemon) or off.
	Mode string `yaml:"mode"`
	// Model is the face-embedding model (mobilefacenet.onnx, converted by
	// `make setup`); a missing file turns identity off (logged).
	Model string `yaml:"model"`
	// Threshold is the cosine of two embeddings at or above which they are
	// one person (track/reid.DefaultThreshold, measured on the test media).
	Threshold float64 `yaml:"threshold"`
	// Expiry is how long an ended face waits for its return.
	Expiry Duration `yaml:"expiry"`
	// Every is how often a tracked face is embedded again (never every
	// frame).
	Every Duration `yaml:"every"`
	// Store is the file of enrolled people; "" is identities.json in the
	// state directory (StateDir).
	Store string `yaml:"store"`
}

// The identity modes.
const (
	IdentityStream = "stream"
	IdentityGlobal = "global"
	IdentityOff    = "off"
)

func defaultIdentity() Identity {
	return Identity{
		Mode:      IdentityStream,
		Model:     "/usr/lib/affectd/human-models/mobilefacenet.onnx",
		Threshold: 0.90,
		Expiry:    Duration(30 * time.Second),
		Every:     Duration(2 * time.Second),
	}
}

// shorthand takes `identity: <mode>`.
func (i *Identity) shorthand(s string) { i.Mode = s }

func (i Identity) validate(p *problems) {
	switch i.Mode {
	case IdentityStream, IdentityGlobal, IdentityOff:
	default:
		p.add("identity.mode", "must be stream, global or off, got %s", quote(i.Mode))
	}
	if !(i.Threshold > 0 && i.Threshold < 1) {
		p.add("identity.threshold", "must be a cosine between 0 and 1, got %g", i.Threshold)
	}
	if i.Expiry.D() < 0 || i.Expiry.D() > 24*time.Hour {
		p.add("identity.expiry", "must be between 0 and 24h, got %s", i.Expiry)
	}
	if i.Every.D() < 100*time.Millisecond || i.Every.D() > time.Hour {
		p.add("identity.every", "must be between 100ms and 1h, got %s", i.Every)
	}
}

// StateDir is where the daemon keeps what it learns (enrolled people):
// systemd's $STATE_DIRECTORY (StateDirectory=affectd: /var/lib/affectd),
// else $XDG_STATE_HOME/affectd, else ~/.local/state/affectd.
func StateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return filepath.SplitList(d)[0]
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "affectd")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "affectd")
	}
	return filepath.Join(os.TempDir(), "affectd-state")
}

// StorePath is the enrolled people's file: Store, or identities.json in
// StateDir.
func (i Identity) StorePath() string {
	if i.Store != "" {
		return i.Store
	}
	return filepath.Join(StateDir(), "identities.json")
}
