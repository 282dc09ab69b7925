package open

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/affectd/affectd/capture"
	"github.com/affectd/affectd/capture/file"
	"github.com/affectd/affectd/capture/rtsp"
	"github.com/affectd/affectd/capture/v4l2"
)

// Options apply to the kinds of source that use them.
type Options struct {
	// Realtime paces files at their frame rate (else as fast as possible).
	Realtime bool
	// Loop restarts files at their end.
	Loop bool
	// Width, Height, FPS are requested from cameras when non-zero.
	Width, Height, FPS int
}

// Kind names a source kind.
func Kind(rawURL string) string {
	switch {
	case strings.HasPrefix(rawURL, "rtsp://"), strings.HasPrefix(rawURL, "rtsps://"):
		return "rtsp"
	case strings.HasPrefix(rawURL, "v4l2://"):
		return "v4l2"
	case strings.HasPrefix(rawURL, "file://"):
		return "file"
	case strings.HasPrefix(rawURL, "whip://"):
		return "whip"
	}
	if _, err := strconv.Atoi(rawURL); err == nil {
		return "v4l2"
	}
	if strings.Contains(rawURL, "://") {
		return ""
	}
	return "file"
}

// Source makes the source for a URL, checking its form (not whether it
// can be reached: that is the stream's business).
func Source(rawURL string, o Options) (capture.Source, error) {
	switch Kind(rawURL) {
	case "rtsp":
		return rtsp.New(rawURL)
	case "v4l2":
		if n, err := strconv.Atoi(rawURL); err == nil {
			return v4l2.New(v4l2.Options{Index: n, Width: o.Width, Height: o.Height, FPS: o.FPS}), nil
		}
		rest := strings.TrimPrefix(rawURL, "v4l2://")
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 {
			return v4l2.New(v4l2.Options{Index: n, Width: o.Width, Height: o.Height, FPS: o.FPS}), nil
		}
		if !strings.HasPrefix(rest, "/") {
			return nil, fmt.Errorf("%q: want v4l2:///dev/videoN or v4l2://N", rawURL)
		}
		return v4l2.New(v4l2.Options{Device: rest, Width: o.Width, Height: o.Height, FPS: o.FPS}), nil
	case "whip":
		return nil, fmt.Errorf("%q: whip streams are published to the daemon's WHIP endpoint (capture/webrtc), not opened", rawURL)
	case "file":
		path := rawURL
		if strings.HasPrefix(rawURL, "file://") {
			u, err := url.Parse(rawURL)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", rawURL, err)
			}
			path = u.Path
			if u.Host != "" && u.Host != "localhost" { // file://relative/path
				path = u.Host + u.Path
			}
		}
		if path == "" {
			return nil, fmt.Errorf("%q: empty file path", rawURL)
		}
		return file.New(file.Options{Path: path, Realtime: o.Realtime, Loop: o.Loop}), nil
	}
	return nil, fmt.Errorf("%q: unknown source (want file://, rtsp://, rtsps://, v4l2:// or a camera index)", rawURL)
}
