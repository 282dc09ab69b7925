package train

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/affectd/affectd/infer"
)

// AttachHeads returns the ONNX model base, an encoder whose output
// "features" is [N, D] (tools/export of the released MAE-Face encoder),
// with the heads on it: per head a Gemm from features (with a hidden
// layer: Gemm, Relu, Gemm), and a Concat of the heads' logits, in order,
// into a new output "logits" and affectd's metadata saying
// where each head is, its labels and activation, so `affectd run -model`
// loads it as it is. model replaces affectd.model's entry (nil keeps the
// base's).
//
// AU heads' per-label thresholds are folded into their biases: the head's
// probability is σ(z − logit(t)), so that 0.5 is each AU's F1-best cut on
// the validation split and one threshold (0.5) serves the head.
//
// The file is edited at the protobuf wire level, with no ONNX library:
// the base's fields are copied as they are, except its metadata, and a
// second `graph` field holding the new node, initializers and output is
// appended, which every protobuf parser merges into the first (repeated
// fields concatenate).
func AttachHeads(base []byte, heads []*Head, model *infer.ModelInfo) ([]byte, error) {
	if len(heads) == 0 {
		return nil, errors.New("no heads to attach")
	}
	fields, err := scan(base)
	if err != nil {
		return nil, fmt.Errorf("the base model: %w", err)
	}
	var out []byte
	meta := map[string]string{}
	var order []string
	graphs, outs := 0, map[string]bool{}
	for _, f := range fields {
		switch f.num {
		case 14: // metadata_props
			kv, err := scan(f.data)
			if err != nil {
				return nil, fmt.Errorf("the base model's metadata: %w", err)
			}
			var k, v string
			for _, e := range kv {
				switch e.num {
				case 1:
					k = string(e.data)
				case 2:
					v = string(e.data)
				}
			}
			if _, dup := meta[k]; !dup {
				order = append(order, k)
			}
			meta[k] = v
			continue
		case 7: // graph (perhaps in parts: parsers merge them)
			graphs++
			if err := graphOutputs(f.data, outs); err != nil {
				return nil, err
			}
		}
		out = append(out, f.raw...)
	}
	switch {
	case graphs == 0:
		return nil, errors.New("the base model has no graph")
	case outs[infer.OutputLogits]:
		return nil, errors.New(`the base model has heads already (a "logits" output): export the encoder alone`)
	case !outs[infer.OutputFeatures]:
		return nil, errors.New(`the base model has no "features" output: export the encoder (tools/export without heads)`)
	}
	if _, ok := meta[infer.MetaInput]; !ok {
		return nil, fmt.Errorf("the base model has no %s metadata (export it with tools/export)", infer.MetaInput)
	}

	// Each head: Gemm(features) → [Relu → Gemm] → its logits; then the
	// heads' logits side by side (Concat) are "logits".
	var g []byte
	var metaHeads []infer.Head
	var parts []string
	k := 0
	for i, h := range heads {
		if len(h.W) != len(h.Labels) || len(h.B) != len(h.Labels) {
			return nil, fmt.Errorf("head %s: %d weight rows and %d biases for %d labels", h.Name, len(h.W), len(h.B), len(h.Labels))
		}
		mh := infer.Head{Name: h.Name, Offset: k, Labels: h.Labels}
		if err := mh.Activation.UnmarshalText([]byte(h.Activation)); err != nil {
			return nil, fmt.Errorf("head %s: %w", h.Name, err)
		}
		B := append([]float32(nil), h.B...)
		if h.Thresholds != nil {
			for j := range B {
				t := float64(min(max(h.Thresholds[j], 1e-4), 1-1e-4))
				B[j] -= float32(math.Log(t / (1 - t)))
			}
			half := float32(0.5)
			mh.Threshold = &half
		}
		prefix := fmt.Sprintf("affectd_train/%d_%s/", i, h.Name)
		in := infer.OutputFeatures
		if h.W1 != nil {
			if len(h.B1) != len(h.W1) {
				return nil, fmt.Errorf("head %s: %d hidden rows, %d hidden biases", h.Name, len(h.W1), len(h.B1))
			}
			g = gemm(g, prefix+"hidden", in, h.W1, h.B1)
			g = appendBytes(g, 1, node("Relu", prefix+"relu", []string{prefix + "hidden"}, prefix+"relu"))
			in = prefix + "relu"
		}
		g = gemm(g, prefix+"logits", in, h.W, B)
		parts = append(parts, prefix+"logits")
		metaHeads = append(metaHeads, mh)
		k += len(h.Labels)
	}
	js, err := json.Marshal(metaHeads)
	if err != nil {
		return nil, err
	}
	if _, ok := meta[infer.MetaHeads]; !ok {
		order = append(order, infer.MetaHeads)
	}
	meta[infer.MetaHeads] = string(js)
	if model != nil {
		mj, err := json.Marshal(model)
		if err != nil {
			return nil, err
		}
		if _, ok := meta[infer.MetaModel]; !ok {
			order = append(order, infer.MetaModel)
		}
		meta[infer.MetaModel] = string(mj)
	}

	g = appendBytes(g, 1, node("Concat", "affectd_train/concat", parts, infer.OutputLogits, intAttr("axis", 1)))
	g = appendBytes(g, 12, valueInfo(infer.OutputLogits, k))
	out = appendBytes(out, 7, g)
	for _, key := range order {
		var e []byte
		e = appendBytes(e, 1, []byte(key))
		e = appendBytes(e, 2, []byte(meta[key]))
		out = appendBytes(out, 14, e)
	}
	return out, nil
}

// gemm appends to graph g the node out = Gemm(in, W, b) with transB (W is
// rows × cols: out has a column per row) and its two initializers.
func gemm(g []byte, out, in string, W [][]float32, b []float32) []byte {
	flat := make([]float32, 0, len(W)*len(W[0]))
	for _, row := range W {
		flat = append(flat, row...)
	}
	g = appendBytes(g, 1, node("Gemm", out, []string{in, out + "_w", out + "_b"}, out, intAttr("transB", 1)))
	g = appendBytes(g, 5, tensor(out+"_w", []int64{int64(len(W)), int64(len(W[0]))}, flat))
	return appendBytes(g, 5, tensor(out+"_b", []int64{int64(len(b))}, b))
}

// node is a NodeProto.
func node(op, name string, inputs []string, output string, attrs ...[]byte) []byte {
	var n []byte
	for _, in := range inputs {
		n = appendBytes(n, 1, []byte(in))
	}
	n = appendBytes(n, 2, []byte(output))
	n = appendBytes(n, 3, []byte(name))
	n = appendBytes(n, 4, []byte(op))
	for _, a := range attrs {
		n = appendBytes(n, 5, a)
	}
	return n
}

// intAttr is an INT AttributeProto.
func intAttr(name string, v int64) []byte {
	var a []byte
	a = appendBytes(a, 1, []byte(name))
	a = appendVarintField(a, 3, uint64(v)) // i
	return appendVarintField(a, 20, 2)     // type INT
}

// tensor is a float TensorProto with raw little-endian data.
func tensor(name string, dims []int64, v []float32) []byte {
	var t []byte
	for _, d := range dims {
		t = appendVarintField(t, 1, uint64(d))
	}
	t = appendVarintField(t, 2, 1) // FLOAT
	t = appendBytes(t, 8, []byte(name))
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
	}
	return appendBytes(t, 9, raw)
}

// valueInfo is a float [N, k] ValueInfoProto (N symbolic).
func valueInfo(name string, k int) []byte {
	var n, kd, shape, tt, typ, vi []byte
	n = appendBytes(n, 2, []byte("N"))       // dim_param
	kd = appendVarintField(kd, 1, uint64(k)) // dim_value
	shape = appendBytes(appendBytes(shape, 1, n), 1, kd)
	tt = appendVarintField(tt, 1, 1) // elem_type FLOAT
	tt = appendBytes(tt, 2, shape)
	typ = appendBytes(typ, 1, tt) // tensor_type
	vi = appendBytes(vi, 1, []byte(name))
	return appendBytes(vi, 2, typ)
}

// graphOutputs adds a GraphProto's output names to outs.
func graphOutputs(g []byte, outs map[string]bool) error {
	fields, err := scan(g)
	if err != nil {
		return fmt.Errorf("the base model's graph: %w", err)
	}
	for _, f := range fields {
		if f.num != 12 {
			continue
		}
		vi, err := scan(f.data)
		if err != nil {
			return err
		}
		for _, e := range vi {
			if e.num == 1 {
				outs[string(e.data)] = true
			}
		}
	}
	return nil
}

// field is one protobuf field: its number, its bytes as written (raw) and,
// for length-delimited ones, its payload.
type field struct {
	num  int
	raw  []byte
	data []byte
}

// scan splits a protobuf message into its top-level fields.
func scan(b []byte) ([]field, error) {
	var out []field
	for i := 0; i < len(b); {
		start := i
		key, n := binary.Uvarint(b[i:])
		if n <= 0 {
			return nil, errors.New("bad field key")
		}
		i += n
		f := field{num: int(key >> 3)}
		switch key & 7 {
		case 0:
			_, n := binary.Uvarint(b[i:])
			if n <= 0 {
				return nil, errors.New("bad varint")
			}
			i += n
		case 1:
			i += 8
		case 5:
			i += 4
		case 2:
			l, n := binary.Uvarint(b[i:])
			if n <= 0 || l > uint64(len(b)-i-n) {
				return nil, errors.New("bad length")
			}
			i += n
			f.data = b[i : i+int(l)]
			i += int(l)
		default:
			return nil, fmt.Errorf("wire type %d not supported", key&7)
		}
		if i > len(b) {
			return nil, errors.New("truncated")
		}
		f.raw = b[start:i]
		out = append(out, f)
	}
	return out, nil
}

func appendVarintField(b []byte, num int, v uint64) []byte {
	b = binary.AppendUvarint(b, uint64(num)<<3)
	return binary.AppendUvarint(b, v)
}

func appendBytes(b []byte, num int, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(num)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}
