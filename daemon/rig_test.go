package daemon

import (
	"bufio"
	be "encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/affectd/affectd/tools/testmedia"
)

// arkitOrder is ARKit's 52 blend shapes in Live Link Face's order, copied
// from RIG_PROTOCOLS.md for the test (not from the encoder).
var arkitOrder = strings.Fields(`eyeBlinkLeft eyeLookDownLeft eyeLookInLeft eyeLookOutLeft eyeLookUpLeft
eyeSquintLeft eyeWideLeft eyeBlinkRight eyeLookDownRight eyeLookInRight
eyeLookOutRight eyeLookUpRight eyeSquintRight eyeWideRight jawForward
jawRight jawLeft jawOpen mouthClose mouthFunnel mouthPucker mouthRight
mouthLeft mouthSmileLeft mouthSmileRight mouthFrownLeft mouthFrownRight
mouthDimpleLeft mouthDimpleRight mouthStretchLeft mouthStretchRight
mouthRollLower mouthRollUpper mouthShrugLower mouthShrugUpper
mouthPressLeft mouthPressRight mouthLowerDownLeft mouthLowerDownRight
mouthUpperUpLeft mouthUpperUpRight browDownLeft browDownRight
browInnerUp browOuterUpLeft browOuterUpRight cheekPuff cheekSquintLeft
cheekSquintRight noseSneerLeft noseSneerRight tongueOut`)

// oscLine is one line of oscdump: "<time tag> <address> <tags> <args…>".
type oscLine struct {
	addr, tags string
	args       []string
}

func parseOSCDump(line string) (oscLine, bool) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return oscLine{}, false
	}
	l := oscLine{addr: f[1]}
	if len(f) > 2 {
		l.tags, l.args = f[2], f[3:]
	}
	return l, true
}

func (l oscLine) float(t *testing.T, i int) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(l.args[i], 64)
	if err != nil {
		t.Fatalf("%s: argument %d %q: %v", l.addr, i, l.args[i], err)
	}
	return v
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// llfPacket is a Live Link Face packet as the test decodes it.
type llfPacket struct {
	device, subject string
	frame           int32
	fpsNum, fpsDen  int32
	values          []float32
}

// decodeLLF reads a version 6 packet field by field (RIG_PROTOCOLS.md).
func decodeLLF(p []byte) (llfPacket, error) {
	var out llfPacket
	if len(p) < 1 || p[0] != 6 {
		return out, fmt.Errorf("version byte %v, want 6", p[:min(1, len(p))])
	}
	p = p[1:]
	str := func() (string, error) {
		if len(p) < 4 {
			return "", fmt.Errorf("short before a string")
		}
		n := int(int32(be.BigEndian.Uint32(p)))
		if n < 0 || 4+n > len(p) {
			return "", fmt.Errorf("string length %d of %d bytes", n, len(p)-4)
		}
		s := string(p[4 : 4+n])
		p = p[4+n:]
		return s, nil
	}
	var err error
	if out.device, err = str(); err != nil {
		return out, err
	}
	if out.subject, err = str(); err != nil {
		return out, err
	}
	if len(p) < 17 {
		return out, fmt.Errorf("short frame time")
	}
	out.frame = int32(be.BigEndian.Uint32(p))
	out.fpsNum = int32(be.BigEndian.Uint32(p[8:]))
	out.fpsDen = int32(be.BigEndian.Uint32(p[12:]))
	count := int(p[16])
	p = p[17:]
	if len(p) != 4*count {
		return out, fmt.Errorf("%d floats announced, %d bytes follow", count, len(p))
	}
	for i := 0; i < count; i++ {
		out.values = append(out.values, math.Float32frombits(be.BigEndian.Uint32(p[4*i:])))
	}
	return out, nil
}

// TestRigOutputs: the race-built daemon plays the expression clip (the
// mouth opens after 2 s) on the landmark backend with four outputs: vmc
// and osc to a real OSC peer (liblo's oscdump), livelink to a UDP socket
// of the test, and a vmc output to a loopback port where no one listens.
// oscdump must see every VMC frame as 52 Blend/Val (the ARKit names, 0..1)
// then Apply, the Head bone with a unit quaternion, OK and T, and the
// plain-OSC addresses; the Live Link packets, decoded here from the
// protocol's description, carry version 6, the subject, 61 floats, jawOpen
// rising, and the head's yaw, pitch and roll of the websocket's pose for
// the same frame within 1°; the refused output counts errors while the
// websocket goes on at the clip's rate; GET /v1/outputs and the metrics
// report it all.
func TestRigOutputs(t *testing.T) {
	dumpBin, err := exec.LookPath("oscdump")
	if err != nil {
		t.Fatal("oscdump (Debian liblo-tools) is needed: run make setup")
	}
	oscPort := freeUDPPort(t)
	dump := exec.Command(dumpBin, "-L", strconv.Itoa(oscPort))
	out, err := dump.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		lines []string
	)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { dump.Process.Kill(); dump.Wait(); <-scanned })

	ll, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ll.Close()
	dead := freeUDPPort(t)

	p := paths(t)
	clip := testmedia.MustEnsure(t, "expression", 640, 360)
	outputs := fmt.Sprintf(`outputs:
  - {name: avatar, kind: vmc, target: "127.0.0.1:%d", stream: cam}
  - {name: td, kind: osc, target: "127.0.0.1:%d", stream: cam}
  - {name: unreal, kind: livelink, target: "%s", stream: cam, subject: desk}
  - {name: nobody, kind: vmc, target: "127.0.0.1:%d", stream: cam, bundle: false}
`, oscPort, oscPort, ll.LocalAddr(), dead)
	cfg := configYAML(t, p, outputs, streamSpec{"cam", clip.Path, true})
	cfg = strings.Replace(cfg, "model:\n  path: "+p.model, "model:\n  path: \"\"", 1)
	proc := startBinary(t, cfg)
	_, ws := dialWS(t, proc.addr, "")

	// Live Link packets for 4 s, and the websocket's frames meanwhile.
	packets := map[int32]llfPacket{}
	ll.SetReadDeadline(time.Now().Add(4 * time.Second))
	buf := make([]byte, 2048)
	for {
		n, err := ll.Read(buf)
		if err != nil {
			break
		}
		pk, err := decodeLLF(buf[:n])
		if err != nil {
			t.Fatalf("live link packet: %v", err)
		}
		packets[pk.frame] = pk
	}
	type pose struct{ yaw, pitch, roll float64 }
	poses := map[int32]pose{}
	wsFrames := 0
	for len(ws) > 0 {
		m := <-ws
		if m.Type != "frame" || len(m.Faces) == 0 || m.Faces[0].Pose == nil {
			continue
		}
		wsFrames++
		ps := m.Faces[0].Pose
		poses[int32(m.Seq)] = pose{ps.Yaw, ps.Pitch, ps.Roll}
	}
	if len(packets) < 50 || wsFrames < 50 {
		t.Fatalf("%d live link packets, %d websocket frames with a pose in 4 s; want 50 or more of each", len(packets), wsFrames)
	}
	matched := 0
	var maxJaw float32
	for frame, pk := range packets {
		if pk.subject != "desk" || pk.device == "" || len(pk.values) != 61 || pk.fpsNum <= 0 || pk.fpsDen <= 0 {
			t.Fatalf("packet of frame %d: subject %q device %q, %d values, rate %d/%d", frame, pk.subject, pk.device, len(pk.values), pk.fpsNum, pk.fpsDen)
		}
		for i, v := range pk.values[:52] {
			if v < 0 || v > 1 || math.IsNaN(float64(v)) {
				t.Fatalf("frame %d: %s = %v, want 0..1", frame, arkitOrder[i], v)
			}
		}
		maxJaw = max(maxJaw, pk.values[17]) // jawOpen
		ps, ok := poses[frame]
		if !ok {
			continue
		}
		matched++
		deg := func(r float32) float64 { return float64(r) * 180 / math.Pi }
		// Live Link's yaw, pitch, roll are our pose's, in radians.
		if math.Abs(deg(pk.values[52])-ps.yaw) > 1 || math.Abs(deg(pk.values[53])-ps.pitch) > 1 || math.Abs(deg(pk.values[54])-ps.roll) > 1 {
			t.Errorf("frame %d: live link head %.2f %.2f %.2f°, websocket pose %.2f %.2f %.2f°", frame,
				deg(pk.values[52]), deg(pk.values[53]), deg(pk.values[54]), ps.yaw, ps.pitch, ps.roll)
		}
	}
	if matched < 25 {
		t.Errorf("only %d live link frames matched a websocket frame", matched)
	}
	if maxJaw < 0.2 {
		t.Errorf("jawOpen at most %.3f over a clip whose mouth opens, want 0.2 or more", maxJaw)
	}
	t.Logf("live link: %d packets, %d matched the websocket's pose within 1°, jawOpen up to %.2f", len(packets), matched, maxJaw)

	// oscdump's view: VMC frames and the plain-OSC addresses.
	mu.Lock()
	got := append([]string(nil), lines...)
	mu.Unlock()
	var (
		vals     []string // Blend/Val names since the last Apply
		applies  int
		heads    int
		oks, ts  int
		oscAddrs = map[string]int{}
	)
	for _, raw := range got {
		l, ok := parseOSCDump(raw)
		if !ok {
			continue
		}
		switch {
		case l.addr == "/VMC/Ext/Blend/Val":
			if l.tags != "sf" || len(l.args) != 2 {
				t.Fatalf("%q: want sf", raw)
			}
			if v := l.float(t, 1); v < 0 || v > 1 {
				t.Fatalf("%q: value outside 0..1", raw)
			}
			vals = append(vals, strings.Trim(l.args[0], `"`))
		case l.addr == "/VMC/Ext/Blend/Apply":
			if len(vals) != 52 || strings.Join(vals, " ") != strings.Join(arkitOrder, " ") {
				t.Fatalf("Apply after %d values %v, want the 52 ARKit names in order", len(vals), vals)
			}
			vals = vals[:0]
			applies++
		case l.addr == "/VMC/Ext/Bone/Pos":
			if l.tags != "sfffffff" || l.args[0] != `"Head"` {
				t.Fatalf("%q: want Head and 7 floats", raw)
			}
			var n2 float64
			for i := 4; i < 8; i++ {
				n2 += l.float(t, i) * l.float(t, i)
			}
			if math.Abs(n2-1) > 1e-3 {
				t.Fatalf("%q: quaternion norm² %v", raw, n2)
			}
			heads++
		case l.addr == "/VMC/Ext/OK":
			if l.tags != "i" || l.args[0] != "1" {
				t.Fatalf("%q: want i 1", raw)
			}
			oks++
		case l.addr == "/VMC/Ext/T":
			if l.tags != "f" {
				t.Fatalf("%q: want f", raw)
			}
			ts++
		case strings.HasPrefix(l.addr, "/affectd/cam/"):
			parts := strings.Split(l.addr, "/") // "", affectd, cam, <n>, kind, [name]
			if len(parts) < 5 {
				t.Fatalf("%q: address too short", raw)
			}
			if _, err := strconv.Atoi(parts[3]); err != nil {
				t.Fatalf("%q: face %q is not a track number", raw, parts[3])
			}
			kind := parts[4]
			oscAddrs[kind]++
			switch kind {
			case "au":
				if l.tags != "f" || !strings.HasPrefix(parts[5], "AU") {
					t.Fatalf("%q: want /au/AUnn f", raw)
				}
				if v := l.float(t, 0); v < 0 || v > 5 {
					t.Fatalf("%q: AU outside 0..5", raw)
				}
			case "blend":
				if v := l.float(t, 0); l.tags != "f" || v < 0 || v > 1 {
					t.Fatalf("%q: want f in 0..1", raw)
				}
			case "pose":
				if l.tags != "fff" {
					t.Fatalf("%q: want fff", raw)
				}
			case "present":
				if l.tags != "T" && l.tags != "F" {
					t.Fatalf("%q: want T or F", raw)
				}
			}
		}
	}
	if applies < 50 || heads < applies || oks < applies || ts < applies {
		t.Errorf("oscdump saw %d Apply, %d Head, %d OK, %d T; want 50 or more of each", applies, heads, oks, ts)
	}
	if oscAddrs["au"] < 50*10 || oscAddrs["blend"] < 50*52 || oscAddrs["pose"] < 50 || oscAddrs["present"] < 1 {
		t.Errorf("oscdump saw plain OSC %v; want 10 AUs, 52 blend shapes and the pose per frame for 50 frames, present", oscAddrs)
	}
	t.Logf("oscdump: %d lines, %d VMC frames, plain OSC %v", len(got), applies, oscAddrs)

	// GET /v1/outputs and the metrics.
	resp, err := http.Get("http://" + proc.addr + "/v1/outputs")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Outputs []struct {
			Name      string `json:"name"`
			Kind      string `json:"kind"`
			Packets   uint64 `json:"packets"`
			Errors    uint64 `json:"errors"`
			LastError string `json:"last_error"`
		} `json:"outputs"`
	}
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || len(list.Outputs) != 4 {
		t.Fatalf("/v1/outputs: %v %+v", err, list)
	}
	for _, o := range list.Outputs {
		switch o.Name {
		case "nobody":
			if o.Errors == 0 || !strings.Contains(o.LastError, "refused") {
				t.Errorf("output nobody: %d errors, last %q; want connection refused counted", o.Errors, o.LastError)
			}
		default:
			if o.Packets < 50 || o.Errors != 0 {
				t.Errorf("output %s: %d packets, %d errors (%s)", o.Name, o.Packets, o.Errors, o.LastError)
			}
		}
	}
	if n := metric(t, proc.addr, "affectd_output_errors_total", `output="nobody"`); n == 0 {
		t.Error("affectd_output_errors_total{output=nobody} is 0")
	}
	if n := metric(t, proc.addr, "affectd_output_packets_total", `output="unreal"`); n < 50 {
		t.Errorf("affectd_output_packets_total{output=unreal} = %v", n)
	}
}

// TestRigOutputsReload: SIGHUP moves an output to another receiver and
// adds one, without touching the stream (its frame count goes on); the
// output left unchanged keeps its counts; /v1/outputs lists the new set.
func TestRigOutputsReload(t *testing.T) {
	var rx [3]*net.UDPConn
	for i := range rx {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rx[i] = c
	}
	received := func(c *net.UDPConn, within time.Duration) int {
		c.SetReadDeadline(time.Now().Add(within))
		buf := make([]byte, 2048)
		n := 0
		for {
			if _, err := c.Read(buf); err != nil {
				return n
			}
			n++
		}
	}
	p := paths(t)
	outs := func(a, b string) string {
		return fmt.Sprintf("outputs:\n  - {name: kept, kind: livelink, target: %q, stream: cam}\n  - {name: moved, kind: osc, target: %q, stream: cam}\n", a, b)
	}
	cfg := configYAML(t, p, outs(rx[0].LocalAddr().String(), rx[1].LocalAddr().String()), streamSpec{"cam", clipPath(t, "one_face"), true})
	cfg = strings.Replace(cfg, "model:\n  path: "+p.model, "model:\n  path: \"\"", 1)
	proc := startBinary(t, cfg)
	var keptGot atomic.Int64 // every datagram of the unchanged output
	keptDone := make(chan struct{})
	go func() {
		defer close(keptDone)
		buf := make([]byte, 2048)
		rx[0].SetReadDeadline(time.Time{})
		for {
			if _, err := rx[0].Read(buf); err != nil {
				return
			}
			keptGot.Add(1)
		}
	}()
	if n := received(rx[1], 2*time.Second); n < 10 {
		t.Fatalf("before the reload: %d datagrams at the first osc receiver", n)
	}
	packets := func(name string) uint64 {
		resp, err := http.Get("http://" + proc.addr + "/v1/outputs")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list struct {
			Outputs []struct {
				Name    string `json:"name"`
				Target  string `json:"target"`
				Packets uint64 `json:"packets"`
			} `json:"outputs"`
		}
		json.NewDecoder(resp.Body).Decode(&list)
		for _, o := range list.Outputs {
			if o.Name == name {
				return o.Packets
			}
		}
		t.Fatalf("/v1/outputs has no %s: %+v", name, list)
		return 0
	}
	framesBefore := listStreams(t, proc.addr)[0].Captured

	next := strings.Replace(cfg, outs(rx[0].LocalAddr().String(), rx[1].LocalAddr().String()),
		outs(rx[0].LocalAddr().String(), rx[2].LocalAddr().String()), 1)
	if next == cfg {
		t.Fatal("the test's config replacement did nothing")
	}
	if err := os.WriteFile(proc.cfg, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	proc.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(proc.logs(), "msg=reloaded") {
		if time.Now().After(deadline) {
			t.Fatal("the reload did not apply within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	received(rx[1], 200*time.Millisecond) // what was in flight
	if n := received(rx[2], 2*time.Second); n < 10 {
		t.Errorf("after the reload: %d datagrams at the new osc receiver", n)
	}
	if n := received(rx[1], time.Second); n != 0 {
		t.Errorf("after the reload: %d datagrams still at the old osc receiver", n)
	}
	// Kept, not remade: its count covers what it sent before the reload.
	kept := packets("kept")
	time.Sleep(200 * time.Millisecond)
	rx[0].Close()
	<-keptDone
	if got := keptGot.Load(); int64(kept) < got-25 {
		t.Errorf("the unchanged output says it sent %d datagrams, its receiver got %d: it was remade", kept, got)
	}
	if after := listStreams(t, proc.addr)[0]; after.Captured <= framesBefore || after.State != "up" {
		t.Errorf("the stream after the reload: %s, %d frames (before: %d)", after.State, after.Captured, framesBefore)
	}
}
