package urls

import (
	"strings"
	"testing"
)

func TestShow(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"rtsp://10.0.0.2/stream1", "rtsp://10.0.0.2/stream1"},
		{"rtsp://viewer:hunter2@10.0.0.2/stream1", "rtsp://10.0.0.2/stream1"},
		{"rtsp://viewer@10.0.0.2/s", "rtsp://10.0.0.2/s"},
		{"rtsp://cam/s?token=abc&channel=1", "rtsp://cam/s?channel=1&token=REDACTED"},
		{"rtsps://cam/s?access_token=abc", "rtsps://cam/s?access_token=REDACTED"},
		{"http://cam/video?user=admin&PWD=abc", "http://cam/video?PWD=REDACTED&user=admin"},
		{"rtsp://cam/s?X-Amz-Security-Token=abc", "rtsp://cam/s?X-Amz-Security-Token=REDACTED"},
		{"/data/clip.mp4", "/data/clip.mp4"},
		{"rtsp://a:b@[::1", "rtsp://REDACTED"},
	} {
		got := Show(c.in)
		if got != c.want {
			t.Errorf("Show(%q) = %q, want %q", c.in, got, c.want)
		}
		for _, secret := range []string{"hunter2", "abc", "viewer"} {
			if strings.Contains(got, secret) {
				t.Errorf("Show(%q) = %q shows %q", c.in, got, secret)
			}
		}
	}
}
