package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestStreamKind(t *testing.T) {
	for _, tc := range []struct{ url, kind string }{
		{"/srv/a.mp4", "file"},
		{"a.mp4", "file"},
		{"file:///srv/a.mp4", "file"},
		{"file://rel/a.mp4", "file"},
		{"rtsp://cam/x", "rtsp"},
		{"rtsps://u:p@cam:322/x", "rtsp"},
		{"v4l2:///dev/video2", "v4l2"},
		{"v4l2:///dev/v4l/by-id/usb-cam", "v4l2"},
		{"v4l2://1", "v4l2"},
		{"0", "v4l2"},
		{"http://x", ""},
		{"v4l2://video0", ""},
		{"", ""},
		{"-1", ""},
		{"://x", ""},
	} {
		t.Run(tc.url, func(t *testing.T) {
			if got := (Stream{URL: tc.url}).Kind(); got != tc.kind {
				t.Errorf("Kind(%q) = %q, want %q", tc.url, got, tc.kind)
			}
		})
	}
}

func TestStreamsDiff(t *testing.T) {
	a := Stream{ID: "a", URL: "0"}
	b := Stream{ID: "b", URL: "rtsp://cam/b"}
	b2 := Stream{ID: "b", URL: "rtsp://cam/b2"}
	c := Stream{ID: "c", URL: "/c.mp4"}
	cRT := Stream{ID: "c", URL: "/c.mp4", Realtime: ptr(true)}
	cFast := Stream{ID: "c", URL: "/c.mp4", Realtime: ptr(false)}
	for _, tc := range []struct {
		name                    string
		old, new                []Stream
		added, removed, changed []Stream
	}{
		{"same", []Stream{a, b}, []Stream{a, b}, nil, nil, nil},
		{"empty to some", nil, []Stream{a, b}, []Stream{a, b}, nil, nil},
		{"some to empty", []Stream{a, b}, nil, nil, []Stream{a, b}, nil},
		{"changed url", []Stream{a, b}, []Stream{b2, a}, nil, nil, []Stream{b2}},
		{"all three", []Stream{a, b, c}, []Stream{b2, Stream{ID: "d", URL: "1"}}, []Stream{{ID: "d", URL: "1"}}, []Stream{a, c}, []Stream{b2}},
		{"realtime default equals true", []Stream{c}, []Stream{cRT}, nil, nil, nil},
		{"realtime false differs", []Stream{c}, []Stream{cFast}, nil, nil, []Stream{cFast}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			added, removed, changed := StreamsDiff(tc.old, tc.new)
			if !reflect.DeepEqual(added, tc.added) || !reflect.DeepEqual(removed, tc.removed) || !reflect.DeepEqual(changed, tc.changed) {
				t.Errorf("got +%v -%v ~%v, want +%v -%v ~%v", added, removed, changed, tc.added, tc.removed, tc.changed)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	noEnv(t)
	c, err := Parse([]byte(`auth_token: hunter2
streams:
  - id: door
    url: rtsp://viewer:s3cret@cam.local/x
  - id: open
    url: rtsp://viewer@cam.local/y?access_token=abc&ch=2
  - id: clip
    url: /srv/a.mp4
    realtime: false
`), "demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redacted()
	for _, tc := range []struct{ name, got, want string }{
		{"token", r.AuthToken, "<redacted>"},
		{"password", r.Streams[0].URL, "rtsp://cam.local/x"},
		{"user and query token", r.Streams[1].URL, "rtsp://cam.local/y?access_token=REDACTED&ch=2"},
		{"file", r.Streams[2].URL, "/srv/a.mp4"},
		{"original token kept", c.AuthToken, "hunter2"},
		{"original url kept", c.Streams[0].URL, "rtsp://viewer:s3cret@cam.local/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
	t.Run("deep copy", func(t *testing.T) {
		*r.Streams[2].Realtime = true
		r.Streams[2].ID = "changed"
		if *c.Streams[2].Realtime || c.Streams[2].ID != "clip" {
			t.Error("Redacted shares streams with the original")
		}
	})
	t.Run("no token stays empty", func(t *testing.T) {
		d := Default()
		if r := d.Redacted(); r.AuthToken != "" {
			t.Errorf("token %q", r.AuthToken)
		}
	})
}

func TestConcurrentReads(t *testing.T) {
	noEnv(t)
	c, err := Parse([]byte(fullDoc), "full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				if err := c.Validate(); err != nil {
					t.Error(err)
				}
				_ = c.Redacted()
				for _, s := range c.Streams {
					_ = s.Kind()
				}
				StreamsDiff(c.Streams, fullWant.Streams)
			}
		})
	}
	wg.Wait()
}

func FuzzParse(f *testing.F) {
	for _, tc := range confErrors {
		f.Add([]byte(tc.doc))
	}
	f.Add([]byte(fullDoc))
	f.Add([]byte(""))
	f.Add([]byte("detector: &d {threads: 2}\nonnxruntime:\n  <<: *d\nstreams: [{id: a, url: '0'}, {id: b, url: 'file://x/y.mp4', loop: true}]\n"))
	if ex, err := os.ReadFile("example.yaml"); err == nil {
		f.Add(ex)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c, err)
		}
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			for _, e := range es {
				if e.Msg == "" || e.Line < 0 {
					t.Fatalf("bad error %+v", e)
				}
			}
			_ = err.Error()
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse returned a config that fails Validate: %v", err)
		}
		for _, s := range c.Streams {
			if s.Kind() == "" {
				t.Fatalf("stream %q has no kind", s.URL)
			}
		}
		_ = c.Redacted()
	})
}

func TestWebRTCErrors(t *testing.T) {
	noEnv(t)
	for _, tc := range []struct{ name, doc, want string }{
		{"whip with a path", "streams:\n  - id: a\n    url: whip://x\n", "w.yaml:3: streams[0].url: want whip:// (the stream id is the WHIP path: POST /v1/whip/{id})"},
		{"token on a file", "streams:\n  - id: a\n    url: a.mp4\n    token: t\n", "w.yaml:4: streams[0].token: only applies to whip:// streams, not file"},
		{"port range half", "webrtc:\n  port_min: 5000\n", "w.yaml:1: webrtc.port_max: port_min and port_max go together, with port_min <= port_max (got 5000 and 0)"},
		{"bad NAT IP", "webrtc:\n  nat_1to1_ips: [not-an-ip]\n", "w.yaml:2: webrtc.nat_1to1_ips[0]: not an IP address: \"not-an-ip\""},
		{"small buffer", "webrtc:\n  receive_buffer: 1024\n", "w.yaml:2: webrtc.receive_buffer: must be between 1048576 and 1073741824, got 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "w.yaml")
			if err == nil || err.Error() != tc.want {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
	t.Setenv("PUB", "secret")
	c, err := Parse([]byte("streams:\n  - id: b\n    url: whip://\n    token: ${PUB}\n"), "w.yaml")
	if err != nil || c.Streams[0].Token != "secret" || c.Streams[0].Kind() != "whip" {
		t.Fatalf("%v %+v", err, c)
	}
	if r := c.Redacted(); r.Streams[0].Token != "<redacted>" {
		t.Errorf("redacted token %q", r.Streams[0].Token)
	}
}

// TestStreamEqual: every field of a stream counts when a reload compares
// it; an unset realtime equals true. Before, a changed token, blend shapes
// or landmarks flag did not restart the stream.
func TestStreamEqual(t *testing.T) {
	yes, no := true, false
	base := Stream{ID: "a", URL: "whip://", Realtime: &yes, Loop: true, Width: 640, Height: 480, FPS: 25, Token: "t", Blendshapes: true, Landmarks: true}
	unset := base
	unset.Realtime = nil
	if !base.Equal(unset) || !unset.Equal(base) {
		t.Error("realtime unset and realtime true differ")
	}
	v := reflect.ValueOf(&base).Elem()
	for i := 0; i < v.NumField(); i++ {
		other := base
		f := reflect.ValueOf(&other).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Int:
			f.SetInt(f.Int() + 1)
		case reflect.Pointer:
			f.Set(reflect.ValueOf(&no))
		default:
			t.Fatalf("field %s: kind %v not covered by this test", v.Type().Field(i).Name, f.Kind())
		}
		if base.Equal(other) {
			t.Errorf("a changed %s leaves the stream Equal", v.Type().Field(i).Name)
		}
	}
}

func TestOutputsInvalid(t *testing.T) {
	noEnv(t)
	for _, tc := range []struct{ doc, want string }{
		{"outputs:\n  - {kind: midi, target: 'a:1', stream: s}\n", `outputs[0].kind: want vmc, osc or livelink, got "midi"`},
		{"outputs:\n  - {target: 'a:1', stream: s}\n", `outputs[0].kind: required: vmc, osc or livelink`},
		{"outputs:\n  - {kind: osc, target: 'a', stream: s}\n", `outputs[0].target: want host:port such as "127.0.0.1:39539", got "a"`},
		{"outputs:\n  - {kind: osc, target: 'a:0', stream: s}\n", `outputs[0].target: port must be a number from 1 to 65535, got "0"`},
		{"outputs:\n  - {kind: osc, target: ':9', stream: s}\n", `outputs[0].target: want host:port such as "127.0.0.1:39539", got ":9"`},
		{"outputs:\n  - {kind: osc, target: 'a:9'}\n", `outputs[0].stream: required`},
		{"outputs:\n  - {kind: osc, target: 'a:9', stream: 'a b'}\n", `outputs[0].stream: want`},
		{"outputs:\n  - {kind: osc, target: 'a:9', stream: s, face: biggest}\n", `outputs[0].face: want largest, first or a track number, got "biggest"`},
		{"outputs:\n  - {kind: osc, target: 'a:9', stream: s, face: '0'}\n", `outputs[0].face: want largest, first or a track number, got "0"`},
		{"outputs:\n  - {kind: osc, target: 'a:9', stream: s, rate: -1}\n", `outputs[0].rate: must be between 0`},
		{"outputs:\n  - {kind: osc, target: 'a:9', stream: s, gain: 11}\n", `outputs[0].gain: must be above 0 and at most 10, got 11`},
		{"outputs:\n  - {kind: osc, target: 'a:9', stream: s, dead_zone: 1}\n", `outputs[0].dead_zone: must be from 0 up to`},
		{"outputs:\n  - {kind: osc, target: 'a:9', stream: s, bundle: true}\n", `outputs[0].bundle: only applies to vmc outputs, not "osc"`},
		{"outputs:\n  - {kind: vmc, target: 'a:9', stream: s, names: vrm1}\n", `outputs[0].names: want arkit or vrm, got "vrm1"`},
		{"outputs:\n  - {kind: livelink, target: 'a:9', stream: s, subject: \"a\\u202eb\"}\n", `outputs[0].subject: want at most 64 printable characters`},
		{"outputs:\n  - {kind: vmc, target: 'a:9', stream: s, subject: x}\n", `outputs[0].subject: only applies to livelink outputs, not "vmc"`},
		{"outputs:\n  - {kind: osc, target: 'a:9', stream: s}\n  - {kind: osc, target: 'a:9', stream: s, name: osc-0}\n", `outputs[1].name: duplicate name "osc-0" (also outputs[0])`},
		{"outputs:\n  - {kind: osc, target: 'a:9', stream: s, rat: 1}\n", `outputs[0].rat: unknown key`},
	} {
		_, err := Parse([]byte(tc.doc), "o.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.doc, err, tc.want)
		}
	}
	doc := "outputs:\n" + strings.Repeat("  - {kind: osc, target: 'a:9', stream: s}\n", MaxOutputs+1)
	if _, err := Parse([]byte(doc), "o.yaml"); err == nil || !strings.Contains(err.Error(), "at most 64 outputs") {
		t.Errorf("%d outputs: %v", MaxOutputs+1, err)
	}
}
