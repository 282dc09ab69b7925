package daemon

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"

	"github.com/affectd/affectd/infer"
)

// Version is set at build time (-ldflags "-X github.com/affectd/affectd/daemon.Version=…").
var Version = "dev"

// Main runs the affectd command line and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "version":
		fmt.Fprintf(stdout, "affectd %s\n", versionString())
		return 0
	case "model-info":
		return modelInfo(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "affectd: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: affectd <command> [flags]

commands:
  model-info -ort LIB MODEL   load an ONNX model and print its affectd metadata
  version                     print the version
`)
}

func versionString() string {
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}

func modelInfo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("model-info", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lib := fs.String("ort", "/usr/lib/affectd/libonnxruntime.so.1", "ONNX Runtime library")
	provider := fs.String("provider", "cpu", "execution provider: cpu, cuda, tensorrt")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "affectd model-info: want one model path")
		return 2
	}
	p, err := infer.ParseProvider(*provider)
	if err != nil {
		fmt.Fprintf(stderr, "affectd model-info: -provider: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	m, err := infer.Load(fs.Arg(0), infer.SessionOptions{LibraryPath: *lib, Provider: p}, log)
	if err != nil {
		fmt.Fprintf(stderr, "affectd model-info: %v\n", err)
		return 1
	}
	defer m.Close()
	out := struct {
		infer.Metadata
		Provider string `json:"provider"`
		ORT      string `json:"onnxruntime"`
	}{m.Metadata(), m.Provider().String(), infer.RuntimeVersion()}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.Encode(out)
	return 0
}
