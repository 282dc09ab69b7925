package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/affectd/affectd/tools/testenv"
)

// daemonProc is an affectd binary the soak and load benches run, with
// its log in a file.
type daemonProc struct {
	bin, cfg, log string
	cmd           *exec.Cmd
	addr          string
	exited        chan struct{}
	err           error
}

// baseYAML is the config head every bench daemon shares: ONNX Runtime,
// the model ("" none) and BlazeFace back-256.
func baseYAML(modelPath string) (string, error) {
	lib, err := testenv.ORTLibrary()
	if err != nil {
		return "", err
	}
	cache, err := testenv.Cache()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("listen: 127.0.0.1:0\nonnxruntime:\n  library: %s\nmodel:\n  path: %q\ndetector:\n  model: %s\n",
		lib, modelPath, filepath.Join(cache, "blazeface", "1.2.0", "face_detection_back_256x256.onnx")), nil
}

// startDaemon runs bin on the config file cfg, appending its log to
// logPath, and waits until it is ready (models loaded).
func startDaemon(bin, cfg, logPath string) (*daemonProc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p := &daemonProc{bin: bin, cfg: cfg, log: logPath, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "-config", cfg)
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	listening := make(chan string, 1)
	go func() {
		defer logFile.Close()
		sc := bufio.NewScanner(io.TeeReader(stderr, logFile))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				listening <- m[1]
				break
			}
		}
		io.Copy(io.Discard, io.TeeReader(stderr, logFile))
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	select {
	case p.addr = <-listening:
	case <-p.exited:
		return nil, fmt.Errorf("the daemon exited before listening: %v (log: %s)", p.err, logPath)
	case <-time.After(60 * time.Second):
		p.stop()
		return nil, fmt.Errorf("the daemon did not listen within 60 s (log: %s)", logPath)
	}
	if err := waitReady(p.addr, 120*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%v (log: %s)", err, logPath)
	}
	return p, nil
}

// stop ends the daemon: SIGTERM, then SIGKILL after 10 s.
func (p *daemonProc) stop() { terminate(p.cmd, p.exited, 10*time.Second) }

// terminate ends a process started by the benches: SIGTERM, then SIGKILL
// after grace; exited is closed when its Wait has returned.
func terminate(cmd *exec.Cmd, exited <-chan struct{}, grace time.Duration) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-exited
	}
}

// alive reports whether the process still runs.
func (p *daemonProc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// rss is the process's resident memory in bytes (0 once it has gone).
func (p *daemonProc) rss() int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// metrics scrapes /metrics into sums by metric name, over the series
// whose labels contain every one of match (none: all series).
func (p *daemonProc) metrics(match ...string) (map[string]float64, error) {
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		name, labels, _ := strings.Cut(f[0], "{")
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(labels, m)
		}
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		out[name] += v
	}
	return out, sc.Err()
}

// raiseFileLimit lifts this process's open-file limit (inherited by the
// daemon it starts) to its hard limit: hundreds of clients need sockets.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
