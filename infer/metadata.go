package infer

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
)

// Metadata keys of the model contract (DESIGN.md, "Model contract").
const (
	MetaInput = "affectd.input"
	MetaHeads = "affectd.heads"
	MetaModel = "affectd.model"
)

// Metadata describes a model: what its input expects and how to read its
// outputs. It comes from the ONNX file's metadata_props, so one daemon serves
// any fine-tune without code changes.
type Metadata struct {
	Input InputSpec `json:"input"`
	Heads []Head    `json:"heads"`
	Model ModelInfo `json:"model"`

	// FeatureDim is the width of the features output (0 without one).
	FeatureDim int `json:"feature_dim"`
	// NumLogits is the width of the logits output (0 without one).
	NumLogits int `json:"num_logits"`
}

// InputSpec is affectd.input: the aligned crop the model was trained on.
type InputSpec struct {
	// Size is the crop's side in pixels (224 for MAE-Face).
	Size int `json:"size"`
	// Mean and Std normalise RGB values in [0,1]: (pixel/255 - mean) / std.
	Mean [3]float32 `json:"mean"`
	Std  [3]float32 `json:"std"`
	// Crop names the alignment the model was trained on (e.g. "align5/v1").
	Crop string `json:"crop"`
	// Layout and Color must be NCHW and RGB (the only layout affectd feeds);
	// empty means those.
	Layout string `json:"layout,omitempty"`
	Color  string `json:"color,omitempty"`
}

// Activation is how a head's raw logits become values.
type Activation int

// Activations a head can declare.
const (
	ActivationNone Activation = iota
	ActivationSigmoid
	ActivationTanh
	ActivationSoftmax
)

var activationNames = [...]string{"none", "sigmoid", "tanh", "softmax"}

func (a Activation) String() string {
	if int(a) < len(activationNames) {
		return activationNames[a]
	}
	return fmt.Sprintf("Activation(%d)", int(a))
}

// MarshalText implements encoding.TextMarshaler.
func (a Activation) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Activation) UnmarshalText(b []byte) error {
	for i, n := range activationNames {
		if string(b) == n {
			*a = Activation(i)
			return nil
		}
	}
	return fmt.Errorf("unknown activation %q (want %s)", b, strings.Join(activationNames[:], ", "))
}

// Head is one slice of the logits output (an entry of affectd.heads).
type Head struct {
	Name       string     `json:"name"`
	Offset     int        `json:"offset"`
	Labels     []string   `json:"labels"`
	Activation Activation `json:"activation"`
	// Threshold, when set, turns sigmoid values into occurrence flags
	// (value >= threshold).
	Threshold *float32 `json:"threshold,omitempty"`
}

// ModelInfo is affectd.model: where the model came from.
type ModelInfo struct {
	Name             string `json:"name"`
	Backbone         string `json:"backbone"`
	GlobalPool       bool   `json:"global_pool"`
	CheckpointSHA256 string `json:"checkpoint_sha256"`
	Precision        string `json:"precision"`
	// Quantization describes an int8 export: what was quantized and the
	// accuracy gate's figures (nil for fp32 and fp16).
	Quantization *Quantization `json:"quantization,omitempty"`
	// Demo marks a random model whose outputs are not affect estimates.
	Demo bool `json:"demo"`
}

// Quantization is affectd.model.quantization, written by tools/export --int8.
type Quantization struct {
	Layers      int    `json:"layers"`
	Weights     string `json:"weights"`
	Activations string `json:"activations"`
	Heads       bool   `json:"heads"`
	Gate        string `json:"gate"`
}

var headName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// parseMetadata decodes and validates the affectd.* entries. lookup returns
// a metadata value and whether it exists.
func parseMetadata(lookup func(key string) (string, bool)) (Metadata, error) {
	var md Metadata
	raw, ok := lookup(MetaInput)
	if !ok {
		return md, fmt.Errorf("%w: no %s entry (export the model with tools/export)", ErrNoMetadata, MetaInput)
	}
	// Unknown fields are ignored: a newer exporter may add some.
	if err := json.Unmarshal([]byte(raw), &md.Input); err != nil {
		return md, fmt.Errorf("%w: %s: %v", ErrBadMetadata, MetaInput, err)
	}
	if md.Input.Size <= 0 || md.Input.Size > 4096 {
		return md, fmt.Errorf("%w: %s: size %d out of range", ErrBadMetadata, MetaInput, md.Input.Size)
	}
	if l := md.Input.Layout; l != "" && l != "NCHW" {
		return md, fmt.Errorf("%w: %s: layout %q (affectd feeds NCHW)", ErrBadMetadata, MetaInput, l)
	}
	if c := md.Input.Color; c != "" && c != "RGB" {
		return md, fmt.Errorf("%w: %s: color %q (affectd feeds RGB)", ErrBadMetadata, MetaInput, c)
	}
	for c, s := range md.Input.Std {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return md, fmt.Errorf("%w: %s: std[%d] = %v must be > 0", ErrBadMetadata, MetaInput, c, s)
		}
	}
	if raw, ok := lookup(MetaHeads); ok {
		if err := json.Unmarshal([]byte(raw), &md.Heads); err != nil {
			return md, fmt.Errorf("%w: %s: %v", ErrBadMetadata, MetaHeads, err)
		}
	}
	if raw, ok := lookup(MetaModel); ok {
		if err := json.Unmarshal([]byte(raw), &md.Model); err != nil {
			return md, fmt.Errorf("%w: %s: %v", ErrBadMetadata, MetaModel, err)
		}
	}
	seen := map[string]bool{}
	for i, h := range md.Heads {
		if !headName.MatchString(h.Name) {
			return md, fmt.Errorf("%w: %s[%d]: name %q", ErrBadMetadata, MetaHeads, i, h.Name)
		}
		if seen[h.Name] {
			return md, fmt.Errorf("%w: %s[%d]: duplicate head %q", ErrBadMetadata, MetaHeads, i, h.Name)
		}
		seen[h.Name] = true
		if h.Offset < 0 || len(h.Labels) == 0 {
			return md, fmt.Errorf("%w: %s[%d] (%s): offset %d with %d labels", ErrBadMetadata, MetaHeads, i, h.Name, h.Offset, len(h.Labels))
		}
		if h.Threshold != nil && h.Activation != ActivationSigmoid {
			return md, fmt.Errorf("%w: %s[%d] (%s): a threshold needs the sigmoid activation", ErrBadMetadata, MetaHeads, i, h.Name)
		}
	}
	return md, nil
}

// checkHeads verifies that the heads fit in a logits output of width k and
// do not overlap.
func (md *Metadata) checkHeads(k int) error {
	if len(md.Heads) > 0 && k == 0 {
		return fmt.Errorf("%w: %s declares %d heads but the model has no logits output", ErrBadMetadata, MetaHeads, len(md.Heads))
	}
	owner := make([]string, k)
	for _, h := range md.Heads {
		end := h.Offset + len(h.Labels)
		if end > k {
			return fmt.Errorf("%w: head %q spans logits [%d,%d) but logits has %d", ErrBadMetadata, h.Name, h.Offset, end, k)
		}
		for j := h.Offset; j < end; j++ {
			if owner[j] != "" {
				return fmt.Errorf("%w: heads %q and %q overlap at logit %d", ErrBadMetadata, owner[j], h.Name, j)
			}
			owner[j] = h.Name
		}
	}
	return nil
}

// Head returns the head with the given name.
func (md *Metadata) Head(name string) (Head, bool) {
	for _, h := range md.Heads {
		if h.Name == name {
			return h, true
		}
	}
	return Head{}, false
}
