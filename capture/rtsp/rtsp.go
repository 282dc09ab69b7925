package rtsp

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/urls"
)

// Transport options shared by every RTSP stream of the process: OpenCV
// reads them from one environment variable, before the first open.
type Transport struct {
	// Protocol is "tcp" (default) or "udp".
	Protocol string
	// Timeout bounds every socket read and the connection (default 2s):
	// a server that stops answering fails the read after about 3× this.
	Timeout time.Duration
}

const optionsEnv = "OPENCV_FFMPEG_CAPTURE_OPTIONS"

var (
	configureMu sync.Mutex
	configured  string
)

// Configure sets the FFmpeg options for every RTSP stream. It must be
// called before any stream opens, and may be called again only with the
// same settings.
func Configure(t Transport) error {
	if t.Protocol == "" {
		t.Protocol = "tcp"
	}
	if t.Protocol != "tcp" && t.Protocol != "udp" {
		return fmt.Errorf("rtsp: transport %q: want tcp or udp", t.Protocol)
	}
	if t.Timeout <= 0 {
		t.Timeout = 2 * time.Second
	}
	opts := fmt.Sprintf("rtsp_transport;%s|timeout;%d|analyzeduration;500000|probesize;500000",
		t.Protocol, t.Timeout.Microseconds())
	configureMu.Lock()
	defer configureMu.Unlock()
	if configured != "" && configured != opts {
		return fmt.Errorf("rtsp: transport options are process-wide and already set to %q", configured)
	}
	configured = opts
	return os.Setenv(optionsEnv, opts)
}

// Source is one RTSP URL.
type Source struct {
	url   string
	shown string
	epoch time.Time
}

// New makes an RTSP source; Configure must have been called (else the
// defaults are set on first use).
func New(rawURL string) (*Source, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("rtsp: %w", err)
	}
	if u.Scheme != "rtsp" && u.Scheme != "rtsps" {
		return nil, fmt.Errorf("rtsp: %q is not an rtsp:// URL", urls.Show(rawURL))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("rtsp: %q has no host", urls.Show(rawURL))
	}
	// No credentials in logs, statuses or the API: no user information,
	// no token in the query.
	return &Source{url: rawURL, shown: urls.Show(rawURL), epoch: time.Now()}, nil
}

// String is the URL without its credentials.
func (s *Source) String() string { return s.shown }

// Run connects and reads until the connection fails.
func (s *Source) Run(ctx context.Context, sink capture.Sink) error {
	configureMu.Lock()
	unset := configured == ""
	configureMu.Unlock()
	if unset {
		if err := Configure(Transport{}); err != nil {
			return err
		}
	}
	vc, err := gocv.OpenVideoCaptureWithAPI(s.url, gocv.VideoCaptureFFmpeg)
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			vc.Close()
		}
		return fmt.Errorf("open %s: cannot connect or no video", s.shown)
	}
	defer vc.Close()
	if err := capture.ReadLive(ctx, vc, sink, s.epoch); err != nil {
		return fmt.Errorf("%s: %w", s.shown, err)
	}
	return nil
}
