package tfjs2onnx_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/affectd/affectd/tools/testenv"
	"github.com/affectd/affectd/track"
	"github.com/affectd/affectd/track/ortenv"
)

// Versions fetched by tools/setup.sh.
const (
	modelsVersion = "3.0.4"
	tfjsVersion   = "4.22.0"
)

// The models' inputs, as @vladmandic/human 3.0.4 feeds them
// (tools/tfjs2onnx/MODELS.md): face crops enlarged around the detector's
// box, RGB in [0,1] (emotion: grey in [-1,1]).
var models = []struct {
	name    string
	size    int
	grey    bool
	enlarge float64
	tol     float64 // max |ORT − TF.js| over all outputs
}{
	{"facemesh", 192, false, 1.4, 0.01}, // mesh coordinates are pixels of the 192 crop: 0.01 px
	{"iris", 64, false, 0.6, 0.01},      // 64-pixel crops around an eye (pixels of the crop)
	{"emotion", 64, true, 1.4, 1e-4},
	{"mobilefacenet", 112, false, 1.4, 1e-4},
}

func TestParityWithTFJS(t *testing.T) {
	lib := testenv.RequireORT(t)
	root, _ := testenv.Root()
	cache, _ := testenv.Cache()
	dir := filepath.Join(cache, "human-models", modelsVersion)
	nodeModules := filepath.Join(cache, "npm", "tfjs-"+tfjsVersion, "node_modules")
	for _, p := range []string{dir, nodeModules} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v: run `make setup`", err)
		}
	}
	if err := ortenv.Init(lib); err != nil {
		t.Fatal(err)
	}
	faces := realFaces(t, lib, cache)
	for _, m := range models {
		t.Run(m.name, func(t *testing.T) {
			tmp := t.TempDir()
			onnxPath := filepath.Join(tmp, m.name+".onnx")
			if err := testenv.RunPython(filepath.Join(root, "tools", "tfjs2onnx", "tfjs2onnx.py"),
				filepath.Join(dir, m.name+".json"), "-o", onnxPath); err != nil {
				t.Fatal(err)
			}
			input, n := crops(t, faces, m.size, m.grey, m.enlarge)
			inPath := filepath.Join(tmp, "input.f32")
			writeF32(t, inPath, input)
			node := exec.Command("node", filepath.Join(root, "tools", "tfjs2onnx", "run_tfjs.js"),
				filepath.Join(dir, m.name+".json"), inPath, fmt.Sprint(n), filepath.Join(tmp, "ref"))
			node.Env = append(os.Environ(), "NODE_PATH="+nodeModules)
			if out, err := node.CombinedOutput(); err != nil {
				t.Fatalf("TensorFlow.js: %v\n%s", err, out)
			}
			var meta struct {
				TFJS, Backend string
				Outputs       []struct {
					Name  string
					Shape []int64
				}
			}
			b, err := os.ReadFile(filepath.Join(tmp, "ref.json"))
			if err != nil || json.Unmarshal(b, &meta) != nil {
				t.Fatalf("reference: %v", err)
			}
			if meta.TFJS != tfjsVersion || meta.Backend != "cpu" {
				t.Fatalf("reference ran on TF.js %s %s", meta.TFJS, meta.Backend)
			}
			ins, outs, err := ort.GetInputOutputInfo(onnxPath)
			if err != nil {
				t.Fatal(err)
			}
			if len(outs) != len(meta.Outputs) {
				t.Fatalf("%d ONNX outputs, TF.js has %d", len(outs), len(meta.Outputs))
			}
			var names []string
			for _, o := range outs {
				names = append(names, o.Name)
			}
			s, err := ort.NewDynamicAdvancedSession(onnxPath, []string{ins[0].Name}, names, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Destroy()
			ch := int64(3)
			if m.grey {
				ch = 1
			}
			x, err := ort.NewTensor(ort.NewShape(int64(n), int64(m.size), int64(m.size), ch), input)
			if err != nil {
				t.Fatal(err)
			}
			defer x.Destroy()
			ys := make([]ort.Value, len(names))
			if err := s.Run([]ort.Value{x}, ys); err != nil {
				t.Fatal(err)
			}
			for i, y := range ys {
				got := y.(*ort.Tensor[float32]).GetData()
				want := readF32(t, filepath.Join(tmp, fmt.Sprintf("ref.%d.f32", i)))
				if fmt.Sprint(y.GetShape()) != fmt.Sprint(ort.NewShape(meta.Outputs[i].Shape...)) {
					t.Errorf("output %s: shape %v, TF.js %v", names[i], y.GetShape(), meta.Outputs[i].Shape)
				}
				d, scale := maxDiff(got, want)
				t.Logf("%s output %s (TF.js %s): %d faces, max |ORT − TF.js| = %.2e (values up to %.3g)", m.name, names[i], meta.Outputs[i].Name, n, d, scale)
				if d > m.tol || math.IsNaN(d) {
					t.Errorf("output %s differs from TF.js by %.3g > %g", names[i], d, m.tol)
				}
				y.Destroy()
			}
		})
	}
}

// TestRefusesUnknownOp: an op the converter does not know stops it with
// the op's name and exit status 2.
func TestRefusesUnknownOp(t *testing.T) {
	root, _ := testenv.Root()
	tmp := t.TempDir()
	model := `{"format":"graph-model","modelTopology":{"node":[
	 {"name":"x","op":"Placeholder","attr":{"dtype":{"type":"DT_FLOAT"},"shape":{"shape":{"dim":[{"size":"-1"},{"size":"4"},{"size":"4"},{"size":"3"}]}}}},
	 {"name":"y","op":"Erf","input":["x"]}]},"weightsManifest":[]}`
	p := filepath.Join(tmp, "m.json")
	os.WriteFile(p, []byte(model), 0o644)
	err := testenv.RunPython(filepath.Join(root, "tools", "tfjs2onnx", "tfjs2onnx.py"), p, "-o", filepath.Join(tmp, "m.onnx"))
	if err == nil || !strings.Contains(err.Error(), "op Erf") {
		t.Fatalf("want a refusal naming Erf, got %v", err)
	}
}

type face struct {
	img gocv.Mat
	box track.Rect
	kp  [track.NumKeypoints]track.Point
}

// realFaces detects the faces of the test media's public-domain photos.
func realFaces(t *testing.T, lib, cache string) []face {
	t.Helper()
	det, err := track.NewDetector(track.DetectorOptions{LibraryPath: lib,
		ModelPath: filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	var out []face
	for _, name := range []string{"grace_hopper_512x512.jpg", "astronaut.png"} {
		img := gocv.IMRead(filepath.Join(cache, "photos", name), gocv.IMReadColor)
		if img.Empty() {
			t.Fatalf("%s: unreadable (run `make setup`)", name)
		}
		t.Cleanup(func() { img.Close() })
		dets, err := det.Detect(img, nil)
		if err != nil || len(dets) == 0 {
			t.Fatalf("%s: %d faces, %v", name, len(dets), err)
		}
		for _, d := range dets {
			out = append(out, face{img: img, box: d.Box, kp: d.Keypoints})
		}
	}
	return out
}

// crops cuts each face (for the iris model, each eye) as a square around
// its centre, side enlarge × the box's larger side, resized to size.
func crops(t *testing.T, faces []face, size int, grey bool, enlarge float64) ([]float32, int) {
	t.Helper()
	var out []float32
	n := 0
	for _, f := range faces {
		type sq struct{ cx, cy, side float64 }
		side := math.Max(float64(f.box.W), float64(f.box.H))
		regions := []sq{{float64(f.box.Center().X), float64(f.box.Center().Y), side * enlarge}}
		if size == 64 && !grey { // iris: one crop per eye
			regions = []sq{
				{float64(f.kp[track.KeyRightEye].X), float64(f.kp[track.KeyRightEye].Y), side * enlarge / 2},
				{float64(f.kp[track.KeyLeftEye].X), float64(f.kp[track.KeyLeftEye].Y), side * enlarge / 2},
			}
		}
		for _, r := range regions {
			x0, y0 := int(r.cx-r.side/2), int(r.cy-r.side/2)
			rect := image.Rect(x0, y0, x0+int(r.side), y0+int(r.side)).Intersect(image.Rect(0, 0, f.img.Cols(), f.img.Rows()))
			roi := f.img.Region(rect)
			small := gocv.NewMat()
			gocv.Resize(roi, &small, image.Pt(size, size), 0, 0, gocv.InterpolationLinear)
			roi.Close()
			for y := 0; y < size; y++ {
				for x := 0; x < size; x++ {
					v := small.GetVecbAt(y, x) // BGR
					r, g, b := float32(v[2])/255, float32(v[1])/255, float32(v[0])/255
					if grey {
						out = append(out, (0.2989*r+0.5870*g+0.1140*b-0.5)*2)
					} else {
						out = append(out, r, g, b)
					}
				}
			}
			small.Close()
			n++
		}
	}
	return out, n
}

func writeF32(t *testing.T, path string, v []float32) {
	t.Helper()
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readF32(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func maxDiff(a, b []float32) (d, scale float64) {
	if len(a) != len(b) {
		return math.Inf(1), 0
	}
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
		scale = math.Max(scale, math.Abs(float64(b[i])))
	}
	return d, scale
}
