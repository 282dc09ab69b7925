package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/affectd/affectd/config"
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
	case "run":
		return runCmd(args[1:], stderr)
	case "analyze":
		return analyzeCmd(args[1:], stdout, stderr)
	case "check-config":
		return checkConfig(args[1:], stdout, stderr)
	case "train":
		return trainCmd(args[1:], stdout, stderr)
	case "features":
		return featuresCmd(args[1:], stdout, stderr)
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
  run -config FILE [-listen ADDR] [-model PATH|none] [-log-level L] [-log-format text|json]
                              run the daemon (SIGHUP reloads the streams)
  analyze [flags] FILE|DIR... analyse video files offline into OpenFace-style CSV (or JSON Lines);
                              resumable; -h for its flags
  features -model ENCODER.onnx [-out DIR] [-every N] FOLDER...
                              MAE-Face features of aligned face crops (ABAW cropped_aligned) for train
  train -labels L -features DIR -base ENCODER.onnx [-out DIR]
                              fit AU/VA/expression heads on MAE-Face features from ABAW-style
                              labels into a model the daemon loads; -h for its flags
  check-config FILE           validate a config file (errors name the key and line)
  model-info [-ort LIB] MODEL load an ONNX model and print its affectd metadata
  version                     print the version

ONNX Runtime and the face detectors, left at their defaults in the config,
are searched in $AFFECTD_CACHE, the checkout's .cache/ (next to bin/, then
the working directory's), then /usr/lib/affectd, in that order.
`)
}

func versionString() string {
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 && v == "dev" {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

func runCmd(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/affectd/affectd.yaml", "config file")
	listen := fs.String("listen", "", "listen address (overrides the file's listen)")
	model := fs.String("model", "", "MAE-Face ONNX model (overrides the file's model.path; \"none\": the landmark backend only)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level, *format)
	if err != nil {
		fmt.Fprintln(stderr, "affectd run:", err)
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "affectd: %v\n", err)
		return 1
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	applyModelFlag(cfg, *model)
	findDefaults(cfg, log)
	malloc := tuneMalloc() // before the native libraries allocate
	d, err := New(cfg, *path, log)
	if err != nil {
		fmt.Fprintf(stderr, "affectd: %v\n", err)
		return 1
	}
	log.Info("affectd starting", "version", versionString(), "config", *path, "streams", len(cfg.Streams),
		"malloc", malloc)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading streams", "config", *path)
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				d.Reload(rctx)
				cancel()
			}
		}
	}()
	if err := d.Run(ctx); err != nil {
		log.Error("affectd failed", "err", err)
		return 1
	}
	log.Info("affectd stopped")
	return 0
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: affectd check-config FILE")
		return 2
	}
	cfg, err := config.Load(args[0])
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, e)
			}
		} else {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	red := cfg.Redacted()
	var ids []string
	for _, s := range red.Streams {
		ids = append(ids, s.ID+"="+s.URL)
	}
	fmt.Fprintf(stdout, "%s: ok (listen %s, model %s, %d streams: %s)\n", args[0], red.Listen, red.Model.Path, len(red.Streams), strings.Join(ids, ", "))
	return 0
}

func modelInfo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("model-info", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lib := fs.String("ort", "", "ONNX Runtime library (default: searched in "+searchOrder+")")
	provider := fs.String("provider", "cpu", "execution provider: cpu, cuda, tensorrt")
	threads := fs.Int("threads", 0, "intra-op threads, as onnxruntime.threads (0: one per CPU)")
	inter := fs.Int("inter-threads", 0, "inter-op threads, as onnxruntime.inter_threads (0: 1)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "affectd model-info: want one model path")
		return 2
	}
	if *lib == "" {
		c := config.Default()
		findDefaults(&c, nil)
		*lib = c.ORT.Library
	}
	p, err := infer.ParseProvider(*provider)
	if err != nil {
		fmt.Fprintf(stderr, "affectd model-info: -provider: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	so := infer.SessionOptions{LibraryPath: *lib, Provider: p, IntraOpThreads: *threads, InterOpThreads: *inter}
	m, err := infer.Load(fs.Arg(0), so, log)
	if err != nil {
		fmt.Fprintf(stderr, "affectd model-info: %v\n", err)
		return 1
	}
	defer m.Close()
	intra, interOp := so.Threads()
	out := struct {
		infer.Metadata
		Provider     string `json:"provider"`
		ORT          string `json:"onnxruntime"`
		Threads      int    `json:"threads"`
		InterThreads int    `json:"inter_threads"`
	}{m.Metadata(), m.Provider().String(), infer.RuntimeVersion(), intra, interOp}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.Encode(out)
	return 0
}

// defaultConfig is where run and analyze look without -config.
const defaultConfig = "/etc/affectd/affectd.yaml"

func analyzeCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: affectd analyze [flags] FILE|DIR...

Analyses every frame of the video files and still pictures (each a
one-frame input; -frames takes a folder of pictures for one video's
frames; folders are searched for both) as fast as the machine goes, and
writes one <name>.csv per input: OpenFace 2 FeatureExtraction's columns
(frame, face_id, timestamp, confidence, success, pose_*, x_0…y_67,
AUxx_r, AUxx_c) plus valence, arousal and expr_* from the model. An
interrupted run resumes where it stopped; finished files are skipped
(-force redoes them). Unreadable files are reported and skipped. Frames go
through the same analyzer as the daemon's live streams: with the same
config, -detect-every and -smooth the numbers are the same.

ONNX Runtime and the face detector, unless set, are searched in
$AFFECTD_CACHE, the checkout's .cache/ (next to bin/, then the working
directory's), then /usr/lib/affectd.

Exit status: 0 every input analysed; 1 an input could not be analysed
(others still were); 2 bad usage; 3 every input analysed, but in some no
face was found in any frame (named on stderr); 130 interrupted (run the
same command again to resume).

flags:
`)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "config file for the model, detector and landmarks (default "+defaultConfig+" when it exists, else built-in defaults)")
	model := fs.String("model", "", "MAE-Face ONNX model (overrides model.path; \"none\": landmarks only)")
	ort := fs.String("ort", "", "ONNX Runtime library (overrides onnxruntime.library; left at its default, it is searched in "+searchOrder+")")
	detector := fs.String("detector", "", "BlazeFace ONNX model (overrides detector.model; searched like -ort)")
	out := fs.String("out", "processed", "output folder")
	format := fs.String("format", "csv", "csv (OpenFace columns) or jsonl (the websocket protocol's frame objects)")
	useLandmarks := fs.Bool("landmarks", true, "fit the 68 landmarks: head pose, landmark AUs (AUxx_r); off is faster")
	backend := fs.String("backend", "", "landmark backend: mesh468 (MediaPipe's face mesh: gaze and eye blend shapes with the iris model) or dlib68 (default: the config's landmarks.backend)")
	points := fs.Bool("points", true, "write the 68 landmarks (x_0…x_67, y_0…y_67)")
	meshPoints := fs.Bool("mesh", false, "jsonl: write the face mesh's 468 points (mesh468)")
	features := fs.Bool("features", false, "write MAE-Face's feature vector (f_0…)")
	force := fs.Bool("force", false, "re-analyse files whose output exists; ignore interrupted runs")
	batch := fs.Int("batch", 0, "faces per model batch (0: the config's batch.max_batch, 8 by default: on a CPU small batches are faster; raise it on a GPU); resume checkpoints come every max(4×batch, 128) frames")
	threads := fs.Int("threads", 0, "ONNX Runtime threads for the model (0: onnxruntime.threads, or one per CPU)")
	neutral := fs.String("neutral", "prior", "each face's neutral for the landmark AUs: prior (a population neutral, then the face's calmest frames), first (its first frame), or a picture of the subject's neutral face")
	frames := fs.Bool("frames", false, "a folder of pictures is one video, its pictures the frames in name order (else each picture is a one-frame input)")
	detectEvery := fs.Int("detect-every", 1, "run the face detector every k frames (1: every frame, so a face is found on the frame it appears; the daemon's detector.detect_every predicts the frames between)")
	smooth := fs.Bool("smooth", false, "smooth each face's values over time with the config's smoothing section, as affectd run does (off: raw per-frame values); resuming then replays the model over the frames done")
	quiet := fs.Bool("quiet", false, "no progress bar, even on a terminal")
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	cf := addClusterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cf.on() && *cf.status {
		return clusterStatusCmd(cf, stdout, stderr)
	}
	if fs.NArg() == 0 && !cf.on() {
		fmt.Fprintln(stderr, "affectd analyze: give one or more video files or folders (-h for help)")
		return 2
	}
	log, err := newLogger(stderr, *level, "text")
	if err != nil {
		fmt.Fprintln(stderr, "affectd analyze:", err)
		return 2
	}
	var cfg *config.Config
	path := *cfgPath
	if path == "" {
		if _, err := os.Stat(defaultConfig); err == nil {
			path = defaultConfig
		}
	}
	if path != "" {
		if cfg, err = config.Load(path); err != nil {
			fmt.Fprintf(stderr, "affectd analyze: %v\n", err)
			return 1
		}
	} else {
		c := config.Default()
		cfg = &c
	}
	applyModelFlag(cfg, *model)
	if *ort != "" {
		cfg.ORT.Library = *ort
	}
	if *detector != "" {
		cfg.Detector.Model = *detector
	}
	if *backend != "" {
		cfg.Landmarks.Backend = *backend
		if err := cfg.Validate(); err != nil {
			fmt.Fprintf(stderr, "affectd analyze: -backend: %v\n", err)
			return 2
		}
	}
	if !*useLandmarks {
		cfg.Landmarks.Model, cfg.Landmarks.MeshModel = "", ""
	}
	if *threads > 0 {
		cfg.ORT.Threads = *threads
	}
	findDefaults(cfg, log)
	cfg.Smoothing.Enabled = *smooth
	if *detectEvery < 1 {
		fmt.Fprintln(stderr, "affectd analyze: -detect-every: want 1 or more")
		return 2
	}
	cfg.Detector.DetectEvery = *detectEvery
	o := AnalyzeOptions{
		Inputs: fs.Args(), OutDir: *out, Format: *format, Points: *points, Mesh: *meshPoints, Features: *features,
		Force: *force, Batch: *batch, Frames: *frames, Neutral: *neutral, Log: log,
	}
	if !*quiet && isTerminal(stderr) {
		o.Progress = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cf.on() {
		return analyzeClusterCmd(ctx, cfg, o, cf, *quiet, stdout, stderr)
	}
	rep, err := Analyze(ctx, cfg, o)
	if rep == nil {
		fmt.Fprintf(stderr, "affectd analyze: %v\n", err)
		return 1
	}
	done, skipped, resumed, faceless := 0, 0, 0, 0
	for _, f := range rep.Files {
		if f.Replayed > 0 {
			resumed++
		}
		switch f.Status {
		case "failed":
			fmt.Fprintf(stderr, "affectd analyze: %s: skipped: %v\n", f.Input, f.Err)
		case "skipped":
			skipped++
		case "done":
			done++
			if f.Warning != "" {
				fmt.Fprintf(stderr, "affectd analyze: %s: %s\n", f.Input, f.Warning)
			}
			if f.Rows == 0 && f.Replayed == 0 {
				faceless++
				fmt.Fprintf(stderr, "affectd analyze: %s: no face found in any of its %d frames\n", f.Input, f.Frames)
			}
		}
	}
	if err != nil { // interrupted
		fmt.Fprintf(stderr, "affectd analyze: interrupted (%v): run the same command again to resume\n", err)
		return 130
	}
	fmt.Fprintf(stdout, "analyzed %d of %d inputs (%d already done, %d failed, resumed %d): %d frames, %d face rows in %s (%.1f frames/s) → %s\n",
		done, len(rep.Files), skipped, rep.Failed(), resumed, rep.Frames, rep.Rows, rep.Elapsed.Round(time.Millisecond), rep.FPS(), o.OutDir)
	switch {
	case rep.Failed() > 0:
		return 1
	case faceless > 0:
		return 3
	}
	return 0
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// applyModelFlag applies -model to cfg: "" keeps model.path, "none" runs
// without a MAE-Face model (the landmark backend only), anything else is
// the model's path.
func applyModelFlag(cfg *config.Config, model string) {
	switch model {
	case "":
	case "none":
		cfg.Model.Path = ""
	default:
		cfg.Model.Path = model
	}
}
