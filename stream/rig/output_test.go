package rig

import (
	"encoding/json"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/affectd/affectd/infer/analysis"
	"github.com/affectd/affectd/stream/osc"
	"github.com/affectd/affectd/tools/testenv"
)

// TestValidate checks each bad field's error and some good options.
func TestValidate(t *testing.T) {
	good := func() Options {
		return Options{Kind: KindVMC, Target: "127.0.0.1:39539", Stream: "cam1", Face: FaceLargest, Gain: 1, Names: NamesARKit}
	}
	for _, c := range []struct {
		name string
		edit func(o *Options)
		want string // "" for valid
	}{
		{"vmc", func(o *Options) {}, ""},
		{"osc first", func(o *Options) { o.Kind, o.Names, o.Face = KindOSC, "", FaceFirst }, ""},
		{"livelink", func(o *Options) { o.Kind, o.Subject, o.FPSNum, o.FPSDen = KindLiveLink, "Ana's face", 30000, 1001 }, ""},
		{"livelink default rate", func(o *Options) { o.Kind, o.Subject = KindLiveLink, "Ana" }, ""},
		{"track number", func(o *Options) { o.Face = "12" }, ""},
		{"host name", func(o *Options) { o.Target = "localhost:11111" }, ""},
		{"ipv6", func(o *Options) { o.Target = "[::1]:9000" }, ""},
		{"limits", func(o *Options) { o.Rate, o.Gain, o.DeadZone = 1000, 10, 0.99 }, ""},
		{"name", func(o *Options) { o.Name = "vmc-0" }, ""},

		{"no kind", func(o *Options) { o.Kind = "" }, "kind: required"},
		{"bad kind", func(o *Options) { o.Kind = "midi" }, `kind: want vmc, osc or livelink, got "midi"`},
		{"no port", func(o *Options) { o.Target = "127.0.0.1" }, "target: want host:port"},
		{"no host", func(o *Options) { o.Target = ":39539" }, "target: want host:port"},
		{"port 0", func(o *Options) { o.Target = "127.0.0.1:0" }, `target: port must be a number from 1 to 65535, got "0"`},
		{"port too big", func(o *Options) { o.Target = "127.0.0.1:65536" }, "target: port must be"},
		{"port name", func(o *Options) { o.Target = "127.0.0.1:vmc" }, "target: port must be"},
		{"no stream", func(o *Options) { o.Stream = "" }, "stream: invalid stream id"},
		{"bad stream", func(o *Options) { o.Stream = "a/b" }, "stream: invalid stream id"},
		{"no face", func(o *Options) { o.Face = "" }, "face: want largest, first or a track number"},
		{"face 0", func(o *Options) { o.Face = "0" }, "face: want"},
		{"face -1", func(o *Options) { o.Face = "-1" }, "face: want"},
		{"face word", func(o *Options) { o.Face = "biggest" }, "face: want"},
		{"negative rate", func(o *Options) { o.Rate = -1 }, "rate: must be from 0"},
		{"NaN rate", func(o *Options) { o.Rate = math.NaN() }, "rate: must be"},
		{"rate too high", func(o *Options) { o.Rate = 1001 }, "rate: must be"},
		{"zero gain", func(o *Options) { o.Gain = 0 }, "gain: must be above 0 and at most 10, got 0"},
		{"negative gain", func(o *Options) { o.Gain = -1 }, "gain: must be"},
		{"gain too high", func(o *Options) { o.Gain = 10.5 }, "gain: must be"},
		{"negative dead zone", func(o *Options) { o.DeadZone = -0.1 }, "dead_zone: must be from 0 up to"},
		{"dead zone 1", func(o *Options) { o.DeadZone = 1 }, "dead_zone: must be"},
		{"bad names", func(o *Options) { o.Names = "apple" }, `names: want arkit or vrm, got "apple"`},
		{"no subject", func(o *Options) { o.Kind = KindLiveLink }, "subject: required"},
		{"long subject", func(o *Options) { o.Kind, o.Subject = KindLiveLink, strings.Repeat("x", 65) }, "subject: want at most 64 bytes"},
		{"control in subject", func(o *Options) { o.Kind, o.Subject = KindLiveLink, "a\nb" }, "subject: want"},
		{"bad UTF-8 subject", func(o *Options) { o.Kind, o.Subject = KindLiveLink, "a\xffb" }, "subject: want"},
		{"control in device", func(o *Options) { o.Kind, o.Subject, o.DeviceID = KindLiveLink, "s", "d\x00" }, "device_id: want"},
		{"half a rate", func(o *Options) { o.Kind, o.Subject, o.FPSNum = KindLiveLink, "s", 30 }, "fps: want"},
		{"negative rate", func(o *Options) { o.Kind, o.Subject, o.FPSNum, o.FPSDen = KindLiveLink, "s", -30, 1 }, "fps: want"},
		{"bad name", func(o *Options) { o.Name = "a b" }, "name: want"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := good()
			c.edit(&o)
			err := o.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid options refused: %v", err)
			case c.want == "":
				return
			case err == nil:
				t.Fatalf("accepted, want %q", c.want)
			case !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q, want %q", err, c.want)
			}
			if _, err := New(o, nil); err == nil {
				t.Error("New accepted invalid options")
			}
		})
	}
	// Several bad fields: one error each.
	err := (&Options{Kind: "x", Target: "y", Stream: "cam1", Face: FaceFirst, Gain: 1}).Validate()
	if err == nil || strings.Count(err.Error(), "rig: invalid options") != 2 {
		t.Errorf("two bad fields: %v", err)
	}
}

// TestFaceSelection checks largest, first and a track number.
func TestFaceSelection(t *testing.T) {
	face := func(n int, box float32, fail string) analysis.Face {
		f := testFace(t, n, box)
		f.Fail = fail
		return f
	}
	faces := []analysis.Face{face(5, 120, ""), face(2, 80, ""), face(7, 200, analysis.FailPoorFit), face(9, 150, "")}
	for _, c := range []struct {
		face  string
		faces []analysis.Face
		want  uint64 // 0: none
	}{
		{FaceLargest, faces, 9}, // 7 is bigger but failed
		{FaceFirst, faces, 2},
		{"5", faces, 5},
		{"7", faces, 0}, // failed: no face
		{"3", faces, 0},
		{FaceFirst, []analysis.Face{face(4, 50, analysis.FailNoFit), face(6, 90, "")}, 0}, // the first failed: not swapped
		{FaceLargest, []analysis.Face{face(4, 50, analysis.FailNoFit)}, 0},
		{FaceLargest, []analysis.Face{{ID: "bad"}, face(1, 10, "")}, 1},
		{FaceLargest, nil, 0},
	} {
		pick, num, err := parseFace(c.face)
		if err != nil {
			t.Fatal(err)
		}
		o := &Output{pick: pick, num: num}
		f, n := o.choose(&analysis.FrameResult{Faces: c.faces})
		if (f == nil) != (c.want == 0) || n != c.want || (f != nil && f.ID != "cam1/"+strconv.FormatUint(c.want, 10)) {
			t.Errorf("%s of %d faces: %v %d, want %d", c.face, len(c.faces), f != nil, n, c.want)
		}
	}
	for _, c := range []struct {
		id string
		n  uint64
		ok bool
	}{{"cam1/12", 12, true}, {"12", 12, true}, {"a/b/3", 3, true}, {"cam1/", 0, false}, {"cam1/x1", 0, false}, {"cam1/99999999999999999999", 0, false}} {
		if n, ok := faceNumber(c.id); n != c.n || ok != c.ok {
			t.Errorf("faceNumber(%q) = %d %v", c.id, n, ok)
		}
	}
}

// TestOutputUDP sends a frame of each kind to a real receiver.
func TestOutputUDP(t *testing.T) {
	testenv.NoLeaks(t)
	for _, c := range []struct {
		kind  string
		check func(t *testing.T, got [][]byte)
	}{
		{KindVMC, func(t *testing.T, got [][]byte) {
			var msgs []osc.Parsed
			for _, p := range got {
				m, err := osc.Parse(p)
				if err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, m...)
			}
			if len(msgs) != 52+4 || msgs[17].Args[0] != "jawOpen" || msgs[17].Args[1] != float32(0.5) {
				t.Errorf("%d messages: %+v", len(msgs), msgs)
			}
		}},
		{KindOSC, func(t *testing.T, got [][]byte) {
			found := false
			for _, p := range got {
				m, err := osc.Parse(p)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range m {
					found = found || (m.Address == "/affectd/cam1/3/blend/jawOpen" && m.Args[0] == float32(0.5))
				}
			}
			if !found {
				t.Error("no jawOpen")
			}
		}},
		{KindLiveLink, func(t *testing.T, got [][]byte) {
			pk, err := decodeLiveLink(got[0])
			if err != nil || len(got) != 1 || pk.frame != 1 || pk.values[17] != 0.5 || pk.rateNum != 30 || pk.rateDen != 1 || pk.device != "affectd-cam1" {
				t.Errorf("%d packets, %+v %v", len(got), pk, err)
			}
		}},
	} {
		t.Run(c.kind, func(t *testing.T) {
			rx := listen(t)
			out := newOutput(t, rx, Options{Kind: c.kind, Bundle: true})
			if err := out.WriteFrame(frame(1, 0, testFace(t, 3, 100))); err != nil {
				t.Fatal(err)
			}
			got := receive(t, rx, 200*time.Millisecond)
			if len(got) == 0 {
				t.Fatal("nothing received")
			}
			c.check(t, got)
			st := out.Stats()
			size := 0
			for _, p := range got {
				size += len(p)
			}
			if st.Packets != uint64(len(got)) || st.Bytes != uint64(size) || st.Errors != 0 || st.Frames != 1 || st.Kind != c.kind {
				t.Errorf("stats %+v; received %d datagrams, %d bytes", st, len(got), size)
			}
		})
	}
}

// TestOutputNoFace checks what each kind sends when its face goes.
func TestOutputNoFace(t *testing.T) {
	f3, f5, f6 := testFace(t, 3, 100), testFace(t, 5, 100), testFace(t, 6, 300)
	failed := testFace(t, 3, 100)
	failed.Fail = analysis.FailPoorFit
	frames := []*analysis.FrameResult{
		frame(1, 0, f3),
		frame(2, 40, failed), // lost: neutral / F
		frame(3, 80),         // still none: nothing
		frame(4, 120, f5),
		frame(5, 160, f5, f6), // 6 is larger: OSC retracts 5
		{Stream: "cam1", Seq: 0, Ended: []string{"cam1/5", "cam1/6"}}, // end of input
	}
	for _, kind := range []string{KindVMC, KindOSC, KindLiveLink} {
		t.Run(kind, func(t *testing.T) {
			rx := listen(t)
			out := newOutput(t, rx, Options{Kind: kind, Bundle: false})
			var got [][]osc.Parsed
			for _, r := range frames {
				if err := out.WriteFrame(r); err != nil {
					t.Fatal(err)
				}
				var msgs []osc.Parsed
				for _, p := range receive(t, rx, 50*time.Millisecond) {
					if kind == KindLiveLink {
						msgs = append(msgs, osc.Parsed{Address: "llf"})
						continue
					}
					m, err := osc.Parse(p)
					if err != nil {
						t.Fatal(err)
					}
					msgs = append(msgs, m...)
				}
				got = append(got, msgs)
			}
			switch kind {
			case KindVMC:
				neutral := got[1]
				if len(neutral) != 56 {
					t.Fatalf("neutral frame: %d messages", len(neutral))
				}
				for _, m := range neutral[:52] {
					if m.Args[1] != float32(0) {
						t.Errorf("neutral %v", m.Args)
					}
				}
				if b := neutral[53]; b.Args[4] != float32(0) || b.Args[7] != float32(1) {
					t.Errorf("neutral head %v", b.Args)
				}
				if len(got[0]) != 56 || len(got[2]) != 0 || len(got[3]) != 56 || len(got[4]) != 56 || len(got[5]) != 56 {
					t.Errorf("messages per frame: %d %d %d %d %d %d", len(got[0]), len(got[1]), len(got[2]), len(got[3]), len(got[4]), len(got[5]))
				}
			case KindOSC:
				one := func(i int, addr, tags string) {
					t.Helper()
					if len(got[i]) != 1 || got[i][0].Address != addr || got[i][0].Tags != tags {
						t.Errorf("frame %d: %+v, want %s %s", i, got[i], addr, tags)
					}
				}
				one(1, "/affectd/cam1/3/present", "F")
				one(5, "/affectd/cam1/6/present", "F")
				if len(got[2]) != 0 || got[4][0].Address != "/affectd/cam1/5/present" || got[4][0].Tags != "F" ||
					got[4][1].Address != "/affectd/cam1/6/present" || got[4][1].Tags != "T" {
					t.Errorf("frames 2, 4: %+v %+v", got[2], got[4][:2])
				}
				if n := out.osc.Cached(); n != 1 { // 3 is kept: it never ended
					t.Errorf("%d faces cached", n)
				}
			case KindLiveLink:
				for i, want := range []int{1, 0, 0, 1, 1, 0} {
					if len(got[i]) != want {
						t.Errorf("frame %d: %d packets, want %d", i, len(got[i]), want)
					}
				}
			}
		})
	}
}

// TestOutputUnreachable sends to a port nobody listens on: the refusals
// are counted, and WriteFrame neither fails nor slows down.
func TestOutputUnreachable(t *testing.T) {
	c := listen(t)
	target := c.LocalAddr().String()
	c.Close()
	for _, kind := range []string{KindVMC, KindLiveLink} {
		out := newOutput(t, nil, Options{Kind: kind, Target: target, Bundle: true})
		f := testFace(t, 1, 100)
		start := time.Now()
		for i := range 1000 {
			if err := out.WriteFrame(frame(uint64(i+1), int64(i)*33, f)); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: 1000 frames took %v", kind, d)
		}
		st := out.Stats()
		if st.Errors == 0 || !strings.Contains(st.LastError, "refused") || st.LastErrorAt.IsZero() || st.Frames != 1000 {
			t.Errorf("%s: %+v", kind, st)
		}
		t.Logf("%s: %d sent, %d errors: %s", kind, st.Packets, st.Errors, st.LastError)
	}
}

// TestRateLimit checks Rate against the frames' capture times.
func TestRateLimit(t *testing.T) {
	rx := listen(t)
	f := testFace(t, 1, 100)
	for _, c := range []struct {
		name     string
		rate     float64
		frames   int
		every    func(i int) int64 // capture time of frame i, ms
		min, max uint64
	}{
		{"100 fps at 10/s", 10, 200, func(i int) int64 { return int64(i) * 10 }, 20, 21},
		{"30 fps at 20/s", 20, 90, func(i int) int64 { return int64(i) * 100 / 3 }, 60, 61},
		{"jittery 30 fps at 30/s", 30, 90, func(i int) int64 { return int64(i)*100/3 + int64(i%3*3) - 3 }, 90, 90},
		{"30 fps uncapped", 0, 90, func(i int) int64 { return int64(i) * 33 }, 90, 90},
		{"time goes back", 10, 40, func(i int) int64 { return int64(i%20) * 50 }, 20, 22},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := newOutput(t, rx, Options{Kind: KindLiveLink, Rate: c.rate})
			for i := range c.frames {
				if err := out.WriteFrame(frame(uint64(i+1), c.every(i), f)); err != nil {
					t.Fatal(err)
				}
			}
			st := out.Stats()
			if st.Packets < c.min || st.Packets > c.max || st.Packets+st.Limited != uint64(c.frames) {
				t.Errorf("%d sent, %d limited of %d; want %d..%d sent", st.Packets, st.Limited, c.frames, c.min, c.max)
			}
			receive(t, rx, 10*time.Millisecond)
		})
	}
}

// TestOutputClose checks that Close can be called twice and that later
// frames are dropped quietly.
func TestOutputClose(t *testing.T) {
	rx := listen(t)
	out := newOutput(t, rx, Options{Kind: KindOSC})
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := out.WriteFrame(frame(1, 0, testFace(t, 1, 100))); err != nil {
		t.Fatal(err)
	}
	if err := out.WriteFrame(nil); !errors.Is(err, ErrNilFrame) {
		t.Errorf("nil frame: %v", err)
	}
	if st := out.Stats(); st.Packets != 0 || st.Errors != 0 || st.Frames != 0 {
		t.Errorf("after Close: %+v", st)
	}
}

// TestStatsJSON checks the field names of the outputs API.
func TestStatsJSON(t *testing.T) {
	rx := listen(t)
	out := newOutput(t, rx, Options{Kind: KindVMC, Name: "vmc-0"})
	b, err := json.Marshal(out.Stats())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "kind", "target", "stream", "face", "frames", "limited", "packets", "bytes", "errors"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %s", k, b)
		}
	}
	for _, k := range []string{"last_error", "last_error_at"} {
		if _, ok := m[k]; ok {
			t.Errorf("%q without an error: %s", k, b)
		}
	}
}

// TestOutputAllocs checks that writing a frame allocates nothing once
// warm, for each kind.
func TestOutputAllocs(t *testing.T) {
	rx := listen(t)
	for _, o := range []Options{
		{Kind: KindVMC, Bundle: true}, {Kind: KindVMC, Names: NamesVRM}, {Kind: KindOSC}, {Kind: KindLiveLink, Rate: 1000},
	} {
		out := newOutput(t, rx, o)
		r := frame(1, 0, testFace(t, 3, 100), testFace(t, 4, 50))
		r.Ended = []string{"cam1/2"}
		step := func() {
			r.Seq++
			r.CapturedAt = r.CapturedAt.Add(40 * time.Millisecond)
			if err := out.WriteFrame(r); err != nil {
				t.Fatal(err)
			}
		}
		step()
		if n := testing.AllocsPerRun(100, step); n != 0 {
			t.Errorf("%+v: %v allocations per frame", o, n)
		}
		if st := out.Stats(); st.Errors != 0 || st.Packets == 0 {
			t.Errorf("%+v: %+v", o, st)
		}
		receive(t, rx, 10*time.Millisecond)
	}
}

// TestLiveLinkRate: without a configured rate, Live Link packets carry the
// source's, measured from the frames' PTS and sequence numbers, with
// frames dropped upstream (gaps in Seq) not halving it.
func TestLiveLinkRate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		period   time.Duration
		step     uint64
		num, den int32
	}{
		{"25 fps", 40 * time.Millisecond, 1, 25, 1},
		{"25 fps, every other frame dropped", 40 * time.Millisecond, 2, 25, 1},
		{"29.97 fps", time.Duration(1001) * time.Second / 30000, 1, 29970, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer rx.Close()
			out, err := New(Options{Kind: KindLiveLink, Target: rx.LocalAddr().String(), Stream: "cam", Face: FaceLargest, Gain: 1, Subject: "s"}, &analysis.Layout{})
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			for i := uint64(1); i <= 60; i++ {
				seq := i * tc.step
				r := &analysis.FrameResult{Stream: "cam", Seq: seq, PTS: time.Duration(seq) * tc.period}
				out.WriteFrame(r)
			}
			if out.llf.FPSNum != tc.num || out.llf.FPSDen != tc.den {
				t.Errorf("rate %d/%d, want %d/%d", out.llf.FPSNum, out.llf.FPSDen, tc.num, tc.den)
			}
		})
	}
}
