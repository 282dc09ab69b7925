package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/affectd/affectd/tools/testmedia"
	"github.com/affectd/affectd/tools/whippub/whip"
)

// get is a GET with a chosen Host header.
func get(t *testing.T, url, host string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestHostileHTTP: the daemon's HTTP side against what any web page can
// send. Before: a DNS-rebinding page (Host evil.example) read everything,
// websocket included; /publish had no CSP; WHIP sent
// Access-Control-Allow-Origin: *; a camera URL's password and query token
// showed in /v1/streams, the hello, statuses, the log and check-config.
// It sets no key that main lacked, so it runs against main's binary too.
func TestHostileHTTP(t *testing.T) {
	p := paths(t)
	one := clipPath(t, "one_face")
	cfg := configYAML(t, p, whipConfig, streamSpec{"cam", one, true}, streamSpec{"lobby", "whip://", false})
	cfg += "  - id: door\n    url: rtsp://viewer:pw123@127.0.0.1:1/live?token=s3cr3tT0k&channel=1\n"
	proc := startBinaryWith(t, cfg, false)
	base := "http://" + proc.addr

	// DNS rebinding: another host name is refused, IP addresses and
	// localhost are not.
	for _, path := range []string{"/v1/streams", "/healthz", "/v1/streams/cam/preview", "/"} {
		resp := get(t, base+path, "evil.example")
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("GET %s with Host evil.example: %d, want 421", path, resp.StatusCode)
		}
	}
	for _, host := range []string{"", "localhost:8686", "127.0.0.1"} {
		if resp := get(t, base+"/healthz", host); resp.StatusCode != 200 {
			t.Errorf("GET /healthz with Host %q: %d", host, resp.StatusCode)
		}
	}
	hdr := http.Header{"Host": {"evil.example"}, "Origin": {"http://evil.example"}}
	if _, resp, err := websocket.DefaultDialer.Dial("ws://"+proc.addr+"/v1/ws", hdr); err == nil || resp == nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("a websocket from evil.example: %v %v, want 421", err, resp)
	}

	// The pages have a CSP; WHIP does no CORS unless configured.
	if resp := get(t, base+"/publish", ""); !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("/publish without a CSP: %v", resp.Header)
	}
	req, _ := http.NewRequest("OPTIONS", base+"/v1/whip/lobby", nil)
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("WHIP pre-flight from another origin: %v %v", err, resp.Header)
	}

	// No secret of the camera URL anywhere.
	waitPreview(t, base, "cam") // the streams have started
	body, _ := io.ReadAll(get(t, base+"/v1/streams", "").Body)
	_, msgs := dialWS(t, proc.addr, "")
	hello := <-msgs
	time.Sleep(time.Second) // a status or two of the unreachable camera
	cmd := exec.Command(binary(t), "check-config", proc.cfg)
	check, _ := cmd.CombinedOutput()
	for what, text := range map[string]string{"/v1/streams": string(body), "hello": fmt.Sprintf("%+v", hello), "log": proc.logs(), "check-config": string(check)} {
		for _, secret := range []string{"pw123", "s3cr3tT0k"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the camera's secret %q:\n%s", what, secret, text)
			}
		}
	}
	if !strings.Contains(string(body), "door") {
		t.Errorf("/v1/streams does not list the camera: %s", body)
	}
}

// TestHTTPLimits: websocket clients, MJPEG watchers and idle connections
// are bounded, and connections that send their headers a byte at a time
// (slowloris) do not keep /healthz from answering within a second.
// Before, clients and watchers had no bound and idle keep-alive
// connections stayed open for ever (2 000 of them, all kept).
func TestHTTPLimits(t *testing.T) {
	p := paths(t)
	extra := "websocket:\n  max_clients: 2\npreview:\n  max_watchers: 1\nhttp:\n  idle_timeout: 1s"
	proc := startBinaryWith(t, configYAML(t, p, extra, streamSpec{"cam", clipPath(t, "one_face"), true}), false)
	base := "http://" + proc.addr

	c1, _ := dialWS(t, proc.addr, "")
	c2, _ := dialWS(t, proc.addr, "")
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+proc.addr+"/v1/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a third websocket client (max_clients 2): %v %+v, want 503 with Retry-After", err, resp)
	}
	c1.Close()
	c2.Close()

	waitPreview(t, base, "cam")
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/streams/cam/preview?mjpeg=1", nil)
	watch, err := http.DefaultClient.Do(req)
	if err != nil || watch.StatusCode != 200 {
		t.Fatalf("an MJPEG watcher: %v %v", err, watch)
	}
	second := get(t, base+"/v1/streams/cam/preview?mjpeg=1", "")
	second.Body.Close()
	if second.StatusCode != 503 || second.Header.Get("Retry-After") == "" {
		t.Errorf("a second MJPEG watcher (max_watchers 1): %d, want 503 with Retry-After", second.StatusCode)
	}
	cancel()
	watch.Body.Close()

	// Idle keep-alive connections are closed after http.idle_timeout.
	var idle []net.Conn
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", proc.addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		idle = append(idle, c)
	}
	open := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(4 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			open++ // the deadline passed: the daemon kept the connection
		}
	}
	if open > 0 {
		t.Errorf("%d of 200 idle keep-alive connections still open 4 s after their request (idle_timeout 1s)", open)
	}

	// Slowloris.
	var slow []net.Conn
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()
	for i := 0; i < 300; i++ {
		c, err := net.Dial("tcp", proc.addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		fmt.Fprintf(c, "GET /v1/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
		slow = append(slow, c)
	}
	start := time.Now()
	resp = get(t, base+"/healthz", "")
	resp.Body.Close()
	took := time.Since(start)
	t.Logf("/healthz answered in %v beside 300 slow connections", took)
	if resp.StatusCode != 200 || took > time.Second {
		t.Errorf("/healthz: %d in %v, want 200 within 1 s", resp.StatusCode, took)
	}
}

// waitPreview waits until a stream's preview has a picture.
func waitPreview(t *testing.T, base, stream string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/v1/streams/" + stream + "/preview")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no preview of %s within 60 s: %v %v", stream, err, resp)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rss is a process's resident memory in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	n := tryRSS(pid)
	if n == 0 {
		t.Fatalf("no VmRSS for process %d", pid)
	}
	return n
}

// tryRSS is rss for any goroutine: 0 when it cannot be read.
func tryRSS(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// whipTarget is a daemon with dynamic WHIP streams, for hostile
// publishers; every test of it runs against main's binary too.
type whipTarget struct {
	t    *testing.T
	proc *proc
	base string
}

func newWHIPTarget(t *testing.T) *whipTarget {
	p := paths(t)
	proc := startBinary(t, configYAML(t, p, whipConfig+"\n  allow_dynamic: true"))
	return &whipTarget{t: t, proc: proc, base: "http://" + proc.addr}
}

// post offers body to the stream id (already escaped) and returns the status.
func (w *whipTarget) post(id, body string) int {
	w.t.Helper()
	resp, err := http.Post(w.base+"/v1/whip/"+id, "application/sdp", strings.NewReader(body))
	if err != nil {
		w.t.Fatalf("POST %s: %v\n%s", id[:min(len(id), 12)], err, w.proc.logs())
	}
	resp.Body.Close()
	return resp.StatusCode
}

// alive fails the test at once if the daemon no longer answers.
func (w *whipTarget) alive(after string) {
	w.t.Helper()
	resp, err := http.Get(w.base + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		w.t.Fatalf("after %s the daemon does not answer: %v %v\n%s", after, err, resp, w.proc.logs())
	}
	resp.Body.Close()
}

// unnegotiable is a VP8 offer without ICE credentials or a fingerprint.
const unnegotiable = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n"

// TestWHIPBadIDs: dynamic stream ids that are not UTF-8, 10 000
// characters long, hold "..", a newline or a bidi override get 400 and
// the daemon lives. Before, `POST /v1/whip/%ff` killed it (a metric label
// that is not UTF-8) and the others were taken as ids.
func TestWHIPBadIDs(t *testing.T) {
	w := newWHIPTarget(t)
	for _, id := range []string{"%ff", strings.Repeat("x", 10000), "a..b", "a%0Ab", "%E2%80%AEevil"} {
		if code := w.post(id, unnegotiable); code != 400 {
			t.Errorf("POST /v1/whip/%s…: %d, want 400", id[:min(len(id), 12)], code)
		}
		w.alive("a bad id")
	}
}

// TestWHIPFailedOffer: an offer that cannot be negotiated leaves no
// stream. Before, each left a dynamic stream "starting" for ever.
func TestWHIPFailedOffer(t *testing.T) {
	w := newWHIPTarget(t)
	for i := 0; i < 5; i++ {
		if code := w.post(fmt.Sprintf("broken%d", i), unnegotiable); code != 400 {
			t.Errorf("an offer that cannot be negotiated: %d, want 400", code)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if list := listStreams(t, w.proc.addr); len(list) != 0 {
		t.Errorf("streams after failed negotiations: %+v", list)
	}
}

// TestWHIPNoMarker: a publisher whose frames never end (every packet
// without the marker bit, one timestamp) leaves the daemon's memory
// bounded, and gives it back when it goes. Before, RSS grew ~25 MB a
// second (1.5 GB in a minute) and stayed.
func TestWHIPNoMarker(t *testing.T) {
	w := newWHIPTarget(t)
	clip := testmedia.MustEnsure(t, "one_face", 1280, 720)
	annexB, err := testmedia.AnnexB(clip)
	if err != nil {
		t.Fatal(err)
	}
	pid := w.proc.cmd.Process.Pid
	before := rss(t, pid)
	// 720p H.264 frames at 400 a second for 16 s, RSS sampled each second.
	ctx, cancel := context.WithTimeout(context.Background(), 16*time.Second)
	var samples []int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			samples = append(samples, tryRSS(pid)>>20)
			time.Sleep(time.Second)
		}
	}()
	st, err := whip.Publish(ctx, whip.Options{URL: w.base + "/v1/whip/flood", File: annexB, FPS: 400, Loop: true, Loopback: true, NoMarker: true})
	cancel()
	<-sampled
	w.alive("the flood")
	time.Sleep(time.Second)
	after := rss(t, pid)
	t.Logf("no-marker publisher: %d frames sent (%v); RSS MB each second %v; %d MB before, %d MB after", st.Sent, err, samples, before>>20, after>>20)
	if st.Sent < 2000 {
		t.Fatalf("only %d frames sent: the flood did not flood", st.Sent)
	}
	// Bounded: the flood's second half adds little, and the session's
	// end gives memory back.
	if half := samples[len(samples)-1] - samples[len(samples)/2]; half > 40 {
		t.Errorf("RSS grew by %d MB in the flood's second half: unbounded", half)
	}
	if after-before > 150<<20 {
		t.Errorf("RSS %d MB above the start after the flood's session ended", (after-before)>>20)
	}
}

// TestWHIPThinFrames: a 2000×2 stream with a preview watcher leaves the
// daemon serving, and the watcher gets pictures. Before, the preview's
// height rounded to 0, OpenCV's resize threw and the process aborted.
func TestWHIPThinFrames(t *testing.T) {
	w := newWHIPTarget(t)
	thin := filepath.Join(t.TempDir(), "thin.ivf")
	if b, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=2000x2:rate=25", "-frames:v", "50", "-c:v", "libvpx", "-b:v", "200k", thin).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	var watched int64
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		for watchCtx.Err() == nil {
			req, _ := http.NewRequestWithContext(watchCtx, "GET", w.base+"/v1/streams/thin/preview?mjpeg=1", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				if resp.StatusCode == 200 {
					n, _ := io.Copy(io.Discard, resp.Body)
					watched += n
				}
				resp.Body.Close()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	_, err := whip.Publish(context.Background(), whip.Options{URL: w.base + "/v1/whip/thin", File: thin, Loopback: true})
	stopWatch()
	<-watching
	if err != nil {
		t.Errorf("publishing 2000×2: %v", err)
	}
	w.alive("a 2000×2 stream with a preview watcher")
	if watched == 0 {
		t.Errorf("the preview watcher saw no 2000×2 picture")
	}
}

// TestWHIPEarly: a configured WHIP stream takes offers as soon as the
// listener accepts connections, while the models still load. Before,
// WHIP answered 404 "WebRTC ingest is off" for about a second after
// /healthz was 200.
func TestWHIPEarly(t *testing.T) {
	p := paths(t)
	proc := startBinaryWith(t, configYAML(t, p, whipConfig, streamSpec{"lobby", "whip://", false}), false)
	resp, err := http.Post("http://"+proc.addr+"/v1/whip/lobby", "application/sdp", strings.NewReader(unnegotiable))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// 400: the offer was read and refused for what it is (no ICE
	// credentials), not for the stream or ingest being absent.
	if resp.StatusCode != 400 {
		t.Errorf("an offer at once after listening: %d %s, want 400", resp.StatusCode, b)
	}
	if ready, err := http.Get("http://" + proc.addr + "/readyz"); err == nil {
		ready.Body.Close()
		t.Logf("/readyz when the offer was answered: %d", ready.StatusCode)
	}
}

// TestWHIPHugePicture: a stream of 6000×4000 pictures (24 Mpx, over
// webrtc.max_pixels' default of 4096×2304) is refused before decoding:
// the daemon never takes the picture in, its memory stays put, and it
// goes on serving. Before, no size was refused: one 16000×16000 VP8 frame
// took 4.2 s and 1.3 GB.
func TestWHIPHugePicture(t *testing.T) {
	w := newWHIPTarget(t)
	big := filepath.Join(t.TempDir(), "big.ivf")
	if b, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=6000x4000:rate=5", "-frames:v", "10",
		"-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "2M", big).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	pid := w.proc.cmd.Process.Pid
	before := rss(t, pid)
	var widest int
	var peak int64
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ctx.Err() == nil {
			if resp, err := http.Get(w.base + "/v1/streams"); err == nil {
				var list struct{ Streams []StreamStatus }
				json.NewDecoder(resp.Body).Decode(&list)
				resp.Body.Close()
				for _, s := range list.Streams {
					widest = max(widest, s.Width)
				}
			}
			peak = max(peak, tryRSS(pid))
			time.Sleep(100 * time.Millisecond)
		}
	}()
	st, err := whip.Publish(context.Background(), whip.Options{URL: w.base + "/v1/whip/big", File: big, Loopback: true})
	cancel()
	<-watched
	w.alive("a 6000×4000 stream")
	t.Logf("6000×4000 VP8: %d frames sent (%v); widest frame the daemon showed %d; RSS %d MB before, peak %d MB", st.Sent, err, widest, before>>20, peak>>20)
	if st.Sent < 10 {
		t.Fatalf("only %d frames sent", st.Sent)
	}
	if widest > 0 {
		t.Errorf("the daemon took in a %d-pixel-wide picture (max_pixels 4096×2304)", widest)
	}
	if peak-before > 150<<20 {
		t.Errorf("RSS rose by %d MB for pictures it should have refused", (peak-before)>>20)
	}
}
