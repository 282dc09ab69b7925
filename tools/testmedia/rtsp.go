package testmedia

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/affectd/affectd/tools/testenv"
)

// ErrRTSPUnavailable is wrapped by StartRTSP's error when Debian's python3
// or its GStreamer RTSP server bindings are missing (tests may skip).
var ErrRTSPUnavailable = errors.New("testmedia: RTSP server unavailable (needs /usr/bin/python3 with python3-gi and gir1.2-gst-rtsp-server-1.0)")

// RTSPReadyTimeout bounds how long StartRTSP and Restart wait for READY.
const RTSPReadyTimeout = 10 * time.Second

// RTSPOptions tune StartRTSPWith.
type RTSPOptions struct {
	Path   string // mount path; default "/clip"
	NoLoop bool   // end the stream (EOS) after the clip instead of looping
	// Log, when set, is a file the server appends "frame_index
	// wall_clock_ns" to for each frame it sends a lone client (latency).
	Log string
}

// RTSPServer is tools/rtspserve.py serving an H.264 mp4 at
// rtsp://127.0.0.1:PORT/PATH like a live camera: shared by all clients, a
// lone client starts at frame 0, a late one at the next keyframe (one a
// second in testmedia clips), paced in real time, looping by default.
type RTSPServer struct {
	file string
	opt  RTSPOptions

	mu     sync.Mutex
	port   int
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	stderr *tail
}

// StartRTSP serves file (looping) on a free port of 127.0.0.1. With a
// non-nil tb the server is stopped when the test ends.
func StartRTSP(tb testing.TB, file string) (*RTSPServer, error) {
	return StartRTSPWith(tb, file, RTSPOptions{})
}

// StartRTSPWith is StartRTSP with options.
func StartRTSPWith(tb testing.TB, file string, opt RTSPOptions) (*RTSPServer, error) {
	if opt.Path == "" {
		opt.Path = "/clip"
	}
	opt.Path = "/" + strings.TrimLeft(opt.Path, "/")
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("testmedia: RTSP file: %w", err)
	}
	s := &RTSPServer{file: abs, opt: opt}
	var lastErr error
	for try := 0; try < 5; try++ { // a free port can be taken before the server binds it
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		err = s.start(port)
		if err == nil {
			if tb != nil {
				tb.Cleanup(s.Stop)
			}
			return s, nil
		}
		if !errors.Is(err, errPortTaken) {
			return nil, err
		}
		lastErr = err
	}
	return nil, lastErr
}

// URL is rtsp://127.0.0.1:PORT/PATH.
func (s *RTSPServer) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("rtsp://127.0.0.1:%d%s", s.port, s.opt.Path)
}

// Port is the server's TCP port (the same across Restart).
func (s *RTSPServer) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Stderr returns the end of the server's stderr (for failure messages).
func (s *RTSPServer) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stderr == nil {
		return ""
	}
	return s.stderr.String()
}

// Running reports whether the server process is alive.
func (s *RTSPServer) Running() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Stop ends the server: SIGTERM, then SIGKILL after 5 s. Clients see their
// connection closed. Stopping a stopped server does nothing.
func (s *RTSPServer) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Restart stops the server (if running) and starts it again on the same
// port, retrying for a few seconds should the port be busy.
func (s *RTSPServer) Restart() error {
	s.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.start(s.Port())
		if err == nil || !errors.Is(err, errPortTaken) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var errPortTaken = errors.New("port taken")

// start runs the script on port and waits for its READY line.
func (s *RTSPServer) start(port int) error {
	root, err := testenv.Root()
	if err != nil {
		return err
	}
	if _, err := os.Stat(testenv.Python); err != nil {
		return fmt.Errorf("%w: %v", ErrRTSPUnavailable, err)
	}
	args := []string{filepath.Join(root, "tools", "rtspserve.py"),
		"--port", fmt.Sprint(port), "--path", s.opt.Path, "--file", s.file}
	if !s.opt.NoLoop {
		args = append(args, "--loop")
	}
	if s.opt.Log != "" {
		args = append(args, "--log", s.opt.Log)
	}
	cmd := exec.Command(testenv.Python, args...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	// If the test binary dies, so does the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stderr := &tail{max: 16 << 10}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testmedia: starting rtspserve: %w", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "READY ") {
				ready <- strings.TrimPrefix(line, "READY ")
			}
		}
	}()
	fail := func(why string) error {
		err := fmt.Errorf("testmedia: rtspserve on port %d: %s\n%s", port, why, stderr.String())
		switch {
		case waitErr != nil && exitCode(waitErr) == 3:
			return fmt.Errorf("%w: %w", errPortTaken, err)
		case strings.Contains(stderr.String(), "Namespace GstRtspServer not available"),
			strings.Contains(stderr.String(), "No module named 'gi'"):
			return fmt.Errorf("%w: %w", ErrRTSPUnavailable, err)
		}
		return err
	}
	select {
	case <-ready:
	case <-done:
		return fail(fmt.Sprintf("exited before READY (%v)", waitErr))
	case <-time.After(RTSPReadyTimeout):
		cmd.Process.Kill()
		<-done
		return fail("no READY within " + RTSPReadyTimeout.String())
	}
	s.mu.Lock()
	s.port, s.cmd, s.done, s.stderr = port, cmd, done, stderr
	s.mu.Unlock()
	return nil
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
