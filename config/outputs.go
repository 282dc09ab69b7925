package config

import (
	"net"
	"strconv"
	"unicode"

	"github.com/affectd/affectd/capture/streamid"
)

// Output sends one stream's chosen face to an animation rig over UDP (see
// README "Drive a rig"): VMC (OSC; VSeeFace, VNyan, Warudo, EVMC4U), plain
// OSC (TouchDesigner, Max, Pure Data, Resolume) or Apple's Live Link Face
// packets (Unreal Engine's Live Link).
type Output struct {
	// Name identifies the output in the API and metrics; default
	// "<kind>-<index>".
	Name string `yaml:"name"`
	// Kind is vmc, osc or livelink.
	Kind string `yaml:"kind"`
	// Target is the receiver, host:port (VMC receivers commonly listen on
	// 39539, Live Link Face on 11111).
	Target string `yaml:"target"`
	// Stream is the stream whose faces are sent.
	Stream string `yaml:"stream"`
	// Face picks the face: largest (default), first (the oldest track) or
	// a track number.
	Face string `yaml:"face"`
	// Rate caps the packets per second (0: every frame).
	Rate float64 `yaml:"rate"`
	// Bundle sends each frame as OSC bundles (default true); false sends
	// single messages, which some VMC receivers want. vmc only.
	Bundle *bool `yaml:"bundle"`
	// Names are the blend-shape names sent: arkit (the 52, for perfect-sync
	// avatars; default) or vrm (A I U E O Blink Blink_L Blink_R Joy Angry
	// Sorrow Fun). vmc only.
	Names string `yaml:"names"`
	// Gain multiplies blend-shape weights (default 1) after the dead zone
	// (default 0) is cut away: w' = clamp((w-dz)/(1-dz)·gain, 0, 1).
	Gain     float64 `yaml:"gain"`
	DeadZone float64 `yaml:"dead_zone"`
	// Subject is the Live Link subject name (default "affectd"). livelink
	// only.
	Subject string `yaml:"subject"`
}

// MaxOutputs bounds the outputs list.
const MaxOutputs = 64

// defaults fills an output's defaults (Parse does it for files; i is
// its index in the list).
func (o *Output) defaults(i int) {
	if o.Name == "" && o.Kind != "" {
		o.Name = o.Kind + "-" + strconv.Itoa(i)
	}
	if o.Face == "" {
		o.Face = "largest"
	}
	if o.Gain == 0 {
		o.Gain = 1
	}
	if o.Kind == "vmc" {
		if o.Names == "" {
			o.Names = "arkit"
		}
		if o.Bundle == nil {
			t := true
			o.Bundle = &t
		}
	}
	if o.Kind == "livelink" && o.Subject == "" {
		o.Subject = "affectd"
	}
}

func validateOutputs(p *problems, outs []Output) {
	if len(outs) > MaxOutputs {
		p.add("outputs", "at most %d outputs, got %d", MaxOutputs, len(outs))
		return
	}
	first := map[string]int{}
	for i := range outs {
		at := "outputs[" + strconv.Itoa(i) + "]"
		o := outs[i]
		o.validate(p, at)
		if o.Name == "" {
			continue
		}
		if j, dup := first[o.Name]; dup {
			p.add(at+".name", "duplicate name %s (also outputs[%d])", quote(o.Name), j)
		} else {
			first[o.Name] = i
		}
	}
}

func (o Output) validate(p *problems, at string) {
	if o.Name != "" && !streamid.Valid(o.Name) {
		p.add(at+".name", "want %s, got %s", streamid.Rule, quote(o.Name))
	}
	switch o.Kind {
	case "vmc", "osc", "livelink":
	case "":
		p.add(at+".kind", "required: vmc, osc or livelink")
	default:
		p.add(at+".kind", "want vmc, osc or livelink, got %s", quote(o.Kind))
	}
	if host, port, err := net.SplitHostPort(o.Target); err != nil || host == "" {
		p.add(at+".target", `want host:port such as "127.0.0.1:39539", got %s`, quote(o.Target))
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		p.add(at+".target", "port must be a number from 1 to 65535, got %s", quote(port))
	}
	switch {
	case o.Stream == "":
		p.add(at+".stream", "required")
	case !streamid.Valid(o.Stream):
		p.add(at+".stream", "want %s, got %s", streamid.Rule, quote(o.Stream))
	}
	switch o.Face {
	case "largest", "first":
	default:
		if n, err := strconv.Atoi(o.Face); err != nil || n < 1 {
			p.add(at+".face", "want largest, first or a track number, got %s", quote(o.Face))
		}
	}
	if o.Rate < 0 || o.Rate > 1000 {
		p.add(at+".rate", "must be between 0 (every frame) and 1000 packets/s, got %v", o.Rate)
	}
	if o.Gain <= 0 || o.Gain > 10 {
		p.add(at+".gain", "must be above 0 and at most 10, got %v", o.Gain)
	}
	if o.DeadZone < 0 || o.DeadZone >= 1 {
		p.add(at+".dead_zone", "must be from 0 up to (not including) 1, got %v", o.DeadZone)
	}
	if o.Kind != "vmc" {
		if o.Bundle != nil {
			p.add(at+".bundle", "only applies to vmc outputs, not %s", quote(o.Kind))
		}
		if o.Names != "" {
			p.add(at+".names", "only applies to vmc outputs, not %s", quote(o.Kind))
		}
	} else if o.Names != "arkit" && o.Names != "vrm" {
		p.add(at+".names", "want arkit or vrm, got %s", quote(o.Names))
	}
	if o.Kind != "livelink" {
		if o.Subject != "" {
			p.add(at+".subject", "only applies to livelink outputs, not %s", quote(o.Kind))
		}
	} else if len(o.Subject) > 64 || !printable(o.Subject) {
		p.add(at+".subject", "want at most 64 printable characters, got %s", quote(o.Subject))
	}
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) || r == unicode.ReplacementChar {
			return false
		}
	}
	return true
}
