package daemon

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/affectd/affectd/tools/testenv"
)

var (
	natsOnce sync.Once
	natsBin  string
	natsErr  error
)

// natsServerBinary builds the real nats-server (the module pinned in
// go.mod, github.com/nats-io/nats-server/v2, whose root is its main
// package) once per test process.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsOnce.Do(func() {
		root, err := testenv.Root()
		if err != nil {
			natsErr = err
			return
		}
		dir, err := os.MkdirTemp("", "nats-server-bin-")
		if err != nil {
			natsErr = err
			return
		}
		natsBin = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", natsBin, "github.com/nats-io/nats-server/v2")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			natsErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsErr != nil {
		t.Fatal(natsErr)
	}
	return natsBin
}

// freePort is a TCP port free on loopback a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// natsServer runs a real nats-server with JetStream on loopback until the
// test ends and returns its client URL.
func natsServer(t *testing.T) string {
	t.Helper()
	port, mon := freePort(t), freePort(t)
	cmd := exec.Command(natsServerBinary(t), "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(mon),
		"-js", "-sd", t.TempDir(), "-n", "test-nats")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz?js-enabled-only=true", mon))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("nats-server not healthy after 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}
